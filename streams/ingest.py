"""The ingest step behind the Faust agents: plan a batch, dead-letter its rejects, write it once.

:class:`EventIngestor` holds the only state the agent needs (the store's applied offsets) and does
the I/O around the pure :func:`streams.aggregate.plan_batch`:

1. records at or below the applied offsets are skipped (redeliveries);
2. rejected records go to the dead-letter topic, and we wait until the broker has them;
3. edges and offsets are written in one store transaction (in an executor: the store is blocking);
4. only then does the agent ack the records, so Kafka never commits an offset the store lacks.

Store errors: retryable ones (store locked or unreachable) are retried with capped exponential
backoff, forever, with the same batch; nothing is dropped and nothing is acked meanwhile.
:class:`~graph_store.base.StaleBatchError` means another writer applied part of the batch: reload
the offsets and plan again. Anything else is a bug or a broken store: it propagates, the worker
crashes, and a restart resumes from the last committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from core.domain import EdgeDecay, EdgeDelta, ItemMeta, NodeId, SourcePosition, TopicPartition, UpsertBatch, epoch_ms
from core.histogram import Histogram
from core.privacy import Privacy
from core.retry import BACKOFF, RetryPolicy
from graph_store.base import GraphStore, StaleBatchError
from streams.aggregate import BatchPlan, SourceRecord, plan_batch
from streams.catalog import validate_item
from streams.config import EventContract
from streams.dead_letter import DeadLetter, dead_letter_from
from streams.validation import Rejection

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Sends dead letters and returns once the broker has acknowledged all of them.
DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[None]]

#: Asked before records are skipped as already applied: ``True`` if the applied offsets still
#: belong to the Kafka cluster being read; ``False`` if it changed (the ingestor was rebound to the
#: new cluster's offsets and must plan again).
OffsetsCheck = Callable[[], Awaitable[bool]]

#: How often an ingest agent re-reads the deny-list (erasures another worker applied), in seconds.
DENY_LIST_REFRESH_S = 1.0



@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """One committed event batch with the moments it passed, for end-to-end freshness.

    Args:
        seq (int): the change-log sequence of its store write.
        event_ms (np.ndarray): ``int64`` Kafka record timestamps of its accepted records (epoch ms;
            0 where a record had none).
        received_ms (int): when the agent handed the batch to the ingest step (epoch ms).
        planned_ms (int): when it was decoded, validated and aggregated (epoch ms).
        committed_ms (int): when its store transaction committed (epoch ms).
        edges (tuple[EdgeDelta, ...]): the edge deltas it added to the store.
        erased (tuple[NodeId, ...]): the users it forgot (as the store named them).
        decay (EdgeDecay, optional): the reference its edge weights are in (``None``: no decay).
        rescaled (float): what every weight stored before it was multiplied by (a rebase; 1.0 = none):
            whoever holds copies of stored weights must scale them too.
    """

    seq: int
    event_ms: np.ndarray
    received_ms: int
    planned_ms: int
    committed_ms: int
    edges: tuple[EdgeDelta, ...] = ()
    erased: tuple[NodeId, ...] = ()
    decay: EdgeDecay | None = None
    rescaled: float = 1.0

    @property
    def items(self) -> frozenset[NodeId]:
        """The items whose edges it changed."""
        return frozenset(edge.item_id for edge in self.edges)


#: Told of every committed batch (on the agent's thread, so it must be quick):
#: :class:`interest_graph.freshness.FreshnessTracker` times it, the refresh worker in ``up`` wakes up.
AppliedHook = Callable[[AppliedBatch], None]


@dataclass(frozen=True, slots=True)
class IngestSnapshot:
    """The ingest agents' counters at one moment; immutable, so any thread may read it."""

    events_accepted: int = 0
    #: Records dropped because the store already held them (redeliveries after a crash/rebalance).
    events_skipped: int = 0
    #: Valid events ignored because their user was forgotten (erased in their batch or denied).
    events_forgotten: int = 0
    #: Users erased (each erasure request applied once).
    users_forgotten: int = 0
    #: Dead-lettered records per rejection reason (reasons never seen are absent).
    dead_lettered: Mapping[str, int] = field(default_factory=dict)
    batches: int = 0
    edges_upserted: int = 0
    last_batch_events: int = 0
    #: How long the last batch took from plan to committed store write, in ms.
    last_batch_ms: float = 0.0
    #: Wall-clock time of the last store write, epoch ms (0 = none yet).
    last_write_at_ms: int = 0
    store_retries: int = 0
    stale_batches: int = 0
    items_upserted: int = 0
    #: The agents have loaded the applied offsets and take records.
    started: bool = False

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())


