"""The ingest step against a real LadybugStore: redeliveries, store retries, competing writers.

No broker here: records are built directly, and dead letters are collected by the sink the
ingestor is given (the Kafka side of dead-lettering is covered in test_ingest_integration.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.domain import NodeId, SourcePosition, TopicPartition, UpsertBatch
from core.retry import RetryPolicy
from graph_store.base import GraphStore, GraphStoreError, StoreUnavailableError
from graph_store.ladybug import LadybugStore
from streams.aggregate import SourceRecord
from streams.config import EventContract
from streams.dead_letter import DeadLetter
from streams.ingest import EventIngestor, IngestStats, StoreWriter
from streams.validation import encode_event

T0 = 1_700_000_000_000
TP = TopicPartition("ev", 0)
CONTRACT = EventContract()


class FlakyStore(LadybugStore):
    """The real store, failing its next ``failures`` batch writes with ``error`` first."""

    def __init__(self, path: str, error: GraphStoreError, failures: int) -> None:
        super().__init__(path)
        self.error, self.failures = error, failures

    def apply_batch(self, batch: UpsertBatch) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return super().apply_batch(batch)


def records(first: int, last: int, weight: float = 1.0, user: str = "u1") -> list[SourceRecord]:
    return [SourceRecord(encode_event(user, "i1", "click", T0 + n, event_id=f"e{n}", weight=weight), b"k",
                         SourcePosition(TP, n)) for n in range(first, last + 1)]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


class Collected:
    """Dead-letter sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def __call__(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


def make_ingestor(store: GraphStore, executor: ThreadPoolExecutor, stats: IngestStats | None = None,
                  sink: Collected | None = None) -> EventIngestor:
    stats = stats if stats is not None else IngestStats()
    writer = StoreWriter(store, executor, stats, retry=RetryPolicy(first_s=0.01))
    return EventIngestor(CONTRACT, writer, sink if sink is not None else Collected(), stats, group="g")


def weight_of(store: GraphStore) -> float:
    edge = store.edge(NodeId("u1"), NodeId("i1"))
    return edge.weight if edge is not None else 0.0


def test_redelivered_batch_changes_nothing(ladybug_store: LadybugStore, executor: ThreadPoolExecutor) -> None:
    stats = IngestStats()
    ingestor = make_ingestor(ladybug_store, executor, stats)
    asyncio.run(ingestor.ingest(records(0, 9)))
    seq = ladybug_store.counts()["seq"]
    asyncio.run(ingestor.ingest(records(5, 9)))  # the tail again, as after a crash before the commit
    assert ladybug_store.counts()["seq"] == seq
    assert weight_of(ladybug_store) == 10.0
    assert stats.snapshot().events_skipped == 5


def test_restarted_ingestor_loads_offsets_and_skips_applied(ladybug_store: LadybugStore,
                                                            executor: ThreadPoolExecutor) -> None:
    asyncio.run(make_ingestor(ladybug_store, executor).ingest(records(0, 9)))
    restarted = make_ingestor(ladybug_store, executor)
    asyncio.run(restarted.load_offsets())
    asyncio.run(restarted.ingest(records(0, 14)))
    assert weight_of(ladybug_store) == 15.0
    assert ladybug_store.applied_offsets("g") == {TP: 14}


def test_retryable_store_errors_retry_the_same_batch(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    with FlakyStore(str(tmp_path / "g.lbdb"), StoreUnavailableError("locked"), failures=3) as store:
        store.ensure_schema()
        stats = IngestStats()
        asyncio.run(make_ingestor(store, executor, stats).ingest(records(0, 4, weight=0.5)))
        assert stats.snapshot().store_retries == 3
        assert weight_of(store) == 2.5
        assert store.applied_offsets("g") == {TP: 4}


def test_non_retryable_store_errors_propagate_and_write_nothing(tmp_path: Path,
                                                                executor: ThreadPoolExecutor) -> None:
    with FlakyStore(str(tmp_path / "g.lbdb"), GraphStoreError("schema broken"), failures=1) as store:
        store.ensure_schema()
        ingestor = make_ingestor(store, executor)
        with pytest.raises(GraphStoreError, match="schema broken"):
            asyncio.run(ingestor.ingest(records(0, 4)))
        assert store.applied_offsets("g") == {}
        assert ingestor.applied == {}


def test_stale_batch_reloads_offsets_and_applies_only_the_rest(ladybug_store: LadybugStore,
                                                               executor: ThreadPoolExecutor) -> None:
    # Two workers: the partition moved from `first` to `second` before `second` saw the new offsets.
    first, stats = make_ingestor(ladybug_store, executor), IngestStats()
    second = make_ingestor(ladybug_store, executor, stats)
    asyncio.run(second.load_offsets())
    asyncio.run(first.ingest(records(0, 9)))
    asyncio.run(second.ingest(records(5, 14)))
    assert stats.snapshot().stale_batches == 1
    assert weight_of(ladybug_store) == 15.0
    assert ladybug_store.applied_offsets("g") == {TP: 14}


def test_rejects_are_dead_lettered_once_and_advance_offsets(ladybug_store: LadybugStore,
                                                            executor: ThreadPoolExecutor) -> None:
    sink, stats = Collected(), IngestStats()
    ingestor = make_ingestor(ladybug_store, executor, stats, sink)
    batch = [*records(0, 1), SourceRecord(b"{bad", b"k", SourcePosition(TP, 2))]
    asyncio.run(ingestor.ingest(batch))
    asyncio.run(ingestor.ingest(batch))  # redelivery: neither written nor dead-lettered again
    assert [(letter.offset, letter.reason) for letter in sink.letters] == [(2, "bad_json")]
    assert ladybug_store.applied_offsets("g") == {TP: 2}
    assert stats.snapshot().dead_lettered == {"bad_json": 1}
    assert (stats.snapshot().events_accepted, stats.snapshot().batches) == (2, 1)


def test_skipping_asks_first_and_a_changed_cluster_applies_the_records(
        ladybug_store: LadybugStore, executor: ThreadPoolExecutor) -> None:
    """Records at offsets the old cluster applied are new on a restarted, empty one: a batch that
    would skip them asks first; told the cluster changed (and rebound), it applies them."""
    asked: list[str] = []
    stats = IngestStats()
    writer = StoreWriter(ladybug_store, executor, stats, retry=RetryPolicy(first_s=0.01))

    async def cluster_changed() -> bool:
        asked.append(ingestor.group)
        ingestor.rebind("g@new-cluster")
        await ingestor.load_offsets()
        return False

    ingestor = EventIngestor(CONTRACT, writer, Collected(), stats, group="g", before_skipping=cluster_changed)
    asyncio.run(ingestor.ingest(records(0, 9)))
    assert asked == []  # nothing to skip, nothing asked
    asyncio.run(ingestor.ingest(records(0, 4, weight=2.0)))  # offsets 0-4 again, on the new cluster
    assert asked == ["g"]
    assert weight_of(ladybug_store) == 10.0 + 5 * 2.0
    assert stats.snapshot().events_skipped == 0
    assert ladybug_store.applied_offsets("g@new-cluster") == {TP: 4}


def test_skipping_on_the_same_cluster_skips(ladybug_store: LadybugStore, executor: ThreadPoolExecutor) -> None:
    stats = IngestStats()
    writer = StoreWriter(ladybug_store, executor, stats, retry=RetryPolicy(first_s=0.01))

    async def same_cluster() -> bool:
        return True

    ingestor = EventIngestor(CONTRACT, writer, Collected(), stats, group="g", before_skipping=same_cluster)
    asyncio.run(ingestor.ingest(records(0, 9)))
    asyncio.run(ingestor.ingest(records(5, 9)))
    assert weight_of(ladybug_store) == 10.0 and stats.snapshot().events_skipped == 5


def test_a_plan_made_before_a_concurrent_rebind_is_made_again(ladybug_store: LadybugStore,
                                                              executor: ThreadPoolExecutor) -> None:
    """The broker-restart loss: a batch planned its skips against the old cluster's offsets while a
    partition assignment noticed the new cluster and rebound; the batch's own check then found the
    cluster unchanged. It must replan against the new (empty) offsets, not skip."""
    stats = IngestStats()
    writer = StoreWriter(ladybug_store, executor, stats, retry=RetryPolicy(first_s=0.01))

    async def assignment_got_there_first() -> bool:
        if ingestor.group == "g":  # the concurrent assignment's rebind, finishing while we wait
            ingestor.rebind("g@new-cluster")
            await ingestor.load_offsets()
        return True  # asked now, the broker is the cluster the (new) offsets belong to

    ingestor = EventIngestor(CONTRACT, writer, Collected(), stats, group="g",
                             before_skipping=assignment_got_there_first)
    asyncio.run(ingestor.ingest(records(0, 9)))
    asyncio.run(ingestor.ingest(records(0, 4, weight=2.0)))
    assert stats.snapshot().events_skipped == 0
    assert weight_of(ladybug_store) == 10.0 + 5 * 2.0
    assert ladybug_store.applied_offsets("g@new-cluster") == {TP: 4}
    assert ingestor.applied == {TP: 4}


class PausingStore(LadybugStore):
    """The real store whose next batch write waits until the test lets it go."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.writing, self.proceed = threading.Event(), threading.Event()

    def apply_batch(self, batch: UpsertBatch) -> int:
        self.writing.set()
        assert self.proceed.wait(10)
        return super().apply_batch(batch)


def test_a_batch_written_across_a_rebind_keeps_its_offsets_out_of_the_new_clusters(
        tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    with PausingStore(str(tmp_path / "g.lbdb")) as store:
        store.ensure_schema()
        ingestor = make_ingestor(store, executor)

        async def scenario() -> None:
            write = asyncio.ensure_future(ingestor.ingest(records(0, 9)))  # the old cluster's batch
            await asyncio.get_running_loop().run_in_executor(None, store.writing.wait, 10)
            ingestor.rebind("g@new-cluster")
            store.proceed.set()
            await write

        asyncio.run(scenario())
        assert store.applied_offsets("g") == {TP: 9}
        assert ingestor.applied == {}  # offsets 0-9 of the new cluster are still to be applied
