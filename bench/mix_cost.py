"""What a judged mix costs a Recommend beside the blend alone, side by side in one process.

Usage::

    python bench/mix_cost.py --items 100000 --dim 992 --calls 300

One catalog (``--items`` clustered synthetic vectors of ``--dim`` dims as int8 codes, the served
codec), one trending list over a tenth of it, one :class:`~serving.transitions.ItemTransitions`
fed a stream in which each item's users move on to a few other items. Each call is a user with
``--history`` items; the same users are asked, interleaved, through
:func:`serving.next_mix.served_search` at the blend alone (``BLENDED``: :func:`serving.blending.
blended_search`), at a mix with next items (reading the user's successors, sparse) and at trending
alone as a mix. Every arm searches exactly (``use_ann=False``), so the differences are the mix's
own work: the personal search at the candidate pool (``k`` x ``MMR_POOL_FACTOR``) where the blend
asks for the same pool, the next-items read, the candidates' dots and the mixed order. Printed:
p50 / p99 / mean per arm in ms, and each arm's mean minus the blend's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_vectors import synthetic

from core.domain import EdgeDelta, EmbeddingRows, NodeId, NodeKind
from serving.blending import BlendPolicy
from serving.codec import INT8
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.mix_judge import BLEND, Mix
from serving.next_mix import NextRows, served_search
from serving.search import ItemQuery
from serving.transitions import ItemTransitions
from serving.trending import TrendingItems


def catalog(items: int, dim: int) -> IndexSnapshot:
    vectors = synthetic(items, dim, seed=3)
    ids = [NodeId(f"i{n}") for n in range(items)]
    return EmbeddingIndex(INT8).apply(EmbeddingRows(NodeKind.USER, [], np.zeros((0, dim), np.float32)),
                                      EmbeddingRows(NodeKind.ITEM, ids, vectors), version=1, written_ms=0)


def transitions_of(items: int, users: int, history: int, seed: int) -> ItemTransitions:
    """Users walking the catalog: each next item is one of ten successors of the last (Zipf over items)."""
    rng = np.random.default_rng(seed)
    table = ItemTransitions()
    successors = rng.integers(0, items, size=(min(items, 50_000), 10))
    edges, ts = [], 0
    for user in range(users):
        at = int(rng.zipf(1.3) % successors.shape[0])
        for _ in range(history):
            ts += 1
            edges.append(EdgeDelta(NodeId(f"u{user}"), NodeId(f"i{at}"), 1.0, 1, ts))
            at = int(successors[at, rng.integers(0, 10)] % successors.shape[0])
    table.add_edges(edges)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000, help="catalog size (default: 100,000)")
    p.add_argument("--dim", type=int, default=992, help="served width (default: 992, the default model's)")
    p.add_argument("--calls", type=int, default=300, help="calls per arm (default: 300)")
    p.add_argument("--history", type=int, default=30, help="items per user (default: 30)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    snap = catalog(args.items, args.dim)
    trending = TrendingItems(0.0)
    rng = np.random.default_rng(5)
    popular = rng.choice(args.items, size=max(args.items // 10, 1), replace=False)
    trending.add([NodeId(f"i{n}") for n in popular.tolist()], (rng.pareto(1.2, popular.size) + 1).tolist(), None)
    table = transitions_of(args.items, args.calls, args.history, seed=7)
    print(f"catalog {args.items:,} x {args.dim} int8, trending over {popular.size:,} items, "
          f"{args.calls} users of {args.history} items; built in {time.perf_counter() - started:.1f} s")
    policy = BlendPolicy(10.0)
    arms = {"blend alone (BLENDED, n0 = 10)": BLEND, "next items, weight 4": Mix(1.0, 4.0),
            "trending alone, as a mix": Mix(0.0, 0.0)}
    reps: dict[str, list[float]] = {name: [] for name in arms}
    for user in range(args.calls):
        uid = NodeId(f"u{user}")
        latest = table.latest(uid)
        seen = snap.items.rows_of(latest)
        vector = np.asarray(snap.items.gather(seen).sum(axis=0), dtype=np.float32)  # a fold-in's shape
        query = ItemQuery(vector, 10, seen)
        for name, mix in arms.items():
            begun = time.perf_counter()
            nexts = NextRows.for_user(snap, table, uid) if mix.beta > 0 else None
            served_search(snap, trending, policy, mix, vector, args.history, query, nexts, use_ann=False)
            reps[name].append((time.perf_counter() - begun) * 1000)
    print("\n| arm | p50 ms | p99 ms | mean ms | mean - blend's, ms |")
    print("|---|---|---|---|---|")
    blend_mean = float(np.mean(reps[next(iter(arms))]))
    for name, times in reps.items():
        t = np.asarray(times)
        print(f"| {name} | {np.percentile(t, 50):.2f} | {np.percentile(t, 99):.2f} | {t.mean():.2f} | "
              f"{t.mean() - blend_mean:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
