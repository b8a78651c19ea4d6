"""What is popular now: recency-decayed interaction weight per item, for users serving knows nothing of.

A user without a personal vector (brand new, or none of whose items the model knows yet) is
answered from :class:`TrendingItems` instead of ``NOT_FOUND``, and users with few interactions get
it blended in (:mod:`serving.blending`). An item's trend score is

.. math::
    s_i(t) = \\sum_{e \\ni i} w_e \\, 2^{-(t - t_e) / h}

over the edge deltas ``e`` that reached item ``i`` (weight ``w_e``, event time ``t_e``), with
half-life ``h``. Event time, not arrival time: a replayed stream trends as it did when it happened,
and the ranking at any moment depends only on the gaps between events. Scores are held as
weights at a reference time (each add is scaled by :math:`2^{(t_e - t_0)/h}`), so an add is one
multiply and reading never touches every item; the reference moves forward before the scale
could overflow.

Where the deltas come from: inside ``up``, every committed ingest batch (the same feed that keeps
the user rows, see :mod:`serving.user_rows`), after a seed from the store snapshot ``up`` loads at
start (the store keeps no per-event times, so the seed is every item's total weight, stamped with
the first event time that follows: see :meth:`TrendingItems.add_totals`); in ``serve`` on its own,
from store snapshots every ``IG_TRENDING_RESEED`` seconds, each adding what the totals grew by
since the last one, stamped with the clock.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from core.domain import EdgeDecay, EdgeDelta, EdgeSnapshot, NodeId, epoch_ms
from graph_store.base import GraphStore, GraphStoreError

log = logging.getLogger(__name__)

#: Rebase before the scale of a new add passes 2^this (float64 keeps ~2^1000).
_MAX_EXPONENT = 60.0
#: Rows of the best trending items kept sorted per snapshot, so most requests touch no more.
TOP_CACHED = 1000


class TrendingItems:
    """Decayed item weights (module docs), thread-safe: one feed adds, every request reads.

    Args:
        half_life_s (float): Seconds for a contribution to lose half its weight; 0 = no decay
            (all-time popularity) (default: ``15768000.0``, half a year, ``IG_TRENDING_HALF_LIFE``'s).
    """

    def __init__(self, half_life_s: float = 15_768_000.0) -> None:
        if half_life_s < 0:
            raise ValueError(f"half_life_s must be >= 0, got {half_life_s}")
        self.half_life_ms = half_life_s * 1000.0
        self._lock = threading.Lock()
        self._slot: dict[NodeId, int] = {}
        self._ids: list[NodeId] = []
        self._weight = np.zeros(1024, dtype=np.float64)
        self._ref_ms: int | None = None
        #: The decay reference of the store totals held (``add_totals``), if they were decayed.
        self._totals_decay: EdgeDecay | None = None
        self._newest_ms = 0
        self._totals: dict[NodeId, float] = {}
        #: Bumped by every change, so per-snapshot caches know when they are old.
        self.epoch = 0
        self._cache: tuple[object, int, np.ndarray, np.ndarray] | None = None  # (table, epoch, scores, top rows)
        self._positions: tuple[object, np.ndarray] | None = None  # (table, row of each item held)

    @property
    def newest_ms(self) -> int:
        """Event time of the newest contribution (epoch ms; 0 before the first)."""
        return self._newest_ms

    # --- feeding ---------------------------------------------------------------------------------
    def add(self, items: Sequence[NodeId], weights: Sequence[float], at_ms: Sequence[int] | None) -> None:
        """Add ``weights[j]`` to ``items[j]`` as of event time ``at_ms[j]`` (epoch ms); ``None``: as of
        the reference time, which the first timed add sets to its earliest time (a seed)."""
        if not items:
            return
        with self._lock:
            slots = np.fromiter((self._slot_of(i) for i in items), dtype=np.int64, count=len(items))
            scale: np.ndarray | float = 1.0
            if at_ms is not None:
                at = np.asarray(at_ms, dtype=np.float64)
                if self._ref_ms is None:
                    self._ref_ms = int(at.min())
                self._newest_ms = max(self._newest_ms, int(at.max()))
                self._rebase_for(int(at.max()))
                scale = self._scale(at)
            np.add.at(self._weight, slots, np.asarray(weights, dtype=np.float64) * scale)
            self.epoch += 1

    def add_edges(self, edges: Iterable[EdgeDelta], decay: EdgeDecay | None = None) -> None:
        """A committed batch's edge deltas (their weights, at their newest event time); with ``decay``
        their weights are in its reference units and are taken back to plain ones first."""
        edges = list(edges)
        weights = [e.weight if decay is None else decay.plain(e.weight, e.last_ts_ms) for e in edges]
        self.add([e.item_id for e in edges], weights, [e.last_ts_ms for e in edges])

    def add_totals(self, snapshot: EdgeSnapshot, at_ms: int | None = None) -> int:
        """What each item's total weight in ``snapshot`` grew by since the last call (the first call:
        the totals themselves, a seed), as of ``at_ms`` (epoch ms). ``None`` stamps it with the newest
        event time added so far, or before any, with the first one to come: the store keeps no
        per-event times, and a seed stamped with the clock would outweigh a replayed stream's
        older event times forever. Returns how many items grew.

        Totals of a decayed store (``snapshot.decay``) are each item's edge-decayed weight as of the
        store's reference time, so their growth is stamped with it (exact when both half-lives are
        equal); a rebase between two calls rescales the totals held, so it is not read as a loss."""
        if snapshot.decay is not None:
            if self._totals_decay is not None and self._totals_decay.ref_ms != snapshot.decay.ref_ms:
                factor = self._totals_decay.rescale_to(snapshot.decay)
                self._totals = {item: total * factor for item, total in self._totals.items()}
            self._totals_decay = snapshot.decay
            at_ms = snapshot.decay.ref_ms
        totals = np.bincount(snapshot.item_index, weights=snapshot.weight, minlength=len(snapshot.item_ids))
        grown: list[NodeId] = []
        growth: list[float] = []
        for item, total in zip(snapshot.item_ids, totals.tolist(), strict=True):
            delta = total - self._totals.get(item, 0.0)
            if delta > 0:
                grown.append(item)
                growth.append(delta)
            self._totals[item] = total
        if at_ms is None and self._ref_ms is not None:
            at_ms = self._newest_ms
        self.add(grown, growth, None if at_ms is None else [at_ms] * len(grown))
        return len(grown)

    # --- reading ---------------------------------------------------------------------------------
    def scores_for(self, positions: np.ndarray, rows: int) -> np.ndarray:
        """``float64 [rows]``: the trend score of each of the caller's rows (0 for items without one).

        Args:
            positions (np.ndarray): ``int64``: the caller's row of each item of :meth:`ids`, ``-1``
                where it has none.
            rows (int): How many rows the caller has.
        """
        with self._lock:
            weight = self._weight[: len(positions)] * self._read_scale()
        out = np.zeros(rows, dtype=np.float64)
        known = positions >= 0
        out[positions[known]] = weight[known]
        return out

    def ids(self) -> list[NodeId]:
        """The items held, in slot order (what :meth:`scores_for`'s positions are of)."""
        with self._lock:
            return list(self._ids)

    def ranked(self, table: object, positions_of: Callable[[list[NodeId]], np.ndarray],
               rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores over ``rows``, the best :data:`TOP_CACHED` rows best first) for the caller's row table.

        The rows of this tracker's items are looked up once per table (and then only for items new
        since), the scores once per change: a request costs nothing when neither moved.

        Args:
            table (object): The caller's row table (the snapshot's item table); held until the next
                table, so its identity cannot be reused meanwhile.
            positions_of (Callable[[list[NodeId]], np.ndarray]): Rows of the given item ids (``-1``: none).
            rows (int): How many rows the table has.
        """
        cached = self._cache
        if cached is not None and cached[0] is table and cached[1] == self.epoch:
            return cached[2], cached[3]
        epoch = self.epoch
        ids = self.ids()
        held = self._positions
        if held is not None and held[0] is table:
            positions = held[1] if len(held[1]) == len(ids) else \
                np.concatenate([held[1], positions_of(ids[len(held[1]):])])
        else:
            positions = positions_of(ids)
        self._positions = (table, positions)
        scores = self.scores_for(positions, rows)
        top = top_rows(scores, TOP_CACHED)
        self._cache = (table, epoch, scores, top)
        return scores, top

    # --- internals -------------------------------------------------------------------------------
    def _slot_of(self, item: NodeId) -> int:
        slot = self._slot.get(item)
        if slot is None:
            slot = self._slot[item] = len(self._ids)
            self._ids.append(item)
            if slot >= self._weight.shape[0]:
                self._weight = np.concatenate([self._weight, np.zeros(self._weight.shape[0], np.float64)])
        return slot

    def _scale(self, at_ms: np.ndarray) -> np.ndarray | float:
        if not self.half_life_ms:
            return 1.0
        assert self._ref_ms is not None
        return np.exp2((at_ms - self._ref_ms) / self.half_life_ms)

    def _read_scale(self) -> float:
        """Weights as of the newest event: what a score means to a reader (rankings do not depend on it)."""
        if not self.half_life_ms or self._ref_ms is None:
            return 1.0
        return math.exp2(-(self._newest_ms - self._ref_ms) / self.half_life_ms)

    def _rebase_for(self, at_ms: int) -> None:
        if not self.half_life_ms or self._ref_ms is None:
            return
        if (at_ms - self._ref_ms) / self.half_life_ms > _MAX_EXPONENT:
            self._weight *= math.exp2(-(at_ms - self._ref_ms) / self.half_life_ms)
            self._ref_ms = at_ms


class StoreTrendingFeed:
    """``serve`` on its own: feeds :class:`TrendingItems` from store snapshots, in a daemon thread.

    Each read adds what every item's total weight grew by since the previous read, stamped with
    the clock (the first read seeds the totals). A whole-graph snapshot per ``interval_s``: a
    split deployment's serving replicas hear of no commits (``up`` feeds trending from them).

    Args:
        store (GraphStore): Where the totals are read.
        trending (TrendingItems): What to feed.
        interval_s (float): Seconds between reads; 0 = only the first (default: ``60.0``).
    """

    def __init__(self, store: GraphStore, trending: TrendingItems, interval_s: float = 60.0) -> None:
        self.store, self.trending, self.interval_s = store, trending, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read_once(self) -> bool:
        """One snapshot's growth added; ``False`` (logged, tried again next time) if the store failed."""
        try:
            snapshot = self.store.snapshot()
        except GraphStoreError as exc:
            log.warning("trending: reading the store's item totals failed: %s", exc)
            return False
        self.trending.add_totals(snapshot, epoch_ms())
        return True

    def start(self) -> StoreTrendingFeed:
        """Read once in the caller's thread (a new server lists what is trending at once), then keep reading."""
        self.read_once()
        self._thread = threading.Thread(target=self._run, name="trending-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while self.interval_s > 0 and not self._stop.wait(self.interval_s):
            self.read_once()


def top_rows(scores: np.ndarray, n: int) -> np.ndarray:
    """Rows of the ``n`` highest positive scores, best first (ties by row)."""
    positive = np.flatnonzero(scores > 0)
    if positive.size > n:
        positive = positive[np.argpartition(-scores[positive], n - 1)[:n]]
    return positive[np.lexsort((positive, -scores[positive]))].astype(np.int64)
