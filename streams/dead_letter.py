"""Dead-letter records: an invalid record, why it was rejected and where it came from.

A dead-letter record is a UTF-8 JSON object on the dead-letter topic (format version 2)::

    {"v": 2, "reason": "bad_weight", "message": "weight -1 is invalid: ...", "field": "weight",
     "topic": "ig-events", "partition": 3, "offset": 1207, "dead_lettered_ms": 1700000000123,
     "key_text": "u1", "key_b64": null, "key_length": 2, "key_sha256": "...", "key_truncated": false,
     "original_text": "{\\"user_id\\": ...}", "original_b64": null, "original_length": 96,
     "original_sha256": "...", "original_truncated": false}

The rejected record's key and value are each kept **once**: as ``*_text`` when the kept bytes are
UTF-8 (JSON strings carry them exactly), else as ``*_b64``. A value longer than
``IG_DEAD_LETTER_MAX_ORIGINAL_BYTES`` (a key longer than :data:`MAX_KEY_BYTES`) is cut, and
``*_truncated`` says so; ``*_length`` and ``*_sha256`` always describe the whole record, so a cut
one can still be matched to its producer's copy. So a dead letter never outgrows the broker's
message limit, whatever the record: :func:`check_record_limits` checks the configuration at start.

When even that cannot be sent (a broker with a lower limit than configured), a **minimal** record
goes instead: ``"minimal": true``, reason, message, position, length and sha256, without key or value.

**Redacted** dead letters (``IG_DEAD_LETTER_REDACT``, always with ``IG_ID_KEY``) carry no personal
data: ``"redacted": true``, reason, field, position, length and a *keyed* hash of the value
(HMAC-SHA256 under the erasure key: it matches a producer's copy for whoever holds the key, and
nobody can confirm a guessed payload), no key, no value and a message that quotes nothing.

Dead-lettering is at-least-once: a crash between the dead-letter send and the store write sends
the record again on restart; ``topic``/``partition``/``offset`` identify duplicates. Version 1
records (the whole value twice, as base64 and text) are still read by :func:`decode_dead_letter`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.privacy import ForgetKey
from streams.aggregate import SourceRecord
from streams.config import IngestConfig, SettingsError
from streams.validation import Rejection

#: Version of the dead-letter record format written now.
DEAD_LETTER_VERSION = 2
#: Most bytes of a record key kept (ids are at most 256 characters, 1,024 bytes of UTF-8).
MAX_KEY_BYTES = 1024
#: Longest rejection message kept (messages quote at most 64 characters of the offending value).
MAX_MESSAGE_CHARS = 1024
#: What JSON escaping can make of one kept byte: a control character becomes ``\\u0001``.
_WORST_JSON_EXPANSION = 6
#: Field names, numbers and hashes of a dead letter, beside its key, value and message.
_ENVELOPE_BYTES = 2048


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-letter record: made from a rejected record, or decoded from the topic.

    ``original`` and ``key`` are the whole record as received when made, and what the dead letter
    kept when decoded (``original_truncated`` then says whether that is all of it).
    """

    reason: str
    message: str
    field: str | None
    topic: str
    partition: int
    offset: int
    key: bytes | None
    original: bytes | None
    dead_lettered_ms: int
    #: Length in bytes and sha256 (hex) of the whole value; ``None`` for a tombstone.
    original_length: int | None = None
    original_sha256: str | None = None
    original_truncated: bool = False
    #: A minimal record: the full dead letter could not be sent (see the module docstring).
    minimal: bool = False
    #: Key and value left out by choice; ``original_sha256`` is then a keyed hash (module docstring).
    redacted: bool = False

    @property
    def original_text(self) -> str | None:
        if self.original is None:
            return None
        try:
            return self.original.decode("utf-8")
        except UnicodeDecodeError:
            return None


def dead_letter_from(record: SourceRecord, rejection: Rejection, now_ms: int,
                     redact_with: ForgetKey | None = None) -> DeadLetter:
    """The dead-letter record for a rejected source record; redacted when ``redact_with`` is given."""
    value = record.value
    if redact_with is not None:
        return DeadLetter(
            reason=str(rejection.reason), message=f"{rejection.reason} (redacted: IG_DEAD_LETTER_REDACT)",
            field=rejection.field, topic=record.position.tp.topic, partition=record.position.tp.partition,
            offset=record.position.offset, key=None, original=None, dead_lettered_ms=now_ms,
            original_length=None if value is None else len(value),
            original_sha256=None if value is None else redact_with.record_digest(value), redacted=True)
    return DeadLetter(
        reason=str(rejection.reason), message=rejection.message, field=rejection.field,
        topic=record.position.tp.topic, partition=record.position.tp.partition,
        offset=record.position.offset, key=record.key, original=value, dead_lettered_ms=now_ms,
        original_length=None if value is None else len(value),
        original_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
    )


def worst_case_bytes(max_original_bytes: int) -> int:
    """The largest encoded dead letter when values are cut to ``max_original_bytes``."""
    return _WORST_JSON_EXPANSION * (max_original_bytes + MAX_KEY_BYTES + MAX_MESSAGE_CHARS * 4) + _ENVELOPE_BYTES


