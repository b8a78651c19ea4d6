"""Serving latency: the real gRPC server against a load generator, exact vs HNSW, beside its ceiling.

For each catalog size and width (``--dims``, by default the served model's, ``IG_SPECTRAL_RANK``,
and 64) the server runs in its own process (so the load generator does not share its GIL) over a
real LadybugStore in a temporary folder that holds a small interaction graph (seen items, Explain
and RecommendFriends read it). Embeddings are clustered synthetic vectors, or with ``--vectors
DATASET_DIR`` SpectralCF vectors fitted on that dataset and tiled to the catalog size
(``bench/serve_vectors.py``): up to ``--store-max`` items they are written through the store and
loaded by the server's IndexLoader as in production; larger catalogs are applied directly to the
server's index (writing a million rows through LadybugDB takes longer than the benchmark itself),
which the output says. Each (size, width, index) runs every method (or those of ``--methods``) for
``--seconds`` with ``--concurrency`` calls in flight, and prints p50/p99 latency, QPS and the CPU
seconds per second that the server and the load generator used (they share this machine's cores),
plus the recall@10 of the served search (HNSW candidates rescored, as Recommend does) against an
exact scan of the same item table, measured inside the server on its own index.

Load generators (``--generators``): ``python``, grpc.aio callers split over ``--client-procs``
processes, each call a random user; ``h2load``, the C generator (``bench/h2load_driver.py``; the
same request every call), for Recommend and SimilarItems. ``--ceiling`` (on by default) also starts
the same server with a Recommend handler that answers an empty reply at once (same interceptors,
thread pool, health and reflection) and measures it with the same generators: the framework's own
ceiling, in the same run.

``--server-procs 1 2`` also runs each configuration with two serving processes sharing one port
(``SO_REUSEPORT``), each with its own store copy and index; callers then open a connection each,
since the kernel spreads connections, not calls, over the processes.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python bench/serve_latency.py --sizes 100000 1000000 \
        --vectors ../shared/datasets/gowalla --methods Recommend
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import h2load_driver
from serve_vectors import cached_catalog, catalog

METHODS = ("Recommend", "Recommend+seen", "SimilarItems", "RecommendFriends", "Explain")
#: Users whose served lists are checked against exact search.
RECALL_QUERIES = 200
#: Methods h2load runs (one fixed request; the graph methods' cost depends on the user too much).
H2LOAD_METHODS = ("Recommend", "SimilarItems")


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
    from proto import recommender_pb2 as pb
    from serving.config import ServingConfig
    from serving.index import EmbeddingIndex
    from serving.server import start_serving
    from serving.servicer import RecommenderServicer

    if args.empty:
        # The ceiling: the same server with a Recommend that does nothing (set before the servicer is
        # registered, which binds its methods).
        RecommenderServicer.Recommend = lambda self, request, context: pb.RecommendReply()  # type: ignore[method-assign]  # replaced on purpose: the ceiling
    items = np.load(args.items_file, mmap_mode="r")[: args.size]
    users = np.asarray(np.load(args.users_file)[: args.users])
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
    if args.cache and args.index == "hnsw" and not through_store and not args.empty:
        cached_graph(index, settings, Path(args.cache), args.size, index.snapshot().items.dim)
    handle = start_serving(ServingConfig.from_settings(settings), store, index=index)
    print(json.dumps({"port": handle.port}), flush=True)
    while not index.ready or (args.index == "hnsw" and index.snapshot().ann is None):
        time.sleep(0.2)
    ready_s = time.perf_counter() - started
    # A random sample: the first users of a dataset's file can differ from the rest (Gowalla's first 300
    # score 0.90 at efSearch 128 at 1M x 992, a random 100 of them 0.95).
    sample = np.sort(np.random.default_rng(1).permutation(len(users))[:RECALL_QUERIES])
    recall = served_recall(index.snapshot(), users[sample]) if args.index == "hnsw" else None
    ann = index.snapshot().ann
    print(json.dumps({"through_store": through_store, "ready_s": round(ready_s, 1), "recall": recall,
                      "ef_search": int(ann.graph.hnsw.efSearch) if ann is not None else None}), flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    handle.stop(1.0)
    store.close()


def cached_graph(index, settings, cache: Path, size: int, dim: int) -> None:
    """Attach the graph cached for this catalog (``bench/ann_sweep.py``'s file: the same vectors, the served
    M and efConstruction), building and caching it when there is none, calibrated as the server's own
    builder calibrates: the bench then skips minutes of building per server at 1M x 992."""
    import faiss
    from ann_sweep import graph_path

    from serving.ann import HnswIndex
    from serving.ann_calibration import calibrate

    snapshot, path = index.snapshot(), graph_path(cache, size, dim)
    if path.exists():
        rows = np.arange(len(snapshot.items), dtype=np.int64)
        ann = HnswIndex(faiss.read_index(str(path)), snapshot.version, rows, rows.copy(), snapshot.items.codec)
    else:
        ann = HnswIndex.build(snapshot.items.vectors, snapshot.version, settings.ann_ef_search, snapshot.items.codec)
        faiss.write_index(ann.graph, str(path))
    ann.graph.hnsw.efSearch = settings.ann_ef_search
    if settings.ann_target_recall > 0:
        found = calibrate(ann, snapshot, settings.ann_target_recall, settings.ann_ef_search, settings.ann_ef_max)
        print(f"calibrated efSearch {found.ef_search}: recall@10 {found.recall:.3f} on {found.queries}",
              file=sys.stderr, flush=True)
    assert index.attach_ann(ann, snapshot)


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


def measure_h2load(port: int, server_pids: list[int], method: str, args: argparse.Namespace) -> dict[str, float]:
    """``method`` under h2load, ``args.concurrency`` streams on one connection (one per serving process),
    after one call through grpc checks that the request is answered OK (h2load sees HTTP statuses only)."""
    import grpc

    from proto import recommender_pb2_grpc

    request = request_for(method, np.random.default_rng(0), args)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        getattr(recommender_pb2_grpc.RecommenderStub(channel), method.split("+")[0])(request, timeout=30)
    path = f"/interestgraph.v1.Recommender/{method.split('+')[0]}"
    server_cpu, client_cpu = sum(map(process_cpu_s, server_pids)), children_cpu_s()
    began = time.perf_counter()
    result = h2load_driver.run(port, path, request.SerializeToString(), args.seconds,
                               streams=max(1, args.concurrency // args.serving_procs), connections=args.serving_procs)
    wall = time.perf_counter() - began  # includes h2load's warm-up: CPU per second is a little low
    return result | {"server_cpu": (sum(map(process_cpu_s, server_pids)) - server_cpu) / wall,
                     "client_cpu": (children_cpu_s() - client_cpu) / wall}


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def served_recall(snapshot, queries: np.ndarray, k: int = 10) -> float:
    """Recall@k of the snapshot's served search (its graph, then exact rescoring) against an exact scan."""
    from serving.search import ItemQuery, search

    scores = snapshot.items.scan(np.ascontiguousarray(queries, dtype=np.float32))
    exact = np.argpartition(-scores, k, axis=1)[:, :k]
    none = np.zeros(0, dtype=np.int64)
    served = [search(snapshot, ItemQuery(query, k, none), use_ann=True).rows for query in queries]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(served, exact, strict=True)]))


