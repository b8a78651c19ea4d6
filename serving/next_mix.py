"""A Recommend list at a judged mix: its candidates, their scaled signals, the mixed order, the judging.

The formula and how a mix is chosen are in :mod:`serving.mix_judge`. Here the candidates of one
request are gathered (the best personal, trending and next-items rows, each
:data:`~serving.search.MMR_POOL_FACTOR` times ``k``, past the filter and the exclusions), each
signal is scaled once, and any mix's order is then a weighted sum over a few hundred rows: what the
served list uses for one mix (:func:`served_search`) and the judge for all of them
(:func:`judge_event`). The blend alone is answered by :mod:`serving.blending` itself, so a segment
the judge has not moved serves exactly what it did before.
"""

from __future__ import annotations

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
    trend_scores,
    trending_rows,
    trending_search,
)
from serving.index import IndexSnapshot
from serving.mix_judge import Mix, MixJudge
from serving.scoring import Scorer, score_alone
from serving.search import MMR_POOL_FACTOR, MMR_POOL_MAX, Found, ItemQuery, mmr_order, search
from serving.transitions import ItemTransitions
from serving.trending import TrendingItems


@dataclass(frozen=True, slots=True)
class NextRows:
    """A user's next-items scores over a snapshot's item rows, sparse: the rows (distinct) and scores."""

    rows: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, snapshot: IndexSnapshot, successors: tuple[list[NodeId], np.ndarray] | None) -> NextRows:
        """:meth:`~serving.transitions.ItemTransitions.successors` on the snapshot's rows (none: empty)."""
        if successors is None:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.float64))
        rows = snapshot.items.positions(successors[0])
        held = rows >= 0
        return cls(rows[held], successors[1][held])

    @classmethod
    def for_user(cls, snapshot: IndexSnapshot, transitions: ItemTransitions, user: NodeId) -> NextRows:
        """What follows ``user``'s latest items, on the snapshot's rows (ids mapped once per item table)."""
        found = transitions.successor_rows(user, snapshot.items, snapshot.items.positions)
        return cls(*found) if found is not None else cls.of(snapshot, None)

    def at(self, rows: np.ndarray) -> np.ndarray:
        """The score of each of ``rows`` (0 where it follows nothing)."""
        if not self.rows.size:
            return np.zeros(rows.size, dtype=np.float64)
        order = np.argsort(self.rows)
        held, scores = self.rows[order], self.scores[order]
        at = np.minimum(np.searchsorted(held, rows), held.size - 1)
        return np.where(held[at] == rows, scores[at], 0.0)


@dataclass(frozen=True, slots=True)
class Candidates:
    """A request's candidate rows (ascending) and each signal scaled over them.

    ``personal`` is ``None`` without a user vector; ``blend_weight`` is the blend's :math:`\\alpha(n)`
    (1 where the served list is personal)."""

    rows: np.ndarray
    personal: np.ndarray | None
    trending: np.ndarray
    nexts: np.ndarray
    blend_weight: float
    index_kind: str

    def relevance(self, mix: Mix) -> np.ndarray:
        """:math:`r` of every candidate under ``mix``."""
        if self.personal is None:
            base = self.trending
        else:
            alpha = mix.personal_weight(self.blend_weight)
            base = alpha * self.personal + (1.0 - alpha) * self.trending if alpha < 1.0 else self.personal
        return base + mix.beta * self.nexts if mix.beta else base


def candidates(snapshot: IndexSnapshot, trending: TrendingItems, query: ItemQuery, vector: np.ndarray | None,
               blend_weight: float, nexts: NextRows, use_ann: bool = True, scorer: Scorer = score_alone) -> Candidates:
    """The best personal (``vector``; ``None``: none), trending and next-items rows of a request
    (module docs). The personal and trending scores are scaled over the personal and trending rows
    alone, as :func:`serving.blending.blended_search` scales them, so the blend's own mix keeps its
    order. Nothing here is the size of the catalog but the search: next items are read sparse."""
    pool = max(query.k * MMR_POOL_FACTOR, query.k)
    keep = ~np.isin(nexts.rows, query.exclude)
    if query.allowed is not None:
        keep &= query.allowed[nexts.rows]
    next_rows = nexts.rows[keep][_best(nexts.scores[keep], pool)]
    trend, trend_top = trend_scores(snapshot, trending)
    own = [trending_rows(trend, trend_top, pool, query.exclude, query.allowed)]
    kind = "trending"
    if vector is not None:
        found = search(snapshot, ItemQuery(vector, pool, query.exclude, query.allowed), use_ann, scorer=scorer)
        own.append(found.rows)
        kind = found.index_kind
    rows = np.unique(np.concatenate([next_rows, *own])).astype(np.int64)
    reference = np.isin(rows, np.concatenate(own))
    personal = None
    if vector is not None:
        personal = _scaled(snapshot.items.dot(snapshot.items.vectors[rows], vector).astype(np.float64), reference)
    return Candidates(rows, personal, _scaled(trend[rows], reference), _scaled(nexts.at(rows), None),
                      blend_weight, kind)


