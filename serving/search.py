"""One item search over an index snapshot: candidates (exact or HNSW), exclusions, filters, diversity.

Candidates come from an exact scan of every allowed item when the catalog is small, the filter
leaves few items, or no HNSW graph is attached yet; otherwise from the graph, over-fetched by the
share of rows a filter or exclusion removes, plus the snapshot's stale rows (changed since the
graph was built), all rescored exactly with the current vectors. When filtering leaves fewer than
``k`` graph candidates the search falls back to an exact scan, so a filter never silently shortens
a list that exact search would fill.

Diversity is maximal marginal relevance (Carbonell & Goldstein, "The use of MMR, diversity-based
reranking for reordering documents and producing summaries", SIGIR 1998): from a pool of the most
relevant candidates, each next item maximises
:math:`\\lambda \\cdot \\mathrm{rel}(i) - (1 - \\lambda) \\max_{j \\in S} \\cos(e_i, e_j)`, with relevance
min-max scaled to :math:`[0, 1]` over the pool so both terms share a scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.index import IndexSnapshot
from serving.scoring import Scorer, score_alone

#: A filter leaving at most this many items is scanned exactly: cheaper than a filtered graph walk.
EXACT_SUBSET_MAX = 50_000
#: Diversity re-ranks choose from this many times ``k`` of the most relevant items...
MMR_POOL_FACTOR = 4
#: ...but never from more than this many (the pairwise similarity matrix is pool x pool).
MMR_POOL_MAX = 400

EXACT = "exact"
HNSW = "hnsw"


@dataclass(frozen=True, slots=True)
class ItemQuery:
    """What to search for.

    Args:
        vector (np.ndarray): ``float32 [d]`` query embedding (a user's or an item's).
        k (int): Items wanted.
        exclude (np.ndarray): ``int64`` item rows never to return (seen items, the item itself).
        allowed (np.ndarray, optional): Boolean mask over item rows passing the filter
            (default: :obj:`None`, every row).
        diversity_lambda (float): MMR trade-off in ``[0, 1]``; 1 = pure relevance (default: :obj:`1.0`).
    """

    vector: np.ndarray
    k: int
    exclude: np.ndarray
    allowed: np.ndarray | None = None
    diversity_lambda: float = 1.0


@dataclass(frozen=True, slots=True)
class Found:
    """Result rows (best first, or in MMR order) with their dot-product scores, and how found."""

    rows: np.ndarray
    scores: np.ndarray
    index_kind: str


def search(
    snapshot: IndexSnapshot, query: ItemQuery, use_ann: bool = True, exact_subset_max: int = EXACT_SUBSET_MAX,
    scorer: Scorer = score_alone,
) -> Found:
    """The ``query.k`` best item rows of ``snapshot`` for ``query`` (fewer if fewer pass).

    Args:
        snapshot (IndexSnapshot): What to search.
        query (ItemQuery): The query.
        use_ann (bool): Use the snapshot's HNSW graph if it has one (default: :obj:`True`).
        exact_subset_max (int): Filters leaving at most this many items are scanned exactly
            (default: :obj:`EXACT_SUBSET_MAX`).
        scorer (Scorer): Scores every item row for an unfiltered exact scan; the server passes a
            :class:`~serving.scoring.ScoreBatcher` (default: one matrix-vector product).
    """
    pool = query.k if query.diversity_lambda >= 1.0 else min(max(query.k * MMR_POOL_FACTOR, query.k), MMR_POOL_MAX)
    n_allowed = len(snapshot.items) if query.allowed is None else int(query.allowed.sum())
    found: Found | None = None
    if use_ann and snapshot.ann is not None and (query.allowed is None or n_allowed > exact_subset_max):
        found = _graph_search(snapshot, query, pool, n_allowed)
    if found is None:
        found = _exact_search(snapshot, query, pool, scorer)
    if query.diversity_lambda < 1.0 and found.rows.size > 1:
        order = mmr_order(snapshot.items.gather(found.rows), found.scores, query.k, query.diversity_lambda)
        return Found(found.rows[order], found.scores[order], found.index_kind)
    return found


def _best(rows: np.ndarray | None, scores: np.ndarray, k: int, kind: str) -> Found:
    """Top ``k`` of ``scores``; ``rows[i]`` is the item row of ``scores[i]`` (``None``: row ``i``)."""
    keep = np.argpartition(-scores, k - 1)[:k] if scores.size > k else np.arange(scores.size)
    scores = scores[keep]
    order = np.argsort(-scores, kind="stable")
    picked = keep[order] if rows is None else rows[keep[order]]
    return Found(picked.astype(np.int64), scores[order], kind)


def _exact_search(snapshot: IndexSnapshot, query: ItemQuery, k: int, scorer: Scorer = score_alone) -> Found:
    items = snapshot.items
    if query.allowed is None:
        scores = scorer(items, query.vector)  # this caller's own row (a batch gives each its own)
        scores[query.exclude] = -np.inf
        found = _best(None, scores, k, EXACT)
        keep = np.isfinite(found.scores)  # excluded rows only surface when fewer than k others exist
        return Found(found.rows[keep], found.scores[keep], EXACT)
    allowed = query.allowed.copy()
    allowed[query.exclude] = False
    rows = np.flatnonzero(allowed)
    return _best(rows, items.dot(items.vectors[rows], query.vector), k, EXACT)


def _graph_search(snapshot: IndexSnapshot, query: ItemQuery, k: int, n_allowed: int) -> Found | None:
    """Candidates from the HNSW graph plus stale rows, rescored; ``None`` when too few pass."""
    assert snapshot.ann is not None
    n = len(snapshot.items)
    # Over-fetch so that, after dropping excluded and filtered rows, about k remain.
    fetch = int((k + query.exclude.size) * (n / max(n_allowed, 1)) * 1.2) + 1
    items = snapshot.items
    graph_rows = snapshot.ann.search(query.vector, min(fetch, snapshot.ann.n_rows))[0]
    graph_rows = graph_rows[graph_rows >= 0]
    # Row masks rather than np.isin: isin sorts both sides on every call, a mask costs a byte per item.
    stale = np.zeros(n, dtype=bool)
    stale[snapshot.stale_rows] = True
    graph_rows = graph_rows[~stale[graph_rows]]  # a stale row is scored once, below
    rows = np.concatenate([graph_rows, snapshot.stale_rows])
    scores = np.concatenate([items.dot(items.vectors[graph_rows], query.vector),
                             items.dot(snapshot.stale_vectors, query.vector) if snapshot.stale_rows.size
                             else np.zeros(0, np.float32)])
    keep = np.ones(rows.size, dtype=bool)
    if query.exclude.size:
        excluded = np.zeros(n, dtype=bool)
        excluded[query.exclude] = True
        keep &= ~excluded[rows]
    if query.allowed is not None:
        keep &= query.allowed[rows]
    rows, scores = rows[keep], scores[keep]
    if rows.size < min(k, n_allowed - query.exclude.size):
        return None
    return _best(rows, scores, k, HNSW)


def mmr_order(vectors: np.ndarray, relevance: np.ndarray, k: int, diversity_lambda: float) -> np.ndarray:
    """Greedy maximal-marginal-relevance order of ``k`` of the candidates (indices into them).

    Args:
        vectors (np.ndarray): ``[m, d]`` candidate embeddings.
        relevance (np.ndarray): ``[m]`` their relevance (dot products with the query).
        k (int): How many to pick.
        diversity_lambda (float): 1 = by relevance only, 0 = by dissimilarity only.
    """
    m = relevance.shape[0]
    k = min(k, m)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    similarity = unit @ unit.T
    spread = float(relevance.max() - relevance.min())
    scaled = (relevance - relevance.min()) / spread if spread > 0 else np.zeros(m, dtype=np.float32)
    picked = [int(np.argmax(scaled))]
    closest = similarity[picked[0]].copy()
    taken = np.zeros(m, dtype=bool)
    taken[picked[0]] = True
    for _ in range(k - 1):
        marginal = diversity_lambda * scaled - (1.0 - diversity_lambda) * closest
        marginal[taken] = -np.inf
        best = int(np.argmax(marginal))
        picked.append(best)
        taken[best] = True
        closest = np.maximum(closest, similarity[best])
    return np.asarray(picked, dtype=np.int64)
