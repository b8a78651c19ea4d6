"""HNSW graphs extended by insertion against graphs rebuilt from every row, side by side (issue 13).

Under load the refresh rewrites a few hundred item rows per round, and serving's HNSW builder used
to rebuild the whole graph each time the rewritten rows passed 5 % of the catalog. Since
``a8d367a`` it inserts them into a copy of the last graph instead (:meth:`serving.ann.HnswIndex.extended`),
the replaced entries staying behind as waypoints. This command replays ``--rounds`` rounds that
each move ``--changed`` random rows a little and add ``--fresh`` new ones (clustered vectors at
``--dim``), and after each prints, for both ways of keeping the graph current: the seconds it took
(one thread, as the builder runs) and recall@10 against exact search over ``--queries`` queries, with
the candidates rescored exactly as serving does. Usage::

    .venv/bin/python bench/hnsw_extend.py --items 20000 --dim 1024 --rounds 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.ann import HnswIndex


def clustered(n: int, dim: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    picked = centers[rng.integers(0, len(centers), n)]
    return (picked + 0.35 / np.sqrt(dim) * 3 * rng.standard_normal((n, dim))).astype(np.float32)


def recall_at_10(ann: HnswIndex, items: np.ndarray, queries: np.ndarray) -> float:
    exact = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    hits = 0
    for query, truth in zip(queries, exact, strict=True):
        rows = ann.search(query, 10)[0]
        rows = rows[rows >= 0]
        best = rows[np.argsort(-(items[rows] @ query))[:10]]
        hits += len(set(best.tolist()) & set(truth.tolist()))
    return hits / (10 * len(queries))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=20_000, help="catalog size (default: 20,000)")
    p.add_argument("--dim", type=int, default=1024, help="vector width (default: 1,024, SpectralCF's)")
    p.add_argument("--rounds", type=int, default=8, help="refresh rounds to replay (default: 8)")
    p.add_argument("--changed", type=int, default=1000, help="rows rewritten per round (default: 1,000 = 5 %%)")
    p.add_argument("--fresh", type=int, default=20, help="new rows per round (default: 20)")
    p.add_argument("--queries", type=int, default=200, help="recall queries (default: 200)")
    args = p.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((64, args.dim)).astype(np.float32) * (3 / np.sqrt(args.dim))
    items = clustered(args.items, args.dim, rng, centers)
    queries = clustered(args.queries, args.dim, rng, centers)
    started = time.perf_counter()
    extended = HnswIndex.build(items, version=1)
    first_s = time.perf_counter() - started
    print(f"    bench/hnsw_extend.py --items {args.items} --dim {args.dim} --rounds {args.rounds} "
          f"--changed {args.changed} --fresh {args.fresh}\n")
    print(f"first build of {args.items:,} x {args.dim}: {first_s:.2f} s on one thread\n")
    print("| round | rows | extend s | rebuild s | recall@10 extended | recall@10 rebuilt | replaced entries |")
    print("|---|---|---|---|---|---|---|")
    for version in range(2, args.rounds + 2):
        changed = rng.choice(len(items), args.changed, replace=False)
        items[changed] += (0.1 / np.sqrt(args.dim) * rng.standard_normal((changed.size, args.dim))).astype(np.float32)
        items = np.concatenate([items, clustered(args.fresh, args.dim, rng, centers)])
        rows = np.concatenate([changed, np.arange(len(items) - args.fresh, len(items))])
        started = time.perf_counter()
        extended = extended.extended(rows, items[rows], len(items), version)
        extend_s, started = time.perf_counter() - started, time.perf_counter()
        rebuilt = HnswIndex.build(items, version)
        rebuild_s = time.perf_counter() - started
        print(f"| {version - 1} | {len(items):,} | {extend_s:.2f} | {rebuild_s:.2f} | "
              f"{recall_at_10(extended, items, queries):.3f} | {recall_at_10(rebuilt, items, queries):.3f} | "
              f"{extended.replaced:,} |", flush=True)


if __name__ == "__main__":
    main()
