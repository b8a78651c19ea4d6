"""UserRowCache over a real LadybugDB store: commits reach cached rows as deltas, and an entry is
only ever kept while it equals the committed row."""

from __future__ import annotations

import numpy as np
import pytest

from core.domain import EdgeDelta, NodeId, OffsetRange, TopicPartition, UpsertBatch
from graph_store.ladybug import LadybugStore
from serving.index import IndexUpdate
from serving.user_rows import UserRowCache

pytestmark = pytest.mark.integration

_offset = iter(range(0, 10_000, 10))


def _commit(store: LadybugStore, *edges: tuple[str, str, float]) -> tuple[int, list[EdgeDelta]]:
    deltas = [EdgeDelta(NodeId(u), NodeId(i), weight=w, count=1, last_ts_ms=1) for u, i, w in edges]
    first = next(_offset)
    return store.apply_batch(UpsertBatch(deltas, {TopicPartition("events", 0): OffsetRange(first, first + 9)})), deltas


def _assert_is_committed(cache: UserRowCache, store: LadybugStore, user: str) -> None:
    cached, stored = cache.get(NodeId(user)), store.user_row(NodeId(user))
    assert cached.items == stored.items and cached.seq == stored.seq
    np.testing.assert_allclose(cached.weights, stored.weights)


def test_commits_in_sequence_update_cached_rows_without_a_read(ladybug_store: LadybugStore) -> None:
    cache = UserRowCache(ladybug_store)
    cache.committed(*_commit(ladybug_store, ("u", "a", 1.0), ("v", "a", 2.0)))
    assert cache.get(NodeId("u")).items == ("a",) and cache.misses == 1
    cache.committed(*_commit(ladybug_store, ("u", "a", 0.5), ("u", "b", 3.0), ("v", "c", 1.0)))
    _assert_is_committed(cache, ladybug_store, "u")
    assert cache.misses == 1  # u came from its deltas; v was never cached, so nothing was kept for it
    assert cache.get(NodeId("nobody")).items == ()


def test_a_missed_commit_or_a_read_at_another_sequence_is_never_kept(ladybug_store: LadybugStore) -> None:
    cache = UserRowCache(ladybug_store)
    cache.committed(*_commit(ladybug_store, ("u", "a", 1.0)))
    cache.get(NodeId("u"))
    _commit(ladybug_store, ("u", "b", 1.0))  # committed, but the cache does not hear of it
    seq, deltas = _commit(ladybug_store, ("u", "c", 1.0))
    cache.committed(seq, deltas)  # a gap: everything cached is dropped
    _assert_is_committed(cache, ladybug_store, "u")
    misses = cache.misses
    _commit(ladybug_store, ("w", "a", 1.0))  # not heard of yet: a read now is past the cache's sequence
    cache.get(NodeId("w"))
    cache.get(NodeId("w"))
    assert cache.misses == misses + 2  # so it was not kept
    cache.invalidate(IndexUpdate(frozenset({NodeId("u")}), frozenset(), replaced=False))
    _assert_is_committed(cache, ladybug_store, "u")