def check_record_limits(config: IngestConfig) -> None:
    """Refuse size settings under which a record could be accepted or dead-lettered but not sent or read.

    Args:
        config (IngestConfig): the broker's message limit, the contract's record limits and the
            dead letters' cut.

    Raises:
        SettingsError: a record limit or the worst-case dead letter does not fit the broker's limit.
    """
    limit = config.broker_max_message_bytes
    for env, value in (("IG_MAX_EVENT_BYTES", config.contract.max_event_bytes),
                       ("IG_MAX_ITEM_BYTES", config.contract.max_item_bytes)):
        if not 0 < value <= limit:
            raise SettingsError(f"{env}={value} must be > 0 and at most IG_BROKER_MAX_MESSAGE_BYTES={limit}")
    cut = config.dead_letter_max_original_bytes
    if cut <= 0 or worst_case_bytes(cut) > limit:
        raise SettingsError(f"IG_DEAD_LETTER_MAX_ORIGINAL_BYTES={cut} lets a dead letter reach "
                            f"{worst_case_bytes(cut)} bytes, over IG_BROKER_MAX_MESSAGE_BYTES={limit}")


def _kept(data: bytes, limit: int) -> tuple[bytes, str | None]:
    """The first ``limit`` bytes of ``data`` and their text, cut at a character boundary if UTF-8."""
    kept = data[:limit]
    for trim in range(4 if len(kept) < len(data) else 1):  # a cut may split a character of up to 4 bytes
        head = kept[:len(kept) - trim]
        try:
            return head, head.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return kept, None


def _payload(name: str, data: bytes | None, limit: int) -> dict[str, Any]:
    """``{name}_text|_b64|_length|_sha256|_truncated`` of one record part, kept once and cut to ``limit``."""
    if data is None:
        return {f"{name}_text": None, f"{name}_b64": None, f"{name}_length": None, f"{name}_sha256": None,
                f"{name}_truncated": False}
    kept, text = _kept(data, limit)
    return {
        f"{name}_text": text,
        f"{name}_b64": None if text is not None else base64.b64encode(kept).decode("ascii"),
        f"{name}_length": len(data),
        f"{name}_sha256": hashlib.sha256(data).hexdigest(),
        f"{name}_truncated": len(kept) < len(data),
    }


def _envelope(letter: DeadLetter) -> dict[str, Any]:
    return {
        "v": DEAD_LETTER_VERSION,
        "reason": letter.reason,
        "message": letter.message[:MAX_MESSAGE_CHARS],
        "field": letter.field,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "dead_lettered_ms": letter.dead_lettered_ms,
    }


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def dead_letter_key(letter: DeadLetter) -> bytes | None:
    """The Kafka key of a dead letter: the rejected record's key, cut like the key it carries."""
    return None if letter.key is None else _kept(letter.key, MAX_KEY_BYTES)[0]


def encode_dead_letter(letter: DeadLetter, max_original_bytes: int) -> bytes:
    """The wire form of a dead-letter record, value cut to ``max_original_bytes`` (module docstring)."""
    if letter.redacted:
        body = _envelope(letter)
        body.update(redacted=True, original_length=letter.original_length, original_sha256=letter.original_sha256)
        return _dumps(body)
    body = _envelope(letter)
    body.update(_payload("key", letter.key, MAX_KEY_BYTES))
    body.update(_payload("original", letter.original, max_original_bytes))
    return _dumps(body)


def encode_minimal_dead_letter(letter: DeadLetter) -> bytes:
    """The minimal form: what was rejected, why and where, without the record's key or value."""
    body = _envelope(letter)
    body.update(minimal=True, original_length=letter.original_length, original_sha256=letter.original_sha256)
    return _dumps(body)


def _part(body: dict[str, Any], name: str) -> bytes | None:
    text, b64 = body.get(f"{name}_text"), body.get(f"{name}_b64")
    if text is not None:
        return str(text).encode("utf-8")
    return None if b64 is None else base64.b64decode(b64)


def decode_dead_letter(raw: bytes) -> DeadLetter:
    """Read a dead-letter record back (ops tooling, replays of fixed events, tests).

    Raises:
        ValueError: ``raw`` is not a dead-letter record of a known version.
    """
    try:
        body = json.loads(raw.decode("utf-8"))
        version = body.get("v")
        if version not in (1, DEAD_LETTER_VERSION):
            raise ValueError(f"unknown dead-letter version {version!r}")
        # Version 1 kept the whole value (as base64 and as text) and the key as base64 only.
        original = base64.b64decode(body["original_b64"]) if version == 1 and body.get("original_b64") \
            else _part(body, "original")
        key = base64.b64decode(body["key_b64"]) if version == 1 and body.get("key_b64") else _part(body, "key")
        length = body.get("original_length", None if original is None else len(original))
        return DeadLetter(
            reason=body["reason"], message=body["message"], field=body.get("field"), topic=body["topic"],
            partition=int(body["partition"]), offset=int(body["offset"]), key=key, original=original,
            dead_lettered_ms=int(body["dead_lettered_ms"]), original_length=length,
            original_sha256=body.get("original_sha256"),
            original_truncated=bool(body.get("original_truncated", False)), minimal=bool(body.get("minimal", False)),
            redacted=bool(body.get("redacted", False)),
        )
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a dead-letter record: {exc}") from exc
