"""Serving latency: a grpc.aio load generator against the real gRPC server, exact vs HNSW.

For each catalog size the server runs in its own process (so the load generator does not share
its GIL) over a real LadybugStore in a temporary folder that holds a small interaction graph
(seen items, Explain and RecommendFriends read it). Item embeddings are clustered synthetic
vectors of width ``--dim``: up to ``--store-max`` items they are written through the store and
loaded by the server's IndexLoader as in production; larger catalogs are applied directly to the
server's index (writing a million rows through LadybugDB takes longer than the benchmark itself),
which the output says. Each (size, index) pair runs every method (or those of ``--methods``) for
``--seconds`` with ``--concurrency`` callers in flight, split over ``--client-procs`` load-generator
processes so that one Python client is not the bottleneck, and prints p50/p99 latency, QPS and the
CPU seconds per second that the server and the load generator used (they share this machine's
cores), plus the HNSW recall@10 against exact search.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python bench/serve_latency.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("Recommend", "Recommend+seen", "SimilarItems", "RecommendFriends", "Explain")


def synthetic(n: int, dim: int, seed: int, centers: int = 512) -> np.ndarray:
    """Clustered embeddings (trained embeddings cluster; uniform noise would have no structure)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centers, dim)).astype(np.float32) * (3 / np.sqrt(dim))
    picked = middle[rng.integers(0, centers, n)]
    return (picked + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


# --- the server process ---------------------------------------------------------------------------
def serve(args: argparse.Namespace) -> None:
    from graph_store.ladybug import LadybugStore
    from interest_graph.domain import (
        EdgeDelta,
        EmbeddingRows,
        EmbeddingUpdate,
        ItemMeta,
        NodeId,
        NodeKind,
        OffsetRange,
        TopicPartition,
        UpsertBatch,
    )
    from interest_graph.settings import Settings
    from serving.index import EmbeddingIndex
    from serving.server import start_serving

    items = synthetic(args.size, args.dim, seed=1)
    users = synthetic(args.users, args.dim, seed=1)[::-1].copy()
    item_ids = [NodeId(f"i{n}") for n in range(args.size)]
    user_ids = [NodeId(f"u{n}") for n in range(args.users)]
    store = LadybugStore(os.path.join(args.workdir, "graph.lbdb"))
    store.ensure_schema()
    rng = np.random.default_rng(2)
    edges = {(int(u), int(i)) for u, i in zip(rng.integers(0, args.users, args.edges),
                                              rng.integers(0, min(args.size, 20_000), args.edges), strict=True)}
    store.apply_batch(UpsertBatch(
        [EdgeDelta(user_ids[u], item_ids[i], 1.0, 1, 1) for u, i in sorted(edges)],
        {TopicPartition("bench", 0): OffsetRange(0, 0)},
    ))
    store.upsert_items([ItemMeta(item_ids[n], title=f"Item {n}", categories=(f"c{n % 20}",))
                        for n in range(min(args.size, 20_000))])
    index = EmbeddingIndex()
    through_store = args.size <= args.store_max
    user_rows = EmbeddingRows(NodeKind.USER, user_ids, users)
    item_rows = EmbeddingRows(NodeKind.ITEM, item_ids, items)
    started = time.perf_counter()
    if through_store:
        store.write_embeddings(EmbeddingUpdate(version=1, cursor=0, rows=[user_rows, item_rows]))
    else:
        # Version 0 = the store's own (empty) embedding version, so the loader finds nothing newer to load.
        index.apply(user_rows, item_rows, version=0, written_ms=int(time.time() * 1000),
                    meta=store.item_meta(item_ids[:20_000]))
    settings = Settings(grpc_addr="127.0.0.1:0", ann_min_items=1 if args.index == "hnsw" else 0, max_streams=4)
    handle = start_serving(settings, store, index=index)
    while not index.ready or (args.index == "hnsw" and index.snapshot().ann is None):
        time.sleep(0.2)
    ready_s = time.perf_counter() - started
    print(json.dumps({"port": handle.port, "through_store": through_store, "ready_s": round(ready_s, 1)}),
          flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    handle.stop(1.0)
    store.close()


# --- the load generator ---------------------------------------------------------------------------
def request_for(method: str, rng: np.random.Generator, args: argparse.Namespace):
    from proto import recommender_pb2 as pb

    user = f"u{rng.integers(0, args.users)}"
    if method == "Recommend":
        return pb.RecommendRequest(user_id=user, k=10)
    if method == "Recommend+seen":
        return pb.RecommendRequest(user_id=user, k=10, exclude_seen=True)
    if method == "SimilarItems":
        return pb.SimilarItemsRequest(item_id=f"i{rng.integers(0, args.size)}", k=10)
    if method == "RecommendFriends":
        return pb.RecommendFriendsRequest(user_id=user, k=10)
    return pb.ExplainRequest(user_id=user, item_id=f"i{rng.integers(0, min(args.size, 20_000))}", limit=5)


async def load(port: int, method: str, args: argparse.Namespace, concurrency: int, seed: int) -> dict:
    import grpc

    from proto import recommender_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = recommender_pb2_grpc.RecommenderStub(channel)
        call = getattr(stub, method.split("+")[0])
        latencies: list[float] = []
        errors = 0
        seconds = args.seconds if method.startswith(("Recommend", "Similar")) else args.seconds / 2

        async def caller(seed: int) -> None:
            nonlocal errors
            rng = np.random.default_rng(seed)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                request = request_for(method, rng, args)
                begin = time.perf_counter()
                try:
                    await call(request, timeout=5)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - begin)

        for warm in range(20):
            await call(request_for(method, np.random.default_rng(warm), args), timeout=30)
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller(seed * 1000 + s) for s in range(concurrency)))
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"latencies": latencies, "errors": errors, "wall": wall, "cpu": cpu}