def mixed_search(snapshot: IndexSnapshot, found: Candidates, query: ItemQuery, mix: Mix) -> Found:
    """``found``'s candidates ranked by their relevance under ``mix``, ties by row, MMR-diversified
    from a bounded pool when the query asks (as :func:`~serving.search.search`)."""
    mixed = found.relevance(mix)
    diverse = query.diversity_lambda < 1.0
    pool = max(query.k * MMR_POOL_FACTOR, query.k)
    order = _best(mixed, min(pool, MMR_POOL_MAX) if diverse else query.k)
    if diverse and order.size > 1:
        order = order[mmr_order(snapshot.items.gather(found.rows[order]), mixed[order], query.k,
                                query.diversity_lambda)]
    return Found(found.rows[order], mixed[order].astype(np.float32), found.index_kind)


def ranks_by_mix(found: Candidates, target: int, mixes: Sequence[Mix], depth: int) -> list[int | None]:
    """The rank of candidate ``target`` (``-1``: not a candidate) under each mix, ``None`` at or past ``depth``."""
    if target < 0:
        return [None] * len(mixes)
    out: list[int | None] = []
    for mix in mixes:
        mixed = found.relevance(mix)
        # Ahead of the target: higher relevance, or equal relevance and an earlier candidate (the
        # served order's tie rule: by row, and candidates are in row order).
        ahead = np.count_nonzero(mixed > mixed[target]) + np.count_nonzero(mixed[:target] == mixed[target])
        out.append(int(ahead) if ahead < depth else None)
    return out


def served_search(snapshot: IndexSnapshot, trending: TrendingItems, policy: BlendPolicy, mix: Mix,
                  vector: np.ndarray | None, interactions: int, query: ItemQuery, nexts: NextRows | None,
                  use_ann: bool = True, scorer: Scorer = score_alone) -> tuple[Found, str]:
    """What Recommend answers at ``mix`` (the judge's for the user's segment), and its source: the
    blend alone through :mod:`serving.blending` (trending for a user without a vector, blended or
    personal otherwise), any other mix from the candidates (``BLENDED``; ``nexts`` need only be read
    where ``mix.beta`` is above 0)."""
    if not mix.is_blend:
        found = candidates(snapshot, trending, query, vector, _blend_weight(policy, vector, interactions),
                           nexts if nexts is not None else NextRows.of(snapshot, None), use_ann, scorer)
        return mixed_search(snapshot, found, query, mix), BLENDED
    if vector is None:
        return trending_search(snapshot, trending, query.k, query.exclude, query.allowed), TRENDING
    if policy.source(True, interactions) == BLENDED:
        return blended_search(snapshot, trending, query, policy.personal_weight(interactions), use_ann,
                              scorer), BLENDED
    return search(snapshot, query, use_ann, scorer=scorer), PERSONAL


def judge_event(snapshot: IndexSnapshot, trending: TrendingItems, policy: BlendPolicy, judge: MixJudge,
                vector: np.ndarray | None, interactions: int, exclude: np.ndarray, nexts: NextRows,
                item_row: int, use_ann: bool = True, scorer: Scorer = score_alone) -> bool:
    """Judge one event of a batch not yet applied: where its item (``item_row``) stands under each of
    the judge's mixes among the candidates its user would get now. ``False`` (nothing judged) when
    the item is not served or is one the user has already."""
    if item_row < 0 or np.isin(item_row, exclude):
        return False
    query = ItemQuery(vector if vector is not None else np.zeros(0, np.float32), judge.k, exclude)
    found = candidates(snapshot, trending, query, vector, _blend_weight(policy, vector, interactions), nexts,
                       use_ann, scorer)
    at = np.searchsorted(found.rows, item_row)
    target = int(at) if at < found.rows.size and found.rows[at] == item_row else -1
    judge.judge(interactions, ranks_by_mix(found, target, judge.mixes, judge.k))
    return True


def _blend_weight(policy: BlendPolicy, vector: np.ndarray | None, interactions: int) -> float:
    """The blend's personal weight :math:`\\alpha(n)`: 0 without a vector, 1 where the served list is personal."""
    if vector is None:
        return 0.0
    return 1.0 if policy.source(True, interactions) == PERSONAL else policy.personal_weight(interactions)


def _best(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest values, best first, ties by position."""
    return np.lexsort((np.arange(values.size), -values))[:n]


def _scaled(values: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """``values`` min-max scaled by the range of ``values[reference]`` (of all when ``None`` or none marked)."""
    ref = values[reference] if reference is not None and reference.any() else values
    if ref.size == 0:
        return np.zeros_like(values)
    low, spread = float(ref.min()), float(ref.max() - ref.min())
    return (values - low) / spread if spread > 0 else np.zeros_like(values)