class IngestStats:
    """Counters of the ingest agents, read by metrics and ``status`` (from any thread).

    The counters are one :class:`IngestSnapshot`, replaced (never changed) by each update, so a
    reader's :meth:`snapshot` is consistent without a lock; updates (on the event loop thread) take
    one, so two writers could not lose a count either.

    Args:
        counts (IngestSnapshot, optional): the counters to start from (default: all zero).
        on_applied (AppliedHook, optional): called after each committed event batch, end-to-end
            freshness (default: ``None``, nobody listens).
    """

    def __init__(self, counts: IngestSnapshot | None = None, *, on_applied: AppliedHook | None = None) -> None:
        self._counts = counts if counts is not None else IngestSnapshot()
        self._lock = threading.Lock()
        #: Seconds each committed event batch spent in the store write (retries included).
        self.upsert_seconds = Histogram()
        self.on_applied = on_applied

    def snapshot(self) -> IngestSnapshot:
        """The counters now."""
        return self._counts

    def count_batch(self, plan: BatchPlan, batch_ms: float, written_at_ms: int) -> None:
        """A committed event batch: its accepted, skipped and dead-lettered records and its edges."""
        reasons = Counter(str(rejection.reason) for _, rejection in plan.rejected)
        with self._lock:
            c = self._counts
            self._counts = replace(
                c, events_accepted=c.events_accepted + plan.accepted, events_skipped=c.events_skipped + plan.skipped,
                events_forgotten=c.events_forgotten + plan.forgotten,
                users_forgotten=c.users_forgotten + len(plan.batch.erasures),
                dead_lettered=_added(c.dead_lettered, reasons), batches=c.batches + 1,
                edges_upserted=c.edges_upserted + len(plan.batch.edges),
                last_batch_events=plan.accepted + len(plan.rejected), last_batch_ms=batch_ms,
                last_write_at_ms=written_at_ms)

    def count_dead_letters(self, reasons: Iterable[str]) -> None:
        counted = Counter(reasons)
        with self._lock:
            self._counts = replace(self._counts, dead_lettered=_added(self._counts.dead_lettered, counted))

    def count_skipped(self, records: int) -> None:
        """Records of a batch that needed no write: all were applied before."""
        with self._lock:
            self._counts = replace(self._counts, events_skipped=self._counts.events_skipped + records)

    def count_store_retry(self) -> None:
        with self._lock:
            self._counts = replace(self._counts, store_retries=self._counts.store_retries + 1)

    def count_stale_batch(self) -> None:
        with self._lock:
            self._counts = replace(self._counts, stale_batches=self._counts.stale_batches + 1)

    def count_items(self, items: int) -> None:
        with self._lock:
            self._counts = replace(self._counts, items_upserted=self._counts.items_upserted + items)

    def mark_started(self) -> None:
        with self._lock:
            self._counts = replace(self._counts, started=True)


def _added(counts: Mapping[str, int], more: Counter[str]) -> Mapping[str, int]:
    """A new mapping: ``counts`` plus ``more`` (``counts`` itself is left as it is, readers may hold it)."""
    if not more:
        return counts
    total = dict(counts)
    for reason, n in more.items():
        total[reason] = total.get(reason, 0) + n
    return total


