"""Erasure in the store: a forgotten user leaves no node, edge, tally, embedding or change row, their
items are stamped for refresh, the deny-list holds digests only, and a late update cannot revive them."""

from __future__ import annotations

import numpy as np
import pytest

from core.domain import EmbeddingRows, EmbeddingUpdate, Erasure, NodeId, NodeKind, OffsetRange, UpsertBatch
from core.privacy import ForgetKey
from graph_store.cypher_store import CypherGraphStore
from tests.fixtures.store import IdFactory, full_scan
from tests.graph_store.builders import OffsetClock, batch, delta

KEY = ForgetKey(b"erasure-test-key-0123456789")
def vectors(users: list[NodeId], items: list[NodeId]) -> list[EmbeddingRows]:
    return [EmbeddingRows(NodeKind.USER, users, np.ones((len(users), 4), np.float32)),
            EmbeddingRows(NodeKind.ITEM, items, np.ones((len(items), 4), np.float32))]


def erase(store: CypherGraphStore, clock: OffsetClock, group: str, *users: NodeId, expires_ms: int = 2**50) -> int:
    erasures = [Erasure(u, KEY.digest(u), expires_ms) for u in users]
    return store.apply_batch(UpsertBatch([], clock.take(1), group=group, erasures=erasures))


@pytest.fixture
def group(store_prefix: str) -> str:
    return store_prefix + "group"


def test_forgotten_user_leaves_nothing_behind(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    gone, kept, i, j = store_ids("gone-user"), store_ids("kept-user"), store_ids("i"), store_ids("j")
    clock = OffsetClock()
    store.apply_batch(batch([delta(gone, i, 2.0, click=1), delta(gone, j, 1.0, view=1), delta(kept, i)], clock, group))
    store.write_embeddings(EmbeddingUpdate(version=1, cursor=store.counts()["seq"],
                                           rows=vectors([gone, kept], [i])))
    assert gone in full_scan(store)

    seq = erase(store, clock, group, gone)

    assert gone not in full_scan(store)
    assert store.edges_of_user(gone) == [] and store.edge(gone, i) is None
    assert len(store.user_row(gone).items) == 0
    assert gone not in store.read_embeddings(NodeKind.USER).ids
    assert kept in store.read_embeddings(NodeKind.USER).ids and store.edge(kept, i) is not None
    changed = store.changes_since(seq - 1)
    assert {ref.id for ref in changed.nodes if ref.kind is NodeKind.ITEM} == {i, j}
    assert all(ref.id != gone for ref in store.changes_since(0).nodes)
    assert gone not in store.snapshot().user_ids
    forgotten = store.forgotten_users()
    assert [(f.digest, f.seq) for f in forgotten if f.digest == KEY.digest(gone)] == [(KEY.digest(gone), seq)]


def test_erasure_is_ordered_with_offsets(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    """The erasure is part of the offset-tracked batch: replaying its offsets is refused whole."""
    u, i = store_ids("u"), store_ids("i")
    clock = OffsetClock()
    store.apply_batch(batch([delta(u, i)], clock, group))
    first = clock.next
    erase(store, clock, group, u)
    replay = UpsertBatch([delta(u, i)], {clock.tp: OffsetRange(first, first)}, group=group)
    with pytest.raises(Exception, match="already applied"):
        store.apply_batch(replay)
    assert store.edge(u, i) is None


def test_update_computed_before_an_erasure_cannot_revive_the_user(store: CypherGraphStore, store_ids: IdFactory,
                                                                 group: str) -> None:
    u, other, i = store_ids("u"), store_ids("other"), store_ids("i")
    clock = OffsetClock()
    store.apply_batch(batch([delta(u, i), delta(other, i)], clock, group))
    cursor = store.counts()["seq"]  # the refresh reads its changes here ...
    erase(store, clock, group, u)  # ... the erasure commits ...
    # ... then the refresh writes what it computed before
    store.write_embeddings(EmbeddingUpdate(version=1, cursor=cursor, rows=vectors([u, other], [i])))
    assert u not in full_scan(store)
    assert other in store.read_embeddings(NodeKind.USER).ids


def test_expired_entries_are_purged(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    old, new = store_ids("old"), store_ids("new")
    clock = OffsetClock()
    erase(store, clock, group, old, expires_ms=1_000)
    erase(store, clock, group, new)  # the next erasure drops entries past their expiry
    digests = {f.digest for f in store.forgotten_users()}
    assert KEY.digest(new) in digests and KEY.digest(old) not in digests


def test_deny_list_holds_digests_not_ids(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    u = store_ids("never-seen-user")
    erase(store, OffsetClock(), group, u)  # a user the store never had: only the deny entry
    assert u not in full_scan(store) and KEY.digest(u) in full_scan(store)
