"""Each user's row (items and edge weights), cached so a request needs no store read.

Two things read it: ``exclude_seen`` (the items) and, when the index folds users in at request
time (:class:`~serving.index.LiveUsers`, ``up`` with SpectralCF), the user vector itself.

A user's row changes only when new edges arrive. Two kinds of news drop an entry:

* an index update naming the user (everyone on a full reload): the refresh worker re-embedded
  them, so an entry is never older than the user's stored embedding;
* a committed ingest batch naming the user (:meth:`UserRowCache.forget`, called by ``up`` on the
  agent's thread right after the commit): the next request reads the committed row, which is what
  makes a click served as soon as its edge is visible when users are folded in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from core.domain import NodeId
from graph_store.base import GraphStore
from serving.index import IndexUpdate

#: Users whose rows are kept; past this the cache starts over (cheap, and rare).
DEFAULT_MAX_USERS = 200_000


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user's items (by id) and the accumulated weight of each edge, as the store holds them."""

    items: tuple[NodeId, ...]
    weights: np.ndarray  # float32 [len(items)]

    def __len__(self) -> int:
        return len(self.items)


class UserRowCache:
    """``store.user_row`` with invalidation from index updates and from commits.

    Args:
        store (GraphStore): Where rows are read on a miss.
        max_users (int): Most users cached at once (default: :obj:`200_000`).
    """

    def __init__(self, store: GraphStore, max_users: int = DEFAULT_MAX_USERS) -> None:
        self.store = store
        self.max_users = max_users
        self.hits = self.misses = 0
        self._rows: dict[NodeId, UserRow] = {}
        self._epoch = 0  # bumped by every invalidation, so a read that raced one is not cached
        self._lock = threading.Lock()

    def get(self, user_id: NodeId) -> UserRow:
        """The user's row (empty for a user without edges)."""
        cached = self._rows.get(user_id)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        epoch = self._epoch
        pairs = self.store.user_row(user_id)
        row = UserRow(tuple(item for item, _ in pairs), np.fromiter((w for _, w in pairs), np.float32, len(pairs)))
        with self._lock:
            if epoch == self._epoch:
                if len(self._rows) >= self.max_users:
                    self._rows.clear()
                self._rows[user_id] = row
        return row

    def invalidate(self, update: IndexUpdate) -> None:
        """Drop the users an index update re-embedded (everyone when it replaced the index)."""
        if update.replaced:
            with self._lock:
                self._epoch += 1
                self._rows.clear()
        else:
            self.forget(update.users)

    def forget(self, users: Iterable[NodeId]) -> None:
        """Drop these users' rows: their edges changed in the store (a commit that named them)."""
        with self._lock:
            self._epoch += 1
            for user_id in users:
                self._rows.pop(user_id, None)
