"""Judging committed events off the ingest path: what is cheap is taken at the commit, the searches later
(the judge: :mod:`serving.mix_judge`).

A judged event must be seen as its user stood just before the batch (its item not yet theirs, the
transitions not yet holding it), so :meth:`NextItemsJudging.take` captures that at the commit:
the user's seen rows, item count, vector and the sparse next-items scores. The candidate searches
(one personal search each, 3 ms at 1M items and 992 dims with HNSW, 100 ms exact at 100k) run in a
daemon thread, never in the commit hook, which runs on the ingest loop. A token bucket bounds the
judged events per second, so judging takes a bounded share of a busy server's CPU whatever the
event rate; events past it, or past a full queue, are not judged (counted).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from core.domain import NodeId
from serving.blending import BlendPolicy
from serving.index import EmbeddingIndex
from serving.mix_judge import MixJudge
from serving.next_mix import NextRows, judge_event
from serving.scoring import Scorer, score_alone
from serving.trending import TrendingItems

log = logging.getLogger(__name__)

#: Captured events waiting for the judging thread; more are dropped.
QUEUE_MAX = 256
#: Events of one committed batch captured at most (each costs about one personal search later).
JUDGED_PER_BATCH = 16


def sampled(count: int, most: int) -> list[int]:
    """Positions of at most ``most`` of ``count`` events, spread evenly over the batch (deterministic)."""
    if count <= most:
        return list(range(count))
    return [int(n * count / most) for n in range(most)]


@dataclass(frozen=True, slots=True)
class JudgedCase:
    """One event as its user stood before its batch: what :func:`~serving.next_mix.judge_event` reads."""

    item_id: NodeId
    interactions: int
    seen: list[NodeId]
    vector: np.ndarray | None
    successors: tuple[list[NodeId], np.ndarray] | None


class NextItemsJudging:
    """A judging thread fed captured events, at most ``per_s`` a second (module docs).

    Args:
        index (EmbeddingIndex): Whose current snapshot the searches read.
        trending (TrendingItems): The served trending list.
        policy (BlendPolicy): The served blend.
        judge (MixJudge): What the judgements go to.
        per_s (float): Events judged per second at most; 0 = none (default: ``20.0``).
        use_ann (bool): Search as Recommend does (default: ``True``).
        scorer (Scorer): Exact scans' scorer (default: one scan per query).
    """

    def __init__(self, index: EmbeddingIndex, trending: TrendingItems, policy: BlendPolicy, judge: MixJudge,
                 per_s: float = 20.0, use_ann: bool = True, scorer: Scorer = score_alone) -> None:
        self.index, self.trending, self.policy, self.judge = index, trending, policy, judge
        self.per_s, self.use_ann, self.scorer = per_s, use_ann, scorer
        self._tokens, self._refilled = min(per_s, 16.0), time.monotonic()
        self._queue: queue.Queue[JudgedCase | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Events captured and judged, captured but dropped (queue full), and judged with a result.
        self.captured = self.dropped = self.judged = 0

    def allowance(self, wanted: int) -> int:
        """How many of ``wanted`` events may be captured now (the token bucket, a second's worth at most)."""
        now = time.monotonic()
        self._tokens = min(self.per_s, self._tokens + (now - self._refilled) * self.per_s)
        self._refilled = now
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted

    def take(self, case: JudgedCase) -> None:
        """Queue a captured event for the thread (started on the first); dropped when the queue is full."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="next-items-judge", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(case)
            self.captured += 1
        except queue.Full:
            self.dropped += 1

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued event is judged (tests, benchmarks); ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def stop(self, timeout_s: float = 2.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)

    def _run(self) -> None:
        while (case := self._queue.get()) is not None:
            try:
                self._judge(case)
            except Exception:
                log.exception("judging a next-items event failed")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _judge(self, case: JudgedCase) -> None:
        snapshot = self.index.snapshot()
        seen = snapshot.items.rows_of(case.seen)
        item_row = int(snapshot.items.positions([case.item_id])[0])
        if judge_event(snapshot, self.trending, self.policy, self.judge, case.vector, case.interactions, seen,
                       NextRows.of(snapshot, case.successors), item_row, self.use_ann, self.scorer):
            self.judged += 1
