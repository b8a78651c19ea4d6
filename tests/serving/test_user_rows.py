"""UserRowCache over a real LadybugDB store: commits reach cached rows as deltas, and an entry is
only ever kept while it equals the committed row."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.domain import EdgeDecay, EdgeDelta, NodeId, OffsetRange, TopicPartition, UpsertBatch, UserRow
from graph_store.ladybug import LadybugStore
from serving.index import IndexUpdate
from serving.user_rows import RECENT_COMMITS, SMALL_ROW, UserRowCache

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
    kept = cache.get(NodeId("u"))
    # Once commits are heard they keep rows exact; an index update naming u says nothing new.
    cache.invalidate(IndexUpdate(frozenset({NodeId("u")}), frozenset(), replaced=True))
    assert cache.get(NodeId("u")) is kept


class _ReadRacedByCommits:
    """The real store, but each row read returns only after ``during`` has committed more batches
    (and told the cache), as commits land during reads under a steady ingest load."""

    def __init__(self, store: LadybugStore) -> None:
        self.store = store
        self.during: Callable[[], None] = lambda: None

    def user_row(self, user_id: NodeId) -> UserRow:
        row = self.store.user_row(user_id)
        self.during()
        return row


def test_a_read_that_raced_commits_is_brought_up_to_the_last_one_and_kept(ladybug_store: LadybugStore) -> None:
    racing = _ReadRacedByCommits(ladybug_store)
    cache = UserRowCache(racing)  # type: ignore[arg-type]  # the real store behind a read hook
    cache.committed(*_commit(ladybug_store, ("u", "a", 1.0)))

    def two_commits() -> None:
        cache.committed(*_commit(ladybug_store, ("u", "a", 0.5), ("v", "a", 1.0)))
        cache.committed(*_commit(ladybug_store, ("u", "b", 2.0)))

    racing.during = two_commits
    got = cache.get(NodeId("u"))
    racing.during = lambda: None
    stored = ladybug_store.user_row(NodeId("u"))
    assert got.items == stored.items == ("a", "b") and got.seq == stored.seq
    np.testing.assert_allclose(got.weights, [1.5, 2.0])
    _assert_is_committed(cache, ladybug_store, "u")
    assert cache.misses == 1  # kept: the second get was a hit


def test_a_read_older_than_the_kept_commits_is_answered_but_not_kept(ladybug_store: LadybugStore) -> None:
    racing = _ReadRacedByCommits(ladybug_store)
    cache = UserRowCache(racing)  # type: ignore[arg-type]  # the real store behind a read hook
    cache.committed(*_commit(ladybug_store, ("u", "a", 1.0)))

    def many_commits() -> None:
        for _ in range(RECENT_COMMITS + 1):
            cache.committed(*_commit(ladybug_store, ("w", "a", 1.0)))

    racing.during = many_commits
    got = cache.get(NodeId("u"))
    racing.during = lambda: None
    assert got.items == ("a",)
    cache.get(NodeId("u"))
    assert cache.misses == 2


def test_a_complete_cache_answers_every_user_from_memory(ladybug_store: LadybugStore) -> None:
    _commit(ladybug_store, ("u", "b", 1.0), ("u", "a", 2.0), ("v", "a", 0.5))
    _commit(ladybug_store, ("u", "a", 1.0), ("w", "c", 1.0))
    cache = UserRowCache(ladybug_store)
    assert cache.hold_all(ladybug_store.snapshot()) and cache.complete
    for user in ("u", "v", "w"):
        _assert_is_committed(cache, ladybug_store, user)
    assert cache.get(NodeId("nobody")).items == ()
    cache.committed(*_commit(ladybug_store, ("new", "a", 1.0), ("u", "c", 1.0)))
    for user in ("new", "u"):
        _assert_is_committed(cache, ladybug_store, user)
    untouched, stored = cache.get(NodeId("v")), ladybug_store.user_row(NodeId("v"))
    assert untouched.items == stored.items and untouched.seq < stored.seq  # exact, and no commit since
    assert cache.misses == 0  # not one row was read from the store


def test_an_empty_graph_is_held_and_its_first_users_come_from_commits(ladybug_store: LadybugStore) -> None:
    cache = UserRowCache(ladybug_store)
    assert cache.hold_all(ladybug_store.snapshot()) and cache.get(NodeId("u")).items == ()
    cache.committed(*_commit(ladybug_store, ("u", "a", 1.0)))
    _assert_is_committed(cache, ladybug_store, "u")
    assert cache.misses == 0


def test_a_complete_cache_that_misses_a_commit_reads_again(ladybug_store: LadybugStore) -> None:
    _commit(ladybug_store, ("u", "a", 1.0))
    cache = UserRowCache(ladybug_store)
    cache.hold_all(ladybug_store.snapshot())
    _commit(ladybug_store, ("late", "a", 1.0))  # not heard of
    cache.committed(*_commit(ladybug_store, ("u", "b", 1.0)))
    assert not cache.complete
    _assert_is_committed(cache, ladybug_store, "late")
    _assert_is_committed(cache, ladybug_store, "u")


def test_a_graph_with_more_users_than_max_users_is_not_held(ladybug_store: LadybugStore) -> None:
    _commit(ladybug_store, ("u", "a", 1.0), ("v", "a", 1.0))
    cache = UserRowCache(ladybug_store, max_users=1)
    assert not cache.hold_all(ladybug_store.snapshot()) and not cache.complete
    _assert_is_committed(cache, ladybug_store, "v")
    assert cache.misses == 1


def test_long_rows_are_merged_into_and_stay_the_committed_row(ladybug_store: LadybugStore) -> None:
    """Rows past SMALL_ROW take the bisecting merge: existing items accumulate in place, new ones join in
    id order (before, between and after the old ones), several commits' deltas in commit order."""
    rng = np.random.default_rng(5)
    cache = UserRowCache(ladybug_store)
    assert cache.hold_all(ladybug_store.snapshot())
    long_row = [("heavy", f"i{k:04d}", float(rng.uniform(0.1, 3.0))) for k in range(10, 400, 3)]
    cache.committed(*_commit(ladybug_store, *long_row))
    assert len(cache.get(NodeId("heavy")).items) > SMALL_ROW
    for _ in range(5):
        known = [f"i{k:04d}" for k in rng.choice(np.arange(10, 400, 3), 20, replace=False)]
        joining = [f"i{k:04d}" for k in rng.integers(0, 420, 10)] + ["a-first", "z-last", "i0100x"]
        edges = [("heavy", item, float(rng.uniform(0.1, 3.0))) for item in dict.fromkeys(known + joining)]
        cache.committed(*_commit(ladybug_store, *edges, ("light", "i0001", 1.0)))
    _assert_is_committed(cache, ladybug_store, "heavy")
    _assert_is_committed(cache, ladybug_store, "light")
    row = cache.get(NodeId("heavy"))
    assert list(row.items) == sorted(row.items)


