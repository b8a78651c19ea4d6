"""Each user's row (items and edge weights), cached so a request needs no store read.

Two things read it: ``exclude_seen`` (the items) and, when the index folds users in at request
time (:class:`~serving.live_users.LiveUsers`, ``up`` with SpectralCF), the user vector itself.

A user's row changes only when new edges arrive. Two kinds of news reach the cache:

* an index update naming the user (everyone on a full reload) drops the entry: the refresh worker
  re-embedded them, so an entry is never older than the user's stored embedding (``serve``);
* a committed ingest batch (:meth:`UserRowCache.committed`, called by ``up`` on the agent's thread
  right after each commit, in change-log order) adds its edge deltas to the rows it names. The
  store adds the same deltas to the same weights, so the cached row stays the committed one
  without a read; that is what serves a click the moment its edge is committed, with no store
  read on the request's way for users the cache holds.

Once commits arrive, an entry is kept only while it is exact: a read is cached only if it was made
at the sequence of the last commit the cache heard of and no commit arrived while it ran, and a
gap in the sequence (a commit it did not hear of) empties the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from core.domain import EdgeDelta, NodeId, UserRow
from graph_store.base import GraphStore
from serving.index import IndexUpdate

#: Users whose rows are kept; past this the cache starts over (cheap, and rare).
DEFAULT_MAX_USERS = 200_000


class UserRowCache:
    """``store.user_row`` kept current by index updates and by commits.

    Args:
        store (GraphStore): Where rows are read on a miss.
        max_users (int): Most users cached at once (default: :obj:`200_000`).
    """

    def __init__(self, store: GraphStore, max_users: int = DEFAULT_MAX_USERS) -> None:
        self.store = store
        self.max_users = max_users
        self.hits = self.misses = 0
        self._rows: dict[NodeId, UserRow] = {}
        self._epoch = 0  # bumped by every change, so a read that raced one is not cached
        #: The last commit heard of (``committed``); None until the first, i.e. in ``serve``.
        self._seq: int | None = None
        self._lock = threading.Lock()

    def get(self, user_id: NodeId) -> UserRow:
        """The user's row (empty for a user without edges)."""
        cached = self._rows.get(user_id)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        epoch = self._epoch
        row = self.store.user_row(user_id)
        with self._lock:
            if epoch == self._epoch and (self._seq is None or row.seq == self._seq):
                if len(self._rows) >= self.max_users:
                    self._rows.clear()
                self._rows[user_id] = row
        return row

    def invalidate(self, update: IndexUpdate) -> None:
        """Drop the users an index update re-embedded (everyone when it replaced the index)."""
        with self._lock:
            self._epoch += 1
            if update.replaced:
                self._rows.clear()
            else:
                for user_id in update.users:
                    self._rows.pop(user_id, None)

    def committed(self, seq: int, edges: Sequence[EdgeDelta]) -> None:
        """Batch ``seq`` was committed with these edge deltas: add them to the rows the cache holds."""
        by_user: dict[NodeId, list[EdgeDelta]] = {}
        for edge in edges:
            by_user.setdefault(edge.user_id, []).append(edge)
        with self._lock:
            self._epoch += 1
            if self._seq is None or seq != self._seq + 1:
                self._rows.clear()  # the first commit heard of, or one missed: no entry is known exact
            else:
                for user_id, deltas in by_user.items():
                    row = self._rows.get(user_id)
                    if row is not None:
                        self._rows[user_id] = _with_deltas(row, deltas, seq)
            self._seq = seq


def _with_deltas(row: UserRow, deltas: Sequence[EdgeDelta], seq: int) -> UserRow:
    """``row`` with the deltas added as the store adds them (existing edges accumulate, new ones join)."""
    weights = dict(zip(row.items, row.weights.tolist(), strict=True))
    for delta in deltas:
        weights[delta.item_id] = weights.get(delta.item_id, 0.0) + delta.weight
    items = tuple(sorted(weights))
    return UserRow(items, np.fromiter((weights[i] for i in items), np.float64, len(items)), seq)
