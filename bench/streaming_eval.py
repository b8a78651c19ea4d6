"""Streaming evaluation: does live incremental refresh keep recommendations as good as retraining?

Usage::

    python bench/streaming_eval.py --data-dir ../shared/datasets

MovieLens ratings (``streams.datasets.movielens_ratings``: timestamp order, ties by user, then movie)
are replayed as the rating events ``interest-graph replay`` publishes, each of weight ``rating *
weight_rating_per_star``. The first ``--train-fraction`` build the graph in a real LadybugStore (tmp
dir) and the model (``models.methods.train_from_store``: SpectralCF by default). The rest stream
through the live components in batches of ``--batch`` events: ``store.apply_batch``, then
``RefreshWorker.run_once`` and ``IndexLoader.poll_once`` into a serving ``EmbeddingIndex``. Kafka is
skipped (ingest exactness is tested in tests/streams): each batch is planned by the ingest agent's
own ``streams.aggregate.plan_batch`` (validation, aggregation, offsets) and written as it writes it.

Before each batch, every event of it is scored against the top-k list each system serves its
user at that moment (seen items excluded: those in the store before the batch): HR@k and NDCG@k
per event, averaged. A user or item a system holds no embedding for cannot be recommended (a miss).

* **live**: the model fitted at the cut, embeddings refreshed incrementally after every batch;
* **stale**: the embeddings published at the cut, frozen;
* **retrain**: SpectralCF refitted on the store's snapshot every ``--retrain-every`` of the stream
  (full recompute), frozen in between;
* **retrain + live**: the same refits, with the changed nodes refreshed incrementally in between
  (what ``interest-graph train`` plus the running worker do);
* **popularity**: the most-rated items of the graph so far, for scale.

HR@k is also given over the events of users already in the graph at the cut.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.domain import EmbeddingRows, NodeId, NodeKind, NodeRef, SourcePosition, TopicPartition
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from models.config import ModelConfig, RefreshConfig
from models.methods import train_from_store
from models.refresh import RefreshWorker
from models.spectral.checkpoint import fit_spectral
from models.spectral.refresh import SpectralRefresh
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.loader import IndexLoader
from streams.aggregate import SourceRecord, plan_batch
from streams.config import EventContract
from streams.datasets import Rating, movielens_ratings

TP = TopicPartition("ig-events", 0)
GROUP = "streaming-eval"


class Feeder:
    """Applies ratings to the store the way the ingest agent does: one planned batch per call."""

    def __init__(self, store: LadybugStore, contract: EventContract) -> None:
        self.store, self.contract, self.offset = store, contract, 0

    def __call__(self, ratings: Sequence[Rating]) -> None:
        records = []
        for n, rating in enumerate(ratings):
            event = rating.event()
            records.append(SourceRecord(event.value, event.key, SourcePosition(TP, self.offset + n), event.ts_ms))
        # Every batch holds offsets no earlier batch applied, so nothing is skipped: no applied offsets.
        plan = plan_batch(records, {}, self.contract, GROUP, int(time.time() * 1000))
        if plan.rejected:
            raise ValueError(f"{len(plan.rejected)} MovieLens ratings are invalid events, first: {plan.rejected[0][1]}")
        self.store.apply_batch(plan.batch)
        self.offset += len(ratings)


@dataclass
class Score:
    """HR@k and NDCG@k sums over scored events."""

    events: int = 0
    hits: int = 0
    ndcg: float = 0.0
    no_user: int = 0
    old_events: int = 0
    old_hits: int = 0

    def add(self, rank: int | None, k: int, old_user: bool) -> None:
        hit = rank is not None and rank < k
        self.events += 1
        self.old_events += old_user
        if hit:
            assert rank is not None
            self.hits += 1
            self.old_hits += old_user
            self.ndcg += 1.0 / math.log2(rank + 2)


@dataclass
class System:
    """One way of serving: an embedding index and its score so far."""

    name: str
    index: EmbeddingIndex
    score: Score = field(default_factory=Score)

    def ranks(self, user: str, targets: list[str], seen: set[str], k: int) -> list[int | None]:
        """Rank of each target in the user's served top-k (``None`` = not in the list)."""
        snap: IndexSnapshot = self.index.snapshot()
        row = snap.users.row(NodeId(user))
        if row is None or not len(snap.items):
            self.score.no_user += len(targets)
            return [None] * len(targets)
        return self.rank_scores(snap, snap.items.vectors @ snap.users.vectors[row], targets, seen, k)

    @staticmethod
    def rank_scores(snap: IndexSnapshot, scores: np.ndarray, targets: list[str], seen: set[str],
                    k: int) -> list[int | None]:
        scores = scores.copy()
        blocked = snap.items.rows_of(NodeId(item) for item in seen)
        scores[blocked] = -np.inf
        top = np.argpartition(-scores, k)[:k] if len(scores) > k else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        served = [snap.items.ids[r] for r in top if np.isfinite(scores[r])]
        position = {item: n for n, item in enumerate(served)}
        return [position.get(NodeId(t)) for t in targets]


