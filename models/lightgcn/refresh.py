"""LightGCN's refresh rounds: propagation of base rows over the whole graph or over the ``2K``-hop
subgraph of the changed nodes (the :class:`~models.protocol.RefreshMethod` of a LightGCN checkpoint,
and of the hashed bases served before any checkpoint exists)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.domain import EdgeSnapshot, EmbeddingRows, NodeId, NodeKind, NodeRef, Subgraph
from models.lightgcn.base_embeddings import BaseTable
from models.lightgcn.propagation import propagate_subgraph, snapshot_as_subgraph
from models.protocol import RoundOutput


class LightGCNRefresh:
    r"""LightGCN propagation (`He et al., SIGIR 2020 <https://arxiv.org/abs/2002.02126>`_),
    :math:`\frac{1}{K+1}\sum_{k=0}^{K} (\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2})^k \mathbf{E}^{(0)}`,
    of base rows from a :class:`~models.lightgcn.base_embeddings.BaseTable`; incremental rounds are
    computed from the ``2K``-hop subgraph of the seeds and publish the nodes within ``K`` hops
    (exact without a fan-out cap, see :mod:`models.lightgcn.propagation`).

    Args:
        table (BaseTable): Base rows (trained, derived or hashed).
        layers (int): ``K``.
        fanout (int, optional): Neighbours per node read for incremental rounds; ``None`` = all.
        device (str, optional): Torch device. (default: CUDA if present, else CPU)
    """

    method = "lightgcn"

    def __init__(self, table: BaseTable, layers: int, fanout: int | None = None, device: str | None = None) -> None:
        self.table = table
        self.layers = layers
        self.fanout = fanout or None
        self.device = device

    @property
    def read_hops(self) -> int:
        """``2K``: every node a ``K``-hop node's output depends on, with all its neighbours."""
        return 2 * self.layers

    def full(self, snapshot: EdgeSnapshot, users: bool = True) -> RoundOutput:
        sub = snapshot_as_subgraph(snapshot)
        user_base, item_base, derived = self.table.for_subgraph(sub)
        user_out, item_out = propagate_subgraph(sub, user_base, item_base, self.layers, self.device)
        rows = [EmbeddingRows(NodeKind.USER, list(sub.user_ids), user_out.numpy()),
                EmbeddingRows(NodeKind.ITEM, list(sub.item_ids), item_out.numpy())]
        return RoundOutput(rows, derived, sub)

    def fold_in(self, model_version: int) -> None:
        """LightGCN users are propagated, not linear in their rows: serving needs their stored vectors."""
        return None

    def seeds(self, changed: Sequence[NodeRef]) -> list[NodeRef]:
        return list(changed)  # every change moves its node's K-hop neighbourhood

    def incremental(self, sub: Subgraph) -> RoundOutput:
        user_base, item_base, derived = self.table.for_subgraph(sub, sub.user_hops == 0, sub.item_hops == 0)
        user_out, item_out = propagate_subgraph(sub, user_base, item_base, self.layers, self.device)
        rows = [rows_within(NodeKind.USER, sub.user_ids, user_out.numpy(), sub.user_hops, self.layers),
                rows_within(NodeKind.ITEM, sub.item_ids, item_out.numpy(), sub.item_hops, self.layers)]
        return RoundOutput(rows, derived, sub)


def rows_within(kind: NodeKind, ids: Sequence[NodeId], vectors: np.ndarray, hops: np.ndarray,
                layers: int) -> EmbeddingRows:
    """The rows of nodes within ``layers`` hops of a seed: those whose outputs the changes moved."""
    keep = np.flatnonzero(np.asarray(hops) <= layers).tolist()
    return EmbeddingRows(kind, [ids[k] for k in keep], vectors[keep])
