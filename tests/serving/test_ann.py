"""HNSW search: recall against exact search, stale rows after updates, graphs extended by insertion,
background builds, filters, MMR."""

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
from tests.serving.conftest import item_rows, user_rows

DIM = 32
N_ITEMS = 12_000


def clustered(n: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    """Embeddings around cluster centres, as trained embeddings are (pure noise has no structure)."""
    picked = centers[rng.integers(0, len(centers), n)]
    return (picked + 0.35 * rng.standard_normal((n, centers.shape[1]))).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((64, DIM)).astype(np.float32) * (3 / np.sqrt(DIM))
    return clustered(N_ITEMS, rng, centers), clustered(200, rng, centers)


@pytest.fixture(scope="module")
def snapshot_with_graph(data: tuple[np.ndarray, np.ndarray]) -> IndexSnapshot:
    items, users = data
    index = EmbeddingIndex()
    built_from = index.apply(user_rows(users), item_rows(items),
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
    built_from = index.apply(user_rows(users), item_rows(items),
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


def rewrite(index: EmbeddingIndex, items: np.ndarray, which: np.ndarray, rng: np.random.Generator,
            version: int, fresh: int = 0) -> IndexSnapshot:
    """Move the vectors of ``which`` rows (and add ``fresh`` new items) as an incremental round does."""
    moved = (items[which] + 0.5 * rng.standard_normal((which.size, DIM))).astype(np.float32)
    items[which] = moved
    new = items[rng.integers(0, len(items), fresh)] + 0.1
    ids = [NodeId(f"i{r}") for r in which.tolist()] + [NodeId(f"new{version}-{n}") for n in range(fresh)]
    return index.apply(EmbeddingRows(NodeKind.USER, [], np.zeros((0, DIM), np.float32)),
                       EmbeddingRows(NodeKind.ITEM, ids, np.concatenate([moved, new]).astype(np.float32)),
                       version=version, written_ms=version)


def test_an_extended_graph_serves_each_row_by_its_newest_vector_only(data) -> None:
    """Rounds of rewritten and new rows are inserted into the graph, never rebuilt: results name
    each row once, with its current vector, and recall against exact search holds."""
    items, users = data[0].copy(), data[1]
    rng = np.random.default_rng(11)
    index = EmbeddingIndex()
    built_from = index.apply(user_rows(users), item_rows(items),
                             version=1, written_ms=1)
    assert index.attach_ann(HnswIndex.build(items, version=1), built_from)
    for version in range(2, 6):  # four rounds, each rewriting 10 % of the rows, some twice
        snapshot = rewrite(index, items, rng.choice(N_ITEMS, N_ITEMS // 10, replace=False), rng, version, fresh=50)
        assert snapshot.ann is not None
        ann = snapshot.ann.extended(snapshot.stale_rows, snapshot.stale_vectors, len(snapshot.items), version)
        assert index.attach_ann(ann, built_from=snapshot)
    snapshot = index.snapshot()
    assert snapshot.ann is not None and snapshot.stale_rows.size == 0 and snapshot.ann.n_rows == len(snapshot.items)
    assert snapshot.ann.replaced > N_ITEMS // 4  # old entries stay in the graph as waypoints
    found_rows = snapshot.ann.search(snapshot.users.vectors, 50)
    for found in found_rows:
        found = found[found >= 0]
        assert found.size == np.unique(found).size  # never the same row twice (old and new entry)
    recalls = []
    for query in snapshot.users.vectors:
        exact = search(snapshot, ItemQuery(query, 10, nothing()), use_ann=False)
        approx = search(snapshot, ItemQuery(query, 10, nothing()))
        assert approx.index_kind == HNSW
        np.testing.assert_allclose(approx.scores, snapshot.items.vectors[approx.rows] @ query, rtol=1e-5)
        recalls.append(len(set(exact.rows.tolist()) & set(approx.rows.tolist())) / 10)
    assert np.mean(recalls) >= 0.95


def test_extending_leaves_the_graph_being_searched_as_it_was(snapshot_with_graph: IndexSnapshot) -> None:
    ann = snapshot_with_graph.ann
    assert ann is not None
    before = ann.search(snapshot_with_graph.users.vectors[:5], 10)
    grown = ann.extended(np.asarray([0, N_ITEMS]), np.ones((2, DIM), np.float32), N_ITEMS + 1, version=2)
    assert ann.graph.ntotal == N_ITEMS and grown.graph.ntotal == N_ITEMS + 2 and grown.replaced == 1
    np.testing.assert_array_equal(ann.search(snapshot_with_graph.users.vectors[:5], 10), before)
    with pytest.raises(ValueError, match="every row the graph lacks"):
        ann.extended(np.asarray([0]), np.ones((1, DIM), np.float32), N_ITEMS + 1, version=2)


def test_builder_extends_the_graph_until_replaced_entries_pass_their_share(data) -> None:
    items, users = data[0].copy(), data[1]
    rng = np.random.default_rng(5)
    index = EmbeddingIndex()
    builder = AnnBuilder(index, min_items=1, max_replaced_fraction=0.25)
    index.apply(user_rows(users), item_rows(items), version=1, written_ms=1)
    assert builder.build_once() and builder.extensions == 0
    kinds = []
    for version in range(2, 6):  # 10 % rewritten each time: extended, extended, then 30 % > 25 %: rebuilt
        rewrite(index, items, rng.choice(N_ITEMS, N_ITEMS // 10, replace=False), rng, version)
        extensions = builder.extensions
        assert builder.needs_build() and builder.build_once()
        kinds.append("extended" if builder.extensions > extensions else "built")
        snapshot = index.snapshot()
        assert snapshot.ann is not None and snapshot.stale_rows.size == 0
        np.testing.assert_array_equal(snapshot.ann.entry_rows[snapshot.ann.live_entry], np.arange(N_ITEMS))
    assert kinds == ["extended", "extended", "built", "extended"]


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
    small = item_rows(items[:100])
    index.apply(user_rows(users), small, version=1, written_ms=1)
    assert not builder.needs_build()
    builder.start()
    try:
        index.apply(EmbeddingRows(NodeKind.USER, [], np.zeros((0, DIM), np.float32)),
                    item_rows(items), version=2, written_ms=2)
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
        index.apply(user_rows(users), item_rows(items), version=1, written_ms=1)
        assert builder.needs_build() is wanted


def test_a_graph_built_before_a_full_reload_is_dropped(data) -> None:
    items, users = data
    index = EmbeddingIndex()
    built_from = index.apply(user_rows(users), item_rows(items[:500]),
                             version=1, written_ms=1)
    ann = HnswIndex.build(items[:500], version=1)
    reordered = EmbeddingRows(NodeKind.ITEM, [NodeId(f"i{n}") for n in reversed(range(500))], items[:500])
    index.apply(user_rows(users), reordered, version=2, written_ms=2, replace=True)
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


def test_an_hnsw_graph_over_int8_codes_keeps_recall_and_extends_in_its_own_codes(
        data: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = data
    index = EmbeddingIndex(item_codec="int8")
    built_from = index.apply(user_rows(users), item_rows(items), version=1,
                             written_ms=1)
    ann = HnswIndex.build(built_from.items.vectors, version=1, codec=built_from.items.codec)
    assert ann.codec is built_from.items.codec
    assert index.attach_ann(ann, built_from)
    snapshot, k = index.snapshot(), 10
    recalls = []
    for query in users:
        exact = search(snapshot, ItemQuery(query, k, nothing()), use_ann=False)
        approx = search(snapshot, ItemQuery(query, k, nothing()), use_ann=True)
        assert approx.index_kind == HNSW
        recalls.append(len(set(exact.rows.tolist()) & set(approx.rows.tolist())) / k)
    assert float(np.mean(recalls)) >= 0.95
    # Rewritten rows are inserted as codes of the same codec; a reload's new codec means a new graph.
    moved = item_rows(items[:300] * -1)
    index.apply(user_rows(users[:0]), moved, version=2, written_ms=2)
    builder = AnnBuilder(index, min_items=1, rebuild_fraction=0.0)
    assert builder._extendable(index.snapshot())
    assert builder.build_once() and builder.extensions == 1
    extended = index.snapshot()
    assert extended.ann is not None and extended.ann.codec is extended.items.codec
    top = search(extended, ItemQuery(-items[0], 1, nothing()), use_ann=True)
    assert top.index_kind == HNSW and top.rows.size == 1
    index.apply(user_rows(users), item_rows(items), version=3, written_ms=3,
                replace=True)
    assert not builder._extendable(index.snapshot())
