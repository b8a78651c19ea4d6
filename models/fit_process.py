"""A process of its own, at background priority, for the refresh worker's bootstrap fits.

A refit of a grown graph takes seconds to minutes of CPU. In ``up`` the refresh worker shares its
process with ingest and serving, and a fit in a *thread* at background priority still takes the
interpreter lock between its native kernels. When the machine is full, the scheduler leaves a
nice-19 thread off the CPU for long stretches, and while it is off holding the lock every Python
thread of the process waits: on this 2-core box, with both cores busy, a plain Python loop stalled
for up to 288 ms beside such a thread, against 13 ms beside the same thread at normal priority and
9.7 ms beside the same work in a nice-19 process (``bench/gil_priority.py``). A process has its own
lock, so its priority can be low without anyone waiting on it.

The process is started at the first fit and kept for the next ones (its imports cost seconds), fed
the graph snapshot the caller read (the store stays in the caller's process: LadybugDB admits one
writer process) and saves the checkpoint into the model dir itself; only its metadata comes back.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from core.domain import EdgeSnapshot
from models.config import ModelConfig
from models.runtime import run_in_background, use_torch_threads

log = logging.getLogger(__name__)


class FitProcessError(RuntimeError):
    """The fit process died before it answered (killed, out of memory); the next fit starts a new one."""


def _start_in_background(pid: Any) -> None:
    """The fit process's first step: background priority for it and every thread it starts."""
    pid.value = os.getpid()
    run_in_background()
    use_torch_threads()


def _fit_and_save(snapshot: EdgeSnapshot, config: ModelConfig, out_dir: str, source: str, epochs: int | None,
                  device: str | None) -> dict[str, Any]:
    from models.methods import fit_and_save  # here: the parent need not import every method

    checkpoint = fit_and_save(snapshot, config, out_dir, source=source, epochs=epochs, device=device)
    return {**checkpoint.meta, "version": checkpoint.version}


class FitProcess:
    """Runs :func:`models.methods.fit_and_save` in a spawned child at background priority, one fit at a time."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._pid: Any = None

    def fit(self, snapshot: EdgeSnapshot, config: ModelConfig, out_dir: str | Path, *, source: str,
            epochs: int | None = None, device: str | None = None) -> dict[str, Any]:
        """Fit ``snapshot`` and save the checkpoint into ``out_dir``; returns its ``meta`` plus ``version``.

        Raises what the fit raised (``OSError``, ``ValueError``), or :class:`FitProcessError`.
        """
        pool = self._started()
        try:
            return pool.submit(_fit_and_save, snapshot, config, str(out_dir), source, epochs, device).result()
        except BrokenProcessPool as exc:
            self._pool = None
            pool.shutdown(wait=False)
            raise FitProcessError(f"the fit process died: {exc}") from exc

    @property
    def pid(self) -> int:
        """The fit process's id once it has started, else 0."""
        return int(self._pid.value) if self._pid is not None and self._pool is not None else 0

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no fork of a process with threads and an open store
            self._pid = context.Value("i", 0)
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_in_background,
                                             initargs=(self._pid,))
        return self._pool

    def close(self) -> None:
        """Stop the process, killing a fit still running (its checkpoint is not saved half-way:
        the model dir takes a checkpoint whole or not at all)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pid = int(self._pid.value) if self._pid is not None else 0
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pool.shutdown(wait=True, cancel_futures=True)
