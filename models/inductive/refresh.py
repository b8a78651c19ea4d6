"""GraphSAGE / GAT refresh rounds: the fitted module run over the whole graph, or over the ``2K``-hop
subgraph of the changed nodes, publishing the nodes within ``K`` hops (the
:class:`~models.protocol.RefreshMethod` of a ``sage`` or ``gat`` checkpoint).

A node's output depends on the nodes within ``K`` hops and on every neighbour of those within
``K - 1``: a ``2K``-hop read without a fan-out cap (``k_hop_subgraph(seeds, hops=2K,
fanout=None)``) therefore gives every node within ``K`` hops of a seed its full-graph output, the
argument :mod:`models.lightgcn.propagation` makes for LightGCN (means and attention weights are
over complete neighbour lists too). An insert changes the outputs of nodes within ``K`` hops of
its ends only, so these rounds keep every published vector equal to a full recompute. A fan-out
cap trades that for bounded reads around hubs. Users need no fitted row: a new user is embedded
from its items in the next round, with no refit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core.domain import EdgeSnapshot, EmbeddingRows, NodeKind, NodeRef, Subgraph
from models.inductive.checkpoint import InductiveCheckpoint
from models.interactions import positions_of
from models.lightgcn.model import distinct_edges
from models.lightgcn.propagation import snapshot_as_subgraph
from models.lightgcn.refresh import rows_within
from models.protocol import RoundOutput
from models.runtime import resolve_device


class InductiveRefresh:
    """Refresh rounds of a GraphSAGE or GAT checkpoint (see the module docs).

    Args:
        checkpoint (InductiveCheckpoint): The fitted model.
        fanout (int, optional): Neighbours per node read for incremental rounds; ``None`` = all (exact).
        device (str, optional): Torch device. (default: CUDA if present, else CPU)
    """

    def __init__(self, checkpoint: InductiveCheckpoint, fanout: int | None = None, device: str | None = None) -> None:
        self.checkpoint = checkpoint
        self.method = checkpoint.conv
        self.layers = checkpoint.layers
        self.fanout = fanout or None
        self.device = resolve_device(device)
        self.model = checkpoint.module(self.device)
        self._item_row = {node: n for n, node in enumerate(checkpoint.item_ids)}

    @property
    def read_hops(self) -> int:
        """``2K``: every node a ``K``-hop node's output depends on, with all its neighbours."""
        return 2 * self.layers

    def embed(self, sub: Subgraph) -> tuple[np.ndarray, np.ndarray]:
        """``(users [U, d], items [I, d])``: the module's outputs on ``sub`` (exact within ``K`` hops of its seeds)."""
        num_users, num_items = len(sub.user_ids), len(sub.item_ids)
        edge_user, edge_item = distinct_edges(sub.edge_user, sub.edge_item, num_items)
        edges = self.model.edges(edge_user, edge_item, num_users, num_items, self.device)
        rows = torch.as_tensor(positions_of(self._item_row, sub.item_ids), device=self.device)
        with torch.no_grad():
            users, items = self.model(edges, self.model.item_inputs(rows))
        return users.cpu().numpy(), items.cpu().numpy()

    def full(self, snapshot: EdgeSnapshot, users: bool = True) -> RoundOutput:
        sub = snapshot_as_subgraph(snapshot)
        user_out, item_out = self.embed(sub)
        rows = [EmbeddingRows(NodeKind.USER, list(sub.user_ids), user_out),
                EmbeddingRows(NodeKind.ITEM, list(sub.item_ids), item_out)]
        return RoundOutput(rows, [], sub)

    def fold_in(self, model_version: int) -> None:
        """Users pass non-linear layers, so they are not linear in their rows: serving needs their vectors."""
        return None

    def seeds(self, changed: Sequence[NodeRef]) -> list[NodeRef]:
        return list(changed)  # every change moves its node's K-hop neighbourhood

    def incremental(self, sub: Subgraph) -> RoundOutput:
        user_out, item_out = self.embed(sub)
        rows = [rows_within(NodeKind.USER, sub.user_ids, user_out, sub.user_hops, self.layers),
                rows_within(NodeKind.ITEM, sub.item_ids, item_out, sub.item_hops, self.layers)]
        return RoundOutput(rows, [], sub)
