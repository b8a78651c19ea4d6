"""apply_batch: deltas add up, offsets guard against replays, bad input changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from core.domain import (
    EdgeDelta,
    EventType,
    ItemMeta,
    OffsetRange,
    TopicPartition,
    UpsertBatch,
)
from graph_store import StaleBatchError
from graph_store.cypher_store import CypherGraphStore
from tests.fixtures.store import IdFactory
from tests.graph_store.builders import OffsetClock, batch, delta


@pytest.fixture
def group(store_prefix: str) -> str:
    return store_prefix + "group"


def test_deltas_accumulate_across_batches(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    u, i, j = store_ids("u"), store_ids("i"), store_ids("j")
    clock = OffsetClock()
    seq1 = store.apply_batch(batch([delta(u, i, 1.0, 1, 500, click=1), delta(u, j, 0.5, 1, 10, view=1)], clock, group))
    seq2 = store.apply_batch(batch([delta(u, i, 4.0, 3, 300, purchase=1, view=2)], clock, group))
    seq3 = store.apply_batch(batch([delta(u, i, 2.0, 1, 900, add_to_cart=1)], clock, group))
    assert seq1 < seq2 < seq3

    edge = store.edge(u, i)
    assert edge is not None
    assert edge.weight == pytest.approx(7.0)
    assert edge.count == 5
    assert edge.last_ts_ms == 900  # the max, not the latest write
    assert dict(edge.type_counts) == {
        "view": 2,
        "click": 1,
        "add_to_cart": 1,
        "purchase": 1,
        "like": 0,
        "rating": 0,
    }
    other = store.edge(u, j)
    assert other is not None and other.weight == pytest.approx(0.5) and other.type_counts["view"] == 1
    assert store.edge(u, store_ids("nope")) is None


def test_large_integers_survive_next_to_small_ones(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    """Epoch-millisecond stamps and big counters next to tiny ones: no integer narrowing."""
    u, i = store_ids("u"), store_ids("i")
    clock = OffsetClock()
    store.apply_batch(batch([delta(u, i, count=120, ts=1_700_000_000_000, click=120)], clock, group))
    store.apply_batch(batch([delta(u, i, count=2**40, ts=5, click=100)], clock, group))
    edge = store.edge(u, i)
    assert edge is not None
    assert edge.last_ts_ms == 1_700_000_000_000
    assert edge.count == 2**40 + 120
    assert edge.type_counts["click"] == 220


def test_edges_of_user_heaviest_first_and_seen_items(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    u = store_ids("u")
    weights = {"a": 1.0, "b": 3.0, "c": 2.0}
    store.apply_batch(batch([delta(u, store_ids(k), w) for k, w in weights.items()], OffsetClock(), group))
    assert [e.item_id for e in store.edges_of_user(u)] == [store_ids("b"), store_ids("c"), store_ids("a")]
    assert sorted(store.user_row(u).items) == sorted(store_ids(k) for k in weights)
    assert store.user_row(store_ids("nobody")).items == ()


def test_offsets_are_stored_per_partition(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    p0, p1 = TopicPartition("events", 0), TopicPartition("events", 1)
    edges = [delta(store_ids("u"), store_ids("i"))]
    store.apply_batch(UpsertBatch(edges, {p0: OffsetRange(0, 9), p1: OffsetRange(0, 4)}, group=group))
    store.apply_batch(UpsertBatch(edges, {p1: OffsetRange(5, 7)}, group=group))
    assert store.applied_offsets(group) == {p0: 9, p1: 7}
    assert store.applied_offsets(group + "-other") == {}


def test_stale_batch_changes_nothing(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    u, i, fresh = store_ids("u"), store_ids("i"), store_ids("fresh")
    p0, p1 = TopicPartition("events", 0), TopicPartition("events", 1)
    store.apply_batch(UpsertBatch([delta(u, i, 1.0)], {p0: OffsetRange(0, 9)}, group=group))
    before = store.counts()

    # p1 is new but p0 overlaps what was applied: the whole batch must be refused.
    replay = UpsertBatch(
        [delta(u, i, 5.0), delta(fresh, i, 1.0)], {p1: OffsetRange(0, 3), p0: OffsetRange(9, 12)}, group=group
    )
    with pytest.raises(StaleBatchError) as info:
        store.apply_batch(replay)
    assert not info.value.retryable
    edge = store.edge(u, i)
    assert edge is not None and edge.weight == pytest.approx(1.0)
    assert store.edge(fresh, i) is None
    assert store.applied_offsets(group) == {p0: 9}
    assert store.counts()["seq"] == before["seq"]

    # The same offsets under another consumer group are not stale.
    store.apply_batch(UpsertBatch([delta(u, i, 1.0)], {p0: OffsetRange(0, 9)}, group=group + "-b"))


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda ids: [delta(ids("a"), ids("x")), delta(ids("a"), ids("x"))], "duplicate edge"),
        (lambda ids: [delta(ids("a"), ids("x"), weight=float("nan"))], "finite"),
        (lambda ids: [delta(ids("a"), ids("x"), count=-1)], ">= 0"),
        (lambda ids: [EdgeDelta(ids("a"), ids("x"), 1.0, 1, 1, {"teleport": 1})], "unknown event type"),  # type: ignore[dict-item]
        (lambda ids: [delta(ids("a"), ids("x")), EdgeDelta(7, ids("x"), 1.0, 1, 1)], "must be a str"),  # type: ignore[arg-type]
    ],
    ids=["duplicate", "nan", "negative-count", "unknown-type", "non-str-id"],
)
def test_bad_batch_raises_value_error_and_changes_nothing(
    store: CypherGraphStore, store_ids: IdFactory, group: str, make_bad: Any, message: str
) -> None:
    before = store.counts()
    with pytest.raises(ValueError, match=message):
        store.apply_batch(
            UpsertBatch(make_bad(store_ids), {TopicPartition("events", 0): OffsetRange(0, 1)}, group=group)
        )
    assert store.counts() == before
    assert store.applied_offsets(group) == {}


def test_bad_offset_range_is_refused(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    with pytest.raises(ValueError, match="last 1 < first 5"):
        store.apply_batch(
            UpsertBatch([delta(store_ids("u"), store_ids("i"))], {TopicPartition("t", 0): OffsetRange(5, 1)}, group)
        )


def test_offsets_only_batch_records_offsets(store: CypherGraphStore, group: str) -> None:
    tp = TopicPartition("events", 3)
    seq = store.apply_batch(UpsertBatch([], {tp: OffsetRange(0, 99)}, group=group))
    assert seq >= 1
    assert store.applied_offsets(group) == {tp: 99}


INJECTIONS = [
    "'; MATCH (n) DETACH DELETE n //",
    "}) DETACH DELETE n //",
    "quote \" and ' and ` and \\ backslash",
    "line\nbreak\ttab",
    "ユーザー 🙂 Ünïcödé",
    "$param {id: 1}",
    "",
]


@pytest.mark.parametrize("raw", INJECTIONS)
def test_hostile_ids_are_stored_verbatim(store: CypherGraphStore, store_ids: IdFactory, group: str, raw: str) -> None:
    user, item = store_ids("u" + raw), store_ids("i" + raw)
    bystander = (store_ids("bystander-u"), store_ids("bystander-i"))
    store.apply_batch(batch([delta(*bystander), delta(user, item, 2.0, click=1)], OffsetClock(), group))
    store.upsert_items([ItemMeta(item, title=raw, categories=(raw, "plain"), text=raw)])

    edge = store.edge(user, item)
    assert edge is not None and edge.user_id == user and edge.item_id == item
    assert store.user_row(user).items == (item,)
    assert store.item_meta([item]) == {item: ItemMeta(item, raw, (raw, "plain"), raw)}
    assert store.edge(*bystander) is not None


def test_upsert_items_and_item_meta(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    known, bare = store_ids("known"), store_ids("bare")
    store.apply_batch(batch([delta(store_ids("u"), bare)], OffsetClock(), group))
    store.upsert_items([ItemMeta(known, "Old", ("a",), "t")])
    store.upsert_items([ItemMeta(known, "New", ("b", "c"), "text")])
    meta = store.item_meta([known, bare, store_ids("missing")])
    assert meta == {known: ItemMeta(known, "New", ("b", "c"), "text")}  # bare item has no catalog entry
    assert store.item_meta([]) == {}
    # Catalog updates touch no edges.
    assert store.edges_of_user(store_ids("u"))[0].item_id == bare


def test_type_counts_accept_event_type_values(store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    d = EdgeDelta(store_ids("u"), store_ids("i"), 1.0, 2, 5, {EventType.LIKE: 1, EventType.RATING: 1})
    store.apply_batch(batch([d], OffsetClock(), group))
    edge = store.edge(store_ids("u"), store_ids("i"))
    assert edge is not None and edge.type_counts["like"] == 1 and edge.type_counts["rating"] == 1



def test_cold_catalog_items_are_catalogued_items_without_edges(
        store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    cold, warm, bare = store_ids("cold"), store_ids("warm"), store_ids("bare")
    store.upsert_items([ItemMeta(cold, "Cold", ("x",), ""), ItemMeta(warm, "Warm", (), "")])
    store.apply_batch(batch([delta(store_ids("u"), warm), delta(store_ids("u"), bare)], OffsetClock(), group))
    mine = [m for m in store.cold_catalog_items(written_up_to=0, limit=10_000) if m.item_id.startswith(cold[:-4])]
    assert mine == [ItemMeta(cold, "Cold", ("x",), "")]  # not the clicked one, not the one without a title
