"""EmbeddingTable: rows appended without copying, rewrites, compaction, int8 codes; held tables never change."""

from __future__ import annotations

import numpy as np
import pytest

from core.domain import EmbeddingRows, NodeId, NodeKind
from serving.embedding_table import EmbeddingTable
from tests.serving.conftest import item_rows, user_rows


def test_upsert_replaces_and_appends_without_touching_the_old_table() -> None:
    old = EmbeddingTable().upsert(item_rows(np.zeros((3, 2))), refreshed_ms=100)
    delta = EmbeddingRows(NodeKind.ITEM, [NodeId("i1"), NodeId("new")], np.ones((2, 2), np.float32))
    new = old.upsert(delta, refreshed_ms=200)
    assert new.ids == ("i0", "i1", "i2", "new")
    np.testing.assert_array_equal(new.vectors[[1, 3]], np.ones((2, 2)))
    np.testing.assert_array_equal(new.refreshed_ms, [100, 200, 100, 200])
    np.testing.assert_array_equal(old.vectors, np.zeros((3, 2)))
    assert old.ids == ("i0", "i1", "i2") and "new" not in old.rows
    with pytest.raises(ValueError, match="read-only"):
        new.vectors[0, 0] = 5.0


def _vector(table: EmbeddingTable, node_id: str) -> np.ndarray:
    row = table.row(NodeId(node_id))
    assert row is not None
    return table.vectors[row]


def test_appends_share_the_buffer_and_older_tables_never_see_them() -> None:
    first = EmbeddingTable().upsert(item_rows(np.zeros((3, 2))), refreshed_ms=100)
    grown = first.upsert(EmbeddingRows(NodeKind.ITEM, [NodeId("new")], np.ones((1, 2), np.float32)), 200)
    assert np.shares_memory(first.vectors, grown.vectors)  # no copy for new ids
    assert len(first.vectors) == 3 and "new" not in first.rows and grown.ids[-1] == "new"
    # A second table grown from the older one must not write over rows the first grown one shows.
    other = first.upsert(EmbeddingRows(NodeKind.ITEM, [NodeId("other")], np.full((1, 2), 7, np.float32)), 300)
    np.testing.assert_array_equal(_vector(grown, "new"), [1, 1])
    np.testing.assert_array_equal(_vector(other, "other"), [7, 7])
    assert not np.shares_memory(grown.vectors, other.vectors)


def test_append_only_rewrites_take_new_rows_and_compact_past_the_dead_share() -> None:
    table = EmbeddingTable(append_only=True).upsert(user_rows(np.zeros((8, 2))), refreshed_ms=1)
    held = table
    for step in range(1, 20):
        table = table.upsert(EmbeddingRows(NodeKind.USER, [NodeId("u3"), NodeId("u3")],
                                           np.asarray([[0, 0], [step, step]], np.float32)), refreshed_ms=step)
        np.testing.assert_array_equal(_vector(table, "u3"), [step, step])  # the last vector of an id wins
        assert len(table) == 8 and table.dead <= 0.25 * len(table.ids)
        assert int(table.live_mask().sum()) == 8
    np.testing.assert_array_equal(_vector(held, "u3"), [0, 0])  # what a reader held never moved
    np.testing.assert_array_equal(held.vectors, np.zeros((8, 2)))
    assert {table.ids[r] for r in np.flatnonzero(table.live_mask())} == {f"u{i}" for i in range(8)}


def test_rewriting_items_keeps_their_rows() -> None:
    table = EmbeddingTable().upsert(item_rows(np.zeros((4, 2))), refreshed_ms=1)
    again = table.upsert(EmbeddingRows(NodeKind.ITEM, [NodeId("i2")], np.ones((1, 2), np.float32)), 2)
    assert again.ids == table.ids and again.dead == 0 and again.row(NodeId("i2")) == 2
    np.testing.assert_array_equal(again.vectors[2], [1, 1])
    np.testing.assert_array_equal(table.vectors[2], [0, 0])


