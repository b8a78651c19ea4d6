"""Dead-letter records: an invalid event, why it was rejected and where it came from.

A dead-letter record is a UTF-8 JSON object on the dead-letter topic, keyed like the original::

    {"v": 1, "reason": "bad_weight", "message": "weight -1 is invalid: ...", "field": "weight",
     "topic": "ig-events", "partition": 3, "offset": 1207, "key_b64": "dTE=",
     "original_b64": "eyJ...", "original_text": "{\"user_id\": ...}", "dead_lettered_ms": 1700000000123}

``original_b64`` keeps the exact bytes (so a fixed consumer can replay them); ``original_text`` is
the same value decoded as UTF-8 for people reading the topic, ``null`` when it does not decode.
Dead-lettering is at-least-once: a crash between the dead-letter send and the store write sends
the record again on restart; ``topic``/``partition``/``offset`` identify duplicates.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from streams.aggregate import SourceRecord
from streams.validation import Rejection

#: Version of the dead-letter record format.
DEAD_LETTER_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A decoded dead-letter record."""

    reason: str
    message: str
    field: str | None
    topic: str
    partition: int
    offset: int
    key: bytes | None
    original: bytes | None
    dead_lettered_ms: int

    @property
    def original_text(self) -> str | None:
        if self.original is None:
            return None
        try:
            return self.original.decode("utf-8")
        except UnicodeDecodeError:
            return None


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def dead_letter_from(record: SourceRecord, rejection: Rejection, now_ms: int) -> DeadLetter:
    """The dead-letter record for a rejected source record."""
    return DeadLetter(
        reason=str(rejection.reason), message=rejection.message, field=rejection.field,
        topic=record.position.tp.topic, partition=record.position.tp.partition,
        offset=record.position.offset, key=record.key, original=record.value, dead_lettered_ms=now_ms,
    )


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """The wire form of a dead-letter record (see the module docstring)."""
    body: dict[str, Any] = {
        "v": DEAD_LETTER_VERSION,
        "reason": letter.reason,
        "message": letter.message,
        "field": letter.field,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "key_b64": _b64(letter.key),
        "original_b64": _b64(letter.original),
        "original_text": letter.original_text,
        "dead_lettered_ms": letter.dead_lettered_ms,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_dead_letter(raw: bytes) -> DeadLetter:
    """Read a dead-letter record back (ops tooling, replays of fixed events, tests).

    Raises:
        ValueError: ``raw`` is not a dead-letter record of a known version.
    """
    try:
        body = json.loads(raw.decode("utf-8"))
        if body.get("v") != DEAD_LETTER_VERSION:
            raise ValueError(f"unknown dead-letter version {body.get('v')!r}")
        return DeadLetter(
            reason=body["reason"], message=body["message"], field=body.get("field"), topic=body["topic"],
            partition=int(body["partition"]), offset=int(body["offset"]), key=_unb64(body.get("key_b64")),
            original=_unb64(body.get("original_b64")), dead_lettered_ms=int(body["dead_lettered_ms"]),
        )
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a dead-letter record: {exc}") from exc
