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

``--server-procs 1 2`` also runs each configuration with two serving processes sharing one port
(``SO_REUSEPORT``), each with its own store copy and index; callers then open a connection each,
since the kernel spreads connections, not calls, over the processes.

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
    from core.domain import (
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
    from core.settings import Settings
    from graph_store.ladybug import LadybugStore
    from serving.config import ServingConfig
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
    index = EmbeddingIndex(item_codec=args.codec)
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
    settings = Settings(grpc_addr=f"127.0.0.1:{args.port}", grpc_share_port=args.share_port,
                        ann_min_items=1 if args.index == "hnsw" else 0, ann_min_scan_mb=0.0,
                        max_streams=4)
    handle = start_serving(ServingConfig.from_settings(settings), store, index=index)
    print(json.dumps({"port": handle.port}), flush=True)
    while not index.ready or (args.index == "hnsw" and index.snapshot().ann is None):
        time.sleep(0.2)
    ready_s = time.perf_counter() - started
    print(json.dumps({"through_store": through_store, "ready_s": round(ready_s, 1)}), flush=True)
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

    # Several serving processes get calls only over separate connections: one channel (with its own
    # subchannel, hence its own connection) per caller.
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(concurrency if args.serving_procs > 1 else 1)]
    calls = [getattr(recommender_pb2_grpc.RecommenderStub(channel), method.split("+")[0]) for channel in channels]
    try:
        latencies: list[float] = []
        errors = 0
        seconds = args.seconds if method.startswith(("Recommend", "Similar")) else args.seconds / 2

        async def caller(seed: int) -> None:
            nonlocal errors
            call = calls[seed % len(calls)]
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
            await calls[warm % len(calls)](request_for(method, np.random.default_rng(warm), args), timeout=30)
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller(seed * 1000 + s) for s in range(concurrency)))
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    finally:
        for channel in channels:
            await channel.close()
    return {"latencies": latencies, "errors": errors, "wall": wall, "cpu": cpu}


def load_part(port: int, method: str, args: argparse.Namespace, concurrency: int, seed: int) -> dict:
    """One load-generator process's share of the callers (run in a child process)."""
    return asyncio.run(load(port, method, args, concurrency, seed))


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) that process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: int, server_pids: list[int], method: str, args: argparse.Namespace) -> dict[str, float]:
    """Run ``method`` with ``args.concurrency`` callers split over ``args.client_procs`` processes."""
    procs = max(1, min(args.client_procs, args.concurrency))
    shares = [args.concurrency // procs + (n < args.concurrency % procs) for n in range(procs)]
    server_cpu = sum(map(process_cpu_s, server_pids))
    if procs == 1:
        parts = [load_part(port, method, args, shares[0], 0)]
    else:
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            parts = pool.starmap(load_part, [(port, method, args, share, n) for n, share in enumerate(shares)])
    wall = max(part["wall"] for part in parts)
    server_cpu = sum(map(process_cpu_s, server_pids)) - server_cpu  # includes the clients' warm-up calls: small
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


def resident_mb(pid: int) -> float:
    """Resident memory of process ``pid`` (``VmRSS``), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_servers(size: int, index: str, procs: int, args: argparse.Namespace,
                workdir: str) -> tuple[list[subprocess.Popen], dict]:
    """``procs`` serving processes on one port, each over its own store in ``workdir``; waits until all are ready."""
    processes: list[subprocess.Popen] = []
    port = 0
    for n in range(procs):
        own = os.path.join(workdir, f"server{n}")
        os.mkdir(own)
        command = [sys.executable, __file__, "--serve", "--size", str(size), "--index", index, "--workdir", own,
                   "--users", str(args.users), "--edges", str(args.edges), "--dim", str(args.dim),
                   "--store-max", str(args.store_max), "--port", str(port), "--codec", args.codec] + \
            (["--share-port"] if procs > 1 else [])
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        port = json.loads(process.stdout.readline())["port"]  # the next ones bind the same port
        processes.append(process)
    infos = []
    for process in processes:
        assert process.stdout is not None
        infos.append(json.loads(process.stdout.readline()))
    return processes, {"port": port, "through_store": infos[0]["through_store"],
                       "ready_s": max(i["ready_s"] for i in infos), "pids": [p.pid for p in processes],
                       "rss_mb": sum(resident_mb(p.pid) for p in processes)}


def run_configuration(size: int, index: str, procs: int, args: argparse.Namespace) -> list[tuple]:
    """Every method of ``args.methods`` against ``procs`` fresh serving processes."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ig-bench-") as workdir:
        processes, info = run_servers(size, index, procs, args, workdir)
        loaded = "through LadybugStore" if info["through_store"] else "directly into the index (store bypassed)"
        print(f"# {size} items, {index}, {args.codec} item vectors, {procs} serving process(es): embeddings "
              f"loaded {loaded}; ready in {info['ready_s']} s, resident {info['rss_mb']:,.0f} MB", flush=True)
        args.size, args.serving_procs = size, procs  # what the load-generator processes need to know
        for method in args.methods:
            result = measure(info["port"], info["pids"], method, args)
            rows.append((size, f"{index}, {args.codec}", procs, method, result | {"rss_mb": info["rss_mb"]}))
            print(f"  {method:18s} p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms  "
                  f"{result['qps']:8.0f} QPS  errors {result['errors']}  CPU/s server "
                  f"{result['server_cpu']:.2f} clients {result['client_cpu']:.2f}", flush=True)
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in processes:
            process.wait(timeout=60)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--indexes", nargs="+", default=["exact", "hnsw"])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--codecs", nargs="+", default=["int8"], choices=["f32", "int8"],
                        help="how the server holds item vectors (IG_ITEM_CODEC); int8 is the default")
    parser.add_argument("--codec", default="int8", help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--edges", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight, over all client processes")
    parser.add_argument("--client-procs", type=int, default=1, help="load-generator processes")
    parser.add_argument("--server-procs", type=int, nargs="+", default=[1],
                        help="serving processes sharing the port; each value is one more configuration")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--store-max", type=int, default=100_000, help="larger catalogs bypass the store")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--share-port", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    rows = []
    for size in args.sizes:
        for index in args.indexes:
            for codec in args.codecs:
                args.codec = codec
                for procs in args.server_procs:
                    rows += run_configuration(size, index, procs, args)
    print("\n| items | index, item vectors | serving processes | method | p50 / p99 ms | QPS | CPU/s server | "
          "CPU/s clients | server resident MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, index, procs, method, r in rows:
        print(f"| {size:,} | {index} | {procs} | {method} | {r['p50']:.2f} / {r['p99']:.2f} | {r['qps']:.0f} | "
              f"{r['server_cpu']:.2f} | {r['client_cpu']:.2f} | {r['rss_mb']:,.0f} |")
    for size in args.sizes:
        print(f"HNSW recall@10 vs exact at {size:,} items (200 queries, efSearch 128): {recall_at_10(size, args):.3f}")


if __name__ == "__main__":
    main()
