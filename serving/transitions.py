"""What users take up next: item-to-item transitions of the live stream, read from a user's latest items.

The first-order item-to-item chain of FPMC (Rendle et al., "Factorizing Personalized Markov Chains
for Next-Basket Recommendation", WWW 2010) kept as counts instead of factorised, over a short window
as session-kNN methods do. Each time a user takes up item :math:`j`, each of the user's previous
``window`` distinct items :math:`i` (latest first, gap :math:`g = 1, 2, \\dots`) gets

.. math::
    T_{ij} \\mathrel{+}= 2^{-(g - 1)}

and a user whose latest items are :math:`i_0, i_1, \\dots` (:math:`i_0` the latest) scores

.. math::
    s(j) = \\sum_{p < L} 2^{-p / h} \\, T_{i_p j}

with :math:`L` = ``query_items`` and :math:`h` = ``half_items``, counted in the user's own items:
no clock, so a user back after a month still has a latest item. Where a user's interest has moved
on (a new genre, a new cluster of a catalog), these counts follow at once: the whole-history
personal vector weighs the old and the new alike.

Memory is bounded per item: an item keeps its ``max_successors`` heaviest successors (pruned when
a row holds twice that), so the table grows with the catalog, not with the stream. Fed like
:mod:`serving.trending`: every committed batch's edge deltas inside ``up``, in event-time order.
A process starts empty (the store keeps no per-event order to rebuild it from) and learns from the
first batches on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np

from core.domain import EdgeDelta, NodeId


class ItemTransitions:
    """Windowed item-to-item transition counts and per-user latest items (module docs), thread-safe.

    Args:
        window (int): Previous distinct items of the user each new item is counted after (default: ``3``).
        query_items (int): The user's latest items a request reads, :math:`L` (default: ``5``).
        half_items (float): :math:`h`, in the user's items (default: ``1.0``).
        max_successors (int): Successors kept per item (default: ``256``).
    """

    def __init__(self, window: int = 3, query_items: int = 5, half_items: float = 1.0,
                 max_successors: int = 256) -> None:
        if window < 1 or query_items < 1 or half_items <= 0 or max_successors < 1:
            raise ValueError("window, query_items and max_successors must be >= 1 and half_items > 0")
        self.window, self.query_items, self.half_items = window, query_items, half_items
        self.max_successors = max_successors
        self._lock = threading.Lock()
        self._slot: dict[NodeId, int] = {}
        self._ids: list[NodeId] = []
        self._next: list[dict[int, float]] = []
        self._latest: dict[NodeId, tuple[int, ...]] = {}
        #: (a caller's row table, its row of each slot): ids are looked up once per table.
        self._rows: tuple[object, np.ndarray] | None = None
        #: Item-to-item pairs held, kept as rows grow and are pruned (a scrape reads it, not every row).
        self._pairs = 0

    # --- feeding ---------------------------------------------------------------------------------
    def add_edges(self, edges: Iterable[EdgeDelta]) -> None:
        """A committed batch's edge deltas, taken up in event-time order (ties as given)."""
        ordered = sorted(edges, key=lambda e: e.last_ts_ms)
        if not ordered:
            return
        for edge in ordered:  # the lock per edge: a reader never waits for a whole batch
            with self._lock:
                self._take_up(edge.user_id, self._slot_of(edge.item_id))

    def forget_user(self, user: NodeId) -> None:
        """Drop a user's latest items (erasure); the counts hold no user."""
        with self._lock:
            self._latest.pop(user, None)

    # --- reading ---------------------------------------------------------------------------------
    def counts(self) -> tuple[int, int, int]:
        """(items, item-to-item pairs, users) held: what the table's memory grows with."""
        with self._lock:
            return len(self._ids), self._pairs, len(self._latest)

    def latest(self, user: NodeId) -> list[NodeId]:
        """The user's latest distinct items, the latest first (at most ``max(window, query_items)``)."""
        with self._lock:
            return [self._ids[s] for s in reversed(self._latest.get(user, ()))]

    def successors(self, user: NodeId) -> tuple[list[NodeId], np.ndarray] | None:
        """:math:`s(j)` of every item that follows the user's latest items, as (ids, ``float64``
        scores); ``None`` when none does (a user never seen, or whose items nobody moved on from)."""
        merged = self._merged(user)
        if merged is None:
            return None
        return [self._ids[s] for s in merged[0].tolist()], merged[1]

    def successor_rows(self, user: NodeId, table: object,
                       positions_of: Callable[[list[NodeId]], np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`successors` as the caller's rows (``int64``, those it holds) and scores: the item
        slots are mapped to ``table``'s rows once per table (then only slots new since), so a request
        looks up no id. ``None`` when nothing it holds follows the user's items.

        Args:
            user (NodeId): Whose latest items are read.
            table (object): The caller's row table (a snapshot's item table), held until the next one.
            positions_of (Callable[[list[NodeId]], np.ndarray]): Its row of each item id (``-1``: none).
        """
        merged = self._merged(user)
        if merged is None:
            return None
        slots, scores = merged
        held = self._rows
        mapped = held[1] if held is not None and held[0] is table else np.zeros(0, np.int64)
        if mapped.size <= int(slots.max()):  # items new since the map was made (ids only ever grow)
            mapped = np.concatenate([mapped, positions_of(self._ids[mapped.size:len(self._ids)])])
            self._rows = (table, mapped)
        rows = mapped[slots]
        keep = rows >= 0
        return (rows[keep], scores[keep]) if keep.any() else None

    # --- internals -------------------------------------------------------------------------------
    def _merged(self, user: NodeId) -> tuple[np.ndarray, np.ndarray] | None:
        """(slots, :math:`s(j)`) of what follows the user's latest items. Under the lock only the
        user's few rows are copied (one C call each): the merge runs outside it, in numpy, so a
        request thread that loses the interpreter lock mid-merge holds up no commit."""
        with self._lock:
            rows = [self._next[source].copy() for source in reversed(self._latest.get(user, ())[-self.query_items:])]
        slots = [np.fromiter(row.keys(), np.int64, len(row)) for row in rows]
        weights = [np.fromiter(row.values(), np.float64, len(row)) * 2.0 ** (-place / self.half_items)
                   for place, row in enumerate(rows)]
        if not any(part.size for part in slots):
            return None
        unique, inverse = np.unique(np.concatenate(slots), return_inverse=True)
        return unique, np.bincount(inverse, weights=np.concatenate(weights))

    def _slot_of(self, item: NodeId) -> int:
        slot = self._slot.get(item)
        if slot is None:
            slot = self._slot[item] = len(self._ids)
            self._ids.append(item)
            self._next.append({})
        return slot

    def _take_up(self, user: NodeId, slot: int) -> None:
        latest = self._latest.get(user, ())
        if latest and latest[-1] == slot:
            return  # the same item again: no move, nothing learnt
        earlier = [s for s in latest if s != slot]
        for gap, source in enumerate(reversed(earlier[-self.window:]), start=1):
            row = self._next[source]
            self._pairs += slot not in row
            row[slot] = row.get(slot, 0.0) + 2.0 ** (1 - gap)
            if len(row) > 2 * self.max_successors:
                self._next[source] = self._pruned(row)
                self._pairs -= len(row) - self.max_successors
        keep = max(self.window, self.query_items)
        self._latest[user] = (*earlier[-(keep - 1):], slot) if keep > 1 else (slot,)

    def _pruned(self, row: dict[int, float]) -> dict[int, float]:
        """The ``max_successors`` heaviest successors of a row (ties by slot, so pruning is deterministic)."""
        kept = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_successors]
        return dict(kept)
