"""End-to-end freshness: from an event entering Kafka to serving answering from embeddings that cover it.

Definition (README, "Metrics"): the freshness of an accepted event is

    (time the gRPC server's index first holds an embedding version whose refresh cursor is at or
     past the change-log sequence of the store batch that applied the event)
  - (the event's Kafka record timestamp, i.e. when the producer sent it)

The event's own ``ts`` field is *not* used: replays carry historical times. Measured per event,
never estimated, and split into the stages it passed (``ig_freshness_stage_seconds{stage}``), which
add up to it exactly:

==================  ================================================================================
``broker_to_agent``  Kafka record timestamp -> the agent hands the batch holding it to the ingest step
``batch_plan``       decode, validate, aggregate the batch
``store_commit``     the batch's store transaction
``refresh_wait``     commit -> the refresh round that covers it reads the changes
``refresh_round``    that round's subgraph read and embedding computation
``embedding_handoff`` computed -> handed over: to the serving index in ``up`` (the store is written behind
                     it, :mod:`models.persister`), else the store write
``index_swap``       hand-over -> the serving index holds that version (direct hand-off or loader poll)
==================  ================================================================================

Users folded in at request time (``up`` with SpectralCF, :class:`serving.index.LiveUsers`): a batch
whose items the model all knows is served once serving has dropped its users' cached rows, right
after the commit (:meth:`FreshnessTracker.batch_served`); the three refresh stages are 0 for it and
``index_swap`` is that step. A batch with an item the model does not know yet waits for the round
that folds that item in, as above.

How: the ingest agent reports each committed batch (:class:`streams.ingest.AppliedBatch`) to
:meth:`FreshnessTracker.batch_applied`; the refresh worker reports each embedding write
(:class:`models.refresh.WrittenRound`) to :meth:`~FreshnessTracker.round_written`; the serving
index reports each version it swaps in to :meth:`~FreshnessTracker.index_holds` (an update listener,
called right after the swap). A batch is observed once, when the first index swap holding the first
round whose cursor covers it happens. A restart starts with nothing pending, so it neither resets
nor skews what was observed before it (counters restart with the process, as Prometheus expects).

This needs ingest, refresh and serving in one process, which is what ``interest-graph up`` runs
(the embedded LadybugDB store admits one writer process). A split deployment exports the parts
instead (``ig_serving_embedding_age_seconds`` and the lag), see README.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING

import numpy as np

from core.domain import epoch_ms
from core.histogram import FRESHNESS_BUCKETS, Histogram, LabelledHistograms, RecentQuantiles

if TYPE_CHECKING:  # all run in the process that measures freshness, which imports them itself
    from models.refresh import RefreshWorker, WrittenRound
    from serving.index import EmbeddingIndex, IndexUpdate
    from streams.ingest import AppliedBatch

log = logging.getLogger(__name__)

#: Most committed batches remembered while waiting for a refresh; older ones are dropped (counted).
MAX_PENDING_BATCHES = 20_000
#: The stages of :data:`ig_freshness_stage_seconds`, in the order an event passes them.
STAGES = ("broker_to_agent", "batch_plan", "store_commit", "refresh_wait", "refresh_round",
          "embedding_handoff", "index_swap")
#: Exact quantiles kept over this window for ``status`` (``ig_freshness_last_minute_seconds``).
RECENT_WINDOW_S = 60.0


class FreshnessTracker:
    """Pending batches by change-log sequence, observed when the serving index holds a round covering them.

    Args:
        max_pending (int): batches kept while no refresh covers them (default: :data:`MAX_PENDING_BATCHES`).
        window_s (float): window of the exact recent quantiles (default: :data:`RECENT_WINDOW_S`).
    """

    def __init__(self, max_pending: int = MAX_PENDING_BATCHES, window_s: float = RECENT_WINDOW_S) -> None:
        self.histogram = Histogram(FRESHNESS_BUCKETS)
        self.stages = LabelledHistograms(("stage",), FRESHNESS_BUCKETS)
        self.recent = RecentQuantiles(window_s)
        self.max_pending = max_pending
        self._pending: collections.deque[AppliedBatch] = collections.deque()
        #: Rounds written, not yet seen in the index, oldest first.
        self._rounds: collections.deque[WrittenRound] = collections.deque(maxlen=4096)
        self._served_version = 0
        self.dropped_batches = 0
        self._lock = threading.Lock()

    # --- the three reports -----------------------------------------------------------------------
    def batch_applied(self, batch: AppliedBatch) -> None:
        """A committed batch (called on the ingest agent's thread)."""
        with self._lock:
            self._pending.append(batch)
            if len(self._pending) > self.max_pending:
                self._pending.popleft()
                self.dropped_batches += 1

    def batch_served(self, batch: AppliedBatch, served_ms: int | None = None) -> int:
        """A committed batch that serving answers from at once (called on the ingest agent's thread):
        its users are folded in from their rows at request time and its items are ones the model
        knows, so no refresh round stands between its commit and serving. The refresh stages are 0,
        ``index_swap`` is the commit -> serving dropped the users' cached rows. Returns the events."""
        at = epoch_ms() if served_ms is None else served_ms
        with self._lock:
            c = batch.committed_ms
            return self._observe(batch, (c, c, c, at))

    def round_written(self, written: WrittenRound) -> None:
        """The refresh worker wrote embeddings (called on its thread, right after the commit)."""
        with self._lock:
            if written.update.version <= self._served_version:
                # The loader saw the write in the store before this report arrived: served since
                # some moment before now, so "now" is late, never early.
                self._cover(written, epoch_ms())
            else:
                self._rounds.append(written)

    def index_holds(self, version: int, at_ms: int | None = None) -> int:
        """The serving index swapped in embedding ``version`` at ``at_ms`` (default now).

        Returns how many events were observed.
        """
        at = epoch_ms() if at_ms is None else at_ms
        observed = 0
        with self._lock:
            self._served_version = max(self._served_version, version)
            while self._rounds and self._rounds[0].update.version <= version:
                observed += self._cover(self._rounds.popleft(), at)
        return observed

    # --- observing -------------------------------------------------------------------------------
    def _cover(self, written: WrittenRound, served_ms: int) -> int:
        """Observe every pending batch ``written`` covers (the caller holds the lock)."""
        cursor = written.update.cursor
        observed = 0
        while self._pending and self._pending[0].seq <= cursor:
            observed += self._observe(self._pending.popleft(),
                                      (written.started_ms, written.computed_ms, written.written_ms, served_ms))
        return observed

    def _observe(self, batch: AppliedBatch, after_commit: tuple[int, int, int, int]) -> int:
        """Observe ``batch`` with the four moments after its commit: the round started, computed and
        handed over, and serving answered (the caller holds the lock)."""
        event_ms = batch.event_ms[batch.event_ms > 0]  # records without a Kafka timestamp are not measured
        if not event_ms.size:
            return 0
        # Each boundary is clamped to the one before it, so the stages are never negative and sum
        # exactly to the total (a round may read the changes just before the commit report arrives).
        marks = np.maximum.accumulate(np.asarray(
            [batch.received_ms, batch.planned_ms, batch.committed_ms, *after_commit], dtype=np.int64))
        served_ms = int(marks[-1])
        first = np.maximum(marks[0] - event_ms, 0) / 1000.0
        rest = np.diff(marks) / 1000.0
        total = np.maximum(served_ms - event_ms, 0) / 1000.0
        self.histogram.observe_many(total)
        self.stages.child(STAGES[0]).observe_many(first)
        series = {"total": total, STAGES[0]: first}
        for stage, seconds in zip(STAGES[1:], rest.tolist(), strict=True):
            values = np.full(event_ms.size, seconds)
            self.stages.child(stage).observe_many(values)
            series[stage] = values
        self.recent.observe(series)
        return int(event_ms.size)

    # --- reading -----------------------------------------------------------------------------------
    def recent_quantiles(self, qs: tuple[float, ...] = (0.5, 0.99)) -> dict[str, list[float]]:
        """Exact quantiles over the last window: ``"total"`` and each stage."""
        return self.recent.quantiles(qs)

    def oldest_pending_age_s(self, now_ms: int | None = None) -> float:
        """Seconds since the oldest batch that serving does not cover yet was committed (0 if none).

        This is the embedding staleness that matters: how long a change has waited for serving.
        """
        with self._lock:
            if not self._pending:
                return 0.0
            committed = self._pending[0].committed_ms
        return max(0.0, ((now_ms if now_ms is not None else epoch_ms()) - committed) / 1000.0)

    @property
    def pending_batches(self) -> int:
        return len(self._pending)


def watch_serving(tracker: FreshnessTracker, refresh: RefreshWorker, index: EmbeddingIndex) -> None:
    """Wire ``tracker`` to the worker's writes and the index's swaps (both report as they happen)."""
    def swapped(_change: IndexUpdate) -> None:
        tracker.index_holds(index.version)

    refresh.subscribe(tracker.round_written)
    index.subscribe_updates(swapped)
