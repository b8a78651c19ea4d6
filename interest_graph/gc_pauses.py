"""The interpreter's cyclic garbage collector in a long-running stack: tuned once, its pauses measured.

Every collection holds the interpreter lock for its whole pass, so a pass over a large heap stalls
the Faust event loop, the store thread and every gRPC call at once. ``up`` holds a large,
long-lived heap (every user's row, the catalog, the index's id maps) while Faust allocates a few
objects per event, and CPython's default thresholds (700, 10, 10) then start a young collection
every 700 net allocations and an older one every 7,000. ``perf`` on ``up`` under 3,000 events/s put
7 % of the process's CPU in the collector (``gc_collect_main``, ``visit_decref``,
``visit_reachable``; bench/RESULTS.md).

:func:`tune_collector` moves what start-up loaded out of the collector's sight (``gc.freeze``) and
raises the young generation's threshold, so collections come less often over fewer objects;
reference counting still frees everything acyclic at once, and cycles are still collected.
:class:`GcPauses` times every collection (``gc.callbacks``) for ``ig_python_gc_pause_seconds``.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import logging
import math
import time
from typing import Any

from core.histogram import HistogramSnapshot

log = logging.getLogger(__name__)

#: Net allocations between young collections (CPython's default is 700; ``IG_GC_YOUNG_THRESHOLD``).
YOUNG_THRESHOLD = 50_000
#: Young collections between middle ones, and middle between full ones (CPython's defaults).
OLDER_THRESHOLDS = (10, 10)
#: Pause buckets, seconds: a young pass takes well under a millisecond, a full one over a big heap 100s of ms.
PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def tune_collector(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze what is alive now and collect young objects every ``young_threshold`` allocations.

    Call it once start-up has loaded the long-lived state (``up`` calls it before ingest starts).

    Args:
        young_threshold (int): net allocations between young collections, ``IG_GC_YOUNG_THRESHOLD``;
            0 leaves the collector as CPython set it (default: :data:`YOUNG_THRESHOLD`).
    """
    if young_threshold <= 0:
        return
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(young_threshold, *OLDER_THRESHOLDS)
    log.info("garbage collector: %d start-up objects frozen, thresholds %s", gc.get_freeze_count(),
             gc.get_threshold())


class GcPauses:
    """Times every garbage collection of this process, by generation (0, 1, 2).

    Counts are plain lists changed under the interpreter lock, with no lock of their own: the
    callback may run in any thread at any allocation, including one that is reading the counts,
    and a lock taken there could be the reader's own.
    """

    def __init__(self) -> None:
        self._counts = [[0] * (len(PAUSE_BUCKETS) + 1) for _ in range(3)]
        self._sums = [0.0, 0.0, 0.0]
        self._started = 0.0

    def watch(self) -> GcPauses:
        """Start timing (``gc.callbacks``); returns ``self``."""
        gc.callbacks.append(self._callback)
        return self

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # A collection does not start inside another one, so start and stop pair up.
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            paused, generation = time.perf_counter() - self._started, int(info["generation"])
            self._counts[generation][bisect.bisect_left(PAUSE_BUCKETS, paused)] += 1
            self._sums[generation] += paused
            self._started = 0.0

    def snapshots(self) -> dict[tuple[str, ...], HistogramSnapshot]:
        """One cumulative snapshot per generation that has collected, keyed ``(generation,)``."""
        found: dict[tuple[str, ...], HistogramSnapshot] = {}
        for generation, (counts, total) in enumerate(zip(self._counts, self._sums, strict=True)):
            cumulative = tuple(itertools.accumulate(list(counts)))
            if cumulative[-1]:
                found[(str(generation),)] = HistogramSnapshot((*PAUSE_BUCKETS, math.inf), cumulative, total,
                                                              cumulative[-1])
        return found
