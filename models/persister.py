"""Write-behind of refreshed embeddings: serving first, the store behind it, coalesced.

Inside ``interest-graph up`` the refresh worker hands each round's embeddings to the serving index
in memory (see :meth:`models.refresh.RefreshWorker.subscribe`), so what a round computed is served
at once. The store stays the durable record, but writing every round there costs the store's
single write lock for long stretches: 2,000 users x 1,024 floats take 300 ms to write into LadybugDB,
and the ingest agent's commits queue behind it (``bench/freshness.py``: store commit p50 above a
second at 1,000 events/s). :class:`EmbeddingPersister` writes behind instead:

* :meth:`~EmbeddingPersister.offer` merges an update into what is pending, newest vector per node,
  and keeps the newest version and cursor;
* a thread writes what is pending every ``interval_s`` in one store write (a Zipf-heavy user
  rewritten by ten rounds is written once), retrying store errors with :data:`core.retry.BACKOFF`
  and merging newer offers into a failed write, never dropping it;
* :meth:`~EmbeddingPersister.close` writes what is left when ``up`` stops.

What the store holds is therefore always one consistent earlier state: the embeddings of the
nodes refreshed up to its stored cursor, stamped with the version of the last update merged in. A
crash loses at most ``interval_s`` of refreshed embeddings, never an event: the refresh worker
resumes from the stored cursor and recomputes them (refresh rounds are idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from core.domain import EmbeddingRows, EmbeddingUpdate, NodeId, NodeKind
from core.retry import BACKOFF, RetryPolicy
from graph_store.base import GraphStore, GraphStoreError

log = logging.getLogger(__name__)

#: Served rows and derived base rows of one kind are kept apart: they go to different properties.
_Slot = tuple[NodeKind, bool]


@dataclass
class _Pending:
    """Updates merged since the last write: newest vector per (kind, base?, node); one width."""

    version: int = 0
    cursor: int = 0
    oldest_cursor: int | None = None
    created_ms: int = 0
    dim: int | None = None
    vectors: dict[_Slot, dict[NodeId, np.ndarray]] = field(default_factory=dict)

    def merge(self, update: EmbeddingUpdate) -> None:
        self.version, self.created_ms = update.version, update.created_ms
        self.cursor = max(self.cursor, update.cursor)
        oldest = update.cursor if update.oldest_cursor is None else update.oldest_cursor
        self.oldest_cursor = oldest if self.oldest_cursor is None else min(self.oldest_cursor, oldest)
        for base, blocks in ((False, update.rows), (True, update.base)):
            for rows in blocks:
                if rows.ids:
                    self.dim = int(np.asarray(rows.vectors).shape[1])
                    self.vectors.setdefault((rows.kind, base), {}).update(zip(rows.ids, rows.vectors, strict=True))

    def as_update(self) -> EmbeddingUpdate:
        def block(slot: _Slot) -> EmbeddingRows:
            nodes = self.vectors[slot]
            return EmbeddingRows(slot[0], list(nodes), np.stack(list(nodes.values())).astype(np.float32, copy=False))

        return EmbeddingUpdate(version=self.version, cursor=self.cursor, created_ms=self.created_ms,
                               oldest_cursor=self.oldest_cursor,
                               rows=[block(s) for s in self.vectors if not s[1]],
                               base=[block(s) for s in self.vectors if s[1]])

    @property
    def nodes(self) -> int:
        return sum(len(nodes) for nodes in self.vectors.values())


class EmbeddingPersister:
    """Writes offered embedding updates to ``store`` behind serving, coalesced (see the module docs).

    Args:
        store (GraphStore): Where embeddings, the version and the cursor are kept.
        interval_s (float): Seconds between writes while updates arrive (default: ``1.0``).
        retry (RetryPolicy): Waits between attempts of a failed write (default: :data:`core.retry.BACKOFF`).
    """

    def __init__(self, store: GraphStore, interval_s: float = 1.0, retry: RetryPolicy = BACKOFF) -> None:
        self.store = store
        self.interval_s = interval_s
        self.retry = retry
        #: Merged, not yet written; a new width starts a second batch behind the first.
        self._queue: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Version and cursor the store holds, as far as this persister wrote them.
        self.persisted_version = 0
        self.persisted_cursor = 0
        self.writes = 0
        self.failures = 0
        self.last_error = ""

    def offer(self, update: EmbeddingUpdate) -> None:
        """Queue ``update`` for the next write (called by the refresh worker; never blocks on the store)."""
        with self._lock:
            tail = self._queue[-1] if self._queue else None
            width = _width(update)
            if tail is None or (width is not None and tail.dim is not None and width != tail.dim):
                # A model of a new width: its rows must not share a write with the old width's.
                tail = _Pending()
                self._queue.append(tail)
            tail.merge(update)

    @property
    def pending_nodes(self) -> int:
        with self._lock:
            return sum(p.nodes for p in self._queue)

    # --- writing -----------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Write everything pending now; ``False`` (kept for the next try) if the store failed."""
        while True:
            with self._lock:
                if not self._queue:
                    return True
                batch = self._queue.pop(0)
            try:
                self.store.write_embeddings(batch.as_update())
            except GraphStoreError as exc:
                with self._lock:
                    self._queue.insert(0, batch)  # newer offers merge behind it, in order
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.log(logging.WARNING if exc.retryable else logging.ERROR,
                        "writing %d refreshed embeddings to the store failed (%d in a row): %s",
                        batch.nodes, self.failures, exc)
                return False
            self.failures, self.last_error = 0, ""
            self.writes += 1
            self.persisted_version, self.persisted_cursor = batch.version, batch.cursor

    def start(self) -> EmbeddingPersister:
        self._thread = threading.Thread(target=self._run, name="embedding-persister", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread and write what is left (retrying within ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        deadline = time.monotonic() + timeout_s
        attempt = 0
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(min(self.retry.delay(attempt), max(0.0, deadline - time.monotonic())))
            attempt += 1
        if self._queue:
            log.error("stopping with %d refreshed embeddings not written: the refresh worker recomputes them "
                      "from cursor %d at the next start", self.pending_nodes, self.persisted_cursor)

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self.interval_s if not failures else self.retry.delay(failures - 1)):
            failures = 0 if self.flush() else failures + 1


def _width(update: EmbeddingUpdate) -> int | None:
    widths = {int(np.asarray(r.vectors).shape[1]) for r in (*update.rows, *update.base) if r.ids}
    return widths.pop() if len(widths) == 1 else None
