"""Serving's side of erasure: drop the users the store's deny-list names from everything it holds.

The ingest agent forgets a user in the store; serving holds copies of what the store had: user
embeddings in the index and user rows in the cache. :class:`ForgottenUsers` reads the deny-list
entries written since it last looked (digests only, :mod:`core.privacy`), digests the ids serving
holds with the same key, and drops the matches. ``up`` also tells it of each erasure as it
commits (:meth:`ForgottenUsers.forget`), so there the poll is only a safety net.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable

import numpy as np

from core.domain import EmbeddingRows, NodeId
from core.privacy import DigestCache, ForgetKey
from graph_store.base import GraphStore
from serving.index import EmbeddingIndex
from serving.user_rows import UserRowCache

log = logging.getLogger(__name__)


class ForgottenUsers:
    """Keeps forgotten users out of the index and the user-row cache.

    Args:
        store (GraphStore): whose deny-list is read.
        key (ForgetKey): the erasure key the ingest agents digest with.
        index (EmbeddingIndex): user embeddings to drop.
        user_rows (UserRowCache): cached user rows to drop.
    """

    def __init__(self, store: GraphStore, key: ForgetKey, index: EmbeddingIndex, user_rows: UserRowCache) -> None:
        self.store = store
        self.index = index
        self.user_rows = user_rows
        self._digests = DigestCache(key)
        #: Every digest seen, so a late update cannot bring a forgotten user back (:meth:`rows_without`).
        self._forgotten: set[str] = set()
        self._seq = 0
        self._lock = threading.Lock()

    def poll(self) -> int:
        """Read deny-list entries written since the last poll and drop the users they name; how many."""
        entries = self.store.forgotten_users(self._seq)
        if not entries:
            return 0
        with self._lock:
            self._seq = max(self._seq, max(e.seq for e in entries))
            fresh = {e.digest for e in entries} - self._forgotten
            self._forgotten |= fresh
        held = self._held()
        found = [NodeId(u) for u in self._digests.forgotten(held, fresh)]
        if found:
            self.forget(found)
        return len(found)

    def forget(self, user_ids: Collection[NodeId]) -> None:
        """Drop these users from the index and the row cache now (``up`` calls it on each commit)."""
        if not user_ids:
            return
        with self._lock:
            self._forgotten |= {self._digests.digest(u) for u in user_ids}
        self.user_rows.forget(user_ids)
        self.index.forget_users(user_ids)
        self._digests.drop(user_ids)
        log.info("serving dropped %d forgotten users", len(user_ids))

    def rows_without(self, rows: EmbeddingRows) -> EmbeddingRows:
        """``rows`` without forgotten users (an update computed before their erasure)."""
        with self._lock:
            if not self._forgotten or not rows.ids:
                return rows
            keep = [k for k, user_id in enumerate(rows.ids) if self._digests.digest(user_id) not in self._forgotten]
        if len(keep) == len(rows.ids):
            return rows
        return EmbeddingRows(rows.kind, [rows.ids[k] for k in keep], np.asarray(rows.vectors)[keep])

    def _held(self) -> Iterable[NodeId]:
        snapshot = self.index.snapshot()
        return set(snapshot.users.rows) | set(self.user_rows.held())
