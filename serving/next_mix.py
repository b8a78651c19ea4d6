"""How much of a list goes to what users take up next: a weight the stream's own next events choose.

A Recommend list ranks its candidates by

.. math::
    r(j) = b(j) + \\beta \\, \\hat{t}(j)

with :math:`b` the served blend of personal and trending scores (:mod:`serving.blending`) and
:math:`\\hat t` the min-max scaled next-items score of :mod:`serving.transitions`. Where next items
help depends on the stream: users who move on to new interests are followed by their latest items,
while users who rate a backlog in one sitting are not (MovieLens, bench/RESULTS.md). So
:math:`\\beta` is not a constant: :class:`NextItemsJudge` keeps, per segment of the user's item
count, a decayed hit count of each weight of a ladder, scored on a sample of the committed
events against the lists their users would have got just before them (:mod:`serving.next_judging`
takes the sample off the ingest path). A segment that has judged ``min_events`` events serves its
weight with the most hits, if that beats the blend alone by a clear margin (a paired test: the
events each hit and the other missed); one with fewer goes by
the hits of all segments together; :math:`\\beta = 0` (the blend alone) while fewer than
``min_events`` were judged in all. A shadow evaluation on the live stream: the online form of the replay
benchmark that chose the blend's own prior.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.domain import NodeId
from serving.blending import (
    BLENDED,
    PERSONAL,
    TRENDING,
    BlendPolicy,
    blended_search,
    min_max,
    trend_scores,
    trending_rows,
    trending_search,
)
from serving.index import IndexSnapshot
from serving.scoring import Scorer, score_alone
from serving.search import MMR_POOL_FACTOR, MMR_POOL_MAX, Found, ItemQuery, mmr_order, search
from serving.trending import TrendingItems

#: Next-items weights judged, :math:`\beta`; the first is the blend alone.
LADDER = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 16.0)
#: Events of each committed batch judged (each costs about one personal search).
JUDGED_PER_BATCH = 16
#: Standard deviations by which a weight's hits must beat the blend's alone for it to be served.
MARGIN_SD = 2.0
#: Segments by the user's distinct items: at most 5, 6-50, more (the replay benchmark's segments).
SEGMENT_BOUNDS = (5, 50)


class NextItemsJudge:
    """Decayed hits of each :data:`LADDER` weight per segment, and the weight each segment serves (module docs).

    Args:
        k (int): List length a judged event must be in to count as a hit (default: ``10``).
        half_life_events (float): Judged events of a segment for a hit to count half (default: ``2000.0``).
        min_events (int): Judged events a segment needs before it serves more than the blend (default: ``50``).
        ladder (Sequence[float]): The weights judged, the first 0 (default: :data:`LADDER`).
    """

    def __init__(self, k: int = 10, half_life_events: float = 2000.0, min_events: int = 50,
                 ladder: Sequence[float] = LADDER) -> None:
        if k < 1 or half_life_events <= 0 or min_events < 0 or not ladder or ladder[0] != 0.0:
            raise ValueError("k >= 1, half_life_events > 0, min_events >= 0 and a ladder starting at 0")
        self.k, self.min_events, self.ladder = k, min_events, tuple(float(b) for b in ladder)
        self._keep = 2.0 ** (-1.0 / half_life_events)
        self._lock = threading.Lock()
        segments = len(SEGMENT_BOUNDS) + 1
        self._hits = np.zeros((segments, len(self.ladder)), dtype=np.float64)
        #: Decayed events where a weight and the blend alone disagreed (one hit, the other not).
        self._split = np.zeros((segments, len(self.ladder)), dtype=np.float64)
        self._judged = np.zeros(segments, dtype=np.int64)

    @staticmethod
    def segment(interactions: int) -> int:
        """0, 1 or 2: the user's segment by distinct items."""
        return int(np.searchsorted(SEGMENT_BOUNDS, interactions, side="left"))

    def weight(self, interactions: int) -> float:
        """:math:`\\beta` served to a user with ``interactions`` distinct items."""
        seg = self.segment(interactions)
        enough = max(self.min_events, 1)
        with self._lock:
            if self._judged[seg] >= enough:
                hits, split = self._hits[seg].copy(), self._split[seg].copy()
            elif self._judged.sum() >= enough:  # a segment short of events goes by all of them
                hits, split = self._hits.sum(axis=0), self._split.sum(axis=0)
            else:
                return 0.0
        # A weight replaces the blend alone only by a clear margin: McNemar's paired test, its hits
        # past the blend's (= events only it hit less events only the blend hit) at least MARGIN_SD
        # standard deviations of that difference, sqrt(events where they disagreed). On a stream
        # where next items do not help, chance would otherwise keep choosing some small weight.
        clear = (hits > hits[0]) & (hits - hits[0] >= MARGIN_SD * np.sqrt(split))
        clear[0] = True
        best = np.flatnonzero(clear & (hits == hits[clear].max()))
        return self.ladder[int(best[0])]  # ties: the smaller weight

    def judge(self, interactions: int, rank_of_weight: Sequence[int | None]) -> None:
        """One judged event: the event item's rank (0-based, ``None`` = not listed) under each ladder weight."""
        if len(rank_of_weight) != len(self.ladder):
            raise ValueError(f"{len(rank_of_weight)} ranks for {len(self.ladder)} weights")
        seg = self.segment(interactions)
        hit = np.fromiter((r is not None and r < self.k for r in rank_of_weight), dtype=np.float64,
                          count=len(self.ladder))
        with self._lock:
            self._hits[seg] = self._hits[seg] * self._keep + hit
            self._split[seg] = self._split[seg] * self._keep + (hit != hit[0])
            self._judged[seg] += 1

    def weights(self) -> dict[str, float]:
        """The weight each segment serves now, by the segment's label (``<= 5``, ``<= 50``, ``> 50``)."""
        return {f"<= {most}": self.weight(most) for most in SEGMENT_BOUNDS} | {
            f"> {SEGMENT_BOUNDS[-1]}": self.weight(SEGMENT_BOUNDS[-1] + 1)}