class StoreWriter:
    """Runs blocking store calls in an executor, retrying retryable errors with backoff.

    Args:
        store (GraphStore): the graph store.
        executor (Executor): where blocking calls run; one thread keeps writes in order.
        stats (IngestStats): counts retries.
        retry (RetryPolicy): waits between attempts (default: :data:`core.retry.BACKOFF`).
    """

    def __init__(self, store: GraphStore, executor: Executor, stats: IngestStats,
                 retry: RetryPolicy = BACKOFF) -> None:
        self.store = store
        self._executor = executor
        self._stats = stats
        self._retry = retry

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the executor; retryable store errors are retried until it succeeds."""
        loop = asyncio.get_running_loop()

        def retrying(exc: Exception, wait: float) -> None:
            self._stats.count_store_retry()
            log.warning("store call %s failed (%s); retrying in %.1f s", fn.__name__, exc, wait)

        return await self._retry.call_async(lambda: loop.run_in_executor(self._executor, fn, *args),
                                            on_retry=retrying)


def offsets_group(consumer_group: str, cluster_id: str) -> str:
    """Key under which the store keeps a consumer group's applied offsets on one Kafka cluster.

    Offsets mean something only within the cluster that assigned them: a Tansu broker with memory
    storage restarts empty and numbers records from 0 again, and offsets applied from its previous
    life would mask the new records. Keying by cluster id (stable on a real cluster) prevents that.
    """
    return f"{consumer_group}@{cluster_id}"


class EventIngestor:
    """Applies batches of event records to the store with exactly-once effect.

    Args:
        contract (EventContract): validation limits and default weights.
        writer (StoreWriter): blocking store access with retries.
        dead_letter (DeadLetterSink): sends rejected records to the dead-letter topic.
        stats (IngestStats): counters to update.
        group (str): key of the applied offsets in the store (see :func:`offsets_group`).
        before_skipping (OffsetsCheck, optional): confirms the applied offsets before a batch skips
            records as already applied (default: ``None``, no check).
        privacy (Privacy, optional): pseudonyms and the erasure key (default: ``Privacy()``).
    """

    def __init__(self, contract: EventContract, writer: StoreWriter, dead_letter: DeadLetterSink,
                 stats: IngestStats, group: str, before_skipping: OffsetsCheck | None = None,
                 privacy: Privacy | None = None) -> None:
        self.contract = contract
        self.group = group
        self.applied: dict[TopicPartition, int] = {}
        self.privacy = privacy if privacy is not None else Privacy()
        self._redact_with = self.privacy.dead_letter_key
        #: The deny-list: expiry (epoch ms) by digest of each forgotten user (store's, plus ours since).
        self.denied: dict[str, int] = {}
        self._denied_seq = 0
        self._denied_read_at = -math.inf
        self._writer = writer
        self._dead_letter = dead_letter
        self._stats = stats
        self._before_skipping = before_skipping
        #: The store's decay reference as this writer last saw it (``None``: no decay).
        self.decay: EdgeDecay | None = None
        self._decay_declared = False

    def rebind(self, group: str) -> None:
        """Keep applied offsets under ``group`` from now on (the Kafka cluster changed); forget the old ones."""
        self.group = group
        self.applied = {}

    async def load_offsets(self) -> None:
        """Re-read the store's applied offsets and deny-list (at start and on every partition assignment)."""
        group = self.group
        stored = await self._writer.call(self._writer.store.applied_offsets, group)
        await self._writer.call(self._writer.store.purge_forgotten, epoch_ms())
        self._denied_seq = 0
        await self._read_denied()
        await self._declare_decay()
        if group != self.group:
            return  # rebound while reading: these are the old cluster's (the rebind loads its own)
        for tp, offset in stored.items():
            self.applied[tp] = max(offset, self.applied.get(tp, -1))

    async def _declare_decay(self) -> None:
        """Tell the store the half-life this writer weighs by and take its reference (raises
        :class:`~graph_store.base.DecayMismatchError`, not retryable, if the store's differs)."""
        self.decay = await self._writer.call(self._writer.store.edge_decay, self.contract.edge_half_life_ms)
        self._decay_declared = True

    async def _read_denied(self) -> None:
        """Add deny-list entries written since the last read (by any worker) and drop expired ones."""
        self._denied_read_at = time.monotonic()
        now_ms = epoch_ms()
        for entry in await self._writer.call(self._writer.store.forgotten_users, self._denied_seq):
            self._denied_seq = max(self._denied_seq, entry.seq)
            self.denied[entry.digest] = max(entry.expires_ms, self.denied.get(entry.digest, 0))
        for digest in [d for d, expires_ms in self.denied.items() if expires_ms <= now_ms]:
            del self.denied[digest]

    async def ingest(self, records: Sequence[SourceRecord]) -> None:
        """Apply one batch; returns once its effect is in the store (or it was all applied before)."""
        started, received_ms = time.perf_counter(), epoch_ms()
        if time.monotonic() - self._denied_read_at >= DENY_LIST_REFRESH_S:
            # A user's events reach another partition when a producer partitions differently.
            await self._read_denied()
        if not self._decay_declared:
            await self._declare_decay()
        sent: set[SourcePosition] = set()
        while True:
            plan = plan_batch(records, self.applied, self.contract, self.group, epoch_ms(), self.privacy, self.denied,
                              self.decay)
            planned_ms = epoch_ms()
            # Skipping is rare (redeliveries) and irreversible: the records get acked. Offsets of a
            # Kafka cluster that restarted empty would skip its new records, so confirm them first.
            # Replan if the offsets were rebound meanwhile, even if the check itself found nothing
            # new: a partition assignment may have noticed the new cluster while this plan was made.
            if plan.skipped and self._before_skipping is not None and (
                    not await self._before_skipping() or plan.batch.group != self.group):
                continue
            await self._send_rejects(plan, sent)
            if not plan.needs_write:
                self._stats.count_skipped(plan.skipped)
                return
            write_started = time.perf_counter()
            try:
                seq = await self._writer.call(self._writer.store.apply_batch, plan.batch)
            except StaleBatchError as exc:
                # Another writer got part of this batch in first: take its offsets and replan.
                self._stats.count_stale_batch()
                log.warning("stale batch (%s); reloading applied offsets", exc)
                await self.load_offsets()
                continue
            self._stats.upsert_seconds.observe(time.perf_counter() - write_started)
            self._record(plan, started)
            rescaled = self._moved_decay(plan.batch.decay)
            if self._stats.on_applied is not None:  # every commit, so listeners see each sequence
                self._stats.on_applied(AppliedBatch(seq, np.asarray(plan.accepted_ts_ms, dtype=np.int64),
                                                    received_ms, planned_ms, epoch_ms(), tuple(plan.batch.edges),
                                                    tuple(e.user_id for e in plan.batch.erasures),
                                                    plan.batch.decay, rescaled))
            return

    def _moved_decay(self, committed: EdgeDecay | None) -> float:
        """Take the reference a committed batch was in; what it rescaled the stored weights by."""
        before, self.decay = self.decay, committed
        if before is None or committed is None or committed.ref_ms <= before.ref_ms:
            return 1.0
        return before.rescale_to(committed)

    async def _send_rejects(self, plan: BatchPlan, sent: set[SourcePosition]) -> None:
        letters = []
        at = epoch_ms()
        for record, rejection in plan.rejected:
            if record.position not in sent:  # a replanned batch must not dead-letter twice
                sent.add(record.position)
                letters.append(dead_letter_from(record, rejection, at, self._redact_with))
        if letters:
            await self._dead_letter(letters)

    def _record(self, plan: BatchPlan, started: float) -> None:
        self._mark_applied(plan.batch)
        for erasure in plan.batch.erasures:
            self.denied[erasure.digest] = erasure.expires_ms
        self._stats.count_batch(plan, batch_ms=(time.perf_counter() - started) * 1000, written_at_ms=epoch_ms())

    def _mark_applied(self, batch: UpsertBatch) -> None:
        if batch.group != self.group:
            # Planned before a rebind: its offsets are the old cluster's (and the store keeps them
            # under the old key); among the new cluster's they would mask records not yet applied.
            return
        for tp, span in batch.offsets.items():
            self.applied[tp] = max(span.last, self.applied.get(tp, -1))


