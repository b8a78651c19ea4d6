"""Hypothesis fuzz of event payloads through :func:`streams.validation.validate_event`.

Whatever the bytes, validation returns an event that honours the contract or a rejection with a
reason code and a message; it never raises. Mutations cover wrong types, unicode, huge strings,
NaN/inf, negative and far-future timestamps, missing fields and duplicated event ids.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from core.domain import InteractionEvent
from streams.config import EventContract
from streams.validation import MAX_EVENT_WEIGHT, Rejection, RejectReason, validate_event

CONTRACT = EventContract()
NOW = 1_700_000_000_000
FIELDS = ("v", "event_id", "user_id", "item_id", "type", "ts", "weight", "rating")

junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.text(min_size=257, max_size=5000), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from([-1, 0, -(10**18), 10**18, NOW + 10**12, float("nan"), float("inf"), float("-inf"),
                     "click", "", "   ", "\u0000", "\U0001f600", "x" * 257, 1e308, 2**63]),
)


def good_event() -> dict[str, Any]:
    return {"v": 1, "event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": NOW}


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    event = good_event()
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        if draw(st.booleans()):
            event.pop(name, None)
        else:
            event[name] = draw(junk)
    return json.dumps(event, allow_nan=True).encode("utf-8")


def _check(outcome: InteractionEvent | Rejection) -> None:
    if isinstance(outcome, Rejection):
        assert isinstance(outcome.reason, RejectReason) and outcome.message
        return
    for value in (outcome.event_id, outcome.user_id, outcome.item_id):
        assert isinstance(value, str) and value.strip() and len(value) <= CONTRACT.max_id_length
    assert CONTRACT.min_event_ts_ms <= outcome.ts_ms <= NOW + CONTRACT.max_future_skew_s * 1000
    assert math.isfinite(outcome.weight) and 0 < outcome.weight <= MAX_EVENT_WEIGHT


@hyp_settings(max_examples=400)
@given(raw=mutated_events())
def test_mutated_events_validate_or_reject_with_a_reason(raw: bytes) -> None:
    _check(validate_event(raw, CONTRACT, NOW))


@hyp_settings(max_examples=200)
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(validate_event(raw, CONTRACT, NOW))


@given(value=st.sampled_from([float("nan"), float("inf"), float("-inf")]), name=st.sampled_from(["ts", "weight",
                                                                                                  "rating"]))
def test_non_finite_numbers_are_rejected_naming_the_field(value: float, name: str) -> None:
    event = good_event() | {name: value}
    outcome = validate_event(json.dumps(event, allow_nan=True).encode(), CONTRACT, NOW)
    assert isinstance(outcome, Rejection) and outcome.field == name


@given(ids=st.text(min_size=1, max_size=256).filter(str.strip))
def test_any_unicode_id_is_kept_verbatim(ids: str) -> None:
    event = good_event() | {"user_id": ids, "item_id": ids, "event_id": ids}
    outcome = validate_event(json.dumps(event).encode("utf-8"), CONTRACT, NOW)
    assert isinstance(outcome, InteractionEvent)
    assert (outcome.user_id, outcome.item_id, outcome.event_id) == (ids, ids, ids)


def test_duplicate_event_ids_are_separate_events() -> None:
    """Event ids are informational: dedup is by Kafka position, so a re-sent id is a new interaction."""
    raw = json.dumps(good_event()).encode()
    first, second = validate_event(raw, CONTRACT, NOW), validate_event(raw, CONTRACT, NOW)
    assert isinstance(first, InteractionEvent) and first == second
