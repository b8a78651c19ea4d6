"""The systems ``bench/streaming_eval.py`` scores side by side, and the live graph its baselines read.

Each :class:`System` answers "rank of each target in this user's top-k now" and keeps its
:class:`Score`. Embedding systems read an :class:`~serving.index.EmbeddingIndex`; the trending and
served ones go through serving's own code (:mod:`serving.trending`, :mod:`serving.blending`); the
graph baselines read a :class:`LiveGraph` that takes every batch's edge deltas:

* :class:`RandomWalk`: Pixie's random walk with restarts (Eksombatchai et al., "Pixie: A System
  for Recommending 3+ Billion Items to 200+ Million Users in Real-Time", WWW 2018) from the user's
  most recent items: walkers step item -> user -> item along edges picked in proportion to their
  weight, return to their query item with probability ``restart``, and stop at a fixed step budget
  or early, once ``stop_items`` items have been visited ``stop_visits`` times; per-query visit counts
  are combined with Pixie's boost :math:`(\\sum_q \\sqrt{V_q(p)})^2`, which favours items reached
  from several query items. Simplified from the paper: the budget is split evenly over the query
  items (no degree-based weighting) and there is no graph pruning.
* :class:`CoOccurrence`: item-kNN from the user's last items, cosine similarity of the items' user
  sets, :math:`s(j) = \\sum_{i \\in I} |U_i \\cap U_j| / \\sqrt{|U_i||U_j|}`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from core.domain import EdgeDelta, NodeId
from serving.blending import BlendPolicy, trending_search
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.mix_judge import BLEND, Mix, MixJudge
from serving.next_judging import JUDGED_PER_BATCH, sampled
from serving.next_mix import NextRows, judge_event, served_search
from serving.search import ItemQuery, search
from serving.transitions import ItemTransitions
from serving.trending import TrendingItems

#: Segments by the user's distinct items at event time: (name, most items), the last unbounded.
SEGMENTS = (("new (<= 5)", 5), ("light (6-50)", 50), ("heavy (> 50)", None))


def segment_of(interactions: int) -> str:
    return next(name for name, most in SEGMENTS if most is None or interactions <= most)


@dataclass
class Score:
    """HR@k and NDCG@k sums over scored events, overall and per segment."""

    events: int = 0
    hits: int = 0
    ndcg: float = 0.0
    no_user: int = 0
    segment_events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    segment_hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    segment_ndcg: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, rank: int | None, k: int, segment: str) -> None:
        self.events += 1
        self.segment_events[segment] += 1
        if rank is not None and rank < k:
            gain = 1.0 / math.log2(rank + 2)
            self.hits += 1
            self.ndcg += gain
            self.segment_hits[segment] += 1
            self.segment_ndcg[segment] += gain

    def hit_rate(self, segment: str | None = None) -> float:
        if segment is None:
            return self.hits / max(self.events, 1)
        return self.segment_hits[segment] / max(self.segment_events[segment], 1)

    def mean_ndcg(self, segment: str | None = None) -> float:
        if segment is None:
            return self.ndcg / max(self.events, 1)
        return self.segment_ndcg[segment] / max(self.segment_events[segment], 1)


def ranked(order: list[str], targets: list[str]) -> list[int | None]:
    position = {item: n for n, item in enumerate(order)}
    return [position.get(t) for t in targets]


def top_of(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest finite positive scores, best first."""
    keep = np.flatnonzero(np.isfinite(scores) & (scores > 0))
    if keep.size > k:
        keep = keep[np.argpartition(-scores[keep], k - 1)[:k]]
    return keep[np.argsort(-scores[keep], kind="stable")]


@dataclass
class System:
    """One way of serving from an embedding index (the user's stored vector), and its score so far."""

    name: str
    index: EmbeddingIndex
    score: Score = field(default_factory=Score)

    def ranks(self, user: str, targets: list[str], seen: set[str], k: int) -> list[int | None]:
        """Rank of each target in the user's served top-k (``None`` = not in the list)."""
        order = self.top(user, seen, k)
        if order is None:
            self.score.no_user += len(targets)
            return [None] * len(targets)
        return ranked(order, targets)

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        """The user's top-``k`` items, unseen ones only; ``None`` when the system has no list for them."""
        snap: IndexSnapshot = self.index.snapshot()
        row = snap.users.row(NodeId(user))
        if row is None or not len(snap.items):
            return None
        found = search(snap, ItemQuery(snap.users.vectors[row], k, _rows(snap, seen)), use_ann=False)
        return [snap.items.ids[r] for r in found.rows.tolist()]


def _rows(snap: IndexSnapshot, items: set[str]) -> np.ndarray:
    return snap.items.rows_of(NodeId(i) for i in items)


