"""Dead-letter sends never crash the agent: retried while retryable, sent minimal when they cannot fit."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from core.domain import SourcePosition, TopicPartition
from core.retry import RetryPolicy
from streams.aggregate import SourceRecord
from streams.dead_letter import DeadLetter, dead_letter_from
from streams.dead_letter_publisher import DeadLetterPublisher, retryable, too_large
from streams.validation import Rejection, RejectReason
from tests.fixtures.broker import KafkaTopics
from tests.streams.test_ingest_integration import read_dead_letters


def letter(value: bytes, offset: int = 0) -> DeadLetter:
    record = SourceRecord(value=value, key=b"u1", position=SourcePosition(TopicPartition("ev", 0), offset))
    return dead_letter_from(record, Rejection(RejectReason.BAD_JSON, "not JSON"), 1_700_000_000_000)


@pytest.mark.integration
def test_a_dead_letter_the_producer_refuses_as_too_large_goes_minimal(kafka_topics: KafkaTopics) -> None:
    """A real aiokafka producer whose limit is below the dead letter (a broker configured lower than
    IG_BROKER_MAX_MESSAGE_BYTES says): the minimal record reaches the topic, the small one whole."""
    big, small = letter(b"x" * 20_000, offset=1), letter(b"{", offset=2)

    async def run() -> DeadLetterPublisher:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_topics.bootstrap, max_request_size=4096, acks="all")
        await producer.start()
        try:
            async def send(key: bytes | None, value: bytes) -> None:
                await producer.send_and_wait(kafka_topics.dead_letter, key=key, value=value)

            publisher = DeadLetterPublisher(send, max_original_bytes=16_384)
            await asyncio.wait_for(publisher.publish([big, small]), 30)
            return publisher
        finally:
            await producer.stop()

    publisher = asyncio.run(run())
    assert publisher.minimal_sent == 1
    letters = {d.offset: d for d in read_dead_letters(kafka_topics, 2, timeout_s=20)}
    assert letters[1].minimal and letters[1].original is None and letters[1].original_length == 20_000
    assert letters[1].original_sha256 == hashlib.sha256(b"x" * 20_000).hexdigest()
    assert not letters[2].minimal and letters[2].original == b"{"


def test_retryable_failures_are_retried_with_the_same_record() -> None:
    sent: list[bytes] = []
    failures = [KafkaConnectionError("broker restarting"), TimeoutError()]

    async def send(key: bytes | None, value: bytes) -> None:
        if failures:
            raise failures.pop(0)
        sent.append(value)

    publisher = DeadLetterPublisher(send, max_original_bytes=1024, retry=RetryPolicy(first_s=0.001))
    asyncio.run(publisher.publish([letter(b"{")]))
    assert publisher.retries == 2 and publisher.minimal_sent == 0
    assert len(sent) == 1 and b'"original_text":"{"' in sent[0]


def test_a_record_refused_for_good_goes_minimal_and_a_refused_minimal_is_retried() -> None:
    attempts: list[bytes] = []

    async def send(key: bytes | None, value: bytes) -> None:
        attempts.append(value)
        if len(attempts) < 3:  # the full record, then the minimal one, are refused (access not yet granted)
            raise TopicAuthorizationFailedError()

    publisher = DeadLetterPublisher(send, max_original_bytes=1024, retry=RetryPolicy(first_s=0.001))
    asyncio.run(publisher.publish([letter(b"{")]))
    assert b'"original_text"' in attempts[0] and all(b'"minimal":true' in a for a in attempts[1:])
    assert publisher.minimal_sent == 1 and publisher.retries == 1 and len(attempts) == 3


def test_error_classes() -> None:
    from aiokafka.errors import MessageSizeTooLargeError
    from faust.exceptions import ProducerSendError

    try:
        try:
            raise MessageSizeTooLargeError()
        except MessageSizeTooLargeError as exc:
            raise ProducerSendError("Error while sending") from exc  # how Faust reports it
    except ProducerSendError as wrapped:
        assert too_large(wrapped) and not retryable(wrapped)
    assert retryable(KafkaConnectionError()) and not too_large(KafkaConnectionError())
    assert not retryable(TopicAuthorizationFailedError())
