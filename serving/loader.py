"""Keeps an :class:`~serving.index.EmbeddingIndex` in step with the embeddings in the graph store.

The refresh worker writes embeddings with increasing versions and stamps the store's refresh
state last, in the same transaction. The loader reads that state *first* and then every embedding
written after the version it already holds, so it never records a version whose rows it has not
read; rows of a newer write caught by the same read are simply read again next time (upserts are
idempotent).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import replace

import numpy as np

from core.domain import EmbeddingRows, EmbeddingUpdate, NodeKind
from core.retry import BACKOFF
from graph_store.base import GraphStore, GraphStoreError
from serving.embedding_table import EmbeddingDimensionError
from serving.erasure import ForgottenUsers
from serving.index import EmbeddingIndex

log = logging.getLogger(__name__)

#: Seconds between polls while the refresh worker hands its writes over (:meth:`IndexLoader.take`):
#: the poll is then only a safety net, and reading every write back would double the work.
HANDED_OVER_POLL_S = 2.0


class IndexLoader:
    """Polls ``store`` for new embeddings and applies them to ``index``, in a daemon thread.

    The index turns ready (and health reports SERVING) once it holds item embeddings; listeners
    subscribe on the index. Store errors never stop the loader: the index keeps serving the last
    version it loaded while the loader retries with exponential backoff.

    Args:
        store (GraphStore): Where the refresh worker writes embeddings.
        index (EmbeddingIndex): The index to keep up to date.
        poll_s (float): Seconds between polls (default: :obj:`0.1`).
        catalog_resync_s (float): Seconds between re-reads of every indexed item's catalog record,
            for titles and categories that changed without an embedding update (default: :obj:`30.0`).
        forgotten (ForgottenUsers, optional): polled after every poll, and keeps forgotten users
            out of what is loaded (default: :obj:`None`, no erasure handling).
    """

    def __init__(
        self, store: GraphStore, index: EmbeddingIndex, poll_s: float = 0.1, catalog_resync_s: float = 30.0,
        forgotten: ForgottenUsers | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.forgotten = forgotten
        self.poll_s = poll_s
        self.catalog_resync_s = catalog_resync_s
        self._catalog_synced = time.monotonic()
        self.failures = 0
        self.last_error: str = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: One applier at a time: a poll that read version v must not land after a hand-off of v+1.
        self._take_lock = threading.RLock()
        self._last_take = -math.inf

    # --- one poll --------------------------------------------------------------------------------
    def poll_once(self) -> bool:
        """Apply embeddings newer than the index's version; ``True`` if the index changed."""
        with self._take_lock:
            return self._poll_locked()

    def _poll_locked(self) -> bool:
        state = self.store.refresh_state()
        version, written_ms = state.version, state.written_ms
        held = self.index.version
        if version == held or (version < held and self.fed):
            # Fed: the writer hands its rounds over first and stores them behind (models.persister).
            return False
        if version < held:
            # The store went back in time (restored or recreated): start over from what it holds.
            log.warning("store embedding version %d is below the index's %d: reloading all", version, held)
            return self._load(version, written_ms, since=0, replace=True)
        try:
            return self._load(version, written_ms, since=held, replace=False)
        except EmbeddingDimensionError as exc:
            # A retrain at a new width republishes every embedding, so this is how a new model is
            # taken in: INFO, not WARNING. Real trouble (the store still mixes widths) fails the full
            # reload too, and _poll_guarded logs that as an ERROR.
            log.info("%s: a model of a new width, reloading every embedding", exc)
            return self._load(version, written_ms, since=0, replace=True)

    def _load(self, version: int, written_ms: int, *, since: int, replace: bool) -> bool:
        users = self._without_forgotten(self.store.read_embeddings(NodeKind.USER, since_version=since))
        items = self.store.read_embeddings(NodeKind.ITEM, since_version=since)
        # Catalog records travel with the embeddings, so replies never read titles from the store.
        meta = self.store.item_meta(items.ids) if items.ids else {}
        snapshot = self.index.apply(users, items, version=version, written_ms=written_ms, replace=replace, meta=meta)
        log.info(
            "index at embedding version %d: %d users, %d items (+%d/+%d changed)",
            version, len(snapshot.users), len(snapshot.items), len(users.ids), len(items.ids),
        )
        return True

    # --- direct hand-off ---------------------------------------------------------------------------
    def take(self, update: EmbeddingUpdate) -> bool:
        """Apply an update the refresh worker in this process has just written to the store, without
        reading it back (``up``: the worker hands each write over, the poll stays as a safety net).

        The store stays the durable record: the rows are the ones written, and a version the index
        already holds (the poll got there first) is skipped. ``True`` if the index changed.
        """
        with self._take_lock:
            self._last_take = time.monotonic()
            if update.version <= self.index.version:
                return False
            users = self._without_forgotten(_rows_of(update, NodeKind.USER))
            items = _rows_of(update, NodeKind.ITEM)
            catalog = self.index.snapshot().catalog.meta
            new_items = [i for i in items.ids if i not in catalog]
            meta = self.store.item_meta(new_items) if new_items else {}
            try:
                self.index.apply(users, items, version=update.version, written_ms=update.created_ms, meta=meta,
                                 fold_in=update.fold_in)
            except EmbeddingDimensionError:
                if update.fold_in is not None:
                    # A full round whose users are folded in holds every item of the new model: start
                    # over from it (written behind, the store may not hold it yet). The catalog is kept.
                    self.index.apply(users, items, version=update.version,
                                     written_ms=update.created_ms, meta=meta, fold_in=update.fold_in, replace=True)
                else:
                    # A new model's first (full) round at a new width: only the store holds all of it.
                    self.poll_once()
            return True

    def _without_forgotten(self, users: EmbeddingRows) -> EmbeddingRows:
        # A read or a round that began before an erasure committed may still hold the user.
        return self.forgotten.rows_without(users) if self.forgotten is not None else users

    # --- the thread ------------------------------------------------------------------------------
    def start(self) -> None:
        """Poll once in the caller's thread (so a ready store serves at once), then keep polling."""
        if self._thread is not None:
            raise RuntimeError("IndexLoader already started")
        self._poll_guarded()
        self._thread = threading.Thread(target=self._run, name="index-loader", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self._next_wait_s()):
            self._poll_guarded()

    def _next_wait_s(self) -> float:
        if not self.failures:
            handed_over = time.monotonic() - self._last_take < 2 * HANDED_OVER_POLL_S
            return max(self.poll_s, HANDED_OVER_POLL_S) if handed_over else self.poll_s
        return replace(BACKOFF, first_s=self.poll_s, max_s=max(BACKOFF.max_s, self.poll_s)).delay(self.failures)

    def resync_catalog(self) -> None:
        """Re-read the catalog records of every indexed item (catalog updates bump no version)."""
        ids = self.index.snapshot().items.ids
        if ids:
            self.index.update_catalog(self.store.item_meta(ids))
        self._catalog_synced = time.monotonic()

    def _poll_guarded(self) -> None:
        """One poll that logs instead of raising: a loader that died would freeze the index."""
        try:
            self.poll_once()
            if self.forgotten is not None:
                self.forgotten.poll()
            if time.monotonic() - self._catalog_synced >= self.catalog_resync_s:
                self.resync_catalog()
        except GraphStoreError as exc:
            self._failed(exc, logging.WARNING if exc.retryable else logging.ERROR)
        except Exception as exc:  # keep serving the last good version, report loudly
            self._failed(exc, logging.ERROR, exc_info=True)
        else:
            self.failures = 0
            self.last_error = ""

    def _failed(self, exc: Exception, level: int, exc_info: bool = False) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.log(level, "loading embeddings failed (%d in a row): %s", self.failures, exc, exc_info=exc_info)

    @property
    def fed(self) -> bool:
        """Whether the refresh worker of this process hands its writes over (:meth:`take`)."""
        return self._last_take > -math.inf

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _rows_of(update: EmbeddingUpdate, kind: NodeKind) -> EmbeddingRows:
    """The update's rows of one kind as one block (an update may carry several)."""
    blocks = [rows for rows in update.rows if rows.kind == kind and rows.ids]
    if len(blocks) == 1:
        return blocks[0]
    if not blocks:
        return EmbeddingRows(kind, [], np.zeros((0, 0), np.float32))
    return EmbeddingRows(kind, [i for b in blocks for i in b.ids], np.concatenate([b.vectors for b in blocks]))