class Popularity(System):
    """Most interactions in the graph so far, for every user (the index only names the items)."""

    def __init__(self, index: EmbeddingIndex) -> None:
        super().__init__("popularity (live counts)", index)
        self.counts: dict[str, int] = defaultdict(int)

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        snap = self.index.snapshot()
        scores = np.fromiter((self.counts[i] for i in snap.items.ids), dtype=np.float64, count=len(snap.items.ids))
        scores[_rows(snap, seen)] = -np.inf
        return [snap.items.ids[r] for r in top_of(scores, k).tolist()]


class Trending(System):
    """The trending list for every user, fed each batch's edge deltas as ``up`` feeds it."""

    def __init__(self, index: EmbeddingIndex, trending: TrendingItems) -> None:
        hours = trending.half_life_ms / 3_600_000
        super().__init__(f"trending (half-life {hours:g} h)" if hours else "trending (all-time weight)", index)
        self.trending = trending

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        snap = self.index.snapshot()
        found = trending_search(snap, self.trending, k, _rows(snap, seen))
        return [snap.items.ids[r] for r in found.rows.tolist()]


class FixedWeight(MixJudge):
    """A judge that serves one next-items weight to every segment, with the blend's own personal
    weight (the bench's ceiling rows)."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.fixed = Mix(1.0, weight)

    def mix(self, interactions: int) -> Mix:
        return self.fixed


class Served(System):
    """What Recommend answers from the live index (``serving.next_mix.served_search``): trending,
    blended or personal by the user's items, with next items mixed in at the judge's weight when
    ``transitions`` is given (fed by the caller, judged by :meth:`judge_batch` before each batch)."""

    def __init__(self, index: EmbeddingIndex, trending: TrendingItems, prior: float,
                 transitions: ItemTransitions | None = None, fixed_weight: float | None = None) -> None:
        mix = "" if transitions is None else ", next items" if fixed_weight is None else \
            f", next items at weight {fixed_weight:g} (not judged)"
        super().__init__(f"served (n0 = {prior:g}{mix})", index)
        self.trending, self.policy, self.transitions = trending, BlendPolicy(prior), transitions
        self.judge = MixJudge() if fixed_weight is None else FixedWeight(fixed_weight)
        self.sources: dict[str, int] = defaultdict(int)

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        snap = self.index.snapshot()
        mix = self.judge.mix(len(seen)) if self.transitions is not None else BLEND
        vector, nexts = self._signals(snap, user, mix.beta > 0)  # next items read only where served
        query = ItemQuery(vector if vector is not None else np.zeros(0, np.float32), k, _rows(snap, seen))
        found, source = served_search(snap, self.trending, self.policy, mix, vector, len(seen), query, nexts,
                                      use_ann=False)
        self.sources[source] += 1
        return [snap.items.ids[r] for r in found.rows.tolist()]

    def judge_batch(self, events: list[tuple[str, str]], seen: dict[str, set[str]]) -> None:
        """A batch's (user, item) events, before it is applied: a sample judged as ``up`` judges it."""
        if self.transitions is None or isinstance(self.judge, FixedWeight):
            return
        snap = self.index.snapshot()
        for n in sampled(len(events), JUDGED_PER_BATCH):
            user, item = events[n]
            vector, nexts = self._signals(snap, user)
            judge_event(snap, self.trending, self.policy, self.judge, vector, len(seen[user]),
                        _rows(snap, seen[user]), nexts, int(snap.items.positions([NodeId(item)])[0]), use_ann=False)

    def _signals(self, snap: IndexSnapshot, user: str, nexts: bool = True) -> tuple[np.ndarray | None, NextRows]:
        row = snap.users.row(NodeId(user))
        vector = snap.users.vectors[row] if row is not None else None
        if self.transitions is None or not nexts:
            return vector, NextRows.of(snap, None)
        return vector, NextRows.for_user(snap, self.transitions, NodeId(user))


class LiveGraph:
    """Every edge so far, as sparse matrices rebuilt after each batch, and each user's items in order."""

    def __init__(self) -> None:
        self.user_index: dict[str, int] = {}
        self.item_index: dict[str, int] = {}
        self.item_ids: list[str] = []
        self.recent: dict[str, list[str]] = defaultdict(list)
        self._users: list[int] = []
        self._items: list[int] = []
        self._weights: list[float] = []
        self.by_user: sp.csr_matrix = sp.csr_matrix((0, 0))
        self.by_item: sp.csr_matrix = sp.csr_matrix((0, 0))
        self.binary_by_item: sp.csr_matrix = sp.csr_matrix((0, 0))
        self.item_degree = np.zeros(0)

    def add(self, edges: list[EdgeDelta]) -> None:
        for edge in sorted(edges, key=lambda e: e.last_ts_ms):
            user, item = str(edge.user_id), str(edge.item_id)
            if item not in self.item_index:
                self.item_index[item] = len(self.item_ids)
                self.item_ids.append(item)
            self._users.append(self.user_index.setdefault(user, len(self.user_index)))
            self._items.append(self.item_index[item])
            self._weights.append(max(float(edge.weight), 0.0))
            items = self.recent[user]
            if item in items:
                items.remove(item)
            items.append(item)
        shape = (len(self.user_index), len(self.item_ids))
        matrix = sp.coo_matrix((self._weights, (self._users, self._items)), shape=shape).tocsr()
        matrix.sum_duplicates()
        self.by_user, self.by_item = matrix, matrix.T.tocsr()
        self.binary_by_item = self.by_item.copy()
        self.binary_by_item.data[:] = 1.0
        self.item_degree = np.asarray(self.binary_by_item.sum(axis=1)).ravel()


