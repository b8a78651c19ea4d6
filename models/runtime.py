"""What every model needs at run time: a torch device, the CPU threads torch may use, fitted state."""

from __future__ import annotations

import os
import threading
from typing import TypeVar

import torch

T = TypeVar("T")


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: Niceness of threads that fit or encode (Linux ``nice``: 19 = runs only when nothing else wants the CPU).
BACKGROUND_NICENESS = 19


def run_in_background() -> bool:
    """Lower the calling thread's CPU priority to :data:`BACKGROUND_NICENESS`; ``True`` if it took.

    For work that is not on an event's way to a reply but takes cores for seconds to minutes: the
    bootstrap refit's process (:mod:`models.fit_process`), cold start encoding the catalog's text.
    On a 2-core machine running ingest, serving, the broker and the producers, either one starved
    the ingest agent (``bench/freshness.py`` saw a refit take half a core for most of a run). In a
    thread that also runs Python it can stall the whole process instead: while the scheduler leaves
    it off the CPU holding the interpreter lock, every other thread waits (``bench/gil_priority.py``).
    Linux gives each thread its own niceness (``setpriority`` on the thread id); torch's kernels run
    in the calling thread when it has one thread (:func:`use_torch_threads` on 2 cores), so they
    inherit it. Elsewhere this does nothing.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        return False
    return True


def default_threads() -> int:
    """Half the cores, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def use_torch_threads(threads: int | None = None) -> int:
    """Let torch's CPU kernels use ``threads`` threads in this whole process; returns the count.

    Process-wide (``torch.set_num_threads``), so a launcher calls it once when the process starts,
    before any model thread runs, never a model from its own thread. The default is half the
    cores: ingest and serving share the machine, and OpenMP workers that spin on an
    oversubscribed CPU make every kernel many times slower.

    Args:
        threads (int, optional): Thread count. (default: :func:`default_threads`)
    """
    wanted = threads if threads else default_threads()
    torch.set_num_threads(wanted)
    return wanted


def require_fitted(value: T | None, model: str) -> T:
    """``value`` (fitted state of ``model``), or ``RuntimeError`` if the model has not been fitted."""
    if value is None:
        raise RuntimeError(f"{model} is not fitted: fit it, or load a fitted one, first")
    return value
