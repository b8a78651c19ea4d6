"""Publish erasure requests to the events topic: what ``interest-graph forget`` and the Admin service do.

A request is keyed by the user id exactly as the user's events are (:func:`streams.validation.event_key`),
so Kafka's default partitioner (murmur2, as the Java client and kafka-python use it) puts it in the
same partition, after the events published before it and before those published after. Producers
on librdkafka (``confluent-kafka``, ``kcat``) must set ``partitioner=murmur2_random`` to agree.
Even where they do not, no event of a forgotten user is applied while the deny-list holds them:
the ingest agents re-read it every :data:`streams.ingest.DENY_LIST_REFRESH_S`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError

from core.domain import ErasureReceipt, epoch_ms
from core.errors import InterestGraphError
from streams.validation import encode_erasure_request, event_key


class ErasurePublishError(InterestGraphError):
    """The broker did not take the erasure requests in time; publishing again is harmless (retryable)."""

    retryable = True


class ErasurePublisher:
    """Sends erasure requests and waits until the broker holds every one (``acks=all``).

    The producer is made on first use, so a server whose Admin service is never called never
    connects to Kafka. Thread-safe (kafka-python's producer is; creating it takes a lock).

    Args:
        bootstrap (Sequence[str]): ``host:port`` of the brokers.
        topic (str): the events topic.
        timeout_s (float): longest a call waits for the broker, in seconds (default: ``10.0``).
    """

    def __init__(self, bootstrap: Sequence[str], topic: str, timeout_s: float = 10.0) -> None:
        self.bootstrap = list(bootstrap)
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def forget(self, user_ids: Sequence[str]) -> list[ErasureReceipt]:
        """Publish one request per user id (as producers name the user); their receipts, in order.

        Raises:
            ErasurePublishError: the broker is unreachable or did not acknowledge in time.
        """
        try:
            producer = self._connected()
            now_ms = epoch_ms()
            sent = [producer.send(self.topic, key=event_key(u), value=encode_erasure_request(u, now_ms))
                    for u in user_ids]
            producer.flush(timeout=self.timeout_s)
            return [ErasureReceipt(meta.partition, meta.offset) for meta in (f.get(timeout=self.timeout_s)
                                                                             for f in sent)]
        except KafkaError as exc:
            raise ErasurePublishError(f"the broker did not take the erasure requests: {exc!r}") from exc

    def _connected(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0,
                                               max_block_ms=int(self.timeout_s * 1000))
            return self._producer

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=self.timeout_s)
                self._producer = None
