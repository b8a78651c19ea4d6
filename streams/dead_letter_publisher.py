"""Publishing dead letters so that a send failure never crashes the agent and never loses a record.

The agent acks a batch's records (lets Kafka commit their offsets) only after their dead letters
are acknowledged by the broker, so :meth:`DeadLetterPublisher.publish` returns only then:

* a retryable failure (broker restarting, leader moving, request timed out) is retried with
  jittered, capped backoff (:data:`core.retry.BACKOFF`), for as long as it takes: meanwhile nothing
  is acked, lag grows and the stall alert fires, as with a store outage;
* a record the producer or broker refuses as too large, or refuses for good for another reason,
  is replaced by its minimal form (reason, position, length, sha256: see :mod:`streams.dead_letter`)
  and that is sent, retried like any other;
* a minimal record refused for good (the dead-letter topic deleted, access revoked) is retried
  with backoff and logged as an error each time: the operator fixes the topic, nothing is lost.

One oversized event therefore costs one minimal dead letter, where it used to crash the worker on
every restart (issue 11: a 500,000-character ``user_id`` made a 2.3x larger dead letter).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError, RecordTooLargeError

from core.retry import BACKOFF, RetryPolicy
from streams.dead_letter import DeadLetter, dead_letter_key, encode_dead_letter, encode_minimal_dead_letter

log = logging.getLogger(__name__)

#: Sends one record (key, value) to the dead-letter topic; returns once the broker has it, else raises.
SendRecord = Callable[[bytes | None, bytes], Awaitable[object]]


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (Faust raises ProducerSendError from the client's error)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def too_large(exc: BaseException) -> bool:
    """Whether the producer or the broker refused the record for its size."""
    return any(isinstance(e, MessageSizeTooLargeError | RecordTooLargeError) for e in _causes(exc))


def retryable(exc: BaseException) -> bool:
    """Whether sending the same record again may succeed (Kafka says so, or it timed out)."""
    return any(isinstance(e, KafkaTimeoutError | ConnectionError | TimeoutError)
               or (isinstance(e, KafkaError) and e.retriable) for e in _causes(exc))


class DeadLetterPublisher:
    """Sends dead letters and waits until the broker has acknowledged each (see the module docstring).

    Args:
        send (SendRecord): sends one record to the dead-letter topic and waits for its ack.
        max_original_bytes (int): most bytes of a rejected value a dead letter keeps
            (``IG_DEAD_LETTER_MAX_ORIGINAL_BYTES``).
        retry (RetryPolicy): waits between attempts (default: :data:`core.retry.BACKOFF`).
    """

    def __init__(self, send: SendRecord, max_original_bytes: int, *, retry: RetryPolicy = BACKOFF) -> None:
        self._send = send
        self._max_original_bytes = max_original_bytes
        self._retry = retry
        #: Dead letters sent in their minimal form, and send attempts retried (for metrics and tests).
        self.minimal_sent = 0
        self.retries = 0

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Send every letter; returns when the broker has acknowledged all of them."""
        await asyncio.gather(*(self._publish_one(letter) for letter in letters))
        if letters:
            first = letters[0]
            log.warning("dead-lettered %d record(s), first %s:%d@%d: %s", len(letters), first.topic,
                        first.partition, first.offset, first.message[:200])

    async def _publish_one(self, letter: DeadLetter) -> None:
        key, value, minimal = dead_letter_key(letter), encode_dead_letter(letter, self._max_original_bytes), False
        waits = self._retry.delays()  # jittered: restarted agents do not retry in step
        while True:
            try:
                await self._send(key, value)
                return
            except Exception as exc:  # a send failure of any kind must not crash the agent (module docstring)
                if not minimal and (too_large(exc) or not retryable(exc)):
                    log.error("dead letter for %s:%d@%d refused (%r); sending its minimal form", letter.topic,
                              letter.partition, letter.offset, exc)
                    key, value, minimal = None, encode_minimal_dead_letter(letter), True
                    self.minimal_sent += 1
                    continue
                wait = next(waits)
                level = logging.WARNING if retryable(exc) else logging.ERROR
                log.log(level, "dead letter for %s:%d@%d not sent (%r); retrying in %.1f s", letter.topic,
                        letter.partition, letter.offset, exc, wait)
            self.retries += 1
            await asyncio.sleep(wait)
