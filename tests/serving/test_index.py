"""EmbeddingIndex: exact top-k against brute force, exclusion, copy-on-write swaps under readers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.domain import EmbeddingRows, NodeId, NodeKind
from serving.index import EmbeddingDimensionError, EmbeddingIndex, EmbeddingTable, top_k


def rows(kind: NodeKind, prefix: str, vectors: np.ndarray) -> EmbeddingRows:
    ids = [NodeId(f"{prefix}{i}") for i in range(len(vectors))]
    return EmbeddingRows(kind, ids, vectors.astype(np.float32))


def users(vectors: np.ndarray) -> EmbeddingRows:
    return rows(NodeKind.USER, "u", vectors)


def items(vectors: np.ndarray) -> EmbeddingRows:
    return rows(NodeKind.ITEM, "i", vectors)


def brute_force(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]


@pytest.mark.parametrize("k", [1, 5, 99, 100, 250])
def test_top_k_equals_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.standard_normal((7, 100)).astype(np.float32)
    columns, best = top_k(scores, k)
    assert columns.shape == best.shape == (7, min(k, 100))
    for b in range(7):
        np.testing.assert_array_equal(columns[b], brute_force(scores[b], k))
        np.testing.assert_array_equal(best[b], scores[b, brute_force(scores[b], k)])


@settings(max_examples=60, deadline=None)
@given(
    scores=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 40)),
                      elements=st.floats(-8, 8, width=32)),
    k=st.integers(1, 50),
)
def test_top_k_scores_match_sorted_scores(scores: np.ndarray, k: int) -> None:
    # Ties may pick different columns than a sort, but never different scores.
    columns, best = top_k(scores, k)
    expected = -np.sort(-scores, axis=1)[:, :k]
    np.testing.assert_array_equal(best, expected)
    np.testing.assert_array_equal(np.take_along_axis(scores, columns, axis=1), best)
    assert all(len(set(row)) == len(row) for row in columns.tolist())


def test_search_items_is_exact_for_a_batch_of_users() -> None:
    rng = np.random.default_rng(0)
    index = EmbeddingIndex()
    user_vectors, item_vectors = rng.standard_normal((5, 16)), rng.standard_normal((300, 16))
    snapshot = index.apply(users(user_vectors), items(item_vectors), version=1, written_ms=1000)
    found = snapshot.search_items(snapshot.users.vectors, 10)
    for u, result in enumerate(found):
        scores = snapshot.items.vectors @ snapshot.users.vectors[u]
        assert [s.item_id for s in result] == [f"i{r}" for r in brute_force(scores, 10)]
        np.testing.assert_allclose([s.score for s in result], np.sort(scores)[::-1][:10], rtol=1e-6)


def test_excluded_items_never_come_back() -> None:
    rng = np.random.default_rng(1)
    snapshot = EmbeddingIndex().apply(users(rng.standard_normal((1, 8))), items(rng.standard_normal((50, 8))),
                                      version=1, written_ms=0)
    query = snapshot.users.vectors[0]
    unmasked = [s.item_id for s in snapshot.search_items(query, 10)[0]]
    seen = snapshot.items.rows_of([NodeId(i) for i in unmasked[:3]] + [NodeId("not-indexed")])
    masked = [s.item_id for s in snapshot.search_items(query, 10, [seen])[0]]
    assert len(seen) == 3
    assert set(masked).isdisjoint(unmasked[:3])
    assert masked[:7] == unmasked[3:]


def test_fewer_than_k_when_exclusion_leaves_fewer() -> None:
    snapshot = EmbeddingIndex().apply(users(np.ones((1, 4))), items(np.eye(4)), version=1, written_ms=0)
    result = snapshot.search_items(snapshot.users.vectors[0], 10, [np.array([0, 2])])[0]
    assert sorted(s.item_id for s in result) == ["i1", "i3"]


def test_upsert_replaces_and_appends_without_touching_the_old_table() -> None:
    old = EmbeddingTable().upsert(items(np.zeros((3, 2))), refreshed_ms=100)
    delta = EmbeddingRows(NodeKind.ITEM, [NodeId("i1"), NodeId("new")], np.ones((2, 2), np.float32))
    new = old.upsert(delta, refreshed_ms=200)
    assert new.ids == ("i0", "i1", "i2", "new")
    np.testing.assert_array_equal(new.vectors[[1, 3]], np.ones((2, 2)))
    np.testing.assert_array_equal(new.refreshed_ms, [100, 200, 100, 200])
    np.testing.assert_array_equal(old.vectors, np.zeros((3, 2)))
    assert old.ids == ("i0", "i1", "i2") and "new" not in old.rows
    with pytest.raises(ValueError, match="read-only"):
        new.vectors[0, 0] = 5.0


def test_width_change_is_rejected_and_changes_nothing() -> None:
    index = EmbeddingIndex()
    index.apply(users(np.ones((2, 4))), items(np.ones((3, 4))), version=1, written_ms=0)
    with pytest.raises(EmbeddingDimensionError, match="width 8"):
        index.apply(users(np.ones((1, 8))), items(np.ones((0, 8))), version=2, written_ms=0)
    assert index.version == 1 and index.snapshot().users.dim == 4
    index.apply(users(np.ones((1, 8))), items(np.ones((3, 8))), version=2, written_ms=0, replace=True)
    assert index.snapshot().users.dim == 8 and len(index.snapshot().users) == 1


def test_ready_listeners_hear_each_change_once() -> None:
    index = EmbeddingIndex()
    heard: list[bool] = []
    index.subscribe(heard.append)
    index.apply(users(np.ones((1, 2))), items(np.ones((0, 2))), version=1, written_ms=0)
    index.apply(users(np.ones((1, 2))), items(np.ones((2, 2))), version=2, written_ms=0)
    index.apply(users(np.ones((1, 2))), items(np.ones((2, 2))), version=3, written_ms=0)
    late: list[bool] = []
    index.subscribe(late.append)
    assert heard == [False, True]
    assert late == [True]


def test_readers_never_see_a_half_applied_update() -> None:
    # Version v writes every user and item vector as all-v, so a consistent snapshot has
    # users == items == version everywhere and every score equals dim * v * v.
    index, dim, versions = EmbeddingIndex(), 8, 300
    index.apply(users(np.ones((40, dim))), items(np.ones((500, dim))), version=1, written_ms=1)
    done = threading.Event()
    problems: list[str] = []
    reads = [0]

    def read() -> None:
        while not done.is_set():
            snap = index.snapshot()
            v = snap.version
            if not (np.all(snap.users.vectors == v) and np.all(snap.items.vectors == v)):
                problems.append(f"mixed vectors in version {v}")
            best = snap.search_items(snap.users.vectors[:3], 5)
            if any(s.score != dim * v * v for result in best for s in result):
                problems.append(f"score from another version than {v}")
            reads[0] += 1

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for v in range(2, versions + 1):
        index.apply(users(np.full((40, dim), v)), items(np.full((500, dim), v)), version=v, written_ms=v)
    done.set()
    for thread in readers:
        thread.join()
    assert problems == []
    assert reads[0] > 0
    assert index.version == versions
