"""Hybrid systems for ``bench/streaming_eval.py --hybrids``: candidates for what the served system
could become, scored beside it (not what ``Recommend`` answers today).

* :class:`RecentFoldIn`: SpectralCF's request-time fold-in (:class:`~core.domain.UserFoldIn`,
  :math:`\\mathbf{e}_u = \\sum_i v(w_{ui})\\, s_i\\, \\mathbf{e}_i`) with each of the user's items weighted
  by its place in the user's own history, :math:`2^{-p_i / h}` (:math:`p_i = 0` for the latest item,
  :math:`h` a half-life counted in the user's items). Unlike the store's edge decay
  (``IG_EDGE_HALF_LIFE``, event time), it needs no clock: a user who returns after a month
  still has a latest item.
* :class:`NextItems`: :class:`~serving.transitions.ItemTransitions`' scores from the user's
  latest items, alone or times the trending score (``trend_power``), falling back to another
  system's list where nothing follows the user's items.
* :class:`RankFusion`: weighted reciprocal rank fusion (Cormack et al., SIGIR 2009) of other
  systems' top lists, :math:`s(j) = \\sum_m w_m(n) / (k_0 + r_m(j))` with :math:`r_m(j)` the 1-based
  rank of ``j`` in system ``m``'s list and :math:`w_m(n)` a weight that may depend on the user's
  item count :math:`n` (shrinkage toward trending for new users, as :mod:`serving.blending`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from stream_systems import LiveGraph, System, _rows

from core.domain import NodeId, UserFoldIn, edge_values
from serving.blending import min_max, trend_scores
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.next_mix import NextRows
from serving.search import ItemQuery, search
from serving.transitions import ItemTransitions
from serving.trending import TrendingItems, top_rows

#: A fused system's weight: a constant, or a function of the user's distinct items.
Weight = float | Callable[[int], float]


class RecentFoldIn(System):
    """The fold-in of the user's row, the user's latest items weighted up (module docs).

    Args:
        index (EmbeddingIndex): The live index (its item vectors).
        graph (LiveGraph): The graph so far (the user's items in order, their edge weights).
        fold_in (UserFoldIn): The fitted model's fold-in.
        half_items (float): :math:`h`, in items; 0 = every item alike (the plain fold-in).
    """

    def __init__(self, index: EmbeddingIndex, graph: LiveGraph, fold_in: UserFoldIn, half_items: float) -> None:
        name = f"recency fold-in (half-life {half_items:g} items)" if half_items else "fold-in (no recency)"
        super().__init__(name, index)
        self.graph, self.half_items, self.values = graph, half_items, fold_in.values
        self.scale = dict(zip(map(str, fold_in.item_ids), np.asarray(fold_in.scale, dtype=np.float64), strict=True))

    def vector(self, user: str, snap: IndexSnapshot) -> np.ndarray | None:
        """The user's query vector over ``snap``'s item vectors, or ``None`` when none of the user's
        items is folded in."""
        items = [i for i in self.graph.recent.get(user, []) if i in self.scale]
        rows = snap.items.rows_of(NodeId(i) for i in items)
        held = rows >= 0
        if not held.any():
            return None
        graph = self.graph
        edges = graph.by_user[graph.user_index[user]]
        weight = dict(zip(edges.indices.tolist(), edges.data.tolist(), strict=True))
        place = np.arange(len(items) - 1, -1, -1, dtype=np.float64)  # 0 = the latest
        recency = np.exp2(-place / self.half_items) if self.half_items else np.ones(len(items))
        value = edge_values(np.asarray([weight[graph.item_index[i]] for i in items], dtype=np.float32), self.values)
        coef = value * np.asarray([self.scale[i] for i in items]) * recency
        return np.asarray(coef[held].astype(np.float32) @ snap.items.gather(rows[held]), dtype=np.float32)

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        snap = self.index.snapshot()
        query = self.vector(user, snap)
        if query is None:
            return None
        found = search(snap, ItemQuery(query, k, _rows(snap, seen)), use_ann=False)
        return [snap.items.ids[r] for r in found.rows.tolist()]


class RankFusion(System):
    """Weighted reciprocal rank fusion of ``parts``' top-``depth`` lists (module docs).

    Args:
        name (str): The row's name.
        parts (Sequence[System]): The fused systems (their own scores are not touched).
        weights (Sequence[Weight]): One per part.
        depth (int): Items read from each part's list (default: ``100``).
        k0 (float): Rank offset :math:`k_0`; smaller favours each list's head (default: ``20.0``).
    """

    def __init__(self, name: str, parts: Sequence[System], weights: Sequence[Weight], depth: int = 100,
                 k0: float = 20.0) -> None:
        if len(parts) != len(weights):
            raise ValueError(f"{len(parts)} parts but {len(weights)} weights")
        super().__init__(name, parts[0].index)
        self.parts, self.weights, self.depth, self.k0 = list(parts), list(weights), depth, k0

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        fused: dict[str, float] = {}
        listed = False
        for part, weight in zip(self.parts, self.weights, strict=True):
            share = weight(len(seen)) if callable(weight) else weight
            order = part.top(user, seen, self.depth) if share > 0 else None
            listed |= order is not None
            for rank, item in enumerate(order or []):
                fused[item] = fused.get(item, 0.0) + share / (self.k0 + rank + 1)
        if not listed:
            return None
        return sorted(fused, key=lambda item: (-fused[item], item))[:k]


class NextItems(System):
    """Items that follow the user's latest ones in other users' histories (:mod:`serving.transitions`).

    Args:
        index (EmbeddingIndex): The live index (its item table names the rows).
        transitions (ItemTransitions): Fed every batch's edge deltas.
        fallback (System): Whose list a user gets when nothing follows their items.
        trending (TrendingItems, optional): Multiply by its scores (``None``: transitions alone).
        power (float): :math:`s(j)^{power}` (min-max scaled first) when multiplied by trending (default: ``2.0``).
    """

    def __init__(self, name: str, index: EmbeddingIndex, transitions: ItemTransitions, fallback: System,
                 trending: TrendingItems | None = None, power: float = 2.0) -> None:
        super().__init__(name, index)
        self.transitions, self.fallback, self.trending, self.power = transitions, fallback, trending, power

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        snap = self.index.snapshot()
        nexts = NextRows.for_user(snap, self.transitions, NodeId(user))
        if not nexts.rows.size:
            return self.fallback.top(user, seen, k)
        scores = np.zeros(len(snap.items.vectors))
        scores[nexts.rows] = nexts.scores
        if self.trending is not None:
            trend, _ = trend_scores(snap, self.trending)
            scores = min_max(trend) * (0.01 + min_max(scores)) ** self.power
        scores[_rows(snap, seen)] = 0.0
        return [snap.items.ids[r] for r in top_rows(scores, k).tolist()]
