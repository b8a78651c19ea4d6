"""HNSW search breadth against recall and time, beside exact search, on the vectors the server holds.

For one catalog (fitted and tiled as in ``bench/serve_latency.py``, or synthetic) this builds the
served graph once (:meth:`serving.ann.HnswIndex.build` over the table's int8 codes, M 16,
efConstruction 64) and then, for each efSearch, runs the served search (:func:`serving.search.search`:
the graph's candidates rescored from the table's codes) for a sample of users, in this process on one
thread, and prints recall@10 against an exact scan of the same table with the time per query of both.
This is the table ``IG_ANN_EF_SEARCH`` is chosen from. The graph and vectors can be cached (``--cache``)
since a 1M x 992 build takes minutes::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python bench/ann_sweep.py --size 1000000 --dim 992 \\
        --vectors /work/shared/datasets/gowalla --cache /tmp/ig-sweep
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import serving.ann as serving_ann
from bench.serve_vectors import cached_catalog  # after the path fix that makes the repo importable
from core.domain import EmbeddingRows, NodeId, NodeKind
from serving.ann import HNSW_EF_CONSTRUCTION, HNSW_M, HnswIndex, use_one_faiss_thread
from serving.index import EmbeddingIndex
from serving.search import ItemQuery, search

K = 10
#: Users written to the cache: as many as bench/serve_latency.py's default, so both can share it.
USERS = 10_000


def vectors(args: argparse.Namespace, cache: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Item and user vectors, from the cache when they are there (as many users as serve_latency's)."""
    items_path, users_path, what = cached_catalog(args.vectors, args.size, args.dim, max(args.queries, USERS),
                                                  str(cache))
    return np.load(items_path, mmap_mode="r"), np.load(users_path), what


def graph_path(cache: Path, size: int, dim: int, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> Path:
    """Where a graph over the cached catalog of ``size`` x ``dim`` is kept."""
    return cache / f"hnsw-{size}-{dim}-nn-m{m}-efc{ef_construction}.faiss"  # "nn": over serve_vectors' tiling


def served_graph(index: EmbeddingIndex, args: argparse.Namespace, cache: Path) -> tuple[HnswIndex, float]:
    """The graph over the index's items (built, or read back from the cache) and the build's seconds."""
    snapshot = index.snapshot()
    path = graph_path(cache, args.size, args.dim, args.hnsw_m, args.ef_construction)
    if path.exists():
        graph = faiss.read_index(str(path))
        rows = np.arange(len(snapshot.items), dtype=np.int64)
        return HnswIndex(graph, snapshot.version, rows, rows.copy(), snapshot.items.codec), float("nan")
    faiss.omp_set_num_threads(args.build_threads)
    # The served constants, overridden here only to measure what other values would give.
    serving_ann.HNSW_M, serving_ann.HNSW_EF_CONSTRUCTION = args.hnsw_m, args.ef_construction
    started = time.perf_counter()
    ann = HnswIndex.build(snapshot.items.vectors, snapshot.version, codec=snapshot.items.codec)
    build_s = time.perf_counter() - started
    faiss.write_index(ann.graph, str(path))
    return ann, build_s


def sweep(index: EmbeddingIndex, queries: np.ndarray, ef_values: list[int]) -> list[tuple[str, float, float, float]]:
    """``(label, recall@10, p50 ms, p99 ms)`` for exact search and the graph at each efSearch."""
    use_one_faiss_thread()
    snapshot = index.snapshot()
    none = np.zeros(0, dtype=np.int64)
    exact_rows, times = [], []
    for query in queries:
        started = time.perf_counter()
        exact_rows.append(search(snapshot, ItemQuery(query, K, none), use_ann=False).rows)
        times.append(time.perf_counter() - started)
    table = [("exact scan", 1.0, *np.percentile(np.asarray(times) * 1e3, [50, 99]))]
    assert snapshot.ann is not None
    for ef in ef_values:
        snapshot.ann.graph.hnsw.efSearch = ef  # type: ignore[attr-defined]  # the graph is an IndexHNSW
        hits, times = [], []
        for query, exact in zip(queries, exact_rows, strict=True):
            started = time.perf_counter()
            rows = search(snapshot, ItemQuery(query, K, none), use_ann=True).rows
            times.append(time.perf_counter() - started)
            hits.append(len(set(rows.tolist()) & set(exact.tolist())) / K)
        table.append((f"HNSW efSearch {ef}", float(np.mean(hits)), *np.percentile(np.asarray(times) * 1e3, [50, 99])))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=992)
    parser.add_argument("--vectors", default="synthetic", help="'synthetic' or a dataset folder (train.txt)")
    parser.add_argument("--queries", type=int, default=300, help="users searched per row")
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 384, 512])
    parser.add_argument("--codec", default="int8", choices=["f32", "int8"])
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--hnsw-m", type=int, default=HNSW_M, help="graph degree (default: the served one)")
    parser.add_argument("--ef-construction", type=int, default=HNSW_EF_CONSTRUCTION,
                        help="build breadth (default: the served one)")
    parser.add_argument("--cache", default=None, help="folder keeping vectors and graph between runs")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ig-sweep-") as scratch:
        cache = Path(args.cache or scratch)
        cache.mkdir(parents=True, exist_ok=True)
        items, users, what = vectors(args, cache)
        index = EmbeddingIndex(item_codec=args.codec)
        index.apply(EmbeddingRows(NodeKind.USER, [], np.zeros((0, args.dim), np.float32)),
                    EmbeddingRows(NodeKind.ITEM, [NodeId(f"i{n}") for n in range(args.size)], items),
                    version=1, written_ms=0)
        ann, build_s = served_graph(index, args, cache)
        assert index.attach_ann(ann, index.snapshot())
        print(f"## {args.size:,} items x {args.dim}, {args.codec}, M {args.hnsw_m}, efConstruction "
              f"{args.ef_construction}: {what}; graph build "
              f"{'cached' if build_s != build_s else f'{build_s:.0f} s on {args.build_threads} threads'}", flush=True)
        print("| search | recall@10 vs exact | p50 ms | p99 ms |\n|---|---|---|---|")
        sample = np.sort(np.random.default_rng(1).permutation(len(users))[: args.queries])  # as serve_latency's
        for label, recall, p50, p99 in sweep(index, np.asarray(users[sample], dtype=np.float32), args.ef):
            print(f"| {label} | {recall:.3f} | {p50:.2f} | {p99:.2f} |", flush=True)


if __name__ == "__main__":
    main()
