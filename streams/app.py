"""The Faust app: two thin agents that batch Kafka records and hand them to the ingestors.

* ``ingest_events`` reads ``config.events_topic`` in batches of up to ``batch_max_events``
  records or ``batch_window_s`` seconds, and applies each batch through
  :class:`~streams.ingest.EventIngestor` (validate, aggregate, dead-letter, one store transaction).
* ``ingest_items`` reads ``config.items_topic`` and upserts catalog attributes.

Acks: the agents iterate with ``noack_take`` and ack a batch's records only after the store write,
so Faust commits no offset whose effect is not in the store. Faust's own commits are a shortcut
for restarts; correctness comes from the store's applied offsets (see :mod:`streams.aggregate`),
kept under :func:`~streams.ingest.offsets_group` (consumer group + Kafka cluster id).

Settings are declared once in :class:`~core.settings.Settings`; the ingest stage's are an
:class:`~streams.config.IngestConfig`, mapped to Faust's here. The group session timeout matters
for restarts: Tansu answers a JoinGroup only after about half the session timeout, and a crashed
member holds its partitions until the timeout expires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import mode
from faust.types import EventT, StreamT

from core.domain import SourcePosition, TopicPartition
from core.retry import BACKOFF
from graph_store.base import GraphStore
from streams.aggregate import SourceRecord
from streams.config import IngestConfig
from streams.dead_letter import DeadLetter, check_record_limits
from streams.dead_letter_publisher import DeadLetterPublisher
from streams.ingest import EventIngestor, IngestStats, ItemIngestor, StoreWriter, offsets_group
from streams.kafka_admin import cluster_id
from streams.kafka_transport import kafka_transport
from streams.write_behind import WriteBehind

log = logging.getLogger(__name__)


def faust_settings(config: IngestConfig, datadir: str) -> dict[str, Any]:
    """Faust configuration derived from ours (the one place it is mapped).

    Args:
        config (IngestConfig): broker, group timeouts, batch size and the broker's message limit.
        datadir (str): Faust's data directory.
    """
    session = config.broker_session_timeout_s
    return {
        "broker": config.broker_url,
        "datadir": datadir,
        "web_enabled": False,
        "autodiscover": False,
        "broker_session_timeout": session,
        "broker_rebalance_timeout": config.broker_rebalance_timeout_s,
        # Kafka requires heartbeats well inside the session timeout.
        "broker_heartbeat_interval": max(session / 6, 0.1),
        "broker_commit_interval": 1.0,
        "broker_max_poll_records": max(config.batch_max_events, 500),
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        # Sizes agree with the broker's limit (streams.dead_letter.check_record_limits): nothing we
        # accept or dead-letter is refused by our producer, and any record the broker holds can be fetched.
        "producer_max_request_size": config.broker_max_message_bytes,
        "consumer_max_fetch_size": config.broker_max_message_bytes,
        "topic_replication_factor": 1,
    }


def source_record(event: EventT) -> SourceRecord:
    """Our view of a Faust event: raw value, raw key, where it was read and its Kafka timestamp."""
    message = event.message
    tp = TopicPartition(message.topic, message.partition)
    return SourceRecord(value=message.value, key=message.key, position=SourcePosition(tp, message.offset),
                        timestamp_ms=int((message.timestamp or 0.0) * 1000))


class IngestApp:
    """The Faust app with its ingestors, stats and store executor.

    Args:
        config (IngestConfig): broker, topics, group, batching and validation settings.
        store (GraphStore): where batches are applied.
        datadir (str): Faust's data directory (no tables are kept there, only its bookkeeping).
        stats (IngestStats, optional): counters to update; ``None`` creates fresh ones (default: ``None``).

    Raises:
        BrokerUnavailableError: the broker did not tell its cluster id (retryable).
    """

    def __init__(self, config: IngestConfig, store: GraphStore, *, datadir: str,
                 stats: IngestStats | None = None) -> None:
        check_record_limits(config)
        self.config = config
        self.stats = stats if stats is not None else IngestStats()
        self._crashing: asyncio.Future[None] | None = None
        self.app = faust.App(config.consumer_group, **faust_settings(config, datadir))
        # Before any topic exists: declaring one builds the transport (streams.kafka_transport).
        self.app.transport = kafka_transport(config.broker_fetch_max_wait_s)(self.app.conf.broker_consumer,
                                                                                self.app)
        # One thread: store writes happen in batch order, and the store is single-threaded.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-store")
        writer = StoreWriter(store, self.executor, self.stats)
        #: Key of this pipeline's applied offsets in the store (consumer group on this cluster).
        self.offsets_group = offsets_group(config.consumer_group, cluster_id(config.bootstrap_servers))
        self.events = EventIngestor(config.contract, writer, self.send_dead_letters, self.stats,
                                    self.offsets_group, before_skipping=self.check_cluster, privacy=config.privacy)
        self.items = ItemIngestor(config.contract, writer, self.send_dead_letters, self.stats, config.privacy)
        self.events_topic = self._raw_topic(config.events_topic)
        self.items_topic = self._raw_topic(config.items_topic)
        self.dead_letter_topic = self._raw_topic(config.dead_letter_topic)
        self.dead_letters = DeadLetterPublisher(self._send_dead_letter, config.dead_letter_max_original_bytes)
        self._declare_agents()
        self.app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]  # mode's handler alias defeats mypy

    def _raw_topic(self, name: str) -> faust.TopicT:
        return self.app.topic(name, value_type=bytes, key_type=bytes, value_serializer="raw",
                              key_serializer="raw")

    def _declare_agents(self) -> None:
        batch_max, window = self.config.batch_max_events, self.config.batch_window_s

        # CrashingSupervisor: a failing agent must stop the worker, not restart behind a lost batch.
        @self.app.agent(self.events_topic, name="ingest_events", concurrency=1,
                        supervisor_strategy=mode.CrashingSupervisor)
        async def ingest_events(stream: StreamT) -> None:
            async def apply(events: list[EventT]) -> None:
                await self.events.ingest([source_record(e) for e in events])
                await _ack_all(stream, events)

            # Faust keeps collecting while a batch is written (streams.write_behind).
            behind = WriteBehind(apply, max_batch=batch_max, max_pending=4 * batch_max,
                                 on_failure=self._crash)
            try:
                async for events in _unacked_batches(stream, batch_max, window):
                    await behind.add(events)
                await behind.flush()
            finally:
                behind.cancel()

        @self.app.agent(self.items_topic, name="ingest_items", concurrency=1,
                        supervisor_strategy=mode.CrashingSupervisor)
        async def ingest_items(stream: StreamT) -> None:
            async for events in _unacked_batches(stream, batch_max, window):
                await self.items.ingest([source_record(e) for e in events])
                await _ack_all(stream, events)

        @self.app.task
        async def load_offsets() -> None:
            await self.events.load_offsets()
            self.stats.mark_started()

    def _crash(self, exc: BaseException) -> None:
        """A failed write stops the worker at once (CrashingSupervisor semantics), not at the next batch."""
        self._crashing = asyncio.ensure_future(self.app.crash(exc))

    def close(self) -> None:
        """Wait for a store write in flight; call after the app has stopped, before closing the store.

        Not done on Faust's shutdown signal: agents may still flush a buffered batch after it.
        """
        self.executor.shutdown(wait=True)

    async def _on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        # Partitions may come from another worker that applied more than we know: reload (a
        # changed cluster has just had its offsets loaded by check_cluster).
        if await self.check_cluster():
            await self.events.load_offsets()

    async def check_cluster(self) -> bool:
        """``True`` if the broker is still the Kafka cluster our applied offsets belong to.

        A broker that restarted empty (Tansu memory storage) is a new cluster numbering offsets
        from 0 again: offsets applied on the old one must not mask its records. On a change the
        ingestor is rebound to the new cluster's offsets (and reloads them) and this returns ``False``.
        Asked on every partition assignment and before any batch skips records, since records of
        the new cluster can arrive before the group's rebalance tells us of it.
        """
        current = await self._current_cluster()
        group = offsets_group(self.config.consumer_group, current)
        if group == self.offsets_group:
            return True
        log.warning("Kafka cluster changed (%s -> %s): applied offsets now kept under %r",
                    self.offsets_group, group, group)
        self.offsets_group = group
        self.events.rebind(group)
        await self.events.load_offsets()
        return False

    async def _current_cluster(self) -> str:
        """The broker's cluster id. While the broker is restarting
        (:class:`~streams.kafka_admin.BrokerUnavailableError`) there is nothing to decide yet: it is asked
        again with :data:`core.retry.BACKOFF`."""
        loop = asyncio.get_running_loop()

        def unavailable(exc: Exception, wait: float) -> None:
            log.warning("cannot read the Kafka cluster id (%s); retrying in %.1f s", exc, wait)

        return await BACKOFF.call_async(
            lambda: loop.run_in_executor(None, cluster_id, self.config.bootstrap_servers), on_retry=unavailable)

    async def send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Publish dead letters now and wait until the broker has acknowledged every one (never raises
        for a failed send: see :mod:`streams.dead_letter_publisher`)."""
        await self.dead_letters.publish(letters)

    async def _send_dead_letter(self, key: bytes | None, value: bytes) -> None:
        # force=True: otherwise Faust attaches the send to the current event and delays it to the
        # ack, which comes after the store write; a crash in between would lose the dead letter.
        pending = await self.dead_letter_topic.send(key=key, value=value, force=True)
        await pending


def _unacked_batches(stream: StreamT, max_events: int, within_s: float) -> AsyncIterator[list[EventT]]:
    """Batches of events that Faust will not ack by itself (we ack after the store write)."""
    return stream.noack_take(max_events, within=within_s)  # type: ignore[attr-defined]  # missing from StreamT


async def _ack_all(stream: StreamT, events: Sequence[EventT]) -> None:
    for event in events:
        await stream.ack(event)