def test_an_int8_table_holds_codes_fitted_once_and_decodes_them() -> None:
    rng = np.random.default_rng(5)
    first = rng.standard_normal((50, 8)).astype(np.float32)
    table = EmbeddingTable(int8=True).upsert(item_rows(first), refreshed_ms=1)
    assert table.vectors.dtype == np.int8 and table.vectors.nbytes == 50 * 8 and table.codec is not None
    np.testing.assert_allclose(table.gather(np.arange(50)), first, atol=float(table.codec.scale.max()))
    # Rewrites, appends and compactions keep the codec (and with it every row's meaning).
    grown = table.upsert(EmbeddingRows(NodeKind.ITEM, [NodeId("i3"), NodeId("new")], first[:2] * 0.5), 2)
    assert grown.codec is table.codec and grown.vectors.dtype == np.int8
    np.testing.assert_allclose(grown.gather(grown.rows[NodeId("new")]), first[1] * 0.5,
                               atol=float(table.codec.scale.max()))
    query = rng.standard_normal(8).astype(np.float32)
    np.testing.assert_allclose(grown.scan(query), grown.gather(np.arange(len(grown))) @ query, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grown.dot(grown.vectors[[0, 3]], query), grown.gather(np.array([0, 3])) @ query,
                               rtol=1e-4, atol=1e-4)


def test_without_drops_ids_with_every_row_they_left_and_keeps_the_rest() -> None:
    table = EmbeddingTable(append_only=True).upsert(user_rows(np.arange(6, dtype=np.float32).reshape(3, 2)), 100)
    rewritten = table.upsert(EmbeddingRows(NodeKind.USER, [NodeId("u1")], np.full((1, 2), 9, np.float32)), 200)
    assert rewritten.dead == 1  # u1's first vector stays behind, dead, until compaction
    erased = rewritten.without([NodeId("u1"), NodeId("never-held")])
    assert erased.ids == ("u0", "u2") and "u1" not in erased.rows and erased.dead == 0
    assert 9 not in erased.vectors and 2 not in erased.vectors  # neither of u1's vectors is kept
    np.testing.assert_array_equal(_vector(erased, "u2"), [4, 5])
    assert rewritten.row(NodeId("u1")) is not None  # readers holding the old table still see it
    assert erased.without([NodeId("nobody")]) is erased


@pytest.mark.parametrize("int8", [False, True], ids=["f32", "int8"])
def test_norms_and_sampled_dots_are_kept_per_table_and_follow_every_upsert(int8: bool) -> None:
    rng = np.random.default_rng(0)
    table = EmbeddingTable(int8=int8).upsert(item_rows(rng.normal(size=(50, 6))), refreshed_ms=1)
    query = rng.normal(size=6).astype(np.float32)
    np.testing.assert_allclose(table.norms(), np.linalg.norm(table.gather(np.arange(50)), axis=1), rtol=1e-5)
    assert table.norms() is table.norms()  # computed once
    rows = np.linspace(0, 49, 7).astype(np.int64)
    np.testing.assert_allclose(table.sample_dot(7, query), table.dot(table.vectors[rows], query), rtol=1e-5)
    # The next table (a rewrite and a new id) starts with none of the old one's derived arrays.
    rewritten = rng.normal(size=(2, 6)).astype(np.float32) * 3
    grown = table.upsert(EmbeddingRows(NodeKind.ITEM, [NodeId("i0"), NodeId("new")], rewritten), refreshed_ms=2)
    np.testing.assert_allclose(grown.norms(), np.linalg.norm(grown.gather(np.arange(51)), axis=1), rtol=1e-5)
    rows = np.linspace(0, 50, 7).astype(np.int64)
    np.testing.assert_allclose(grown.sample_dot(7, query), grown.dot(grown.vectors[rows], query), rtol=1e-5)
    assert len(table.norms()) == 50
