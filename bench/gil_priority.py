"""Background work at low priority: in a thread it stalls the process's Python threads, in a process it does not.

Why ``models.fit_process`` exists. The box is filled with one busy process per core (as ``up``
under load fills it); the measuring thread runs a short piece of Python in a loop and records the
gap between iterations, its stalls. Beside it, for ``--seconds`` each, one after the other:

1. nothing;
2. a thread doing a fit's kind of work (a 400x400 torch matrix product on one thread, which
   releases the interpreter lock, then some Python, which holds it) at normal priority;
3. the same thread at nice 19 (``models.runtime.run_in_background``): while the scheduler leaves it
   off the CPU holding the lock, every Python thread of the process waits;
4. the same work at nice 19 in a process of its own (its own lock).

Prints the stalls' p50, p99, p99.9 and max and how many passed 50 ms, side by side. Usage::

    .venv/bin/python bench/gil_priority.py --seconds 30

The stalls beside a nice-19 thread are rare events (a few per minute at most), so a case needs
tens of seconds, and their size varies from run to run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.runtime import run_in_background


def fit_like_work(stop: threading.Event | None, low_priority: bool, seconds: float) -> None:
    if low_priority:
        run_in_background()
    torch.set_num_threads(1)  # as a fit runs in up on 2 cores (models.runtime.use_torch_threads)
    a = torch.rand(400, 400, generator=torch.Generator().manual_seed(0))
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (stop is not None and stop.is_set()):
        b = a @ a  # a kernel: the lock is released
        _ = [float(x) for x in b[0, :200].tolist()]  # Python: the lock is held


def stalls(seconds: float) -> np.ndarray:
    gaps = []
    end = time.monotonic() + seconds
    last = time.monotonic()
    while time.monotonic() < end:
        sum(range(2000))
        now = time.monotonic()
        gaps.append(now - last)
        last = now
    return np.asarray(gaps) * 1000


def measure(beside: str, seconds: float) -> np.ndarray:
    stop = threading.Event()
    worker: threading.Thread | multiprocessing.process.BaseProcess | None = None
    if beside in ("thread", "nice thread"):
        worker = threading.Thread(target=fit_like_work, args=(stop, beside == "nice thread", seconds + 5))
    elif beside == "nice process":
        worker = multiprocessing.get_context("spawn").Process(target=fit_like_work, args=(None, True, seconds + 5))
    if worker is not None:
        worker.start()
        time.sleep(1.0)  # a spawned process imports numpy first
    try:
        return stalls(seconds)
    finally:
        stop.set()
        if isinstance(worker, threading.Thread):
            worker.join()
        elif worker is not None:
            worker.terminate()
            worker.join()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each case (default: 30)")
    p.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per core)")
    args = p.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        print(f"    bench/gil_priority.py --seconds {args.seconds:g} --hogs {args.hogs}\n")
        print("| beside the measuring thread | iterations | stall p50 ms | p99 ms | p99.9 ms | max ms "
              "| stalls > 50 ms |")
        print("|---|---|---|---|---|---|---|")
        for beside in ("nothing", "thread", "nice thread", "nice process"):
            gaps = measure(beside, args.seconds)
            p50, p99, p999 = np.percentile(gaps, [50, 99, 99.9])
            label = {"nothing": "nothing", "thread": "a thread, normal priority",
                     "nice thread": "a thread at nice 19", "nice process": "a process at nice 19"}[beside]
            print(f"| {label} | {gaps.size:,} | {p50:.3f} | {p99:.2f} | {p999:.1f} | {gaps.max():.1f} | "
                  f"{int((gaps > 50).sum())} |", flush=True)
    finally:
        for hog in hogs:
            hog.kill()


if __name__ == "__main__":
    main()
