"""The interaction event contract: validate raw Kafka values into :class:`InteractionEvent`.

On the wire an event is a UTF-8 JSON object, keyed by ``user_id``::

    {"v": 1, "event_id": "e-1", "user_id": "u1", "item_id": "i9", "type": "click",
     "ts": 1700000000000, "weight": 1.5, "rating": 4.0}

``v`` (schema version, default 1), ``weight`` and ``rating`` are optional; ``null`` counts as
absent; unknown fields are ignored so producers can add fields before consumers read them.
Decisions the contract makes:

* ids are JSON strings (numbers are rejected, not stringified: ``1`` and ``1.0`` would otherwise
  name different nodes), non-blank, at most ``max_id_length`` characters, compared verbatim;
* ``ts`` is epoch milliseconds: an integer, or a float with no fraction (JSON has one number type,
  JavaScript producers write ``1.7e12``); booleans, fractions, NaN and infinities are rejected;
* ``weight`` must be finite, ``> 0`` and at most :data:`MAX_EVENT_WEIGHT`;
* ``rating`` must be finite with ``0 < rating <= 5``; a rating event without one gets the rating
  default weight (``contract.default_weight(EventType.RATING)``), so a producer that forgets the
  stars still records the interaction;
* weight resolution: explicit ``weight``, else ``rating * weight_rating_per_star`` for rating
  events, else the type's default weight.

**Erasure requests** travel on the same topic, keyed like the user's events so they are ordered
against them in one partition: ``{"v": 1, "type": "forget", "user_id": "u1", "ts": 1700000000000}``
(``ts``, when the request was made, is optional). :func:`validate_event` returns them as
:class:`~core.domain.ErasureRequest`; ``interest-graph forget`` and the Admin service write them
with :func:`encode_erasure_request`.

Every rejection carries a machine-readable :class:`RejectReason` (the dead-letter record and the
``dead_lettered`` counters use it) and a message naming the field.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.domain import (
    EVENT_SCHEMA_VERSION,
    ErasureRequest,
    EventType,
    IdProblem,
    InteractionEvent,
    InvalidIdError,
    NodeId,
    check_id,
)
from streams.config import EventContract

#: Largest accepted explicit weight: one event outweighing a million clicks is a producer bug, and
#: it would swamp the normalised edge weights LightGCN propagates over.
MAX_EVENT_WEIGHT = 1e6

_ID_FIELDS = ("event_id", "user_id", "item_id")
_REQUIRED = (*_ID_FIELDS, "type", "ts")
_EVENT_TYPES = {t.value: t for t in EventType}
#: ``type`` of an erasure request (a control record, not an interaction).
FORGET_TYPE = "forget"


class RejectReason(enum.StrEnum):
    """Why an event was dead-lettered (stable codes: dashboards and alerts key on them)."""

    BAD_JSON = "bad_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    EMPTY_ID = "empty_id"
    ID_TOO_LONG = "id_too_long"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    ABSURD_TS = "absurd_ts"
    BAD_WEIGHT = "bad_weight"
    BAD_RATING = "bad_rating"
    #: Over ``IG_MAX_EVENT_BYTES`` (events) or ``IG_MAX_ITEM_BYTES`` (catalog records); not decoded.
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class Rejection:
    """An invalid event: the reason code, a message for humans and the offending field if any."""

    reason: RejectReason
    message: str
    field: str | None = None


class _Invalid(Exception):
    """Raised inside the checks below; :func:`validate_event` turns it into a :class:`Rejection`."""

    def __init__(self, reason: RejectReason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.rejection = Rejection(reason, message, field)


def validate_event(raw: bytes | None, contract: EventContract,
                   now_ms: int) -> InteractionEvent | ErasureRequest | Rejection:
    """Parse and check one Kafka value against the event contract (see the module docstring).

    Args:
        raw (bytes, optional): the record value; ``None`` (a tombstone) is rejected as ``bad_json``.
        contract (EventContract): size and id length limits, timestamp bounds and default weights.
        now_ms (int): the current time in epoch ms (passed in so validation stays pure).
    """
    if raw is not None and len(raw) > contract.max_event_bytes:
        return too_large(raw, contract.max_event_bytes, "IG_MAX_EVENT_BYTES")
    try:
        obj = _parse_object(raw)
        _check_version(obj)
        if obj.get("type") == FORGET_TYPE:
            return _erasure_request(obj, contract, now_ms)
        for name in _REQUIRED:
            if obj.get(name) is None:
                raise _Invalid(RejectReason.MISSING_FIELD, f"required field {name!r} is missing", name)
        ids = [_check_id(obj[name], name, contract.max_id_length) for name in _ID_FIELDS]
        event_type = _check_type(obj["type"])
        ts_ms = _check_ts(obj["ts"], contract, now_ms)
        weight = _optional_number(obj, "weight", RejectReason.BAD_WEIGHT, _weight_ok,
                                  f"must be finite, > 0 and <= {MAX_EVENT_WEIGHT:g}")
        rating = _optional_number(obj, "rating", RejectReason.BAD_RATING, _rating_ok,
                                  "must be finite with 0 < rating <= 5")
    except _Invalid as invalid:
        return invalid.rejection
    return InteractionEvent(
        event_id=ids[0], user_id=NodeId(ids[1]), item_id=NodeId(ids[2]), type=event_type, ts_ms=ts_ms,
        weight=resolve_weight(event_type, weight, rating, contract), rating=rating,
    )


def _erasure_request(obj: dict[str, Any], contract: EventContract, now_ms: int) -> ErasureRequest:
    if obj.get("user_id") is None:
        raise _Invalid(RejectReason.MISSING_FIELD, "required field 'user_id' is missing", "user_id")
    user_id = _check_id(obj["user_id"], "user_id", contract.max_id_length)
    requested_ms = now_ms if obj.get("ts") is None else _check_ts(obj["ts"], contract, now_ms)
    return ErasureRequest(NodeId(user_id), requested_ms)


def too_large(raw: bytes, limit: int, setting: str) -> Rejection:
    """The rejection of a record over its size limit, decided before any decoding: parsing megabytes
    of JSON per record would stall the agent, and nothing that large is a valid record."""
    return Rejection(RejectReason.TOO_LARGE, f"record of {len(raw)} bytes is over {setting}={limit}")


def resolve_weight(event_type: EventType, weight: float | None, rating: float | None,
                   contract: EventContract) -> float:
    """Edge weight of an event: explicit weight, else rating-derived, else the type default."""
    if weight is not None:
        return weight
    if event_type is EventType.RATING and rating is not None:
        return rating * contract.weight_rating_per_star
    return contract.default_weight(event_type)


def _parse_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise _Invalid(RejectReason.BAD_JSON, "empty record value (tombstone)")
    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16/32, which is not the contract.
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _Invalid(RejectReason.BAD_JSON, f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:
        raise _Invalid(RejectReason.BAD_JSON, f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _Invalid(RejectReason.NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _check_version(obj: dict[str, Any]) -> None:
    version = obj.get("v", EVENT_SCHEMA_VERSION)
    # type() not isinstance(): True == 1 in Python but is no schema version.
    if type(version) is not int or version != EVENT_SCHEMA_VERSION:
        raise _Invalid(RejectReason.UNKNOWN_SCHEMA_VERSION,
                       f"schema version {version!r} is not supported (expected {EVENT_SCHEMA_VERSION})", "v")


def _check_id(value: Any, name: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise _Invalid(RejectReason.WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}", name)
    try:
        return check_id(value, name, max_length)  # the id rule serving applies to request ids too
    except InvalidIdError as exc:
        reason = RejectReason.EMPTY_ID if exc.problem is IdProblem.BLANK else RejectReason.ID_TOO_LONG
        raise _Invalid(reason, str(exc), name) from None


def _check_type(value: Any) -> EventType:
    if not isinstance(value, str):
        raise _Invalid(RejectReason.WRONG_TYPE, f"type must be a string, got {type(value).__name__}", "type")
    try:
        return _EVENT_TYPES[value]
    except KeyError:
        known = ", ".join(sorted(_EVENT_TYPES))
        raise _Invalid(RejectReason.UNKNOWN_EVENT_TYPE,
                       f"unknown event type {value[:64]!r} (known: {known})", "type") from None


def _check_ts(value: Any, contract: EventContract, now_ms: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(RejectReason.WRONG_TYPE, f"ts must be epoch milliseconds, got {type(value).__name__}",
                       "ts")
    if isinstance(value, float) and not value.is_integer():
        raise _Invalid(RejectReason.WRONG_TYPE, f"ts must be whole milliseconds, got {value!r}", "ts")
    ts_ms = int(value)
    latest = now_ms + int(contract.max_future_skew_s * 1000)
    if ts_ms < contract.min_event_ts_ms or ts_ms > latest:
        raise _Invalid(RejectReason.ABSURD_TS,
                       f"ts {ts_ms} is outside [{contract.min_event_ts_ms}, {latest}] epoch ms", "ts")
    return ts_ms


def _optional_number(obj: dict[str, Any], name: str, reason: RejectReason, ok: Callable[[float], bool],
                     rule: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(RejectReason.WRONG_TYPE, f"{name} must be a number, got {type(value).__name__}", name)
    number = float(value)
    if not ok(number):
        raise _Invalid(reason, f"{name} {value!r} is invalid: {rule}", name)
    return number


def _weight_ok(weight: float) -> bool:
    return math.isfinite(weight) and 0.0 < weight <= MAX_EVENT_WEIGHT


def _rating_ok(rating: float) -> bool:
    return math.isfinite(rating) and 0.0 < rating <= 5.0


def encode_event(user_id: str, item_id: str, type: EventType | str, ts_ms: int, *,
                 event_id: str | None = None, weight: float | None = None,
                 rating: float | None = None) -> bytes:
    """The wire form of one event (compact JSON, UTF-8), as producers should write it.

    Args:
        user_id (str): the user (also the Kafka key, see :func:`event_key`).
        item_id (str): the item.
        type (EventType | str): the interaction kind.
        ts_ms (int): event time, epoch milliseconds.
        event_id (str, optional): unique id of the event; ``None`` draws a random UUID (default: ``None``).
        weight (float, optional): explicit edge weight (default: ``None``, resolved by the consumer).
        rating (float, optional): stars of a rating event (default: ``None``).
    """
    record: dict[str, Any] = {
        "v": EVENT_SCHEMA_VERSION,
        "event_id": event_id if event_id is not None else uuid.uuid4().hex,
        "user_id": user_id,
        "item_id": item_id,
        "type": str(EventType(type)),
        "ts": int(ts_ms),
    }
    if weight is not None:
        record["weight"] = weight
    if rating is not None:
        record["rating"] = rating
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_erasure_request(user_id: str, requested_ms: int) -> bytes:
    """The wire form of a request to forget ``user_id`` (publish it keyed by :func:`event_key`)."""
    record = {"v": EVENT_SCHEMA_VERSION, "type": FORGET_TYPE, "user_id": user_id, "ts": int(requested_ms)}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_key(user_id: str) -> bytes:
    """Kafka key of a user's events: keying by user keeps each user's events in order."""
    return user_id.encode("utf-8")
