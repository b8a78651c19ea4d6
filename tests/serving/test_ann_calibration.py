"""HNSW breadth calibration: the ladder, the queries, and a chosen breadth whose recall holds when
measured independently of the calibration (a plain numpy top-k)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.domain import EmbeddingRows, NodeKind
from serving.ann import HnswIndex
from serving.ann_builder import AnnBuilder
from serving.ann_calibration import calibrate, calibration_queries, exact_top, ladder
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.search import ItemQuery, search
from tests.serving.conftest import item_rows, user_rows

DIM = 48
N_ITEMS = 20_000


def clustered(n: int, rng: np.random.Generator, centers: np.ndarray, spread: float) -> np.ndarray:
    picked = centers[rng.integers(0, len(centers), n)]
    return (picked + spread * rng.standard_normal((n, centers.shape[1]))).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    # Many overlapping clusters: a narrow search misses part of the top 10 (about 0.76 at efSearch 4), a
    # wide one finds it (0.98 at 108).
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((2_000, DIM)).astype(np.float32)
    return clustered(N_ITEMS, rng, centers, 1.0), clustered(300, rng, centers, 1.0)


def snapshot_of(items: np.ndarray, users: np.ndarray) -> IndexSnapshot:
    users_rows = user_rows(users) if len(users) else EmbeddingRows(NodeKind.USER, [], np.zeros((0, DIM), np.float32))
    return EmbeddingIndex().apply(users_rows, item_rows(items), version=1, written_ms=1)


def numpy_recall(graph_snapshot: IndexSnapshot, items: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Recall@k of the served search against numpy's own top-k of the float vectors."""
    none = np.zeros(0, np.int64)
    hits = []
    for query in queries:
        exact = np.argsort(-(items @ query), kind="stable")[:k]
        found = search(graph_snapshot, ItemQuery(query, k, none), use_ann=True).rows
        hits.append(np.intersect1d(found, exact).size / k)
    return float(np.mean(hits))


def test_ladder_climbs_from_floor_to_ceiling() -> None:
    rungs = ladder(128, 1024)
    assert rungs[0] == 128 and rungs[-1] == 1024
    assert all(b > a for a, b in itertools.pairwise(rungs))
    assert ladder(4, 5) == [4, 5] and ladder(64, 64) == [64]


def test_queries_are_stored_users_when_there_are_enough_else_items(vectors) -> None:
    items, users = vectors
    queries, kind = calibration_queries(snapshot_of(items, users), count=100)
    assert kind == "users" and len(queries) == 100
    assert any(np.allclose(queries[0].vector, u) for u in users)
    queries, kind = calibration_queries(snapshot_of(items, users[:10]), count=100)
    assert kind == "items" and len(queries) == 100
    for query in queries[:5]:  # each item query excludes the item itself, as SimilarItems does
        (row,) = query.exclude
        assert np.allclose(query.vector, items[row])


def test_calibration_widens_the_search_until_recall_is_reached(vectors) -> None:
    items, users = vectors
    snapshot = snapshot_of(items, users)
    ann = HnswIndex.build(items, version=1, ef_search=4)
    calibration = calibrate(ann, snapshot, target_recall=0.97, floor=4, ceiling=512)
    assert calibration.queries == "users"
    first_ef, first_recall = calibration.ladder[0]
    assert first_ef == 4 and first_recall < 0.97  # the narrowest breadth is short of the target here
    assert calibration.ef_search > 4 and calibration.recall >= 0.97
    assert int(ann.graph.hnsw.efSearch) == calibration.ef_search
    index = EmbeddingIndex()
    built_from = index.apply(user_rows(users), item_rows(items), version=1, written_ms=1)
    assert index.attach_ann(ann, built_from)
    # Measured apart from the calibration, on users it did not all see, with numpy's own ranking.
    assert numpy_recall(index.snapshot(), items, users) >= 0.95


def test_calibration_stops_at_the_floor_when_it_suffices(vectors) -> None:
    items, users = vectors
    snapshot = snapshot_of(items, users)
    ann = HnswIndex.build(items, version=1)
    calibration = calibrate(ann, snapshot, target_recall=0.5, floor=256, ceiling=1024)
    assert calibration.ladder == ((256, calibration.recall),) and calibration.ef_search == 256


def test_builder_calibrates_graphs_built_afresh(vectors) -> None:
    items, users = vectors
    index = EmbeddingIndex()
    index.apply(user_rows(users), item_rows(items), version=1, written_ms=1)
    builder = AnnBuilder(index, min_items=1, ef_search=4, target_recall=0.97, ef_max=512)
    assert builder.build_once()
    snapshot = index.snapshot()
    assert builder.calibration is not None and snapshot.ann is not None
    assert int(snapshot.ann.graph.hnsw.efSearch) == builder.calibration.ef_search > 4
    assert builder.calibration.recall >= 0.97


def test_builder_without_a_target_keeps_the_set_breadth(vectors) -> None:
    items, users = vectors
    index = EmbeddingIndex()
    index.apply(user_rows(users), item_rows(items), version=1, written_ms=1)
    builder = AnnBuilder(index, min_items=1, ef_search=16)
    assert builder.build_once()
    snapshot = index.snapshot()
    assert builder.calibration is None and snapshot.ann is not None
    assert int(snapshot.ann.graph.hnsw.efSearch) == 16


def test_exact_truth_in_batches_is_what_an_exact_search_returns(vectors) -> None:
    items, users = vectors
    snapshot = snapshot_of(items, users)
    queries = [ItemQuery(u, 10, np.asarray([3, 5], np.int64)) for u in users[:40]]
    queries.append(ItemQuery(items[7], 10, np.asarray([7], np.int64)))
    for got, query in zip(exact_top(snapshot, queries), queries, strict=True):
        np.testing.assert_array_equal(got, search(snapshot, query, use_ann=False).rows)
