"""The store going away mid-stream, and a rebalance that replays records: real broker, agent and store.

* **Store outage mid-stream.** With LadybugDB embedded there is no server to stop, and the process
  holding the file cannot lose it to another one, so the outage is injected where the backend
  reports one: for a few seconds every write fails, *inside* its transaction after the nodes were
  touched, with the backend's own retryable :class:`StoreUnavailableError` (what a locked file or an
  I/O error raises). The transaction rolls back, the agent retries the same batch with backoff and
  acks nothing meanwhile; afterwards the totals are exact.
* **Rebalance replay.** A second worker joins the group while the first has applied records that
  Kafka has no committed offset for (Faust's commit interval is set far away), so the partitions it
  takes over are delivered again from the start. The store's applied offsets make the replay
  harmless: the redelivered records are skipped, and totals are exact.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from graph_store.base import StoreUnavailableError
from graph_store.ladybug import LadybugStore
from graph_store.subgraph import Runner
from streams.app import IngestApp
from streams.replay import replay
from tests.fixtures.broker import KafkaTopics
from tests.streams.test_ingest_integration import applied_count, make_events, pump, running_ingest, stored_totals

pytestmark = pytest.mark.integration


class OutageStore(LadybugStore):
    """A LadybugStore whose edge writes fail while :attr:`down` is set, mid-transaction."""

    down = False
    failed_writes = 0

    def _upsert_edges(self, tx: Runner, edges: list[dict[str, Any]], seq: int) -> None:  # type: ignore[override]
        super()._upsert_edges(tx, edges, seq)
        if self.down:
            self.failed_writes += 1
            raise StoreUnavailableError("injected outage: the graph store is unreachable")


def test_store_outage_mid_stream_loses_and_doubles_nothing(kafka_topics: KafkaTopics, tmp_path: Path) -> None:
    store = OutageStore(str(tmp_path / "graph.lbdb"))
    store.ensure_schema()
    events, expected = make_events(1200, users=10, items=10, seed=61)
    settings = kafka_topics.settings(batch_max_events=100)
    try:
        with running_ingest(settings, store, tmp_path / "faust") as ingest:
            replay(events[:400], kafka_topics.bootstrap, kafka_topics.events)
            pump(ingest, lambda: ingest.stats.snapshot().events_accepted == 400, 30, "the events before the outage")
            store.down = True
            replay(events[400:], kafka_topics.bootstrap, kafka_topics.events)
            pump(ingest, lambda: ingest.stats.snapshot().store_retries >= 3, 30, "writes to fail and be retried")
            accepted_during_outage = ingest.stats.snapshot().events_accepted
            deadline = time.monotonic() + 3.0  # an outage of several seconds
            pump(ingest, lambda: time.monotonic() > deadline, 10, "the outage to last")
            assert ingest.stats.snapshot().events_accepted == accepted_during_outage == 400  # nothing applied meanwhile
            store.down = False
            pump(ingest, lambda: ingest.stats.snapshot().events_accepted == len(events), 60,
                 "the backlog after the outage")
            assert ingest.app.crash_reason is None
        assert store.failed_writes >= 3
        assert stored_totals(store) == expected  # the rolled-back batches were applied exactly once
        assert applied_count(store, kafka_topics.offsets_group) == len(events)
    finally:
        store.close()


@contextmanager
def ingest_in_thread(settings: Settings, store: LadybugStore, datadir: Path,
                     first: IngestApp) -> Iterator[IngestApp]:
    """A second worker of the same group in this process: its own thread, event loop and Faust app.
    ``first``'s loop is pumped meanwhile: the group cannot rebalance while a member is frozen."""
    ready = threading.Event()
    stop = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        try:
            with running_ingest(settings, store, datadir) as ingest:
                holder["ingest"] = ingest
                ready.set()
                loop = asyncio.get_event_loop()
                while not stop.is_set():
                    loop.run_until_complete(asyncio.sleep(0.05))
        except BaseException as exc:  # reported by the test thread
            holder["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="second-worker", daemon=True)
    thread.start()
    try:
        pump(first, ready.is_set, 60, "the second worker to start")
        if "error" in holder:
            raise holder["error"]
        yield holder["ingest"]
    finally:
        stop.set()
        thread.join(30)
    if "error" in holder:
        raise holder["error"]


def test_records_replayed_after_a_rebalance_are_skipped(kafka_topics: KafkaTopics, ladybug_store: LadybugStore,
                                                        tmp_path: Path) -> None:
    events, expected = make_events(2000, users=24, items=12, seed=62)
    settings = kafka_topics.settings(batch_max_events=100)
    # Faust commits its offsets to Kafka every broker_commit_interval: put that far away for the first
    # worker, so Kafka knows nothing of what it applied when the second one arrives.
    with running_ingest(settings, ladybug_store, tmp_path / "first", commit_interval_s=3600.0) as first:
        replay(events[:1000], kafka_topics.bootstrap, kafka_topics.events)
        pump(first, lambda: first.stats.snapshot().events_accepted == 1000, 30, "the first worker to apply 1000 events")
        with ingest_in_thread(settings, ladybug_store, tmp_path / "second", first) as second:
            # The rebalance hands the second worker some partitions from offset 0 (nothing committed).
            pump(first, lambda: second.stats.snapshot().events_skipped > 0, 60, "the second worker to skip a replay")
            replay(events[1000:], kafka_topics.bootstrap, kafka_topics.events)
            def accepted_by_both() -> int:
                return second.stats.snapshot().events_accepted + first.stats.snapshot().events_accepted

            # The store's offsets move at the commit; each worker counts its batch a moment later, on
            # its own loop (the second worker's runs in another thread): wait for both, then compare.
            pump(first, lambda: applied_count(ladybug_store, kafka_topics.offsets_group) == len(events)
                 and accepted_by_both() >= len(events), 60, "all events applied and counted by the two workers")
            skipped = second.stats.snapshot().events_skipped + first.stats.snapshot().events_skipped
            accepted = accepted_by_both()
            assert first.app.crash_reason is None and second.app.crash_reason is None
    assert skipped > 0 and accepted == len(events)  # each event applied once, replays skipped
    assert stored_totals(ladybug_store) == expected
