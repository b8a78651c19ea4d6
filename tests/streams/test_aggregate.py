"""Batch aggregation: one delta per edge, offsets per partition, applied records filtered out."""

from __future__ import annotations

import json
from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from core.domain import (
    EventType,
    InteractionEvent,
    NodeId,
    OffsetRange,
    SourcePosition,
    TopicPartition,
)
from streams.aggregate import SourceRecord, aggregate, filter_applied, offset_ranges, plan_batch
from streams.config import EventContract
from streams.dead_letter import dead_letter_from, decode_dead_letter, encode_dead_letter
from streams.validation import RejectReason, encode_event

NOW = 1_700_000_000_000
TP0 = TopicPartition("ev", 0)
TP1 = TopicPartition("ev", 1)
CONTRACT = EventContract()


def event(user: str, item: str, weight: float, ts: int = NOW,
          kind: EventType = EventType.CLICK) -> InteractionEvent:
    return InteractionEvent(f"{user}-{item}-{ts}", NodeId(user), NodeId(item), kind, ts, weight)


def record(tp: TopicPartition, offset: int, value: bytes | None, key: bytes | None = b"k") -> SourceRecord:
    return SourceRecord(value, key, SourcePosition(tp, offset))


def test_duplicate_edges_fold_into_one_delta() -> None:
    batch = aggregate([
        (event("u1", "i1", 1.0, NOW, EventType.CLICK), SourcePosition(TP0, 5)),
        (event("u2", "i1", 0.5, NOW + 1, EventType.VIEW), SourcePosition(TP1, 9)),
        (event("u1", "i1", 4.0, NOW - 7, EventType.PURCHASE), SourcePosition(TP0, 6)),
        (event("u1", "i1", 1.0, NOW + 3, EventType.CLICK), SourcePosition(TP0, 8)),
    ], group="g")
    assert batch.group == "g"
    assert [(e.user_id, e.item_id) for e in batch.edges] == [("u1", "i1"), ("u2", "i1")]
    u1 = batch.edges[0]
    assert (u1.weight, u1.count, u1.last_ts_ms) == (6.0, 3, NOW + 3)
    assert u1.type_counts == {EventType.CLICK: 2, EventType.PURCHASE: 1}
    assert batch.offsets == {TP0: OffsetRange(5, 8), TP1: OffsetRange(9, 9)}


def test_extra_positions_advance_offsets_without_edges() -> None:
    batch = aggregate([], group="g", extra_positions=[SourcePosition(TP1, 3), SourcePosition(TP1, 2)])
    assert batch.edges == []
    assert batch.offsets == {TP1: OffsetRange(2, 3)}


def test_filter_applied_drops_applied_and_redelivered_records() -> None:
    records = [record(TP0, 4, b"a"), record(TP0, 5, b"b"), record(TP1, 0, b"c"), record(TP0, 5, b"b"),
               record(TP0, 6, b"d")]
    fresh = filter_applied(records, {TP0: 4})
    assert [(r.position.tp, r.position.offset) for r in fresh] == [(TP0, 5), (TP1, 0), (TP0, 6)]
    assert filter_applied(records, {TP0: 10, TP1: 0}) == []


def test_offset_ranges_of_nothing_is_empty() -> None:
    assert offset_ranges([]) == {}


def test_plan_batch_validates_aggregates_and_covers_rejects() -> None:
    good = encode_event("u1", "i1", "purchase", NOW, event_id="a")
    records = [
        record(TP0, 10, good),                                  # already applied
        record(TP0, 11, good),
        record(TP0, 12, b"{broken"),
        record(TP1, 0, encode_event("u1", "i1", "rating", NOW, event_id="b", rating=3.0)),
        record(TP1, 1, None),
    ]
    plan = plan_batch(records, {TP0: 10}, CONTRACT, "g", NOW)
    assert (plan.accepted, plan.skipped) == (2, 1)
    assert [(r.position.offset, rej.reason) for r, rej in plan.rejected] == [
        (12, RejectReason.BAD_JSON), (1, RejectReason.BAD_JSON)]
    assert len(plan.batch.edges) == 1
    assert plan.batch.edges[0].weight == CONTRACT.weight_purchase + 3.0 * CONTRACT.weight_rating_per_star
    assert plan.batch.offsets == {TP0: OffsetRange(11, 12), TP1: OffsetRange(0, 1)}
    assert plan.needs_write


def test_plan_of_an_applied_batch_needs_no_write() -> None:
    plan = plan_batch([record(TP0, 1, b"x"), record(TP0, 2, b"y")], {TP0: 2}, CONTRACT, "g", NOW)
    assert not plan.needs_write
    assert (plan.accepted, plan.skipped, plan.rejected) == (0, 2, [])


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from([0.5, 1.0, 2.0, 4.0]),
                          st.integers(0, 1)), max_size=60),
       st.integers(1, 7))
def test_batching_does_not_change_totals(rows: list[tuple[int, int, float, int]], batch_size: int) -> None:
    """Cutting a stream into batches and adding the deltas gives the per-edge sums of the events."""
    offsets: dict[TopicPartition, int] = defaultdict(int)
    stream = []
    for user, item, weight, part in rows:
        tp = TopicPartition("ev", part)
        stream.append((event(f"u{user}", f"i{item}", weight), SourcePosition(tp, offsets[tp])))
        offsets[tp] += 1
    expected: dict[tuple[str, str], float] = defaultdict(float)
    for ev, _ in stream:
        expected[(ev.user_id, ev.item_id)] += ev.weight
    totals: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for start in range(0, len(stream), batch_size):
        for delta in aggregate(stream[start:start + batch_size], "g").edges:
            totals[(delta.user_id, delta.item_id)] += delta.weight
            counts[(delta.user_id, delta.item_id)] += delta.count
    assert totals == expected
    assert sum(counts.values()) == len(stream)


def test_dead_letter_round_trips_bytes_and_readable_text() -> None:
    rejected = record(TP1, 7, b'{"weight": -1}', key=b"u1")
    plan = plan_batch([rejected, record(TP1, 8, b"\xff\x00")], {}, CONTRACT, "g", NOW)
    letters = [dead_letter_from(r, rej, NOW) for r, rej in plan.rejected]
    decoded = [decode_dead_letter(encode_dead_letter(letter, 1024)) for letter in letters]
    assert decoded == letters
    assert decoded[0].original_text == '{"weight": -1}'
    assert decoded[0].reason == "missing_field"
    assert (decoded[0].topic, decoded[0].partition, decoded[0].offset, decoded[0].key) == ("ev", 1, 7, b"u1")
    assert decoded[1].original == b"\xff\x00" and decoded[1].original_text is None
    body = json.loads(encode_dead_letter(letters[1], 1024))
    assert body["original_text"] is None and body["reason"] == "bad_json"
    assert body["original_b64"] == "/wA=" and body["original_length"] == 2  # kept once, as base64
