"""What one refresh round computes, per method: LightGCN propagation (this module) or SpectralCF
fold-in (:mod:`models.spectral_refresh`). The worker (:mod:`models.refresh`) only schedules rounds.

Each method offers ``full(snapshot)``, the embeddings of every node of the graph, and
``incremental(store, seeds)``, the embeddings of exactly the nodes whose full-recompute outputs the
changes at ``seeds`` moved, read from the smallest subgraph that determines them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.domain import EdgeSnapshot, EmbeddingRows, NodeId, NodeKind, NodeRef, Subgraph
from graph_store.base import GraphStore
from models.base_embeddings import BaseTable
from models.propagation import propagate_subgraph, snapshot_as_subgraph


@dataclass(frozen=True, slots=True)
class RoundOutput:
    """Embeddings to publish, derived base rows to persist, and the size of the graph read."""

    rows: list[EmbeddingRows]
    derived: list[EmbeddingRows]
    subgraph: Subgraph

    @property
    def nodes_refreshed(self) -> int:
        return sum(len(r.ids) for r in self.rows)


class LightGCNRefresh:
    r"""LightGCN propagation (`He et al., SIGIR 2020 <https://arxiv.org/abs/2002.02126>`_),
    :math:`\frac{1}{K+1}\sum_{k=0}^{K} (\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2})^k \mathbf{E}^{(0)}`,
    of base rows from a :class:`~models.base_embeddings.BaseTable`; incremental rounds read the
    ``2K``-hop subgraph of the seeds and publish the nodes within ``K`` hops (exact without a
    fan-out cap, see :mod:`models.propagation`).

    Args:
        table (BaseTable): Base rows (trained, derived or hashed).
        layers (int): ``K``.
        fanout (int, optional): Neighbours per node pulled for incremental rounds; ``None`` = all.
        device (str, optional): Torch device. (default: CUDA if present, else CPU)
        threads (int, optional): CPU threads. (default: half the cores)
    """

    method = "lightgcn"

    def __init__(self, table: BaseTable, layers: int, fanout: int | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        self.table = table
        self.layers = layers
        self.fanout = fanout or None
        self.device = device
        self.threads = threads

    @property
    def checkpoint(self) -> object | None:
        return self.table.checkpoint

    def full(self, snapshot: EdgeSnapshot) -> RoundOutput:
        sub = snapshot_as_subgraph(snapshot)
        user_base, item_base, derived = self.table.for_subgraph(sub)
        user_out, item_out = propagate_subgraph(sub, user_base, item_base, self.layers, self.device, self.threads)
        rows = [EmbeddingRows(NodeKind.USER, list(sub.user_ids), user_out.numpy()),
                EmbeddingRows(NodeKind.ITEM, list(sub.item_ids), item_out.numpy())]
        return RoundOutput(rows, derived, sub)

    def incremental(self, store: GraphStore, seeds: Sequence[NodeRef]) -> RoundOutput:
        sub = store.k_hop_subgraph(list(seeds), hops=2 * self.layers, fanout=self.fanout)
        user_base, item_base, derived = self.table.for_subgraph(sub, sub.user_hops == 0, sub.item_hops == 0)
        user_out, item_out = propagate_subgraph(sub, user_base, item_base, self.layers, self.device, self.threads)
        rows = [rows_within(NodeKind.USER, sub.user_ids, user_out.numpy(), sub.user_hops, self.layers),
                rows_within(NodeKind.ITEM, sub.item_ids, item_out.numpy(), sub.item_hops, self.layers)]
        return RoundOutput(rows, derived, sub)


def rows_within(kind: NodeKind, ids: Sequence[NodeId], vectors: np.ndarray, hops: np.ndarray,
                layers: int) -> EmbeddingRows:
    """The rows of nodes within ``layers`` hops of a seed: those whose outputs the changes moved."""
    keep = np.flatnonzero(np.asarray(hops) <= layers).tolist()
    return EmbeddingRows(kind, [ids[k] for k in keep], vectors[keep])
