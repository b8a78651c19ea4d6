"""write_embeddings/read_embeddings: versions, base rows, refresh state, bad vectors."""

from __future__ import annotations

import numpy as np
import pytest

from core.domain import EmbeddingRows, EmbeddingUpdate, NodeId, NodeKind, RefreshState
from graph_store.cypher_store import CypherGraphStore
from tests.fixtures.store import IdFactory
from tests.graph_store.builders import OffsetClock, batch, delta


def _rows(kind: NodeKind, ids: list[NodeId], seed: int, dim: int = 8) -> EmbeddingRows:
    return EmbeddingRows(kind, ids, np.random.default_rng(seed).normal(size=(len(ids), dim)).astype(np.float32))


def _by_id(rows: EmbeddingRows, prefix: str) -> dict[str, np.ndarray]:
    return {i: v for i, v in zip(rows.ids, rows.vectors, strict=True) if i.startswith(prefix)}


def test_round_trip_with_versions(store: CypherGraphStore, store_ids: IdFactory, store_prefix: str) -> None:
    users = [store_ids(f"u{k}") for k in range(5)]
    items = [store_ids(f"i{k}") for k in range(3)]
    store.apply_batch(batch([delta(u, items[0]) for u in users], OffsetClock(), store_prefix + "g"))
    v1_users, v1_items = _rows(NodeKind.USER, users, 1), _rows(NodeKind.ITEM, items, 2)
    store.write_embeddings(EmbeddingUpdate(version=1, cursor=4, rows=[v1_users, v1_items]))

    got = store.read_embeddings(NodeKind.USER)
    assert got.kind == NodeKind.USER and got.vectors.dtype == np.float32
    mine = _by_id(got, store_prefix)
    assert set(mine) == set(users)
    for k, u in enumerate(users):
        np.testing.assert_array_equal(mine[u], v1_users.vectors[k])  # float32 survives exactly
    assert set(_by_id(store.read_embeddings(NodeKind.ITEM), store_prefix)) == set(items)
    state = store.refresh_state()
    assert (state.version, state.cursor) == (1, 4)

    # Version 2 refreshes two users: only they are newer than version 1.
    v2 = _rows(NodeKind.USER, users[:2], 3)
    store.write_embeddings(EmbeddingUpdate(version=2, cursor=9, rows=[v2]))
    newer = _by_id(store.read_embeddings(NodeKind.USER, since_version=1), store_prefix)
    assert set(newer) == set(users[:2])
    np.testing.assert_array_equal(newer[users[0]], v2.vectors[0])
    assert _by_id(store.read_embeddings(NodeKind.USER, since_version=2), store_prefix) == {}
    state = store.refresh_state()
    assert (state.version, state.cursor) == (2, 9) and state.written_ms > 0


def test_rewriting_is_idempotent_and_old_updates_do_not_roll_back(
    store: CypherGraphStore, store_ids: IdFactory, store_prefix: str
) -> None:
    u = [store_ids("a"), store_ids("b")]
    new = EmbeddingUpdate(version=5, cursor=50, rows=[_rows(NodeKind.USER, u, 5)])
    store.write_embeddings(new)
    store.write_embeddings(new)
    store.write_embeddings(EmbeddingUpdate(version=3, cursor=30, rows=[_rows(NodeKind.USER, u, 3)]))

    got = _by_id(store.read_embeddings(NodeKind.USER), store_prefix)
    np.testing.assert_array_equal(got[u[1]], new.rows[0].vectors[1])
    state = store.refresh_state()
    assert (state.version, state.cursor) == (5, 50)


def test_base_embeddings(store: CypherGraphStore, store_ids: IdFactory, store_prefix: str) -> None:
    cold = [store_ids("cold1"), store_ids("cold2")]
    base = _rows(NodeKind.ITEM, cold, 7, dim=4)
    store.write_embeddings(
        EmbeddingUpdate(version=1, cursor=0, rows=[_rows(NodeKind.ITEM, cold, 8, dim=4)], base=[base])
    )
    got = _by_id(store.read_base_embeddings(NodeKind.ITEM), store_prefix)
    np.testing.assert_array_equal(got[cold[1]], base.vectors[1])
    assert _by_id(store.read_base_embeddings(NodeKind.USER), store_prefix) == {}


def test_empty_store_reads(ladybug_store: CypherGraphStore) -> None:
    rows = ladybug_store.read_embeddings(NodeKind.ITEM)
    assert rows.ids == [] and rows.vectors.shape == (0, 0)
    assert ladybug_store.refresh_state() == RefreshState(version=0, cursor=0, written_ms=0)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.ones((2, 3)), "shape"),
        (np.ones(3), "shape"),
    ],
)
def test_bad_vectors_are_refused_and_change_nothing(
    store: CypherGraphStore, store_ids: IdFactory, store_prefix: str, vectors: np.ndarray, message: str
) -> None:
    bad = EmbeddingRows(NodeKind.USER, [store_ids("x")], vectors)
    with pytest.raises(ValueError, match=message):
        store.write_embeddings(EmbeddingUpdate(version=1, cursor=1, rows=[bad]))
    assert _by_id(store.read_embeddings(NodeKind.USER), store_prefix) == {}
    state = store.refresh_state()
    assert (state.version, state.cursor) == (0, 0)
