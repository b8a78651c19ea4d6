"""changes_since: sequence order, limits that never skip a node, counts and snapshots."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.domain import ChangeSet, ItemMeta, NodeId, NodeKind, NodeRef
from graph_store.cypher_store import CypherGraphStore
from tests.fixtures.store import IdFactory
from tests.graph_store.builders import OffsetClock, batch, delta


def _mine(changes: ChangeSet, prefix: str) -> list[NodeRef]:
    """This test's nodes (a shared Neo4j database may hold other tests' nodes too)."""
    return [ref for ref in changes.nodes if ref.id.startswith(prefix)]


def _walk(store: CypherGraphStore, cursor: int, limit: int | None) -> list[ChangeSet]:
    pages: list[ChangeSet] = []
    while True:
        page = store.changes_since(cursor, limit=limit)
        assert page.since == cursor and page.upto >= cursor
        if page.upto == cursor:
            return pages
        pages.append(page)
        cursor = page.upto


def test_changes_since_reports_latest_change_per_node(
    store: CypherGraphStore, store_ids: IdFactory, store_prefix: str
) -> None:
    clock, group = OffsetClock(), store_prefix + "g"
    start = store.counts()["seq"]
    s1 = store.apply_batch(batch([delta(store_ids("u1"), store_ids("i1"))], clock, group))
    s2 = store.apply_batch(batch([delta(store_ids("u2"), store_ids("i1"))], clock, group))

    everything = store.changes_since(start)
    assert everything.upto == s2
    # i1 changed in both batches and is reported once, at its latest sequence (after u1).
    assert _mine(everything, store_prefix) == [
        NodeRef(NodeKind.USER, store_ids("u1")),
        NodeRef(NodeKind.ITEM, store_ids("i1")),
        NodeRef(NodeKind.USER, store_ids("u2")),
    ]
    after_first = store.changes_since(s1)
    assert set(_mine(after_first, store_prefix)) == {
        NodeRef(NodeKind.ITEM, store_ids("i1")),
        NodeRef(NodeKind.USER, store_ids("u2")),
    }
    assert not store.changes_since(s2)
    assert store.changes_since(s2).upto == s2


@pytest.mark.parametrize("limit", [1, 2, 3, 7, None])
def test_limited_pages_never_skip_a_change(
    store: CypherGraphStore, store_ids: IdFactory, store_prefix: str, limit: int | None
) -> None:
    rng = random.Random(limit or 0)
    clock, group = OffsetClock(), store_prefix + "g"
    start = store.counts()["seq"]
    latest: dict[NodeRef, int] = {}
    for _ in range(12):
        pairs = {(f"u{rng.randrange(8)}", f"i{rng.randrange(8)}") for _ in range(rng.randrange(1, 6))}
        seq = store.apply_batch(batch([delta(store_ids(u), store_ids(i)) for u, i in pairs], clock, group))
        for u, i in pairs:
            latest[NodeRef(NodeKind.USER, store_ids(u))] = seq
            latest[NodeRef(NodeKind.ITEM, store_ids(i))] = seq

    pages = _walk(store, start, limit)
    seen = [ref for page in pages for ref in _mine(page, store_prefix)]
    assert set(seen) == set(latest)
    assert len(seen) == len(set(seen))  # no writes in between: each node once
    # Pages are in sequence order and each page holds exactly the nodes of its sequence range.
    assert [latest[ref] for ref in seen] == sorted(latest[ref] for ref in seen)
    for page in pages:
        expected = {ref for ref, seq in latest.items() if page.since < seq <= page.upto}
        assert set(_mine(page, store_prefix)) == expected
        if limit is not None and len(page.nodes) > limit:
            # Only a batch larger than the limit may exceed it, and then it comes alone and whole.
            assert {latest[ref] for ref in _mine(page, store_prefix)} == {page.upto}


def test_batch_larger_than_limit_comes_whole(store: CypherGraphStore, store_ids: IdFactory, store_prefix: str) -> None:
    clock, group = OffsetClock(), store_prefix + "g"
    start = store.counts()["seq"]
    seq = store.apply_batch(batch([delta(store_ids(f"u{k}"), store_ids("i")) for k in range(6)], clock, group))
    page = store.changes_since(start, limit=2)
    assert page.upto == seq
    assert len(_mine(page, store_prefix)) == 7


def test_changes_since_rejects_bad_limit(store: CypherGraphStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.changes_since(0, limit=0)


def test_counts_and_snapshot(ladybug_store: CypherGraphStore) -> None:
    store = ladybug_store
    assert store.counts() == {"users": 0, "items": 0, "edges": 0, "seq": 0}
    empty = store.snapshot()
    assert empty.user_ids == [] and empty.weight.shape == (0,)

    rng = random.Random(3)
    truth: dict[tuple[str, str], float] = {}
    clock = OffsetClock()
    for _ in range(5):
        pairs = {(f"u{rng.randrange(20)}", f"i{rng.randrange(15)}") for _ in range(30)}
        edges = [delta(u, i, float(rng.randrange(1, 9))) for u, i in pairs]
        seq = store.apply_batch(batch(edges, clock, "g"))
        for e in edges:
            truth[(e.user_id, e.item_id)] = truth.get((e.user_id, e.item_id), 0.0) + e.weight
    catalog_only = ItemMeta(NodeId("catalog-only"), "Catalog only")
    store.upsert_items([catalog_only])

    snap = store.snapshot()
    assert snap.seq == seq
    assert snap.user_index.dtype == np.int64 and snap.item_index.dtype == np.int64
    assert snap.weight.dtype == np.float32
    got = {
        (snap.user_ids[u], snap.item_ids[i]): float(w)
        for u, i, w in zip(snap.user_index, snap.item_index, snap.weight, strict=True)
    }
    assert got == truth
    # Only nodes with edges are listed, each once; the catalog-only item is not.
    assert len(set(snap.item_ids)) == len(snap.item_ids) == len({i for _, i in truth})
    assert catalog_only.item_id not in snap.item_ids
    assert store.counts() == {
        "users": len({u for u, _ in truth}),
        "items": len({i for _, i in truth}) + 1,
        "edges": len(truth),
        "seq": seq,
    }