class Popularity(System):
    """Most interactions in the graph so far, for every user (the index only names the items)."""

    def __init__(self, index: EmbeddingIndex) -> None:
        super().__init__("popularity (live counts)", index)
        self.counts: dict[str, int] = defaultdict(int)

    def ranks(self, user: str, targets: list[str], seen: set[str], k: int) -> list[int | None]:
        snap = self.index.snapshot()
        scores = np.fromiter((self.counts[i] for i in snap.items.ids), dtype=np.float64, count=len(snap.items))
        return self.rank_scores(snap, scores, targets, seen, k)


def publish(index: EmbeddingIndex, rows: Sequence[EmbeddingRows], version: int, replace: bool = True) -> None:
    """Apply freshly computed rows to an index (``replace``: drop what it held)."""
    users = next(r for r in rows if r.kind is NodeKind.USER)
    items = next(r for r in rows if r.kind is NodeKind.ITEM)
    index.apply(users, items, version=version, written_ms=int(time.time() * 1000), replace=replace)


def batches(events: Sequence[Rating], size: int) -> Iterator[Sequence[Rating]]:
    for start in range(0, len(events), size):
        yield events[start:start + size]


def run(args: argparse.Namespace) -> dict[str, Score]:
    torch.set_num_threads(args.threads)
    events = movielens_ratings(args.data_dir)
    cut = int(args.train_fraction * len(events))
    history, stream = events[:cut], events[cut:]
    print(f"{len(events)} ratings; {len(history)} build the graph and the model, {len(stream)} stream "
          f"in batches of {args.batch} (Kafka skipped: batches go straight to store.apply_batch)", flush=True)
    tmp = tempfile.TemporaryDirectory(prefix="streaming-eval-")
    settings = Settings(store_path=str(Path(tmp.name) / "graph.lbdb"), model_dir=str(Path(tmp.name) / "model"),
                        bootstrap_min_edges=0, refresh_max_seeds=100_000, model_method=args.method)
    store = LadybugStore(settings.store_path)
    store.ensure_schema()
    feed = Feeder(store, EventContract.from_settings(settings))
    started = time.perf_counter()
    for chunk in batches(history, 5000):
        feed(chunk)
    checkpoint = train_from_store(store, ModelConfig.from_settings(settings), device="cpu")
    # threads: set above
    worker = RefreshWorker(store, RefreshConfig.from_settings(settings), settings.model_dir, device="cpu")
    worker.run_once()
    live = System("live (incremental refresh)", EmbeddingIndex())
    loader = IndexLoader(store, live.index)
    loader.poll_once()
    frozen = [store.read_embeddings(NodeKind.USER), store.read_embeddings(NodeKind.ITEM)]
    stale = System("stale (frozen at the cut)", EmbeddingIndex())
    retrain = System(f"retrain every {args.retrain_every:.0%} of the stream", EmbeddingIndex())
    both = System(f"retrain every {args.retrain_every:.0%} + live refresh", EmbeddingIndex())
    popularity = Popularity(live.index)
    for system in (stale, retrain, both):
        publish(system.index, frozen, 1)
    both_refresh = SpectralRefresh(fit_spectral(store.snapshot(), rank=settings.spectral_rank,
                                                values=settings.spectral_values, device="cpu"))
    print(f"cut at event {cut}: graph {store.counts()}, {args.method} d={checkpoint.dim}, "
          f"built in {time.perf_counter() - started:.1f} s", flush=True)

    seen: dict[str, set[str]] = defaultdict(set)
    for rating in history:
        seen[rating.user_id].add(rating.item_id)
        popularity.counts[rating.item_id] += 1
    old_users = set(seen)
    systems = [live, stale, retrain, both, popularity]
    retrain_at = max(1, int(args.retrain_every * len(stream)))
    next_retrain, done, refresh_s, retrains = retrain_at, 0, 0.0, 0
    started = time.perf_counter()
    for chunk in batches(stream, args.batch):
        by_user: dict[str, list[str]] = defaultdict(list)
        for rating in chunk:
            by_user[rating.user_id].append(rating.item_id)
        for user, targets in by_user.items():
            for system in systems:
                for rank in system.ranks(user, targets, seen[user], args.k):
                    system.score.add(rank, args.k, user in old_users)
        tick = time.perf_counter()
        feed(chunk)
        worker.run_once()
        loader.poll_once()
        refresh_s += time.perf_counter() - tick
        seeds = {NodeRef(NodeKind.USER, NodeId(r.user_id)) for r in chunk} | \
            {NodeRef(NodeKind.ITEM, NodeId(r.item_id)) for r in chunk}
        sub = store.k_hop_subgraph(sorted(seeds, key=str), hops=both_refresh.read_hops, fanout=both_refresh.fanout)
        publish(both.index, both_refresh.incremental(sub).rows, done + 2, replace=False)
        for rating in chunk:
            seen[rating.user_id].add(rating.item_id)
            popularity.counts[rating.item_id] += 1
        done += len(chunk)
        if done >= next_retrain and done < len(stream):
            snapshot = store.snapshot()
            both_refresh = SpectralRefresh(fit_spectral(snapshot, rank=settings.spectral_rank,
                                                        values=settings.spectral_values, device="cpu"))
            full = both_refresh.full(snapshot).rows
            publish(retrain.index, full, retrains + 2)
            publish(both.index, full, done + 2)
            retrains += 1
            next_retrain += retrain_at
    print(f"streamed {done} events in {time.perf_counter() - started:.1f} s (store + refresh + index "
          f"{refresh_s:.1f} s, {retrains} retrains); worker: {worker.stats.rounds} rounds", flush=True)
    store.close()
    tmp.cleanup()
    return {s.name: s.score for s in systems}


def print_table(scores: dict[str, Score], k: int) -> None:
    print(f"\n| system | HR@{k} | NDCG@{k} | HR@{k}, users known at the cut | events of users without an "
          "embedding |")
    print("|---|---|---|---|---|")
    for name, s in scores.items():
        print(f"| {name} | {s.hits / max(s.events, 1):.4f} | {s.ndcg / max(s.events, 1):.4f} | "
              f"{s.old_hits / max(s.old_events, 1):.4f} ({s.old_events} events) | {s.no_user} of {s.events} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/datasets",
                        help="datasets folder holding movielens-small/ (default: %(default)s)")
    parser.add_argument("--train-fraction", type=float, default=0.8, help="share of events before the cut")
    parser.add_argument("--batch", type=int, default=100, help="streamed events per store batch / refresh round")
    parser.add_argument("--retrain-every", type=float, default=0.1, help="retrain period, share of the stream")
    parser.add_argument("--method", default="spectral", choices=["spectral", "lightgcn"],
                        help="model fitted at the cut (the retrain baseline is always SpectralCF)")
    parser.add_argument("--k", type=int, default=10, help="list length")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_table(run(args), args.k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