def _step(matrix: sp.csr_matrix, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One neighbour of each of ``rows``, drawn in proportion to edge weight; ``-1`` where a row has none."""
    cum = np.cumsum(matrix.data, dtype=np.float64)
    start, end = matrix.indptr[rows], matrix.indptr[rows + 1]
    low = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    high = np.where(end > 0, cum[np.maximum(end - 1, 0)], 0.0)
    pick = np.searchsorted(cum, low + rng.random(rows.size) * (high - low), side="right")
    pick = np.minimum(pick, np.maximum(end - 1, 0))
    return np.where(high > low, matrix.indices[np.minimum(pick, matrix.indices.size - 1)], -1)


class RandomWalk(System):
    """Pixie-style walks on the live graph from the user's last ``queries`` items (module docs).

    Args:
        graph (LiveGraph): The graph so far.
        queries (int): Most recent items the walks start from (default: ``10``).
        steps (int): Step budget per request (default: ``5000``).
        restart (float): Probability of returning to the query item after a step (default: ``0.5``).
        stop_items (int): Early stop once this many items... (default: ``100``)
        stop_visits (int): ...have this many visits each (default: ``4``).
        walkers (int): Walkers moved together per iteration (default: ``250``).
    """

    def __init__(self, graph: LiveGraph, queries: int = 10, steps: int = 5000, restart: float = 0.5,
                 stop_items: int = 100, stop_visits: int = 4, walkers: int = 250, seed: int = 0) -> None:
        super().__init__(f"random walk (Pixie, {steps:,} steps)", EmbeddingIndex())
        self.graph, self.queries, self.steps, self.restart = graph, queries, steps, restart
        self.stop_items, self.stop_visits, self.walkers = stop_items, stop_visits, walkers
        self.rng = np.random.default_rng(seed)

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        graph = self.graph
        query = np.asarray([graph.item_index[i] for i in graph.recent.get(user, [])[-self.queries:]], np.int64)
        if not query.size:
            return None
        n_items = len(graph.item_ids)
        home = np.arange(self.walkers) % query.size  # each walker's query item (an even split of the budget)
        at = query[home]
        visits = np.zeros(query.size * n_items, dtype=np.int64)
        done = 0
        while done < self.steps:
            users = _step(graph.by_item, at, self.rng)
            items = _step(graph.by_user, np.maximum(users, 0), self.rng)
            moved = (users >= 0) & (items >= 0)
            np.add.at(visits, home[moved] * n_items + items[moved], 1)
            done += self.walkers
            back = ~moved | (self.rng.random(self.walkers) < self.restart)
            at = np.where(back, query[home], items)
            per_item = visits.reshape(query.size, n_items).sum(axis=0)
            if np.count_nonzero(per_item >= self.stop_visits) >= self.stop_items:
                break
        boosted = np.sqrt(visits.reshape(query.size, n_items)).sum(axis=0) ** 2
        boosted[[graph.item_index[i] for i in seen if i in graph.item_index]] = 0.0
        return [graph.item_ids[j] for j in top_of(boosted, k).tolist()]


class CoOccurrence(System):
    """Item-kNN from the user's last ``last`` items: cosine of the items' user sets (module docs)."""

    def __init__(self, graph: LiveGraph, last: int = 20) -> None:
        super().__init__(f"item co-occurrence kNN (last {last} items)", EmbeddingIndex())
        self.graph, self.last = graph, last

    def top(self, user: str, seen: set[str], k: int) -> list[str] | None:
        graph = self.graph
        query = [graph.item_index[i] for i in graph.recent.get(user, [])[-self.last:]]
        if not query:
            return None
        binary, degree = graph.binary_by_item, graph.item_degree
        weights = 1.0 / np.sqrt(np.maximum(degree[query], 1.0))
        users = np.asarray(binary[query].T @ weights).ravel()  # how much each user shares with the query
        scores = np.asarray(binary @ users).ravel() / np.sqrt(np.maximum(degree, 1.0))
        scores[[graph.item_index[i] for i in seen if i in graph.item_index]] = 0.0
        return [graph.item_ids[j] for j in top_of(scores, k).tolist()]
