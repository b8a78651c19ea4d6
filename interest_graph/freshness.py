"""End-to-end freshness: from an event entering Kafka to serving holding an embedding that covers it.

Definition (README, "Metrics"): the freshness of an accepted event is

    (time the gRPC server's index first holds an embedding version whose refresh cursor is at or
     past the change-log sequence of the store batch that applied the event)
  - (the event's Kafka record timestamp, i.e. when the producer sent it)

so it spans broker queueing, the ingest batch and its store write, the wait for and the duration of
the refresh round, the embedding write and the index loader's poll. The event's own ``ts`` field is
*not* used: replays carry historical times. Measured per event, not per batch.

How, honestly and cheaply:

1. the ingest agent reports each committed batch as (sequence, Kafka timestamps of its accepted
   records) through :attr:`streams.ingest.IngestStats.on_applied` → :meth:`FreshnessTracker.batch_applied`;
2. a :class:`ServingWatch` thread polls, every ``poll_s``, the embedding version the server's index
   holds and the (version, cursor) pairs the refresh worker has written; once the index holds a
   version whose cursor covers a pending batch, that batch's events are observed with "now" as the
   load time. The load time is therefore late by at most one poll (default 20 ms), which the
   histogram's buckets (50 ms and up) absorb; freshness is never under-reported.

This needs ingest, refresh and serving in one process, which is what ``interest-graph up`` runs
(the embedded LadybugDB store admits one writer process). A split deployment exports the parts
instead (``ig_serving_embedding_age_seconds`` and the lag), see README.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from core.histogram import FRESHNESS_BUCKETS, Histogram

if TYPE_CHECKING:  # both run in the process that measures freshness, which imports them itself
    from models.refresh import RefreshWorker
    from serving.index import EmbeddingIndex

log = logging.getLogger(__name__)

#: Most committed batches remembered while waiting for a refresh; older ones are dropped (counted).
MAX_PENDING_BATCHES = 20_000


class FreshnessTracker:
    """Pending batches by change-log sequence, observed into a histogram when serving covers them.

    Args:
        max_pending (int): batches kept while no refresh covers them (default: :data:`MAX_PENDING_BATCHES`).
    """

    def __init__(self, max_pending: int = MAX_PENDING_BATCHES) -> None:
        self.histogram = Histogram(FRESHNESS_BUCKETS)
        self.max_pending = max_pending
        #: (sequence, commit epoch ms, Kafka timestamps of the batch's events in epoch ms)
        self._pending: collections.deque[tuple[int, int, np.ndarray]] = collections.deque()
        self.dropped_batches = 0
        self.covered_seq = 0
        self._lock = threading.Lock()

    def batch_applied(self, seq: int, event_ms: np.ndarray) -> None:
        """Remember a committed batch (called on the ingest agent's thread)."""
        known = event_ms[event_ms > 0]  # records without a Kafka timestamp are not measured
        with self._lock:
            self._pending.append((seq, int(time.time() * 1000), known))
            if len(self._pending) > self.max_pending:
                self._pending.popleft()
                self.dropped_batches += 1

    def covered(self, cursor: int, loaded_ms: int) -> int:
        """Serving holds embeddings covering every batch with sequence ``<= cursor`` since ``loaded_ms``.

        Returns how many events were observed.
        """
        done: list[np.ndarray] = []
        with self._lock:
            self.covered_seq = max(self.covered_seq, cursor)
            while self._pending and self._pending[0][0] <= cursor:
                done.append(self._pending.popleft()[2])
        if not done:
            return 0
        ages = (loaded_ms - np.concatenate(done)) / 1000.0
        self.histogram.observe_many(np.maximum(ages, 0.0))
        return int(ages.size)

    def oldest_pending_age_s(self, now_ms: int | None = None) -> float:
        """Seconds since the oldest batch that serving does not cover yet was committed (0 if none).

        This is the embedding staleness that matters: how long a change has waited for serving.
        """
        with self._lock:
            if not self._pending:
                return 0.0
            committed = self._pending[0][1]
        return max(0.0, ((now_ms if now_ms is not None else int(time.time() * 1000)) - committed) / 1000.0)

    @property
    def pending_batches(self) -> int:
        return len(self._pending)


class ServingWatch:
    """Tells a :class:`FreshnessTracker` when the server's index covers a refresh cursor.

    Args:
        tracker (FreshnessTracker): where covered batches are observed.
        refresh (RefreshWorker): the refresh worker (its ``stats.version``/``stats.cursor`` follow each write).
        index (EmbeddingIndex): the serving index (its ``version`` is what requests are answered from).
        poll_s (float): seconds between polls (default: ``0.02``).
    """

    def __init__(self, tracker: FreshnessTracker, refresh: RefreshWorker, index: EmbeddingIndex,
                 poll_s: float = 0.02) -> None:
        self.tracker, self.refresh, self.index = tracker, refresh, index
        self.poll_s = poll_s
        #: (embedding version, refresh cursor) written by the refresh worker, not yet seen served.
        self._written: collections.deque[tuple[int, int]] = collections.deque(maxlen=1024)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freshness-watch", daemon=True)

    def poll_once(self) -> None:
        stats = self.refresh.stats
        if not self._written or self._written[-1][0] != stats.version:
            self._written.append((stats.version, stats.cursor))
        served = self.index.version
        cursor = None
        while self._written and self._written[0][0] <= served:
            cursor = self._written.popleft()[1]
        if cursor is not None:
            self.tracker.covered(cursor, int(time.time() * 1000))

    def start(self) -> ServingWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll_once()
            except Exception:  # a metrics helper must never take the stack down; say so and go on
                log.exception("freshness watch failed; retrying")
