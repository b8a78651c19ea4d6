"""The event contract: every invalid class gets its own reason; valid events resolve their weight."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain import EventType, IdProblem, InteractionEvent, InvalidIdError, ItemMeta, NodeId, check_id
from streams.catalog import encode_item, validate_item
from streams.config import EventContract
from streams.validation import (
    MAX_EVENT_WEIGHT,
    Rejection,
    RejectReason,
    encode_event,
    event_key,
    validate_event,
)

NOW = 1_700_000_000_000
CONTRACT = EventContract(max_id_length=16)
ITEM_CONTRACT = EventContract(max_id_length=16, max_item_bytes=4096)


def body(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": NOW}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


def reject(value: bytes | None) -> Rejection:
    outcome = validate_event(value, CONTRACT, NOW)
    assert isinstance(outcome, Rejection), outcome
    return outcome


def accept(value: bytes) -> InteractionEvent:
    outcome = validate_event(value, CONTRACT, NOW)
    assert isinstance(outcome, InteractionEvent), outcome
    return outcome


@pytest.mark.parametrize(("value", "reason", "field"), [
    (b"{not json", RejectReason.BAD_JSON, None),
    (b"", RejectReason.BAD_JSON, None),
    (None, RejectReason.BAD_JSON, None),
    (b'{"user_id": "\xff\xfe"}', RejectReason.BAD_JSON, None),  # not UTF-8
    (json.dumps(body()).encode("utf-16"), RejectReason.BAD_JSON, None),  # valid JSON, wrong encoding
    (b"[" * 60_000, RejectReason.BAD_JSON, None),  # nesting bomb, under IG_MAX_EVENT_BYTES
    (raw([body()]), RejectReason.NOT_OBJECT, None),
    (raw("click"), RejectReason.NOT_OBJECT, None),
    (raw(None), RejectReason.NOT_OBJECT, None),
    (raw(body(v=2)), RejectReason.UNKNOWN_SCHEMA_VERSION, "v"),
    (raw(body(v=True)), RejectReason.UNKNOWN_SCHEMA_VERSION, "v"),
    (raw(body(v="1")), RejectReason.UNKNOWN_SCHEMA_VERSION, "v"),
    (raw(body(event_id=_DROP)), RejectReason.MISSING_FIELD, "event_id"),
    (raw(body(user_id=_DROP)), RejectReason.MISSING_FIELD, "user_id"),
    (raw(body(item_id=None)), RejectReason.MISSING_FIELD, "item_id"),
    (raw(body(type=_DROP)), RejectReason.MISSING_FIELD, "type"),
    (raw(body(ts=_DROP)), RejectReason.MISSING_FIELD, "ts"),
    (raw(body(user_id=42)), RejectReason.WRONG_TYPE, "user_id"),
    (raw(body(item_id=["i1"])), RejectReason.WRONG_TYPE, "item_id"),
    (raw(body(type=3)), RejectReason.WRONG_TYPE, "type"),
    (raw(body(ts="1700000000000")), RejectReason.WRONG_TYPE, "ts"),
    (raw(body(ts=True)), RejectReason.WRONG_TYPE, "ts"),
    (raw(body(ts=NOW + 0.5)), RejectReason.WRONG_TYPE, "ts"),
    (b'{"event_id":"e","user_id":"u","item_id":"i","type":"click","ts":NaN}', RejectReason.WRONG_TYPE, "ts"),
    (raw(body(weight="2")), RejectReason.WRONG_TYPE, "weight"),
    (raw(body(weight=True)), RejectReason.WRONG_TYPE, "weight"),
    (raw(body(rating="4")), RejectReason.WRONG_TYPE, "rating"),
    (raw(body(user_id="")), RejectReason.EMPTY_ID, "user_id"),
    (raw(body(item_id="   ")), RejectReason.EMPTY_ID, "item_id"),
    (raw(body(event_id="")), RejectReason.EMPTY_ID, "event_id"),
    (raw(body(user_id="u" * 17)), RejectReason.ID_TOO_LONG, "user_id"),
    (raw(body(event_id="e" * 17)), RejectReason.ID_TOO_LONG, "event_id"),
    (raw(body(type="CLICK")), RejectReason.UNKNOWN_EVENT_TYPE, "type"),
    (raw(body(type="hover")), RejectReason.UNKNOWN_EVENT_TYPE, "type"),
    (raw(body(ts=0)), RejectReason.ABSURD_TS, "ts"),
    (raw(body(ts=-5)), RejectReason.ABSURD_TS, "ts"),
    (raw(body(ts=1_700_000_000)), RejectReason.ABSURD_TS, "ts"),  # seconds, not ms
    (raw(body(ts=NOW + 86_400_001)), RejectReason.ABSURD_TS, "ts"),
    (raw(body(ts=10**30)), RejectReason.ABSURD_TS, "ts"),
    (raw(body(weight=0)), RejectReason.BAD_WEIGHT, "weight"),
    (raw(body(weight=-1.5)), RejectReason.BAD_WEIGHT, "weight"),
    (raw(body(weight=MAX_EVENT_WEIGHT * 2)), RejectReason.BAD_WEIGHT, "weight"),
    (b'{"event_id":"e","user_id":"u","item_id":"i","type":"click","ts":1700000000000,"weight":NaN}',
     RejectReason.BAD_WEIGHT, "weight"),
    (b'{"event_id":"e","user_id":"u","item_id":"i","type":"click","ts":1700000000000,"weight":Infinity}',
     RejectReason.BAD_WEIGHT, "weight"),
    (b'{"event_id":"e","user_id":"u","item_id":"i","type":"click","ts":1700000000000,"weight":1e999}',
     RejectReason.BAD_WEIGHT, "weight"),
    (raw(body(type="rating", rating=0)), RejectReason.BAD_RATING, "rating"),
    (raw(body(type="rating", rating=5.5)), RejectReason.BAD_RATING, "rating"),
    (raw(body(type="rating", rating=-1)), RejectReason.BAD_RATING, "rating"),
    (b'{"event_id":"e","user_id":"u","item_id":"i","type":"rating","ts":1700000000000,"rating":NaN}',
     RejectReason.BAD_RATING, "rating"),
])
def test_invalid_events_are_rejected_with_their_reason(value: bytes | None, reason: RejectReason,
                                                       field: str | None) -> None:
    rejection = reject(value)
    assert rejection.reason is reason
    assert rejection.field == field
    assert rejection.message


def test_version_is_checked_before_the_fields() -> None:
    # A future schema may rename fields: report the version, not a misleading missing field.
    assert reject(raw({"v": 2, "uid": "u1"})).reason is RejectReason.UNKNOWN_SCHEMA_VERSION


def test_minimal_event_gets_the_type_default_weight() -> None:
    event = accept(raw(body()))
    expected = InteractionEvent("e1", NodeId("u1"), NodeId("i1"), EventType.CLICK, NOW, CONTRACT.weight_click)
    assert event == expected


@pytest.mark.parametrize("event_type", list(EventType))
def test_each_type_has_its_default_weight(event_type: EventType) -> None:
    assert accept(raw(body(type=event_type.value))).weight == CONTRACT.default_weight(event_type)


def test_explicit_weight_wins_over_rating_and_default() -> None:
    assert accept(raw(body(type="rating", rating=4.0, weight=7.25))).weight == 7.25
    assert accept(raw(body(type="purchase", weight=0.125))).weight == 0.125


def test_rating_event_weight_is_stars_times_per_star() -> None:
    event = accept(raw(body(type="rating", rating=3.5)))
    assert event.weight == 3.5 * CONTRACT.weight_rating_per_star
    assert event.rating == 3.5


def test_rating_event_without_rating_gets_the_rating_default() -> None:
    event = accept(raw(body(type="rating")))
    assert event.weight == CONTRACT.default_weight(EventType.RATING)
    assert event.rating is None


def test_rating_on_other_types_is_kept_but_does_not_set_the_weight() -> None:
    event = accept(raw(body(type="like", rating=5)))
    assert (event.rating, event.weight) == (5.0, CONTRACT.weight_like)


def test_lenient_but_well_defined_forms_are_accepted() -> None:
    event = accept(raw(body(v=1, ts=float(NOW), weight=None, rating=None, extra={"x": 1})))
    assert event.ts_ms == NOW and isinstance(event.ts_ms, int)
    assert accept(raw(body(weight=3))).weight == 3.0  # integer weights are fine
    assert accept(raw(body(ts=NOW + 86_400_000))).ts_ms == NOW + 86_400_000  # exactly at the skew bound
    assert accept(raw(body(ts=CONTRACT.min_event_ts_ms))).ts_ms == CONTRACT.min_event_ts_ms


def test_ids_are_verbatim_unicode_and_limited_in_characters_not_bytes() -> None:
    event = accept(raw(body(user_id="ü" * 16, item_id=" i 1 ")))
    assert event.user_id == "ü" * 16
    assert event.item_id == " i 1 "


def test_settings_bound_future_timestamps() -> None:
    strict = dataclasses.replace(CONTRACT, max_future_skew_s=1.0)
    assert isinstance(validate_event(raw(body(ts=NOW + 1001)), strict, NOW), Rejection)
    assert isinstance(validate_event(raw(body(ts=NOW + 1000)), strict, NOW), InteractionEvent)


@given(
    user=st.text(min_size=1, max_size=16).filter(str.strip),
    item=st.text(min_size=1, max_size=16).filter(str.strip),
    event_type=st.sampled_from(list(EventType)),
    ts=st.integers(CONTRACT.min_event_ts_ms, NOW),
    weight=st.none() | st.floats(min_value=1e-6, max_value=MAX_EVENT_WEIGHT),
    rating=st.none() | st.floats(min_value=0.5, max_value=5.0),
)
def test_encoded_events_validate_back(user: str, item: str, event_type: EventType, ts: int,
                                      weight: float | None, rating: float | None) -> None:
    encoded = encode_event(user, item, event_type, ts, event_id="e", weight=weight, rating=rating)
    event = accept(encoded)
    assert (event.user_id, event.item_id, event.type, event.ts_ms) == (user, item, event_type, ts)
    assert event.rating == rating
    expected = weight if weight is not None else (
        rating * CONTRACT.weight_rating_per_star if event_type is EventType.RATING and rating is not None
        else CONTRACT.default_weight(event_type))
    assert event.weight == expected


def test_encode_event_draws_unique_ids_and_keys_by_user() -> None:
    first = json.loads(encode_event("u", "i", "view", NOW))
    second = json.loads(encode_event("u", "i", "view", NOW))
    assert first["event_id"] != second["event_id"]
    assert first["v"] == 1
    assert event_key("ü") == "ü".encode()


def test_catalog_records_round_trip_and_reject_bad_input() -> None:
    item = ItemMeta(NodeId("i1"), "Toy Story (1995)", ("Animation", "Comedy"), "pixar")
    assert validate_item(encode_item(item), ITEM_CONTRACT) == item
    assert validate_item(b'{"item_id": "i2"}', ITEM_CONTRACT) == ItemMeta(NodeId("i2"))
    cases = {
        b"nope": RejectReason.BAD_JSON,
        b"[1]": RejectReason.NOT_OBJECT,
        b'{"title": "x"}': RejectReason.MISSING_FIELD,
        b'{"item_id": 7}': RejectReason.WRONG_TYPE,
        b'{"item_id": ""}': RejectReason.EMPTY_ID,
        b'{"item_id": "' + b"i" * 17 + b'"}': RejectReason.ID_TOO_LONG,
        b'{"item_id": "i", "categories": "Comedy"}': RejectReason.WRONG_TYPE,
        b'{"item_id": "i", "title": 3}': RejectReason.WRONG_TYPE,
        b'{"item_id": "i", "text": "' + b"t" * 4096 + b'"}': RejectReason.TOO_LARGE,
    }
    for value, reason in cases.items():
        outcome = validate_item(value, ITEM_CONTRACT)
        assert isinstance(outcome, Rejection) and outcome.reason is reason, (value, outcome)


@given(st.text(max_size=20))
def test_events_and_catalog_records_apply_the_shared_id_rule(value: str) -> None:
    # Serving checks request ids with check_id too, so an id ingest refuses is refused over gRPC.
    try:
        check_id(value, "item_id", 16)
        expected: tuple[RejectReason, str] | None = None
    except InvalidIdError as exc:
        reason = RejectReason.EMPTY_ID if exc.problem is IdProblem.BLANK else RejectReason.ID_TOO_LONG
        expected = (reason, str(exc))
    event = validate_event(raw(body(item_id=value)), CONTRACT, NOW)
    item = validate_item(json.dumps({"item_id": value}).encode(), ITEM_CONTRACT)
    for outcome in (event, item):
        if expected is None:
            assert not isinstance(outcome, Rejection), outcome
        else:
            assert isinstance(outcome, Rejection) and (outcome.reason, outcome.message) == expected, outcome


def test_an_event_over_max_event_bytes_is_too_large_and_not_decoded() -> None:
    limit = EventContract(max_event_bytes=1000)
    at_limit = raw(body(user_id="u" * 100))
    padded = at_limit[:-1] + b" " * (1000 - len(at_limit)) + b"}"  # valid JSON of exactly 1,000 bytes
    assert len(padded) == 1000 and not isinstance(validate_event(padded, limit, NOW), Rejection)
    # One byte more is refused before decoding: not even JSON is looked at.
    for value in (padded[:-1] + b" }", b"\xff" * 1001):
        outcome = validate_event(value, limit, NOW)
        assert isinstance(outcome, Rejection) and outcome.reason is RejectReason.TOO_LARGE
        assert outcome.message == "record of 1001 bytes is over IG_MAX_EVENT_BYTES=1000"
