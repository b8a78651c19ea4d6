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

Once commits arrive, an entry is kept only while it is exact. A read carries the sequence of the
snapshot it read; under a steady ingest load commits land while reads run, so a read older than
the last commit heard of is brought up to it with the deltas of the commits in between, which the
cache keeps for the last :data:`RECENT_COMMITS` commits (a read older than that, or one ahead of
the commits heard of, is returned but not kept). A gap in the sequence (a commit it did not hear
of) empties the cache. Index updates then say nothing about rows and are ignored.

``up`` goes one step further before its ingest starts (:meth:`UserRowCache.hold_all`): it loads
every row from one store snapshot, and from then on the cache is *complete*. A miss is a user
without edges, answered with no read; a commit's deltas create the rows of users it has not seen.
Serving then never reads a row from the store: a read beside the single writer waited seconds
under load (``bench/freshness.py``), and a brand-new user's first clicks are served the moment
they commit. The cache falls back to reading (and stops being complete) if it overflows
``max_users`` or misses a commit.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import threading
from collections import deque
from collections.abc import Collection, Sequence

import numpy as np

from core.domain import EdgeDelta, EdgeSnapshot, NodeId, UserRow
from graph_store.base import GraphStore
from serving.index import IndexUpdate

log = logging.getLogger(__name__)

#: Users whose rows are kept; past this the cache starts over (cheap, and rare).
DEFAULT_MAX_USERS = 200_000
#: Commits whose deltas are kept to bring a read that raced them up to date: at two or three
#: commits a second under load, several seconds of them, and a few MB at 5,000 edges a commit.
RECENT_COMMITS = 16

#: Rows up to this long are rebuilt whole when a commit adds to them; longer ones are merged into.
SMALL_ROW = 64

#: One commit's deltas by user.
_ByUser = dict[NodeId, list[EdgeDelta]]


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
        #: The deltas of the last commits heard of, oldest first, with no gap up to ``_seq``.
        self._recent: deque[tuple[int, _ByUser]] = deque(maxlen=RECENT_COMMITS)
        #: The commit of the last decay rebase (reads from before it are in the old units).
        self._rebased_seq = 0
        #: Every user with edges is held (:meth:`hold_all`): a miss is a user without any.
        self.complete = False
        self._lock = threading.Lock()

    def get(self, user_id: NodeId) -> UserRow:
        """The user's row (empty for a user without edges)."""
        cached = self._rows.get(user_id)
        if cached is not None:
            self.hits += 1
            return cached
        if self.complete:
            self.hits += 1
            return _no_edges(self._seq or 0)
        self.misses += 1
        epoch = self._epoch
        row = _in_id_order(self.store.user_row(user_id))
        with self._lock:
            current = self._current(user_id, row, epoch)
            if current is None:
                return row
            if len(self._rows) >= self.max_users:
                self._start_over("it holds max_users rows")
            self._rows[user_id] = current
        return current

    def hold_all(self, snapshot: EdgeSnapshot) -> bool:
        """Hold every user's row from ``snapshot`` and stay complete from there on; ``False`` (and
        nothing held) if it has more than ``max_users`` users.

        Call it before any commit after the snapshot's sequence (``up`` calls it before its ingest
        starts): the next commit heard of must be ``snapshot.seq + 1``.
        """
        if len(snapshot.user_ids) > self.max_users:
            log.warning("serving reads user rows from the store: %d users are more than max_users (%d)",
                        len(snapshot.user_ids), self.max_users)
            return False
        rows = _rows_of(snapshot)
        with self._lock:
            self._epoch += 1
            self._rows = rows
            self._recent.clear()
            self._seq = snapshot.seq
            self.complete = True
        return True

    def _start_over(self, why: str) -> None:
        """Drop every row (lock held); a complete cache stops being complete."""
        if self.complete:
            log.warning("serving reads user rows from the store from now on: %s", why)
        self._rows.clear()
        self.complete = False

    def _current(self, user_id: NodeId, row: UserRow, epoch: int) -> UserRow | None:
        """``row`` as of the last commit heard of, or ``None`` if that cannot be known (lock held)."""
        if self._seq is None:  # no commits heard (``serve``): only an index update can make it stale
            return row if epoch == self._epoch else None
        if row.seq < self._rebased_seq:
            return None  # read before the last rebase: its weights are in the old units
        if row.seq == self._seq:
            return row
        if row.seq > self._seq or not self._recent or self._recent[0][0] > row.seq + 1:
            return None  # read past the commits heard of, or older than the deltas kept
        deltas = [d for seq, by_user in self._recent if seq > row.seq for d in by_user.get(user_id, ())]
        return _with_deltas(row, deltas, self._seq) if deltas else UserRow(row.items, row.weights, self._seq)

    def invalidate(self, update: IndexUpdate) -> None:
        """Drop the users an index update re-embedded (everyone when it replaced the index), unless
        commits are heard: then they keep every row exact and the index says nothing new."""
        with self._lock:
            if self._seq is not None:
                return
            self._epoch += 1
            if update.replaced:
                self._rows.clear()
            else:
                for user_id in update.users:
                    self._rows.pop(user_id, None)

    def held(self) -> list[NodeId]:
        """The users whose rows are cached now."""
        with self._lock:
            return list(self._rows)

    def forget(self, user_ids: Collection[NodeId]) -> None:
        """Drop forgotten users' rows (erasure). A complete cache stays complete: a user it does not
        hold has no edges, which is what the store now says of them."""
        with self._lock:
            self._epoch += 1
            for user_id in user_ids:
                self._rows.pop(user_id, None)
            gone = set(user_ids)
            for _, by_user in self._recent:
                for user_id in gone & by_user.keys():
                    del by_user[user_id]

    def committed(self, seq: int, edges: Sequence[EdgeDelta], rescaled: float = 1.0) -> None:
        """Batch ``seq`` was committed with these edge deltas: add them to the rows the cache holds,
        after multiplying every weight held by ``rescaled`` (the store's decay rebase, see
        :class:`~core.domain.EdgeDecay`; 1.0 = none)."""
        by_user: _ByUser = {}
        for edge in edges:
            by_user.setdefault(edge.user_id, []).append(edge)
        with self._lock:
            self._epoch += 1
            if rescaled != 1.0:
                self._rescale(rescaled)
                self._rebased_seq = seq
            if self._seq is None or seq != self._seq + 1:
                # The first commit heard of, or one missed: no entry is known exact, nor can the
                # kept deltas bring a read across the gap.
                self._start_over(f"commit {seq} came after {self._seq}")
                self._recent.clear()
            else:
                for user_id, deltas in by_user.items():
                    row = self._rows.get(user_id)
                    if row is not None:
                        self._rows[user_id] = _with_deltas(row, deltas, seq)
                    elif self.complete:  # a user without edges until this commit
                        self._rows[user_id] = _with_deltas(_no_edges(seq), deltas, seq)
                if len(self._rows) > self.max_users:
                    self._start_over("it holds max_users rows")
            self._recent.append((seq, by_user))
            self._seq = seq


    def _rescale(self, factor: float) -> None:
        """Every held weight times ``factor``, as the store's rebase did to the stored ones (rare: once
        per :data:`~core.domain.REBASE_AFTER_HALF_LIVES` half-lives of event time)."""
        self._rows = {user: UserRow(row.items, row.weights * factor, row.seq) for user, row in self._rows.items()}
        self._recent = deque(((seq, {user: [dataclasses.replace(d, weight=d.weight * factor) for d in deltas]
                                     for user, deltas in by_user.items()}) for seq, by_user in self._recent),
                             maxlen=RECENT_COMMITS)


