"""HNSW search: recall against exact search, stale rows after updates, background builds, filters, MMR."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.domain import EmbeddingRows, ItemMeta, NodeId, NodeKind
from serving.ann import HnswIndex
from serving.ann_builder import AnnBuilder
from serving.catalog import Catalog
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.search import EXACT, HNSW, ItemQuery, mmr_order, search

DIM = 32
N_ITEMS = 12_000


def clustered(n: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    """Embeddings around cluster centres, as trained embeddings are (pure noise has no structure)."""
    picked = centers[rng.integers(0, len(centers), n)]
    return (picked + 0.35 * rng.standard_normal((n, centers.shape[1]))).astype(np.float32)


def rows(kind: NodeKind, prefix: str, vectors: np.ndarray) -> EmbeddingRows:
    return EmbeddingRows(kind, [NodeId(f"{prefix}{n}") for n in range(len(vectors))], vectors)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((64, DIM)).astype(np.float32) * (3 / np.sqrt(DIM))
    return clustered(N_ITEMS, rng, centers), clustered(200, rng, centers)


@pytest.fixture(scope="module")
def snapshot_with_graph(data: tuple[np.ndarray, np.ndarray]) -> IndexSnapshot:
    items, users = data
    index = EmbeddingIndex()
    built_from = index.apply(rows(NodeKind.USER, "u", users), rows(NodeKind.ITEM, "i", items),
                             version=1, written_ms=1)
    assert index.attach_ann(HnswIndex.build(items, version=1), built_from)
    return index.snapshot()


def nothing() -> np.ndarray:
    return np.zeros(0, np.int64)


def test_hnsw_recall_at_10_is_at_least_095(snapshot_with_graph: IndexSnapshot) -> None:
    snapshot, k = snapshot_with_graph, 10
    recalls = []
    for query in snapshot.users.vectors:
        exact = search(snapshot, ItemQuery(query, k, nothing()), use_ann=False)
        approx = search(snapshot, ItemQuery(query, k, nothing()), use_ann=True)
        assert exact.index_kind == EXACT and approx.index_kind == HNSW
        recalls.append(len(set(exact.rows.tolist()) & set(approx.rows.tolist())) / k)
    assert np.mean(recalls) >= 0.95


def test_graph_results_are_rescored_exactly_and_sorted(snapshot_with_graph: IndexSnapshot) -> None:
    query = snapshot_with_graph.users.vectors[0]
    found = search(snapshot_with_graph, ItemQuery(query, 25, nothing()))
    np.testing.assert_allclose(found.scores, snapshot_with_graph.items.vectors[found.rows] @ query, rtol=1e-6)
    assert np.all(np.diff(found.scores) <= 0)


def test_rows_changed_after_the_build_are_found_with_their_new_vectors(data) -> None:
    items, users = data
    index = EmbeddingIndex()
    built_from = index.apply(rows(NodeKind.USER, "u", users), rows(NodeKind.ITEM, "i", items),
                             version=1, written_ms=1)
    index.attach_ann(HnswIndex.build(items, version=1), built_from)
    query = users[0]
    # One old item turns into the best match, and a brand-new item becomes the second best.
    boosted = EmbeddingRows(NodeKind.ITEM, [NodeId("i5"), NodeId("fresh")],
                            np.stack([query * 10, query * 5]).astype(np.float32))
    snapshot = index.apply(EmbeddingRows(NodeKind.USER, [], np.zeros((0, DIM), np.float32)), boosted,
                           version=2, written_ms=2)
    assert snapshot.ann is not None and snapshot.ann.version == 1
    assert set(snapshot.stale_rows.tolist()) == {5, N_ITEMS}
    found = search(snapshot, ItemQuery(query, 5, nothing()))
    assert found.index_kind == HNSW
    assert [snapshot.items.ids[r] for r in found.rows[:2]] == ["i5", "fresh"]


def test_exclusions_and_filters_hold_on_the_graph_path(snapshot_with_graph: IndexSnapshot) -> None:
    snapshot = snapshot_with_graph
    query = snapshot.users.vectors[1]
    top = search(snapshot, ItemQuery(query, 10, nothing())).rows
    excluded = search(snapshot, ItemQuery(query, 10, top[:4].copy())).rows
    assert set(excluded.tolist()).isdisjoint(top[:4].tolist())
    allowed = np.ones(len(snapshot.items), dtype=bool)
    allowed[::2] = False  # odd rows only: still large enough for the graph path
    found = search(snapshot, ItemQuery(query, 10, nothing(), allowed), exact_subset_max=1000)
    assert found.index_kind == HNSW and len(found.rows) == 10
    assert all(r % 2 == 1 for r in found.rows.tolist())


def test_a_selective_filter_is_searched_exactly(snapshot_with_graph: IndexSnapshot) -> None:
    snapshot = snapshot_with_graph
    allowed = np.zeros(len(snapshot.items), dtype=bool)
    allowed[[3, 30, 300]] = True
    found = search(snapshot, ItemQuery(snapshot.users.vectors[0], 10, np.asarray([30]), allowed),
                   exact_subset_max=1000)
    assert found.index_kind == EXACT and sorted(found.rows.tolist()) == [3, 300]


def test_builder_attaches_a_graph_once_the_catalog_is_large_enough(data) -> None:
    items, users = data
    index = EmbeddingIndex()
    builder = AnnBuilder(index, min_items=N_ITEMS)
    small = rows(NodeKind.ITEM, "i", items[:100])
    index.apply(rows(NodeKind.USER, "u", users), small, version=1, written_ms=1)
    assert not builder.needs_build()
    builder.start()
    try:
        index.apply(EmbeddingRows(NodeKind.USER, [], np.zeros((0, DIM), np.float32)),
                    rows(NodeKind.ITEM, "i", items), version=2, written_ms=2)
        deadline = time.monotonic() + 60
        while index.snapshot().ann is None and time.monotonic() < deadline:
            time.sleep(0.02)
        snapshot = index.snapshot()
        assert snapshot.ann is not None and snapshot.ann.n_rows == N_ITEMS and builder.builds == 1
        assert snapshot.stale_rows.size == 0
    finally:
        builder.stop()


def test_builder_weighs_the_exact_scan_by_width_as_well_as_count(data) -> None:
    """The same catalog is worth a graph at a width whose exact scan passes min_scan_bytes, not below it."""
    items, users = data
    scan = N_ITEMS * DIM * 4
    for min_scan_bytes, wanted in ((scan + 1, False), (scan, True)):
        index = EmbeddingIndex()
        builder = AnnBuilder(index, min_items=1, min_scan_bytes=min_scan_bytes)
        index.apply(rows(NodeKind.USER, "u", users), rows(NodeKind.ITEM, "i", items), version=1, written_ms=1)
        assert builder.needs_build() is wanted


def test_a_graph_built_before_a_full_reload_is_dropped(data) -> None:
    items, users = data
    index = EmbeddingIndex()
    built_from = index.apply(rows(NodeKind.USER, "u", users), rows(NodeKind.ITEM, "i", items[:500]),
                             version=1, written_ms=1)
    ann = HnswIndex.build(items[:500], version=1)
    reordered = EmbeddingRows(NodeKind.ITEM, [NodeId(f"i{n}") for n in reversed(range(500))], items[:500])
    index.apply(rows(NodeKind.USER, "u", users), reordered, version=2, written_ms=2, replace=True)
    assert not index.attach_ann(ann, built_from)
    assert index.snapshot().ann is None


def test_mmr_with_lambda_one_keeps_relevance_order_and_lower_lambda_spreads() -> None:
    # Two near-duplicates at the top and one different item a little below them.
    vectors = np.asarray([[1.0, 0.0], [0.99, 0.01], [0.0, 1.0]], dtype=np.float32)
    relevance = np.asarray([1.0, 0.99, 0.8], dtype=np.float32)
    assert mmr_order(vectors, relevance, 3, 1.0).tolist() == [0, 1, 2]
    assert mmr_order(vectors, relevance, 2, 0.5).tolist() == [0, 2]


def test_catalog_filters_by_category_and_follows_changes() -> None:
    catalog = Catalog().merge([ItemMeta(NodeId("a"), "A", ("books",)), ItemMeta(NodeId("b"), "B", ("music",)),
                               ItemMeta(NodeId("c"), "C", ("books", "sale"))])
    rows_of = {NodeId("a"): 0, NodeId("b"): 1, NodeId("c"): 2, NodeId("d"): 3}
    assert catalog.allowed_rows(rows_of, 4) is None
    assert catalog.allowed_rows(rows_of, 4, include=["books"]).tolist() == [True, False, True, False]
    assert catalog.allowed_rows(rows_of, 4, exclude=["sale"]).tolist() == [True, True, False, True]
    assert catalog.allowed_rows(rows_of, 4, ["books"], ["sale"]).tolist() == [True, False, False, False]
    moved = catalog.merge([ItemMeta(NodeId("a"), "A2", ("music",))])
    assert moved.allowed_rows(rows_of, 4, include=["books"]).tolist() == [False, False, True, False]
    assert moved.title(NodeId("a")) == "A2" and catalog.title(NodeId("a")) == "A"
