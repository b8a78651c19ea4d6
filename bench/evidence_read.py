"""The store's k-hop read behind Explain and RecommendFriends: whole-frontier queries against per-node seeks.

Explain reads the 2-hop neighbourhood of a (user, item) pair and RecommendFriends that of one user,
with the serving fan-out cap (``serving.servicer.EVIDENCE_FANOUT``). LadybugDB's frontier filter,
``offset(id(n)) IN $handles``, scans the node table, so its cost grows with the graph, while a
primary-key seek per node (``n.id = $id``) does not. For each graph size this builds one store
(``--users-per-item`` users per item, ``--edges-per-item`` random edges per item, weight 1) and
times the same random requests each way, side by side: ``seek_max 0`` (every frontier in one query
per kind, the earlier read) and the store's :data:`~graph_store.ladybug.FRONTIER_SEEK_MAX`. Usage::

    .venv/bin/python bench/evidence_read.py --items 20000 200000 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.domain import EdgeDelta, NodeId, NodeKind, NodeRef, OffsetRange, TopicPartition, UpsertBatch  # noqa: E402
from graph_store.ladybug import FRONTIER_SEEK_MAX, LadybugStore  # noqa: E402
from serving.servicer import EVIDENCE_FANOUT  # noqa: E402

#: Edges per write transaction while building a graph.
WRITE_BATCH = 20_000


def build(path: str, items: int, users: int, edges: int, seed: int) -> LadybugStore:
    store = LadybugStore(path)
    store.ensure_schema()
    rng = np.random.default_rng(seed)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, users, edges), rng.integers(0, items, edges),
                                                     strict=True)})
    for start in range(0, len(pairs), WRITE_BATCH):
        deltas = [EdgeDelta(NodeId(f"u{u}"), NodeId(f"i{i}"), 1.0, 1, 1) for u, i in pairs[start:start + WRITE_BATCH]]
        store.apply_batch(UpsertBatch(deltas, {TopicPartition("bench", 0): OffsetRange(start, start)}))
    return store


def time_reads(store: LadybugStore, requests: list[list[NodeRef]], seek_max: int) -> tuple[float, float, float]:
    """p50 / p99 ms of ``k_hop_subgraph`` per request, and the mean edges read."""
    store.frontier_seek_max = seek_max
    for seeds in requests[:10]:
        store.k_hop_subgraph(seeds, hops=2, fanout=EVIDENCE_FANOUT)
    times, edges = [], []
    for seeds in requests:
        began = time.perf_counter()
        sub = store.k_hop_subgraph(seeds, hops=2, fanout=EVIDENCE_FANOUT)
        times.append((time.perf_counter() - began) * 1000)
        edges.append(sub.num_edges)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), float(np.mean(edges))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--users-per-item", type=float, default=0.5)
    parser.add_argument("--edges-per-item", type=float, default=3.0)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seek-max", type=int, nargs="+", default=[0, FRONTIER_SEEK_MAX],
                        help="frontier sizes read node by node, one row each (0: the whole-frontier read)")
    args = parser.parse_args()
    print("| items | users | edges | request | read | p50 ms | p99 ms | edges read |")
    print("|---|---|---|---|---|---|---|---|")
    for items in args.items:
        users, edges = int(items * args.users_per_item), int(items * args.edges_per_item)
        with tempfile.TemporaryDirectory(prefix="ig-evidence-") as folder:
            began = time.perf_counter()
            store = build(str(Path(folder) / "graph.lbdb"), items, users, edges, seed=items)
            print(f"<!-- {items:,} items written in {time.perf_counter() - began:.0f} s -->", flush=True)
            rng = np.random.default_rng(1)
            kinds = {
                "Explain (user, item)": [[NodeRef(NodeKind.USER, NodeId(f"u{rng.integers(users)}")),
                                          NodeRef(NodeKind.ITEM, NodeId(f"i{rng.integers(items)}"))]
                                         for _ in range(args.requests)],
                "RecommendFriends (user)": [[NodeRef(NodeKind.USER, NodeId(f"u{rng.integers(users)}"))]
                                            for _ in range(args.requests)],
            }
            for request, seeds in kinds.items():
                for seek_max in args.seek_max:
                    label = f"seeks up to {seek_max}" if seek_max else "frontier queries"
                    p50, p99, read = time_reads(store, seeds, seek_max)
                    print(f"| {items:,} | {users:,} | {edges:,} | {request} | {label} | {p50:.2f} | {p99:.2f} "
                          f"| {read:.0f} |", flush=True)
            store.close()


if __name__ == "__main__":
    main()