def ranks_by_weight(base: np.ndarray, nexts: np.ndarray, target: int, ladder: Sequence[float],
                    depth: int) -> list[int | None]:
    """The rank of candidate ``target`` (``-1``: not a candidate) under each weight, within the top ``depth``.

    Args:
        base (np.ndarray): Each candidate's blend relevance :math:`b`.
        nexts (np.ndarray): Each candidate's scaled next-items score :math:`\\hat t`.
        target (int): The judged item's candidate position, or ``-1``.
        ladder (Sequence[float]): The weights.
        depth (int): Ranks at or past it are ``None``.
    """
    if target < 0:
        return [None] * len(ladder)
    out: list[int | None] = []
    for beta in ladder:
        mixed = base + beta * nexts
        # Ahead of the target: higher relevance, or equal relevance and an earlier candidate (the
        # served order's tie rule, top_rows: by row, and candidates are in row order).
        ahead = np.count_nonzero(mixed > mixed[target]) + np.count_nonzero(mixed[:target] == mixed[target])
        out.append(int(ahead) if ahead < depth else None)
    return out


@dataclass(frozen=True, slots=True)
class NextRows:
    """A user's next-items scores over a snapshot's item rows, sparse: the rows (distinct) and scores."""

    rows: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, snapshot: IndexSnapshot, successors: tuple[list[NodeId], np.ndarray] | None) -> NextRows | None:
        """:meth:`~serving.transitions.ItemTransitions.successors` on the snapshot's rows (``None``: none held)."""
        if successors is None:
            return None
        rows = snapshot.items.positions(successors[0])
        held = rows >= 0
        return cls(rows[held], successors[1][held]) if held.any() else None

    def at(self, rows: np.ndarray) -> np.ndarray:
        """The score of each of ``rows`` (0 where it follows nothing)."""
        order = np.argsort(self.rows)
        sorted_rows = self.rows[order]
        at = np.minimum(np.searchsorted(sorted_rows, rows), max(sorted_rows.size - 1, 0))
        hit = sorted_rows.size > 0
        found = (sorted_rows[at] == rows) if hit else np.zeros(rows.size, dtype=bool)
        return np.where(found, self.scores[order][at] if hit else 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Candidates:
    """A list's candidate rows (ascending), their blend relevance :math:`b` and scaled next-items score."""

    rows: np.ndarray
    base: np.ndarray
    nexts: np.ndarray
    index_kind: str


def candidates(snapshot: IndexSnapshot, trending: TrendingItems, query: ItemQuery, vector: np.ndarray | None,
               personal_weight: float, nexts: NextRows, use_ann: bool = True,
               scorer: Scorer = score_alone) -> Candidates:
    """The best personal (``vector``; ``None``: trending only), trending (when its weight is above 0)
    and next-items rows, :data:`~serving.search.MMR_POOL_FACTOR` times ``k`` of each, past the
    request's filter and exclusions. :math:`b` is scaled over the personal and trending rows alone,
    so at :math:`\\beta = 0` the order is the blend's own (:func:`serving.blending.blended_search`).
    Nothing here is the size of the catalog but the search itself: next items are read sparse."""
    pool = max(query.k * MMR_POOL_FACTOR, query.k)
    keep = ~np.isin(nexts.rows, query.exclude)
    if query.allowed is not None:
        keep &= query.allowed[nexts.rows]
    rows_next, scores_next = nexts.rows[keep], nexts.scores[keep]
    parts, kind = [rows_next[_best(scores_next, pool)]], "next-items"
    trend, trend_top = trend_scores(snapshot, trending)
    if vector is not None:
        personal = search(snapshot, ItemQuery(vector, pool, query.exclude, query.allowed), use_ann, scorer=scorer)
        parts.append(personal.rows)
        kind = personal.index_kind
    if vector is None or personal_weight < 1.0:
        parts.append(trending_rows(trend, trend_top, pool, query.exclude, query.allowed))
    rows = np.unique(np.concatenate(parts)).astype(np.int64)
    own = np.isin(rows, np.concatenate(parts[1:])) if len(parts) > 1 else np.zeros(rows.size, bool)
    if vector is None:
        base = _scaled(trend[rows], own)
    else:
        dots = snapshot.items.dot(snapshot.items.vectors[rows], vector).astype(np.float64)
        base = personal_weight * _scaled(dots, own)
        if personal_weight < 1.0:
            base += (1.0 - personal_weight) * _scaled(trend[rows], own)
    return Candidates(rows, base, min_max(nexts.at(rows)), kind)


def next_search(snapshot: IndexSnapshot, found: Candidates, query: ItemQuery, weight: float) -> Found:
    """``found``'s candidates ranked by :math:`b + \\beta \\hat t` (``weight`` = :math:`\\beta`), ties by
    row, MMR-diversified from a bounded pool when the query asks (as :func:`~serving.search.search`)."""
    mixed = found.base + weight * found.nexts
    diverse = query.diversity_lambda < 1.0
    pool = max(query.k * MMR_POOL_FACTOR, query.k)
    order = _best(mixed, min(pool, MMR_POOL_MAX) if diverse else query.k)
    if diverse and order.size > 1:
        order = order[mmr_order(snapshot.items.gather(found.rows[order]), mixed[order], query.k,
                                query.diversity_lambda)]
    return Found(found.rows[order], mixed[order].astype(np.float32), found.index_kind)


def _best(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest values, best first, ties by position."""
    order = np.lexsort((np.arange(values.size), -values))
    return order[:n]


def _scaled(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``values`` min-max scaled by the range of ``values[reference]`` (all of them when none is marked)."""
    ref = values[reference] if reference.any() else values
    if ref.size == 0:
        return np.zeros_like(values)
    low, spread = float(ref.min()), float(ref.max() - ref.min())
    return (values - low) / spread if spread > 0 else np.zeros_like(values)


def served_search(snapshot: IndexSnapshot, trending: TrendingItems, policy: BlendPolicy, judge: NextItemsJudge,
                  vector: np.ndarray | None, interactions: int, query: ItemQuery, nexts: NextRows | None,
                  use_ann: bool = True, scorer: Scorer = score_alone) -> tuple[Found, str]:
    """What Recommend answers, and its source: trending for a user without a vector, the blend
    (:mod:`serving.blending`) or the personal list otherwise, each with next items mixed in at the
    judge's weight for the user's segment when anything follows the user's latest items (``nexts``:
    read only where that weight is above 0, see :meth:`NextItemsJudge.weight`)."""
    source = policy.source(vector is not None, interactions)
    weight = judge.weight(interactions) if nexts is not None else 0.0
    if weight > 0.0:
        assert nexts is not None
        found = candidates(snapshot, trending, query, vector, _personal_weight(policy, vector, interactions),
                           nexts, use_ann, scorer)
        return next_search(snapshot, found, query, weight), BLENDED
    if vector is None:
        return trending_search(snapshot, trending, query.k, query.exclude, query.allowed), TRENDING
    if source == BLENDED:
        return blended_search(snapshot, trending, ItemQuery(vector, query.k, query.exclude, query.allowed,
                                                            query.diversity_lambda),
                              policy.personal_weight(interactions), use_ann, scorer), BLENDED
    return search(snapshot, ItemQuery(vector, query.k, query.exclude, query.allowed, query.diversity_lambda),
                  use_ann, scorer=scorer), PERSONAL


def judge_event(snapshot: IndexSnapshot, trending: TrendingItems, policy: BlendPolicy, judge: NextItemsJudge,
                vector: np.ndarray | None, interactions: int, exclude: np.ndarray, nexts: NextRows | None,
                item_row: int, use_ann: bool = True, scorer: Scorer = score_alone) -> bool:
    """Judge one event of a batch not yet applied: where its item (``item_row``) stands under each
    ladder weight among the candidates the user would get now. ``False`` (nothing judged) when no
    next items follow the user's items or the item is one the user has already."""
    if nexts is None or item_row < 0 or np.isin(item_row, exclude):
        return False
    query = ItemQuery(vector if vector is not None else np.zeros(0, np.float32), judge.k, exclude)
    found = candidates(snapshot, trending, query, vector, _personal_weight(policy, vector, interactions), nexts,
                       use_ann, scorer)
    at = np.searchsorted(found.rows, item_row)
    target = int(at) if at < found.rows.size and found.rows[at] == item_row else -1
    judge.judge(interactions, ranks_by_weight(found.base, found.nexts, target, judge.ladder, judge.k))
    return True


def _personal_weight(policy: BlendPolicy, vector: np.ndarray | None, interactions: int) -> float:
    """The personal share of :math:`b`: 0 without a vector, 1 where the served list is personal."""
    if vector is None:
        return 0.0
    return 1.0 if policy.source(True, interactions) == PERSONAL else policy.personal_weight(interactions)


def sampled(count: int, most: int) -> list[int]:
    """Positions of at most ``most`` of ``count`` events, spread evenly over the batch (deterministic)."""
    if count <= most:
        return list(range(count))
    return [int(n * count / most) for n in range(most)]
