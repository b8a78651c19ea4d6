"""Consumer lag measured from outside Faust: the group's committed offsets vs the partitions' ends.

Faust's own lag view lives inside the worker and dies with it (a stalled or crashed worker reports
nothing), so ops read lag from the broker: committed offsets of the consumer group against the
true end of each partition.

Why "true" end: Tansu reports a partition's high watermark as the base offset of its last record
batch plus one, which under-counts when a producer batches several records. We therefore read
the last batch and take ``max(reported_end, last_record_offset + 1)``; against Apache Kafka this
gives the same number as the reported high watermark.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from core.errors import InterestGraphError

# Closing a short-lived client cancels its pending metadata refresh, which kafka-python logs as an
# ERROR ("Metadata refresh: failed Cancelled") although nothing failed; real failures raise below.
logging.getLogger("kafka.cluster").setLevel(logging.CRITICAL)


class LagUnavailableError(InterestGraphError, RuntimeError):
    """The broker could not be asked (down, unknown topic). Retryable: ask again later."""

    retryable = True


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Lag of one partition: ``end - committed`` (everything unconsumed when nothing is committed)."""

    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


class LagProbe:
    """Reads partition ends and group offsets with short-lived kafka-python clients.

    Args:
        bootstrap (Sequence[str]): ``host:port`` of the brokers.
        timeout_s (float): deadline for each broker request (default: ``5.0`` s).
    """

    def __init__(self, bootstrap: Sequence[str], timeout_s: float = 5.0) -> None:
        self._bootstrap = list(bootstrap)
        self._timeout_ms = int(timeout_s * 1000)

    def partitions(self, consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise LagUnavailableError(f"topic {topic!r} does not exist on {self._bootstrap}")
        return [TopicPartition(topic, p) for p in sorted(parts)]

    def true_ends(self, consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Exclusive end offset of each partition (see the module docstring for why we read)."""
        reported: dict[TopicPartition, int] = consumer.end_offsets(tps)
        begins: dict[TopicPartition, int] = consumer.beginning_offsets(tps)
        non_empty = [tp for tp in tps if reported[tp] > begins[tp]]
        ends = dict(reported)
        if not non_empty:
            return ends
        consumer.assign(non_empty)
        for tp in non_empty:
            consumer.seek(tp, reported[tp] - 1)
        pending = set(non_empty)
        # One poll returns the whole last batch of each partition; a few polls cover slow brokers.
        for _ in range(10):
            if not pending:
                break
            for tp, records in consumer.poll(timeout_ms=min(500, self._timeout_ms)).items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
                    pending.discard(tp)
        return ends

    def topic_lag(self, topic: str, group: str) -> list[PartitionLag]:
        """Per-partition lag of ``group`` on ``topic``."""
        try:
            consumer = self._consumer()
            admin = KafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=self._timeout_ms)
        except KafkaError as exc:
            raise LagUnavailableError(f"broker {self._bootstrap} unreachable: {exc}") from exc
        try:
            tps = self.partitions(consumer, topic)
            ends = self.true_ends(consumer, tps)
            committed = admin.list_group_offsets(group).get(group, {})
        except KafkaError as exc:
            raise LagUnavailableError(f"could not read offsets of {topic!r}/{group!r}: {exc}") from exc
        finally:
            consumer.close()
            admin.close()
        out = []
        for tp in tps:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            out.append(PartitionLag(tp.topic, tp.partition, offset, ends[tp]))
        return out

    def topic_size(self, topic: str) -> int:
        """Records in a topic (e.g. the dead-letter count); 0 if the topic does not exist yet."""
        try:
            consumer = self._consumer()
        except KafkaError as exc:
            raise LagUnavailableError(f"broker {self._bootstrap} unreachable: {exc}") from exc
        try:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                return 0
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            begins = consumer.beginning_offsets(tps)
            ends = self.true_ends(consumer, tps)
            return sum(ends[tp] - begins[tp] for tp in tps)
        except KafkaError as exc:
            raise LagUnavailableError(f"could not read offsets of {topic!r}: {exc}") from exc
        finally:
            consumer.close()

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=max(self._timeout_ms, 1000),
            consumer_timeout_ms=self._timeout_ms,
        )
