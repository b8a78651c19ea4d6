"""The dead-letter format: every record kept once, cut to a stated size, always within the broker's limit."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain import SourcePosition, TopicPartition
from core.settings import Settings, SettingsError
from streams.aggregate import SourceRecord
from streams.config import IngestConfig
from streams.dead_letter import (
    MAX_KEY_BYTES,
    DeadLetter,
    check_record_limits,
    dead_letter_from,
    dead_letter_key,
    decode_dead_letter,
    encode_dead_letter,
    encode_minimal_dead_letter,
    worst_case_bytes,
)
from streams.validation import Rejection, RejectReason

REJECTION = Rejection(RejectReason.TOO_LARGE, "record of many bytes is over IG_MAX_EVENT_BYTES=65536")


def letter_of(value: bytes | None, key: bytes | None = b"u1") -> DeadLetter:
    record = SourceRecord(value=value, key=key, position=SourcePosition(TopicPartition("ev", 2), 41))
    return dead_letter_from(record, REJECTION, 1_700_000_000_000)


def test_a_short_record_is_kept_whole_once_as_text() -> None:
    value = b'{"user_id": "\xc3\xbc", "weight": -1}'
    body = json.loads(encode_dead_letter(letter_of(value), 1024))
    assert body["original_text"] == value.decode() and body["original_b64"] is None
    assert body["original_length"] == len(value) and not body["original_truncated"]
    assert body["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert (body["topic"], body["partition"], body["offset"], body["key_text"]) == ("ev", 2, 41, "u1")
    decoded = decode_dead_letter(encode_dead_letter(letter_of(value), 1024))
    assert decoded == letter_of(value)


def test_a_long_record_is_cut_at_a_character_boundary_with_its_full_length_and_hash() -> None:
    value = "ü".encode() * 300_000  # 600,000 bytes of two-byte characters
    encoded = encode_dead_letter(letter_of(value), 1001)  # an odd cut would split a character
    body = json.loads(encoded)
    assert body["original_truncated"] and body["original_text"] == "ü" * 500
    assert body["original_length"] == 600_000 and body["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert len(encoded) < 3000
    decoded = decode_dead_letter(encoded)
    assert decoded.original == "ü".encode() * 500 and decoded.original_truncated and decoded.original_length == 600_000


def test_binary_values_and_huge_keys_are_cut_too() -> None:
    value, key = b"\xff" * 50_000, b"k" * 500_000
    letter = letter_of(value, key)
    body = json.loads(encode_dead_letter(letter, 2048))
    assert body["original_text"] is None and base64.b64decode(body["original_b64"]) == b"\xff" * 2048
    assert body["key_truncated"] and body["key_length"] == 500_000 and len(body["key_text"]) == MAX_KEY_BYTES
    assert dead_letter_key(letter) == b"k" * MAX_KEY_BYTES  # the Kafka key is cut as well


@given(st.binary(max_size=5000), st.one_of(st.none(), st.binary(max_size=3000)), st.integers(1, 1500))
def test_no_dead_letter_outgrows_its_worst_case(value: bytes, key: bytes | None, cut: int) -> None:
    letter = letter_of(value, key)
    encoded = encode_dead_letter(letter, cut)
    assert len(encoded) <= worst_case_bytes(cut)
    decoded = decode_dead_letter(encoded)
    assert decoded.original == value[:len(decoded.original or b"")]
    kept = len(decoded.original or b"")
    assert decoded.original_length == len(value) and decoded.original_truncated == (kept < len(value))


def test_the_minimal_form_keeps_position_reason_length_and_hash_only() -> None:
    value = b"x" * 10_000_000
    encoded = encode_minimal_dead_letter(letter_of(value, b"k" * 1000))
    assert len(encoded) < 600
    decoded = decode_dead_letter(encoded)
    assert decoded.minimal and decoded.original is None and decoded.key is None
    assert (decoded.reason, decoded.offset, decoded.original_length) == ("too_large", 41, 10_000_000)
    assert decoded.original_sha256 == hashlib.sha256(value).hexdigest()


def test_version_1_records_are_still_read() -> None:
    old = {"v": 1, "reason": "bad_json", "message": "not JSON", "field": None, "topic": "ev", "partition": 0,
           "offset": 3, "key_b64": "dTE=", "original_b64": "/wA=", "original_text": None, "dead_lettered_ms": 5}
    decoded = decode_dead_letter(json.dumps(old).encode())
    assert (decoded.key, decoded.original, decoded.original_length) == (b"u1", b"\xff\x00", 2)


def test_size_settings_must_fit_the_broker_limit() -> None:
    check_record_limits(IngestConfig.from_settings(Settings()))  # the defaults are consistent
    for bad in ({"max_event_bytes": 2_000_000}, {"max_item_bytes": 0},
                {"dead_letter_max_original_bytes": 200_000}, {"broker_max_message_bytes": 50_000}):
        with pytest.raises(SettingsError, match="IG_"):
            check_record_limits(IngestConfig.from_settings(Settings(**bad)))
