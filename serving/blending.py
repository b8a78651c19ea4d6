"""Personal and trending signals in one list, weighted by how much the system knows about the user.

A user with ``n`` distinct items gets personal weight

.. math::
    \\alpha(n) = \\frac{n}{n + n_0}

and trending weight :math:`1 - \\alpha(n)`: the shrinkage of a personal estimate toward the
population's, with :math:`n_0` (``IG_BLEND_PRIOR_INTERACTIONS``) the number of interactions at
which both weigh the same. The default comes from the replayed stream (``bench/streaming_eval.py
--blend-priors``), not from a guess; 0 turns blending off (personal lists for every user with a
vector). Users without a personal vector get the trending list alone.

The two scores live on different scales (a dot product, a decayed weight), so each is min-max
scaled over the candidates (the best personal and the best trending items after the request's
filters and exclusions) before they are mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.index import IndexSnapshot
from serving.scoring import Scorer, score_alone
from serving.search import MMR_POOL_FACTOR, MMR_POOL_MAX, Found, ItemQuery, mmr_order, search
from serving.trending import TOP_CACHED, TrendingItems, top_rows

#: Below this trending weight a list is personal: blending would change nothing a client sees.
MIN_TRENDING_WEIGHT = 0.01

PERSONAL = "personal"
BLENDED = "blended"
TRENDING = "trending"
#: ``Found.index_kind`` of a list made from the trending list alone.
TRENDING_KIND = "trending"


@dataclass(frozen=True, slots=True)
class BlendPolicy:
    """How a user's interaction count splits a list between personal and trending scores.

    Args:
        prior_interactions (float): :math:`n_0` of the module docs; 0 = never blend (default: ``0.0``).
    """

    prior_interactions: float = 0.0

    def __post_init__(self) -> None:
        if self.prior_interactions < 0:
            raise ValueError(f"prior_interactions must be >= 0, got {self.prior_interactions}")

    def personal_weight(self, interactions: int) -> float:
        """:math:`\\alpha(n)` for a user with ``interactions`` distinct items."""
        if self.prior_interactions == 0:
            return 1.0
        return interactions / (interactions + self.prior_interactions)

    def source(self, has_vector: bool, interactions: int) -> str:
        """Which list a user gets: :data:`TRENDING`, :data:`BLENDED` or :data:`PERSONAL`."""
        if not has_vector:
            return TRENDING
        return BLENDED if 1.0 - self.personal_weight(interactions) >= MIN_TRENDING_WEIGHT else PERSONAL


def min_max(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1] (all 0 when they are all equal)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    low, spread = float(values.min()), float(values.max() - values.min())
    return (values - low) / spread if spread > 0 else np.zeros_like(values)


def blend(personal: np.ndarray, trending: np.ndarray, personal_weight: float) -> np.ndarray:
    """Mixed relevance of candidates with these personal and trending scores (each min-max scaled)."""
    return personal_weight * min_max(personal) + (1.0 - personal_weight) * min_max(trending)


def trend_scores(snapshot: IndexSnapshot, trending: TrendingItems) -> tuple[np.ndarray, np.ndarray]:
    """Every item row's trend score and the best rows, for this snapshot's item table."""
    return trending.ranked(snapshot.items, snapshot.items.positions, len(snapshot.items.vectors))


def trending_search(snapshot: IndexSnapshot, trending: TrendingItems, k: int, exclude: np.ndarray,
                    allowed: np.ndarray | None = None) -> Found:
    """The ``k`` best trending item rows passing the filter (``allowed`` mask) and not in ``exclude``."""
    scores, top = trend_scores(snapshot, trending)
    rows = trending_rows(scores, top, k, exclude, allowed)
    return Found(rows, scores[rows].astype(np.float32), TRENDING_KIND)


def trending_rows(scores: np.ndarray, top: np.ndarray, k: int, exclude: np.ndarray,
                   allowed: np.ndarray | None) -> np.ndarray:
    """The best ``k`` of the cached ``top`` rows that pass; every row is looked at only when they run out
    (a request touches about :data:`~serving.trending.TOP_CACHED` rows, not the catalog)."""
    keep = np.ones(top.size, dtype=bool) if allowed is None else allowed[top]
    if exclude.size:
        keep &= ~np.isin(top, exclude)
    rows = top[keep][:k]
    # A cache shorter than TOP_CACHED holds every positive row already (top_rows keeps positive ones
    # only): then no scan of all the scores, which at 1M items was a tenth of a Recommend.
    if rows.size < k and top.size >= TOP_CACHED and top.size < np.count_nonzero(scores > 0):
        passing = np.ones(scores.shape[0], dtype=bool) if allowed is None else allowed.copy()
        passing[exclude] = False
        rows = top_rows(np.where(passing, scores, 0.0), k)
    return rows


def blended_search(snapshot: IndexSnapshot, trending: TrendingItems, query: ItemQuery, personal_weight: float,
                   use_ann: bool = True, scorer: Scorer = score_alone) -> Found:
    """The best personal and the best trending candidates (:data:`~serving.search.MMR_POOL_FACTOR`
    times ``k`` of each), ranked by their mixed relevance (:func:`blend`), MMR-diversified when asked."""
    pool = max(query.k * MMR_POOL_FACTOR, query.k)
    personal = search(snapshot, ItemQuery(query.vector, pool, query.exclude, query.allowed), use_ann, scorer=scorer)
    scores, top = trend_scores(snapshot, trending)
    rows = np.union1d(personal.rows, trending_rows(scores, top, pool, query.exclude, query.allowed))
    mixed = blend(snapshot.items.dot(snapshot.items.vectors[rows], query.vector), scores[rows], personal_weight)
    diverse = query.diversity_lambda < 1.0
    # Shifted by 1: top_rows keeps positive scores only. MMR chooses from a bounded pool, as in search.
    order = top_rows(mixed + 1.0, min(pool, MMR_POOL_MAX) if diverse else query.k)
    if diverse and order.size > 1:
        order = order[mmr_order(snapshot.items.gather(rows[order]), mixed[order], query.k, query.diversity_lambda)]
    return Found(rows[order], mixed[order].astype(np.float32), personal.index_kind)
