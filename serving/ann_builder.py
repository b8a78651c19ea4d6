"""The background thread that keeps an HNSW graph (:mod:`serving.ann`) for the index's items.

It sits above both the index and the graph: it reads index snapshots, builds a graph from one and
attaches it, so neither of those two modules needs the other's builder (no import circle).
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from serving.ann import HnswIndex
from serving.ann_calibration import Calibration, calibrate
from serving.index import EmbeddingIndex, IndexSnapshot

log = logging.getLogger(__name__)


class AnnBuilder:
    """Keeps an :class:`HnswIndex` for the index's items once the catalog is large enough.

    Wakes on every index update; when the items number at least ``min_items``, an exact scan of
    them would read at least ``min_scan_bytes`` (the cost HNSW saves grows with the width as much
    as with the count) and rows changed since the last build exceed ``rebuild_fraction`` of the
    catalog (or there is no graph yet), it makes a new graph from the latest snapshot in its own
    thread and attaches it. Requests are never blocked: they use the previous graph (or exact
    search) until the swap.

    A new graph extends the last one with the changed rows (:meth:`HnswIndex.extended`) while the
    entries they replaced number at most ``max_replaced_fraction`` of the catalog; past that, or
    when there is no graph to extend, it is built afresh from every row. Replaced entries cost
    each search a little (it fetches as many more candidates) and recall a little, since they are
    waypoints that can no longer be results.

    A graph built afresh gets the narrowest search breadth, from ``ef_search`` up to ``ef_max``, whose
    served recall@10 on this catalog reaches ``target_recall`` (:mod:`serving.ann_calibration`);
    extensions keep the breadth of the graph they extend.

    Args:
        index (EmbeddingIndex): The index to build for and attach to.
        min_items (int): Smallest catalog served approximately; ``0`` disables HNSW.
        ef_search (int): HNSW search breadth, the narrowest calibration tries (default: :obj:`128`).
        rebuild_fraction (float): Changed-row share that triggers a rebuild (default: :obj:`0.05`).
        min_scan_bytes (int): Smallest exact scan (items x width x 4 bytes) served approximately
            (default: :obj:`0`, any size from ``min_items`` on).
        max_replaced_fraction (float): Replaced entries, as a share of the catalog, up to which a
            graph is extended rather than rebuilt; ``0`` always rebuilds (default: :obj:`0.5`).
        target_recall (float): Recall@10 each new graph is calibrated to; ``0`` = always
            ``ef_search`` (default: :obj:`0.0`).
        ef_max (int): The widest breadth calibration may choose (default: :obj:`1024`).
    """

    def __init__(
        self, index: EmbeddingIndex, min_items: int, ef_search: int = 128, rebuild_fraction: float = 0.05,
        min_scan_bytes: int = 0, max_replaced_fraction: float = 0.5, target_recall: float = 0.0,
        ef_max: int = 1024,
    ) -> None:
        if not 0.0 <= target_recall <= 1.0:
            raise ValueError(f"target_recall must be in [0, 1], got {target_recall}")
        self.index = index
        self.min_items = min_items
        self.min_scan_bytes = min_scan_bytes
        self.ef_search = ef_search
        self.rebuild_fraction = rebuild_fraction
        self.max_replaced_fraction = max_replaced_fraction
        self.target_recall = target_recall
        self.ef_max = ef_max
        #: The last graph built afresh's calibration (``None`` before one, or with no target).
        self.calibration: Calibration | None = None
        #: Graphs made, and how many of them were extensions of the previous one.
        self.builds = 0
        self.extensions = 0
        self.building = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def needs_build(self) -> bool:
        snapshot = self.index.snapshot()
        n = len(snapshot.items)
        if not self.min_items or n < self.min_items or n * snapshot.items.dim * 4 < self.min_scan_bytes:
            return False
        if snapshot.ann is None:
            return True
        return snapshot.stale_rows.size > self.rebuild_fraction * n

    def build_once(self) -> bool:
        """Make a graph of the current snapshot and attach it if still compatible; ``True`` if attached."""
        snapshot = self.index.snapshot()
        extend = self._extendable(snapshot)
        self.building = True
        try:
            if extend:
                assert snapshot.ann is not None
                ann = snapshot.ann.extended(snapshot.stale_rows, snapshot.stale_vectors, len(snapshot.items),
                                            snapshot.version)
            else:
                ann = HnswIndex.build(snapshot.items.vectors, snapshot.version, self.ef_search, snapshot.items.codec)
                if self.target_recall > 0:
                    self.calibration = calibrate(ann, snapshot, self.target_recall, self.ef_search, self.ef_max)
                    log.info("HNSW efSearch %d: served recall@10 %.3f on %s queries (ladder %s)",
                             self.calibration.ef_search, self.calibration.recall, self.calibration.queries,
                             self.calibration.ladder)
        finally:
            self.building = False
        self.builds += 1
        self.extensions += extend
        attached = self.index.attach_ann(ann, built_from=snapshot)
        log.info("HNSW over %d items of embedding version %d (%s, %d replaced entries) %s", ann.n_rows,
                 ann.version, f"{snapshot.stale_rows.size} rows inserted" if extend else "built afresh",
                 ann.replaced, "attached" if attached else "dropped: the index was reloaded meanwhile")
        return attached

    def _extendable(self, snapshot: IndexSnapshot) -> bool:
        """Whether the snapshot's graph can take its stale rows and stay within the replaced share."""
        ann = snapshot.ann
        # A graph takes new rows only in its own codes: after a reload fitted a new codec, rebuild.
        if ann is None or ann.graph.d != snapshot.items.dim or ann.codec is not snapshot.items.codec:
            return False
        replaced = ann.replaced + int(np.count_nonzero(snapshot.stale_rows < ann.n_rows))
        return replaced <= self.max_replaced_fraction * len(snapshot.items)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ann-builder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self.index.wake_watchers()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        generation = -1
        while not self._stop.is_set():
            if self.needs_build():
                try:
                    self.build_once()
                except Exception:  # a failed build keeps the previous graph serving
                    log.exception("HNSW build failed; serving the previous index")
            generation = self.index.wait_for_update(generation, timeout_s=5.0, stop=self._stop)