def resident_mb(pid: int) -> float:
    """Anonymous resident memory of process ``pid`` (``RssAnon``), MB: what it holds itself, without
    the pages of the vector file it read the catalog from (file-backed, counted in ``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_servers(size: int, index: str, procs: int, empty: bool, args: argparse.Namespace,
                workdir: str) -> tuple[list[subprocess.Popen], dict]:
    """``procs`` serving processes on one port, each over its own store in ``workdir``; waits until all are ready."""
    processes: list[subprocess.Popen] = []
    port = 0
    for n in range(procs):
        own = os.path.join(workdir, f"server{n}")
        os.mkdir(own)
        command = [sys.executable, __file__, "--serve", "--size", str(size), "--index", index, "--workdir", own,
                   "--users", str(args.users), "--edges", str(args.edges), "--items-file", args.items_file,
                   "--users-file", args.users_file, "--store-max", str(args.store_max), "--port", str(port),
                   "--codec", args.codec] + (["--cache", args.cache] if args.cache else []) + \
            (["--share-port"] if procs > 1 else []) + (["--empty"] if empty else [])
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
                       "recall": infos[0]["recall"], "ef_search": infos[0]["ef_search"],
                       "rss_mb": sum(resident_mb(p.pid) for p in processes)}


def run_configuration(size: int, index: str, procs: int, args: argparse.Namespace, empty: bool = False) -> list[tuple]:
    """Every method of ``args.methods`` with every generator against ``procs`` fresh serving processes
    (``empty``: the ceiling server, Recommend only)."""
    rows = []
    label = "empty Recommend handler" if empty else f"{index}, {args.codec}"
    methods = ["Recommend"] if empty else args.methods
    with tempfile.TemporaryDirectory(prefix="ig-bench-") as workdir:
        processes, info = run_servers(size, index, procs, empty, args, workdir)
        loaded = "through LadybugStore" if info["through_store"] else "directly into the index (store bypassed)"
        print(f"# {size:,} items x {args.dim}, {label}, {procs} serving process(es): embeddings loaded {loaded}; "
              f"ready in {info['ready_s']} s, resident {info['rss_mb']:,.0f} MB"
              + ("" if info["recall"] is None else
                 f", served recall@10 {info['recall']:.3f} at efSearch {info['ef_search']}"), flush=True)
        args.size, args.serving_procs = size, procs  # what the load-generator processes need to know
        for method in methods:
            for generator in args.generators:
                if generator == "h2load" and method not in H2LOAD_METHODS:
                    continue
                run = measure_h2load if generator == "h2load" else measure
                result = run(info["port"], info["pids"], method, args)
                rows.append((size, args.dim, label, procs, method, generator,
                             result | {"rss_mb": info["rss_mb"], "recall": info["recall"],
                                       "ef_search": info["ef_search"]}))
                print(f"  {method:18s} {generator:7s} p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms  "
                      f"{result['qps']:8.0f} QPS  errors {result['errors']}  CPU/s server "
                      f"{result['server_cpu']:.2f} clients {result['client_cpu']:.2f}", flush=True)
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in processes:
            process.wait(timeout=60)
    return rows


def print_tables(rows: list[tuple], ceilings: dict[tuple, float]) -> None:
    print("\n| items | width | index, item vectors | serving processes | method | generator | p50 / p99 ms | QPS | "
          "of the empty handler's QPS | CPU/s server | CPU/s generator | server anonymous resident MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, dim, label, procs, method, generator, r in rows:
        ceiling = ceilings.get((size, dim, procs, generator))
        share = f"{r['qps'] / ceiling:.0%}" if ceiling and method == "Recommend" else ""
        print(f"| {size:,} | {dim} | {label} | {procs} | {method} | {generator} | {r['p50']:.2f} / {r['p99']:.2f} | "
              f"{r['qps']:,.0f} | {share} | {r['server_cpu']:.2f} | {r['client_cpu']:.2f} | {r['rss_mb']:,.0f} |")


def parse_args() -> argparse.Namespace:
    from core.settings import Settings

    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--indexes", nargs="+", default=["exact", "hnsw"])
    parser.add_argument("--dims", type=int, nargs="+", default=[defaults.spectral_rank, 64],
                        help="item/user vector widths (default: IG_SPECTRAL_RANK's and 64)")
    parser.add_argument("--vectors", default="synthetic",
                        help="'synthetic', or a dataset folder (train.txt) to fit and tile (default: %(default)s)")
    parser.add_argument("--codecs", nargs="+", default=["int8"], choices=["f32", "int8"],
                        help="how the server holds item vectors (IG_ITEM_CODEC); int8 is the default")
    parser.add_argument("--generators", nargs="+", default=["h2load", "python"], choices=["h2load", "python"],
                        help="load generators, each run against every configuration (h2load if installed)")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip the empty-handler server")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--edges", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight, over all client processes")
    parser.add_argument("--client-procs", type=int, default=2, help="Python load-generator processes")
    parser.add_argument("--server-procs", type=int, nargs="+", default=[1],
                        help="serving processes sharing the port; each value is one more configuration")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--store-max", type=int, default=100_000, help="larger catalogs bypass the store")
    parser.add_argument("--cache", default=None,
                        help="folder keeping vectors and 1M-sized HNSW graphs between runs (bench/ann_sweep.py's)")
    for hidden in ("--codec", "--index", "--workdir", "--items-file", "--users-file"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    for hidden in ("--serve", "--share-port", "--empty"):
        parser.add_argument(hidden, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.ef_search = defaults.ann_ef_search  # what the serving processes use (IG_ANN_EF_SEARCH)
    args.target_recall = defaults.ann_target_recall
    if "h2load" in args.generators and not h2load_driver.available():
        print("h2load is not installed (Debian: nghttp2-client): the Python generator only", flush=True)
        args.generators = [g for g in args.generators if g != "h2load"] or ["python"]
    return args


def main() -> None:
    args = parse_args()
    if args.serve:
        serve(args)
        return
    rows: list[tuple] = []
    ceilings: dict[tuple, float] = {}
    with tempfile.TemporaryDirectory(prefix="ig-vectors-") as vectors:
        for dim in args.dims:
            args.dim = dim
            args.items_file, args.users_file, what = \
                cached_catalog(args.vectors, max(args.sizes), dim, args.users, args.cache) if args.cache else \
                catalog(args.vectors, max(args.sizes), dim, args.users, vectors)
            print(f"## width {dim}: {what}", flush=True)
            for size in args.sizes:
                for procs in args.server_procs:
                    if args.ceiling:
                        args.codec = args.codecs[0]
                        empty = run_configuration(size, "exact", procs, args, empty=True)
                        ceilings |= {(row[0], row[1], row[3], row[5]): row[6]["qps"] for row in empty}
                        rows += empty
                    for index in args.indexes:
                        for codec in args.codecs:
                            args.codec = codec
                            rows += run_configuration(size, index, procs, args)
    print_tables(rows, ceilings)
    recalls = {(size, dim, label): (r["recall"], r["ef_search"]) for size, dim, label, *_, r in rows
               if r["recall"] is not None}
    for (size, dim, label), (recall, ef) in recalls.items():
        print(f"{label} recall@10 of the served search vs exact at {size:,} items x {dim} "
              f"({RECALL_QUERIES} users, efSearch {ef}, calibrated from {args.ef_search} to "
              f"IG_ANN_TARGET_RECALL {args.target_recall}): {recall:.3f}")


if __name__ == "__main__":
    main()
