r"""Serving embeddings of a live graph under a fitted SpectralCF, and their exact incremental refresh.

For a checkpoint fitted on a snapshot, the embeddings of the *current* graph are defined node by
node (this is the "full recompute"):

* user :math:`u`: :math:`\mathbf{e}_u = \mathbf{r}_u \mathbf{P}_U` with :math:`\mathbf{r}_u` the
  user's current row of edge values over the fitted items (edges to items the model does not know
  add nothing) and :math:`\mathbf{P}_U` the model's ``user_projection``;
* fitted item :math:`i`: its fitted vector :math:`\mathbf{E}_I[i]`;
* any other item: the fold-in :math:`\mathbf{c}_i \mathbf{P}_I` of its current column over the
  fitted users (``item_projection``).

Every node's vector depends on its own edges only. An insert of ``(u, i)`` changes the edge
values of ``u`` and ``i``, so refreshing exactly the changed nodes (the change log's seeds) from
their 1-hop neighbourhoods (``k_hop_subgraph(seeds, hops=1, fanout=None)``, which holds every edge
of a seed) keeps every published vector equal to the full recompute. Fitted items never move;
a user whose items are all new gets the zero vector, as the fold-in gives. :class:`SpectralRefresh`
is the :class:`~models.protocol.RefreshMethod` of a SpectralCF checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from core.domain import EdgeSnapshot, EmbeddingRows, NodeId, NodeKind, NodeRef, Subgraph, UserFoldIn
from models.interactions import positions_of
from models.protocol import RoundOutput
from models.spectral.checkpoint import SpectralCheckpoint, interaction_matrix


class SpectralEmbedder:
    """Embeds the nodes of any subgraph under a fitted SpectralCF (see the module docs).

    Args:
        checkpoint (SpectralCheckpoint): The fitted model and the ids of its rows and columns.
    """

    def __init__(self, checkpoint: SpectralCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self._user_col = {node: n for n, node in enumerate(checkpoint.user_ids)}
        self._item_col = {node: n for n, node in enumerate(checkpoint.item_ids)}

    def fitted_items(self, ids: Sequence[NodeId]) -> np.ndarray:
        """``bool [len(ids)]``: which items the checkpoint was fitted on (their vectors never change)."""
        return positions_of(self._item_col, ids) >= 0

    def users(self, sub: Subgraph, select: np.ndarray) -> np.ndarray:
        """``[n, d]`` vectors of the users ``select`` (local indices) from their edges in ``sub``."""
        fitted = positions_of(self._item_col, sub.item_ids)
        rows = self._edge_rows(sub.edge_user, sub.edge_item, sub.edge_weight, select, fitted,
                               len(self.checkpoint.item_ids))
        return self.model.user_embedding(rows)

    def items(self, sub: Subgraph, select: np.ndarray) -> np.ndarray:
        """``[n, d]`` vectors of the items ``select``: fitted rows, or the fold-in of their users."""
        select = np.asarray(select, dtype=np.int64)
        own = positions_of(self._item_col, [sub.item_ids[k] for k in select])
        out = np.zeros((len(select), self.model.dim), dtype=np.float32)
        known = own >= 0
        assert self.model.item_emb is not None  # a checkpoint's model is fitted
        out[known] = self.model.item_emb[own[known]]
        if not known.all():
            fitted = positions_of(self._user_col, sub.user_ids)
            columns = self._edge_rows(sub.edge_item, sub.edge_user, sub.edge_weight, select[~known], fitted,
                                      len(self.checkpoint.user_ids))
            out[~known] = self.model.item_embedding(columns)
        return out

    def _edge_rows(self, source: np.ndarray, target: np.ndarray, weight: np.ndarray, select: np.ndarray,
                   target_col: np.ndarray, width: int) -> sp.csr_matrix:
        """CSR ``[len(select), width]``: edge values from each selected source node to fitted targets."""
        position = np.full(int(max(source.max(initial=-1), select.max(initial=-1))) + 1, -1, dtype=np.int64)
        position[select] = np.arange(len(select))
        source = np.asarray(source, dtype=np.int64)
        target = np.asarray(target, dtype=np.int64)
        row = position[source] if len(source) else source
        col = target_col[target] if len(target) else target
        use = (row >= 0) & (col >= 0)
        return interaction_matrix(row[use], col[use], np.asarray(weight)[use], (len(select), width),
                                  self.checkpoint.values)

    def embed(self, sub: Subgraph, users: np.ndarray, items: np.ndarray) -> list[EmbeddingRows]:
        """Rows of the selected users and items of ``sub``, ready to publish."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        return [EmbeddingRows(NodeKind.USER, [sub.user_ids[k] for k in users], self.users(sub, users)),
                EmbeddingRows(NodeKind.ITEM, [sub.item_ids[k] for k in items], self.items(sub, items))]


