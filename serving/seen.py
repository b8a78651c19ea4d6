"""Items each user has interacted with, cached so ``exclude_seen`` needs no store read per request.

A user's seen items change only when new edges arrive, and new edges mark the user changed in the
store's change log, so the refresh worker re-embeds that user and the loader applies an update
naming them. The cache drops exactly those users on every update (everyone on a full reload), so
an entry is never older than the user's embedding: the list a request excludes is the one its
scores were computed from, at most one refresh behind the store.
"""

from __future__ import annotations

import threading

from core.domain import NodeId
from graph_store.base import GraphStore
from serving.index import IndexUpdate

#: Users whose seen items are kept; past this the cache starts over (cheap, and rare).
DEFAULT_MAX_USERS = 200_000


class SeenItemsCache:
    """``store.seen_items`` with invalidation from index updates.

    Args:
        store (GraphStore): Where seen items are read on a miss.
        max_users (int): Most users cached at once (default: :obj:`200_000`).
    """

    def __init__(self, store: GraphStore, max_users: int = DEFAULT_MAX_USERS) -> None:
        self.store = store
        self.max_users = max_users
        self.hits = self.misses = 0
        self._items: dict[NodeId, tuple[NodeId, ...]] = {}
        self._epoch = 0  # bumped by every invalidation, so a read that raced one is not cached
        self._lock = threading.Lock()

    def get(self, user_id: NodeId) -> tuple[NodeId, ...]:
        cached = self._items.get(user_id)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        epoch = self._epoch
        seen = tuple(self.store.seen_items(user_id))
        with self._lock:
            if epoch == self._epoch:
                if len(self._items) >= self.max_users:
                    self._items.clear()
                self._items[user_id] = seen
        return seen

    def invalidate(self, update: IndexUpdate) -> None:
        """Drop the users an index update re-embedded (everyone when it replaced the index)."""
        with self._lock:
            self._epoch += 1
            if update.replaced:
                self._items.clear()
            else:
                for user_id in update.users:
                    self._items.pop(user_id, None)
