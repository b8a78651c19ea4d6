"""The HNSW search breadth a catalog needs for a recall target, measured on that catalog.

How wide a search must be for a given recall depends on the catalog: its size, its width, how its
vectors cluster (``bench/ann_sweep.py``: efSearch 128 gives recall@10 0.995 at 100,000 fitted
992-dim items and 0.880 at 1,000,000 tiled ones, which need about 400 for 0.95). A fixed efSearch is
therefore either wasted on small catalogs or short on large ones. After every graph built afresh
the builder measures the served search (:func:`serving.search.search`: the graph's candidates,
rescored) against an exact scan for a sample of queries and climbs a ladder of breadths, from
``IG_ANN_EF_SEARCH`` up to ``IG_ANN_EF_MAX``, to the first that reaches ``IG_ANN_TARGET_RECALL``,
as the auto-tuning of Faiss' ``ParameterSpace`` does for one operating point.

Queries are the stored user vectors (what Recommend searches with) when there are enough of them,
otherwise item vectors with the item itself excluded (what SimilarItems searches with; SpectralCF's
users are folded in at request time and have no stored vector). The measurement costs one exact scan
per query, :data:`TRUTH_BATCH` queries at a time, in the builder's thread, against minutes for the
build itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from serving.ann import HnswIndex
from serving.index import IndexSnapshot
from serving.scoring import Scorer
from serving.search import ItemQuery, search

#: Queries measured per calibration. Recall varies far more between queries than a binomial count of
#: hits suggests (per-query standard deviation about 0.2 at 1,000,000 x 992): 100 random users measured
#: 0.86 to 0.95 at one efSearch, and a ladder stopping at the first rung a small sample lifts past the
#: target overstates it. 400 give a standard error of about 0.01.
CALIBRATION_QUERIES = 400
#: Fewest stored users that are queried rather than items.
MIN_USER_QUERIES = 100
#: Queries scored together by one pass over the item codes for the exact truth (``[b, n]`` floats:
#: 64 MB at 1,000,000 items).
TRUTH_BATCH = 16
#: Each rung of the ladder searches this much wider than the last.
LADDER_STEP = 1.5
#: Recall is measured at this k (Recommend's usual list length).
RECALL_K = 10


@dataclass(frozen=True, slots=True)
class Calibration:
    """What a calibration found: the breadth chosen and the recall@10 measured at each rung.

    Args:
        ef_search (int): The breadth chosen: the first rung reaching the target, else the widest.
        recall (float): Recall@10 of the served search at ``ef_search``.
        ladder (tuple[tuple[int, float], ...]): ``(efSearch, recall@10)`` of every rung tried.
        queries (str): What the queries were, ``"users"`` or ``"items"``.
    """

    ef_search: int
    recall: float
    ladder: tuple[tuple[int, float], ...]
    queries: str


def ladder(floor: int, ceiling: int) -> list[int]:
    """Breadths from ``floor`` up to ``ceiling`` (both included), each :data:`LADDER_STEP` times the last."""
    rungs = [max(1, floor)]
    while rungs[-1] < ceiling:
        rungs.append(min(ceiling, max(rungs[-1] + 1, round(rungs[-1] * LADDER_STEP))))
    return rungs


def calibration_queries(snapshot: IndexSnapshot, count: int = CALIBRATION_QUERIES,
                        seed: int = 0) -> tuple[list[ItemQuery], str]:
    """Up to ``count`` queries like the served ones (module docs) and what they are."""
    rng = np.random.default_rng(seed)
    users = snapshot.users
    if snapshot.live_users is None and len(users) >= min(count, MIN_USER_QUERIES):
        live = np.flatnonzero(users.live_mask())
        rows = np.sort(rng.choice(live, size=min(count, live.size), replace=False))
        none = np.zeros(0, dtype=np.int64)
        return [ItemQuery(users.gather(int(r)), RECALL_K, none) for r in rows], "users"
    n = len(snapshot.items)
    rows = np.sort(rng.choice(n, size=min(count, n), replace=False))
    return [ItemQuery(snapshot.items.gather(int(r)), RECALL_K, np.asarray([r], dtype=np.int64)) for r in rows], "items"


def served_recall(snapshot: IndexSnapshot, queries: list[ItemQuery], truth: list[np.ndarray]) -> float:
    """Mean recall@k of the snapshot's served (graph) search against the exact ``truth`` rows."""
    hits = [np.intersect1d(search(snapshot, q, use_ann=True).rows, exact).size / max(exact.size, 1)
            for q, exact in zip(queries, truth, strict=True)]
    return float(np.mean(hits)) if hits else 1.0


def exact_top(snapshot: IndexSnapshot, queries: list[ItemQuery]) -> list[np.ndarray]:
    """Each query's rows from the exact search (:func:`serving.search.search` without the graph), its
    scores computed :data:`TRUTH_BATCH` queries per pass over the item table instead of one scan each."""
    exact = dataclasses.replace(snapshot, ann=None)
    truth: list[np.ndarray] = []
    for start in range(0, len(queries), TRUTH_BATCH):
        batch = queries[start:start + TRUTH_BATCH]
        scores = np.atleast_2d(snapshot.items.scan(np.stack([q.vector for q in batch])))
        for query, row_scores in zip(batch, scores, strict=True):
            truth.append(search(exact, query, use_ann=False, scorer=_computed(row_scores)).rows)
    return truth


def _computed(scores: np.ndarray) -> Scorer:
    """A scorer handing back ``scores``, one row of a batched scan already made."""
    return lambda _rows, _vector: scores


def calibrate(ann: HnswIndex, built_from: IndexSnapshot, target_recall: float, floor: int, ceiling: int,
              count: int = CALIBRATION_QUERIES) -> Calibration:
    """The first breadth of :func:`ladder` whose served search reaches ``target_recall`` on ``built_from``.

    Sets ``ann``'s breadth to it (before the graph is attached, so no search sees the ladder).

    Args:
        ann (HnswIndex): A graph over ``built_from``'s items, not yet attached.
        built_from (IndexSnapshot): The snapshot it was built from.
        target_recall (float): Recall@10 wanted, in ``(0, 1]``.
        floor (int): Narrowest breadth tried (``IG_ANN_EF_SEARCH``).
        ceiling (int): Widest breadth tried (``IG_ANN_EF_MAX``).
        count (int): Queries measured (default: :data:`CALIBRATION_QUERIES`).
    """
    queries, kind = calibration_queries(built_from, count)
    truth = exact_top(built_from, queries)
    served = dataclasses.replace(built_from, ann=ann, stale_rows=np.zeros(0, np.int64),
                                 stale_vectors=np.zeros((0, built_from.items.dim), np.float32))
    tried: list[tuple[int, float]] = []
    for ef in ladder(floor, max(floor, ceiling)):
        ann.graph.hnsw.efSearch = ef
        tried.append((ef, served_recall(served, queries, truth)))
        if tried[-1][1] >= target_recall:
            break
    return Calibration(tried[-1][0], tried[-1][1], tuple(tried), kind)