def load_part(port: int, method: str, args: argparse.Namespace, concurrency: int, seed: int) -> dict:
    """One load-generator process's share of the callers (run in a child process)."""
    return asyncio.run(load(port, method, args, concurrency, seed))


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) that process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: int, server_pid: int, method: str, args: argparse.Namespace) -> dict[str, float]:
    """Run ``method`` with ``args.concurrency`` callers split over ``args.client_procs`` processes."""
    procs = max(1, min(args.client_procs, args.concurrency))
    shares = [args.concurrency // procs + (n < args.concurrency % procs) for n in range(procs)]
    server_cpu = process_cpu_s(server_pid)
    if procs == 1:
        parts = [load_part(port, method, args, shares[0], 0)]
    else:
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            parts = pool.starmap(load_part, [(port, method, args, share, n) for n, share in enumerate(shares)])
    wall = max(part["wall"] for part in parts)
    server_cpu = process_cpu_s(server_pid) - server_cpu  # includes the clients' warm-up calls: small
    ms = np.concatenate([np.asarray(part["latencies"]) for part in parts]) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "qps": len(ms) / wall,
            "errors": sum(part["errors"] for part in parts), "client_cpu": sum(part["cpu"] for part in parts) / wall,
            "server_cpu": server_cpu / wall}


def recall_at_10(size: int, args: argparse.Namespace) -> float:
    from serving.ann import HnswIndex

    items = synthetic(size, args.dim, seed=1)
    queries = synthetic(args.users, args.dim, seed=1)[::-1][:200]
    graph = HnswIndex.build(items, version=1, ef_search=128)
    found = graph.search(queries, 10)
    exact = np.argpartition(-(queries @ items.T), 10, axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), exact.tolist(), strict=True)]))


def run_server(size: int, index: str, args: argparse.Namespace, workdir: str) -> tuple[subprocess.Popen, dict]:
    command = [sys.executable, __file__, "--serve", "--size", str(size), "--index", index, "--workdir", workdir,
               "--users", str(args.users), "--edges", str(args.edges), "--dim", str(args.dim),
               "--store-max", str(args.store_max)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    info = json.loads(process.stdout.readline())
    return process, {**info, "pid": process.pid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--indexes", nargs="+", default=["exact", "hnsw"])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--edges", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight, over all client processes")
    parser.add_argument("--client-procs", type=int, default=1, help="load-generator processes")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--store-max", type=int, default=100_000, help="larger catalogs bypass the store")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    rows = []
    for size in args.sizes:
        for index in args.indexes:
            with tempfile.TemporaryDirectory(prefix="ig-bench-") as workdir:
                process, info = run_server(size, index, args, workdir)
                loaded = "through LadybugStore" if info["through_store"] else "directly into the index (store bypassed)"
                print(f"# {size} items, {index}: embeddings loaded {loaded}; ready in {info['ready_s']} s",
                      flush=True)
                args.size = size
                for method in args.methods:
                    result = measure(info["port"], info["pid"], method, args)
                    rows.append((size, index, method, result))
                    print(f"  {method:18s} p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms  "
                          f"{result['qps']:8.0f} QPS  errors {result['errors']}  CPU/s server "
                          f"{result['server_cpu']:.2f} clients {result['client_cpu']:.2f}", flush=True)
                assert process.stdin is not None
                process.stdin.close()
                process.wait(timeout=60)
    print("\n| items | method | exact p50 / p99 ms | exact QPS | hnsw p50 / p99 ms | hnsw QPS |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        for method in args.methods:
            cells = []
            for index in ("exact", "hnsw"):
                found = [r for s, i, m, r in rows if (s, i, m) == (size, index, method)]
                cells += [f"{found[0]['p50']:.2f} / {found[0]['p99']:.2f}", f"{found[0]['qps']:.0f}"] if found \
                    else ["-", "-"]
            print(f"| {size:,} | {method} | " + " | ".join(cells) + " |")
    for size in args.sizes:
        print(f"HNSW recall@10 vs exact at {size:,} items (200 queries, efSearch 128): {recall_at_10(size, args):.3f}")


if __name__ == "__main__":
    main()
