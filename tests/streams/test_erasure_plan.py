"""Erasure requests and pseudonyms in the pure ingest step: wire form, plan, deny-list, redaction."""

from __future__ import annotations

import json

from core.domain import ErasureRequest, NodeId, OffsetRange, SourcePosition, TopicPartition
from core.privacy import PSEUDONYM_PATTERN, ForgetKey, Privacy, Pseudonyms
from streams.aggregate import SourceRecord, plan_batch
from streams.config import EventContract
from streams.dead_letter import dead_letter_from, decode_dead_letter, encode_dead_letter
from streams.validation import Rejection, RejectReason, encode_erasure_request, encode_event, validate_event

NOW = 1_700_000_000_000
TP = TopicPartition("ev", 0)
CONTRACT = EventContract()
KEY = ForgetKey(b"plan-test-erasure-key-0123")
PRIVACY = Privacy(forget_key=KEY, forget_retention_s=3600.0)


def records(*values: bytes) -> list[SourceRecord]:
    return [SourceRecord(value, b"k", SourcePosition(TP, offset)) for offset, value in enumerate(values)]


def click(user: str, item: str) -> bytes:
    return encode_event(user, item, "click", NOW)


def test_erasure_request_wire_form() -> None:
    assert validate_event(encode_erasure_request("u1", NOW - 5), CONTRACT, NOW) == ErasureRequest(NodeId("u1"), NOW - 5)
    without_ts = json.dumps({"type": "forget", "user_id": "u1"}).encode()
    assert validate_event(without_ts, CONTRACT, NOW) == ErasureRequest(NodeId("u1"), NOW)
    for bad, reason in ((b'{"type": "forget"}', RejectReason.MISSING_FIELD),
                        (b'{"type": "forget", "user_id": 7}', RejectReason.WRONG_TYPE),
                        (b'{"type": "forget", "user_id": " "}', RejectReason.EMPTY_ID)):
        outcome = validate_event(bad, CONTRACT, NOW)
        assert isinstance(outcome, Rejection) and outcome.reason is reason


def test_a_batch_never_holds_edges_of_a_user_it_erases() -> None:
    """Events before and after the request in one batch change nothing; others apply; offsets cover all."""
    plan = plan_batch(records(click("gone", "i1"), click("kept", "i1"), encode_erasure_request("gone", NOW),
                              click("gone", "i2")), {}, CONTRACT, "g", NOW, PRIVACY)
    assert [(e.user_id, e.item_id) for e in plan.batch.edges] == [("kept", "i1")]
    assert [(e.user_id, e.digest) for e in plan.batch.erasures] == [("gone", KEY.digest("gone"))]
    assert plan.batch.erasures[0].expires_ms == NOW + 3_600_000
    assert plan.batch.offsets == {TP: OffsetRange(0, 3)}
    assert (plan.accepted, plan.forgotten, plan.rejected) == (1, 2, [])


def test_denied_users_are_ignored_until_their_entry_expires() -> None:
    batch = records(click("gone", "i1"), click("kept", "i1"))
    denied = {KEY.digest("gone"): NOW + 1}
    plan = plan_batch(batch, {}, CONTRACT, "g", NOW, PRIVACY, denied)
    assert [e.user_id for e in plan.batch.edges] == ["kept"] and plan.forgotten == 1
    expired = plan_batch(batch, {}, CONTRACT, "g", NOW + 1, PRIVACY, denied)
    assert sorted(e.user_id for e in expired.batch.edges) == ["gone", "kept"] and expired.forgotten == 0


def test_pseudonyms_replace_user_ids_in_events_and_requests() -> None:
    pseudonyms = Pseudonyms(b"pseudonym-test-key-0123", version=3)
    privacy = Privacy(forget_key=KEY, pseudonyms=pseudonyms)
    plan = plan_batch(records(click("alice", "i1"), encode_erasure_request("bob", NOW), click("bob", "i2")),
                      {}, CONTRACT, "g", NOW, privacy)
    (edge,) = plan.batch.edges
    assert edge.user_id == pseudonyms("alice") and PSEUDONYM_PATTERN.match(edge.user_id)
    assert edge.user_id.startswith("p3_") and "alice" not in edge.user_id
    (erasure,) = plan.batch.erasures
    assert erasure.user_id == pseudonyms("bob") and erasure.digest == KEY.digest(pseudonyms("bob"))
    assert plan.forgotten == 1


def test_pseudonyms_are_keyed_and_versioned() -> None:
    one, two = Pseudonyms(b"pseudonym-test-key-0123"), Pseudonyms(b"another-pseudonym-key-45")
    assert one("u1") == one("u1") != two("u1")
    assert Pseudonyms(b"pseudonym-test-key-0123", version=2)("u1") != one("u1")
    assert "pseudonym-test-key" not in repr(one) and "plan-test" not in repr(KEY)


def test_redacted_dead_letters_hold_no_id_and_no_payload() -> None:
    raw = b'{"user_id": "alice@example.com", "item_id": "i1", "type": "bogus", "ts": 1}'
    record = SourceRecord(raw, b"alice@example.com", SourcePosition(TP, 41))
    outcome = validate_event(raw, CONTRACT, NOW)
    assert isinstance(outcome, Rejection)
    letter = dead_letter_from(record, outcome, NOW, redact_with=KEY)
    wire = encode_dead_letter(letter, 16_384)
    assert b"alice" not in wire and b"bogus" not in wire
    back = decode_dead_letter(wire)
    assert back.redacted and back.key is None and back.original is None
    assert (back.reason, back.offset, back.original_length) == (str(outcome.reason), 41, len(raw))
    assert back.original_sha256 == KEY.record_digest(raw)


def test_pseudonyms_turn_redaction_on() -> None:
    assert Privacy(pseudonyms=Pseudonyms(b"pseudonym-test-key-0123")).redact_dead_letters
    assert not Privacy().redact_dead_letters
