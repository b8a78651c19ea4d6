"""Exact search (the path below IG_ANN_MIN_ITEMS and before the first HNSW graph): brute force, exclusion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.domain import EmbeddingRows, NodeId, NodeKind
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.search import EXACT, Found, ItemQuery, search

#: No item rows excluded.
NOTHING = np.zeros(0, np.int64)


def rows(kind: NodeKind, prefix: str, vectors: np.ndarray) -> EmbeddingRows:
    ids = [NodeId(f"{prefix}{i}") for i in range(len(vectors))]
    return EmbeddingRows(kind, ids, vectors.astype(np.float32))


def snapshot_of(user_vectors: np.ndarray, item_vectors: np.ndarray) -> IndexSnapshot:
    """The snapshot an index serves after loading these embeddings (users ``u<n>``, items ``i<n>``)."""
    return EmbeddingIndex().apply(rows(NodeKind.USER, "u", user_vectors), rows(NodeKind.ITEM, "i", item_vectors),
                                  version=1, written_ms=0)


def scoring(n: int) -> IndexSnapshot:
    """``n`` one-hot items: item ``c`` scores ``query[c]``, so a query vector *is* a row of scores."""
    return snapshot_of(np.zeros((0, n)), np.eye(n))


def item_ids(snapshot: IndexSnapshot, found: Found) -> list[str]:
    return [snapshot.items.ids[r] for r in found.rows.tolist()]


def brute_force(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]


@pytest.mark.parametrize("k", [1, 5, 99, 100, 250])
def test_exact_search_equals_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.standard_normal((7, 100)).astype(np.float32)
    snapshot = scoring(100)
    for b in range(7):
        found = search(snapshot, ItemQuery(scores[b], k, NOTHING))
        assert found.rows.shape == found.scores.shape == (min(k, 100),)
        np.testing.assert_array_equal(found.rows, brute_force(scores[b], k))
        np.testing.assert_array_equal(found.scores, scores[b, brute_force(scores[b], k)])


@settings(max_examples=60, deadline=None)
@given(
    scores=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 40)),
                      elements=st.floats(-8, 8, width=32)),
    k=st.integers(1, 50),
)
def test_exact_scores_match_sorted_scores(scores: np.ndarray, k: int) -> None:
    # Ties may pick different rows than a sort, but never different scores.
    snapshot = scoring(scores.shape[1])
    for row in scores:
        found = search(snapshot, ItemQuery(row, k, NOTHING))
        np.testing.assert_array_equal(found.scores, -np.sort(-row)[:k])
        np.testing.assert_array_equal(row[found.rows], found.scores)
        assert len(set(found.rows.tolist())) == found.rows.size


def test_exact_search_is_exact_for_every_user() -> None:
    rng = np.random.default_rng(0)
    snapshot = snapshot_of(rng.standard_normal((5, 16)), rng.standard_normal((300, 16)))
    for u in range(5):
        found = search(snapshot, ItemQuery(snapshot.users.vectors[u], 10, NOTHING))
        scores = snapshot.items.vectors @ snapshot.users.vectors[u]
        assert item_ids(snapshot, found) == [f"i{r}" for r in brute_force(scores, 10)]
        np.testing.assert_allclose(found.scores, np.sort(scores)[::-1][:10], rtol=1e-6)
        assert found.index_kind == EXACT


def test_excluded_items_never_come_back() -> None:
    rng = np.random.default_rng(1)
    snapshot = snapshot_of(rng.standard_normal((1, 8)), rng.standard_normal((50, 8)))
    query = snapshot.users.vectors[0]
    unmasked = item_ids(snapshot, search(snapshot, ItemQuery(query, 10, NOTHING)))
    # Seen items are excluded by row, as the servicer does; an unindexed seen item has none.
    seen = snapshot.items.rows_of([NodeId(i) for i in unmasked[:3]] + [NodeId("not-indexed")])
    masked = item_ids(snapshot, search(snapshot, ItemQuery(query, 10, seen)))
    assert len(seen) == 3
    assert set(masked).isdisjoint(unmasked[:3])
    assert masked[:7] == unmasked[3:]


def test_fewer_than_k_when_exclusion_leaves_fewer() -> None:
    snapshot = snapshot_of(np.ones((1, 4)), np.eye(4))
    found = search(snapshot, ItemQuery(snapshot.users.vectors[0], 10, np.array([0, 2], np.int64)))
    assert sorted(item_ids(snapshot, found)) == ["i1", "i3"]
