"""Exact scans alone vs shared (serving.scoring.ScoreBatcher), side by side in one run.

``--threads`` callers each score ``--queries`` random vectors against one ``--items`` x ``--dim``
float32 item matrix, with one BLAS thread per caller as ``up`` and ``serve`` run: first each call a
matrix-vector product of its own, then through one :class:`~serving.scoring.ScoreBatcher`. Also
prints the ceiling, one 64-query GEMM against 64 matrix-vector products. Usage::

    .venv/bin/python bench/score_batching.py --items 20000 --dim 1024 --threads 16
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.scoring import ScoreBatcher, Scorer, score_alone


def queries_per_second(scorer: Scorer, matrix: np.ndarray, queries: np.ndarray, threads: int) -> float:
    def work() -> None:
        for query in queries:
            scorer(matrix, query)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * len(queries) / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=20_000, help="item rows (default: 20,000)")
    p.add_argument("--dim", type=int, default=1024, help="embedding width (default: 1,024)")
    p.add_argument("--threads", type=int, default=16, help="concurrent callers (default: 16)")
    p.add_argument("--queries", type=int, default=25, help="queries per caller (default: 25)")
    args = p.parse_args()
    threadpool_limits(limits=1, user_api="blas")
    rng = np.random.default_rng(0)
    matrix = rng.random((args.items, args.dim), dtype=np.float32)
    queries = rng.random((args.queries, args.dim), dtype=np.float32)
    block = rng.random((64, args.dim), dtype=np.float32)
    started = time.perf_counter()
    block @ matrix.T
    gemm_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    for query in block:
        matrix @ query
    gemv_ms = (time.perf_counter() - started) * 1000
    batcher = ScoreBatcher()
    alone = queries_per_second(score_alone, matrix, queries, args.threads)
    shared = queries_per_second(batcher, matrix, queries, args.threads)
    print(f"{args.items:,} x {args.dim} float32, {args.threads} callers, one BLAS thread each")
    print("| scorer | queries/s |\n|---|---|")
    print(f"| alone (one matrix-vector product per call) | {alone:,.0f} |")
    print(f"| ScoreBatcher ({batcher.queries / max(batcher.products, 1):.1f} queries per product) | {shared:,.0f} |")
    print(f"ceiling: one 64-query GEMM {gemm_ms:.0f} ms vs 64 matrix-vector products {gemv_ms:.0f} ms")


if __name__ == "__main__":
    main()