class ItemIngestor:
    """Upserts catalog records (idempotent: last write wins, so at-least-once is enough).

    Args:
        contract (EventContract): id length and record size limits.
        writer (StoreWriter): blocking store access with retries.
        dead_letter (DeadLetterSink): sends invalid catalog records to the dead-letter topic.
        stats (IngestStats): counters to update.
        privacy (Privacy, optional): whether dead letters are redacted (default: ``Privacy()``).
    """

    def __init__(self, contract: EventContract, writer: StoreWriter, dead_letter: DeadLetterSink,
                 stats: IngestStats, privacy: Privacy | None = None) -> None:
        self.contract = contract
        self._redact_with = privacy.dead_letter_key if privacy is not None else None
        self._writer = writer
        self._dead_letter = dead_letter
        self._stats = stats

    async def ingest(self, records: Sequence[SourceRecord]) -> None:
        items: dict[str, ItemMeta] = {}
        letters = []
        at = epoch_ms()
        for record in records:
            outcome = validate_item(record.value, self.contract)
            if isinstance(outcome, Rejection):
                letters.append(dead_letter_from(record, outcome, at, self._redact_with))
            else:
                items[outcome.item_id] = outcome  # later records of an item win
        if letters:
            await self._dead_letter(letters)
            self._stats.count_dead_letters(letter.reason for letter in letters)
        if items:
            await self._writer.call(self._writer.store.upsert_items, list(items.values()))
            self._stats.count_items(len(items))