def _no_edges(seq: int) -> UserRow:
    """The row of a user without edges, as of commit ``seq``."""
    return UserRow((), np.zeros(0, np.float64), seq)


def _with_deltas(row: UserRow, deltas: Sequence[EdgeDelta], seq: int) -> UserRow:
    """``row`` with the deltas added as the store adds them (existing edges accumulate, new ones join).

    Runs on the agent's thread for every user of every commit, and a Zipf head user's row holds
    most of the catalog: a rebuild of the whole row (a dict and a sort of 20,000 ids) took up to
    0.5 s of the event loop per 2,500-event batch once the graph had grown. So each delta's item
    is found by bisection in the sorted row, and only new items are inserted (``row.items`` is in
    id order: ``_rows_of``, :func:`_in_id_order`, and this function keep it so).
    """
    if len(row.items) <= SMALL_ROW:  # most users: a plain rebuild costs less than numpy's per-call overhead
        summed = dict(zip(row.items, row.weights.tolist(), strict=True))
        for delta in deltas:  # in commit order, as the store adds them (floats: the order matters)
            summed[delta.item_id] = summed.get(delta.item_id, 0.0) + delta.weight
        ordered = tuple(sorted(summed))
        return UserRow(ordered, np.fromiter((summed[i] for i in ordered), np.float64, len(ordered)), seq)
    items, weights = row.items, row.weights.copy()
    joining: dict[NodeId, tuple[int, float]] = {}  # new item -> (where it goes in the old row, weight)
    for delta in deltas:
        item = delta.item_id
        at = bisect.bisect_left(items, item)
        if at < len(items) and items[at] == item:
            weights[at] += delta.weight
        else:
            joining[item] = (at, joining.get(item, (at, 0.0))[1] + delta.weight)
    if not joining:
        return UserRow(items, weights, seq)
    placed = sorted(joining.items(), key=lambda j: (j[1][0], j[0]))  # between the same two old ones: id order
    merged = list(items)
    for offset, (item, (at, _)) in enumerate(placed):
        merged.insert(at + offset, item)
    positions = np.fromiter((at for _, (at, _) in placed), np.intp, len(placed))
    return UserRow(tuple(merged), np.insert(weights, positions, [w for _, (_, w) in placed]), seq)


def _in_id_order(row: UserRow) -> UserRow:
    """``row`` with its items in id order (code-point order, as Python compares strings); a store
    may collate otherwise, and :func:`_with_deltas` bisects."""
    items = row.items
    if all(a < b for a, b in itertools.pairwise(items)):
        return row
    order = sorted(range(len(items)), key=items.__getitem__)
    return UserRow(tuple(items[k] for k in order), row.weights[order], row.seq)


def _rows_of(snapshot: EdgeSnapshot) -> dict[NodeId, UserRow]:
    """Each user's row in ``snapshot``, items in id order as the store returns them."""
    users, items = snapshot.user_index, snapshot.item_index
    if not users.size:
        return {}
    item_ids = np.asarray(snapshot.item_ids, dtype=object)
    # Sort by user, then by item id within a user (the store's row order).
    item_rank = np.argsort(np.argsort(item_ids.astype(str), kind="stable"), kind="stable")
    order = np.lexsort((item_rank[items], users))
    users, items, weights = users[order], items[order], np.asarray(snapshot.weight, np.float64)[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], users.size]
    seq = snapshot.seq
    return {
        snapshot.user_ids[int(users[a])]: UserRow(tuple(item_ids[items[a:b]].tolist()), weights[a:b].copy(), seq)
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    }
