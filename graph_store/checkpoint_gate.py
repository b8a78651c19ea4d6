"""When LadybugDB folds its write-ahead log into the database file: at a moment the store chooses.

LadybugDB's automatic checkpoint runs inside the COMMIT that takes the log past its threshold,
and it needs every other transaction out of the database first. In ``interest-graph up`` some
thread is nearly always reading (the refresh worker, the metrics sampler, a bootstrap snapshot),
so the checkpoint could not run, and every later COMMIT tried again: each spent about 400 ms
instead of 25 ms while the log kept growing (``bench/store_checkpoint.py --readers``). The store
turns the automatic checkpoint off and checkpoints through a :class:`CheckpointGate` instead:
it holds new transactions at the gate, waits for those inside to leave, checkpoints once and
lets everyone in again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class CheckpointGate:
    """Counts the transactions inside the database and keeps new ones out while a checkpoint runs.

    Args:
        wait_s (float): How long a checkpoint waits for the transactions inside to leave before it
            gives up and lets new ones in again; the next attempt comes with the next write
            (default: :obj:`5.0` s).
    """

    def __init__(self, wait_s: float = 5.0) -> None:
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._inside = 0
        self._closed = False

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold one transaction's place inside; waits at the gate while a checkpoint runs."""
        with self._cond:
            self._cond.wait_for(lambda: not self._closed)
            self._inside += 1
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                if self._inside == 0:
                    self._cond.notify_all()

    def checkpoint(self, run: Callable[[], None]) -> bool:
        """Close the gate, wait until no transaction is inside, ``run`` the checkpoint, open the gate.

        Call it outside any transaction of the calling thread, and from one thread at a time (the
        store calls it holding its write lock). Returns ``False`` without running ``run`` if the
        transactions inside did not leave within ``wait_s``.
        """
        with self._cond:
            self._closed = True
            emptied = self._cond.wait_for(lambda: self._inside == 0, timeout=self.wait_s)
        try:
            if emptied:
                run()
            return emptied
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()