class SpectralRefresh:
    """Refresh rounds for a SpectralCF checkpoint: full = every node of the snapshot, incremental =
    the seeds from their 1-hop subgraph (exact; the fan-out cap is never applied, since a capped
    row would change the vector itself, and a 1-hop read costs one row per seed).

    Args:
        checkpoint (SpectralCheckpoint): The fitted model.
    """

    method = "spectral"
    layers = 1
    read_hops = 1
    fanout = None

    def __init__(self, checkpoint: SpectralCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.embedder = SpectralEmbedder(checkpoint)

    def full(self, snapshot: EdgeSnapshot, users: bool = True) -> RoundOutput:
        sub = snapshot_with_weights(snapshot)
        rows = self.embedder.embed(sub, np.arange(len(sub.user_ids) if users else 0), np.arange(len(sub.item_ids)))
        return RoundOutput(rows if users else rows[1:], [], sub)

    def fold_in(self, model_version: int) -> UserFoldIn:
        # user_projection = E_I * D_I^-1 row by row (both are V_K Sigma^(p/2) scaled by a power of the
        # item degree), so one float per item and the published item vectors give every user vector.
        model = self.checkpoint.model
        assert model.user_projection is not None and model.item_emb is not None  # a checkpoint is fitted
        published = np.linalg.norm(model.item_emb, axis=1)
        scale = np.divide(np.linalg.norm(model.user_projection, axis=1), published,
                          out=np.zeros_like(published), where=published > 0)
        return UserFoldIn(tuple(self.checkpoint.item_ids), scale.astype(np.float32), self.checkpoint.values,
                          model_version)

    def seeds(self, changed: Sequence[NodeRef]) -> list[NodeRef]:
        # Fitted items never move (their vector is the fitted row): neither their rows (a hub item's
        # holds most users) are read nor their constant vectors republished (a store write, an
        # index copy and an HNSW rescore for nothing).
        items = [ref.id for ref in changed if ref.kind is NodeKind.ITEM]
        fitted = set(np.asarray(items, dtype=object)[self.embedder.fitted_items(items)].tolist()) if items else set()
        return [ref for ref in changed if ref.kind is NodeKind.USER or ref.id not in fitted]

    def incremental(self, sub: Subgraph) -> RoundOutput:
        seeds = np.flatnonzero(sub.item_hops == 0)
        folded = seeds[~self.embedder.fitted_items([sub.item_ids[k] for k in seeds])]
        rows = self.embedder.embed(sub, np.flatnonzero(sub.user_hops == 0), folded)
        return RoundOutput(rows, [], sub)


def snapshot_with_weights(snapshot: EdgeSnapshot) -> Subgraph:
    """The whole graph as a :class:`Subgraph` keeping edge weights (repeated edges summed)."""
    num_users, num_items = len(snapshot.user_ids), len(snapshot.item_ids)
    key = np.asarray(snapshot.user_index, dtype=np.int64) * max(num_items, 1) + snapshot.item_index
    unique, inverse = np.unique(key, return_inverse=True)
    weight = np.bincount(inverse, weights=snapshot.weight, minlength=len(unique)).astype(np.float32)
    edge_user, edge_item = unique // max(num_items, 1), unique % max(num_items, 1)
    return Subgraph(user_ids=list(snapshot.user_ids), item_ids=list(snapshot.item_ids),
                    edge_user=edge_user, edge_item=edge_item, edge_weight=weight,
                    user_degree=np.bincount(edge_user, minlength=num_users),
                    item_degree=np.bincount(edge_item, minlength=num_items),
                    user_hops=np.zeros(num_users, dtype=np.int64), item_hops=np.zeros(num_items, dtype=np.int64))
