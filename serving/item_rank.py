"""Where one item stands in a user's ranking (Explain's rank), without scanning a large catalog.

An exact rank, :math:`1 + |\\{j : e_u^\\top e_j > e_u^\\top e_i\\}|`, reads every item vector: 190 ms at
1,000,000 x 992 on one core (``bench/ann_sweep.py``), the whole of Explain's budget and more. Catalogs
searched exactly (no HNSW graph) keep that exact scan. Over a graph the rank comes from the served search
instead, in two parts:

- the top :data:`RANK_DEPTH` items as the served search finds them: an item scoring at least the last of
  them gets its place in that list, the rank a client sees when it asks for that many;
- below them, an estimate from a systematic sample of :data:`RANK_SAMPLE` item rows (every
  ``n / RANK_SAMPLE``-th row): :math:`\\hat r = 1 + n \\hat f`, with :math:`\\hat f` the share of sampled
  rows that outscore the item, never above the depth; the reply then says the rank is estimated.
  Its standard error is :math:`n \\sqrt{f (1 - f) / S}`: about 0.4 % of the catalog for an item
  in the middle of it, 5,000 places at one million items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.index import IndexSnapshot
from serving.scoring import Scorer, score_alone
from serving.search import ItemQuery, search

#: Ranks down to this depth come from the served search itself.
RANK_DEPTH = 100
#: Item rows sampled for a rank below that depth (held as 32 MB of floats per item table at 992 dims).
RANK_SAMPLE = 8192


@dataclass(frozen=True, slots=True)
class ItemRank:
    """An item's 1-based rank for a user, and whether it was estimated from a sample."""

    rank: int
    estimated: bool


def item_rank(snapshot: IndexSnapshot, vector: np.ndarray, score: float, use_ann: bool = True,
              scorer: Scorer = score_alone) -> ItemRank:
    """The rank of an item scoring ``score`` for the query ``vector`` among all of ``snapshot``'s items
    (seen ones included), exact unless the catalog is searched through a graph (module docs).

    Args:
        snapshot (IndexSnapshot): The items ranked.
        vector (np.ndarray): ``float32 [d]`` the user's embedding.
        score (float): The item's score, as the item table computes it.
        use_ann (bool): Whether the server searches the snapshot's graph (default: :obj:`True`).
        scorer (Scorer): Scores every row for an exact rank (default: one matrix-vector product).
    """
    n = len(snapshot.items)
    if not use_ann or snapshot.ann is None or n <= RANK_SAMPLE:
        return ItemRank(1 + int(np.count_nonzero(scorer(snapshot.items, vector) > score)), False)
    top = search(snapshot, ItemQuery(vector, RANK_DEPTH, np.zeros(0, np.int64)), use_ann=True)
    if top.scores.size < RANK_DEPTH or score >= float(top.scores[-1]):
        return ItemRank(1 + int(np.count_nonzero(top.scores > score)), False)
    return ItemRank(max(RANK_DEPTH + 1, 1 + round(n * _share_above(snapshot, vector, score))), True)


def _share_above(snapshot: IndexSnapshot, vector: np.ndarray, score: float) -> float:
    """Share of a systematic sample of item rows scoring above ``score``."""
    return float(np.count_nonzero(snapshot.items.sample_dot(RANK_SAMPLE, vector) > score)) / RANK_SAMPLE