def test_rows_read_from_a_store_that_collates_otherwise_are_put_in_id_order(ladybug_store: LadybugStore) -> None:
    """The merge bisects, so a row read from a store whose ORDER BY collates differently (Neo4j's
    string order is not Python's for every id) is put in id order first."""
    class OtherCollation:
        """The real store, its rows handed back in reverse order."""

        def user_row(self, user_id: NodeId) -> UserRow:
            row = ladybug_store.user_row(user_id)
            return UserRow(row.items[::-1], row.weights[::-1].copy(), row.seq)

    _commit(ladybug_store, *[("u", f"i{k:03d}", float(k + 1)) for k in range(SMALL_ROW + 5)])
    cache = UserRowCache(OtherCollation())  # type: ignore[arg-type]  # only user_row is read
    got = cache.get(NodeId("u"))
    assert list(got.items) == sorted(got.items)
    assert got.weights.tolist() == [float(k + 1) for k in range(SMALL_ROW + 5)]


def test_forgotten_users_leave_the_cache_and_a_complete_one_stays_complete(ladybug_store: LadybugStore) -> None:
    _commit(ladybug_store, ("gone", "a", 1.0), ("kept", "a", 1.0))
    cache = UserRowCache(ladybug_store)
    assert cache.hold_all(ladybug_store.snapshot())
    cache.committed(*_commit(ladybug_store, ("gone", "b", 1.0)))
    cache.forget([NodeId("gone")])
    assert NodeId("gone") not in cache.held() and cache.complete
    assert cache.get(NodeId("gone")).items == () and cache.get(NodeId("kept")).items == ("a",)


def _commit_at(store: LadybugStore, ref_ms: int, *edges: tuple[str, str, float]) -> tuple[int, list[EdgeDelta]]:
    deltas = [EdgeDelta(NodeId(u), NodeId(i), weight=w, count=1, last_ts_ms=ref_ms) for u, i, w in edges]
    first = next(_offset)
    batch = UpsertBatch(deltas, {TopicPartition("events", 0): OffsetRange(first, first + 9)},
                        decay=EdgeDecay(HOUR_MS, ref_ms))
    return store.apply_batch(batch), deltas


HOUR_MS = 3_600_000.0
T0 = 1_700_000_000_000


def test_a_decay_rebase_rescales_held_rows_and_a_read_from_before_it_is_not_kept(
        ladybug_store: LadybugStore) -> None:
    ladybug_store.edge_decay(HOUR_MS)
    racing = _ReadRacedByCommits(ladybug_store)
    cache = UserRowCache(racing)  # type: ignore[arg-type]  # the real store behind a read hook
    cache.committed(*_commit_at(ladybug_store, T0, ("u", "a", 4.0), ("u", "b", 2.0), ("v", "a", 8.0)))
    _assert_is_committed(cache, ladybug_store, "u")
    seq, deltas = _commit_at(ladybug_store, T0 + 2 * 3_600_000, ("u", "c", 1.0))  # weights so far: x 1/4
    cache.committed(seq, deltas, rescaled=0.25)
    _assert_is_committed(cache, ladybug_store, "u")
    np.testing.assert_allclose(cache.get(NodeId("u")).weights, [1.0, 0.5, 1.0])
    assert cache.misses == 1

    def rebase() -> None:
        cache.committed(*_commit_at(ladybug_store, T0 + 3 * 3_600_000, ("w", "a", 1.0)), rescaled=0.5)

    racing.during = rebase
    got = cache.get(NodeId("v"))  # read in the old units, then the rebase lands
    racing.during = lambda: None
    np.testing.assert_allclose(got.weights, [2.0])
    _assert_is_committed(cache, ladybug_store, "v")  # read again: the raced read was not kept
    assert cache.misses == 3
    np.testing.assert_allclose(cache.get(NodeId("v")).weights, [1.0])
