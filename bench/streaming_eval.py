"""Streaming evaluation: the served system against live baselines on replayed streams, per segment.

Usage::

    python bench/streaming_eval.py --data-dir ../shared/datasets
    python bench/streaming_eval.py --streams movielens --cuts 0.8     # one stream, one cut

Streams (``--streams``): **movielens**, MovieLens ratings (``streams.datasets.movielens_ratings``:
timestamp order, ties by user, then movie) as the rating events ``interest-graph replay``
publishes; **drift**, the demo's synthetic generator (``streams.datasets.ClusteredInterests``) with
drifting interests: each user moves on to the next interest cluster every ``--drift-every`` events
of the stream, staggered over users, and user activity skewed (``--drift-skew``: a few heavy users,
a long tail arriving late). For each stream and each cut of ``--cuts``, the events before
the cut build the graph in a real LadybugStore (tmp dir) and the model (``models.methods.
train_from_store``: SpectralCF by default). The rest stream through the live components in batches
of ``--batch`` events: ``store.apply_batch``, then ``RefreshWorker.run_once`` and
``IndexLoader.poll_once`` into a serving ``EmbeddingIndex``. Kafka is skipped (ingest exactness is
tested in tests/streams): each batch is planned by the ingest agent's own
``streams.aggregate.plan_batch`` (validation, aggregation, offsets) and written as it writes it.

Before each batch, every event of it is scored against the top-k list each system serves its
user at that moment (seen items excluded: those in the store before the batch): HR@k and NDCG@k
per event, averaged, overall and per segment of the user's distinct items at event time (new
<= 5, light 6-50, heavy > 50). A system with no list for a user scores a miss. The systems
(``bench/stream_systems.py``):

* **live**: the model fitted at the cut, embeddings refreshed incrementally after every batch;
* **stale**: the embeddings published at the cut, frozen;
* **retrain**: SpectralCF refitted on the store's snapshot every ``--retrain-every`` of the stream
  (full recompute), frozen in between; **retrain + live**: the same refits, with the changed nodes
  refreshed incrementally in between (what ``interest-graph train`` plus the running worker do);
* **popularity**: the most-interacted items of the graph so far;
* **trending**: ``serving.trending.TrendingItems`` fed each batch's edge deltas as ``up`` feeds it,
  at the served half-life (``--half-life``, default ``IG_TRENDING_HALF_LIFE``) and at each of
  ``--trending-half-lives``;
* **random walk**: Pixie-style walks with restarts on the live graph from the user's last items;
* **item co-occurrence kNN**: cosine item-kNN from the user's last items on the live graph;
* **served (n0 = ..., next items)**: what ``Recommend`` answers with ``IG_NEXT_ITEMS=1``
  (``serving.next_mix.served_search``) with the live embeddings, the served trending list and the next-items transitions
  (``serving.transitions``, fed the history event by event and then each batch's deltas): that
  list for users without a vector, a blend weighted n / (n + n0) for a user with n items
  (``serving.blending``), personal lists otherwise, each with next items mixed in at the weight
  the judge chose from a sample of the earlier batches (``serving.next_mix``, judged before each
  batch as ``up`` judges commits); one row per ``--blend-priors`` value (n0 = 0: personal lists
  with the trending fallback only), and the first prior again without next items (the default).

``--edge-half-life H`` (hours; default ``IG_EDGE_HALF_LIFE``'s, off) decays the store's edge
weights exactly as the ingest agent does (``EventContract.edge_half_life_h``: each event weighted
``2^((t - t_ref) / H)`` at its own event time, the store rebasing ``t_ref`` as the stream moves on,
see ``core.domain.EdgeDecay``). The baselines (popularity, trending, walks, co-occurrence) see the
undecayed edges, as before.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from core.domain import (
    EdgeDelta,
    EmbeddingRows,
    NodeId,
    NodeKind,
    NodeRef,
    SourcePosition,
    TopicPartition,
    UserFoldIn,
)
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from models.config import ModelConfig, RefreshConfig
from models.methods import train_from_store
from models.refresh import RefreshWorker
from models.spectral.checkpoint import SpectralCheckpoint, fit_spectral
from models.spectral.refresh import SpectralRefresh
from serving.blending import BlendPolicy
from serving.index import EmbeddingIndex
from serving.loader import IndexLoader
from serving.transitions import ItemTransitions
from serving.trending import TrendingItems
from streams.aggregate import SourceRecord, plan_batch
from streams.config import EventContract
from streams.datasets import ClusteredInterests, KeyedEvent, movielens_ratings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_hybrids import NextItems, RankFusion, RecentFoldIn
from stream_systems import (
    SEGMENTS,
    CoOccurrence,
    FixedWeight,
    LiveGraph,
    Popularity,
    RandomWalk,
    Served,
    System,
    Trending,
    segment_of,
)

TP = TopicPartition("ig-events", 0)
GROUP = "streaming-eval"
#: One streamed event: who, which item, and the event as it goes on the wire.
StreamEvent = tuple[str, str, KeyedEvent]


def movielens_stream(data_dir: str) -> list[StreamEvent]:
    return [(r.user_id, r.item_id, r.event()) for r in movielens_ratings(data_dir)]


def drift_stream(args: argparse.Namespace) -> list[StreamEvent]:
    world = ClusteredInterests(args.drift_users, args.drift_items, clusters=args.drift_clusters, in_cluster=0.85,
                               seed=5, drift_every=args.drift_every, mean_gap_ms=60_000, user_skew=args.drift_skew)
    out = []
    for event in world.events(args.drift_events):
        value = json.loads(event.value)
        out.append((value["user_id"], value["item_id"], event))
    return out


class Feeder:
    """Applies events to the store the way the ingest agent does: one planned batch per call, its
    weights decayed as the agent decays them (``contract.edge_half_life_h``; the store rebases)."""

    def __init__(self, store: LadybugStore, contract: EventContract) -> None:
        self.store, self.contract, self.offset = store, contract, 0
        self.plain = dataclasses.replace(contract, edge_half_life_h=0.0)
        self.decay = store.edge_decay(contract.edge_half_life_ms)

    def __call__(self, events: Sequence[StreamEvent]) -> list[EdgeDelta]:
        """Apply ``events``; their edge deltas with plain weights (what the baselines see)."""
        records = [SourceRecord(e.value, e.key, SourcePosition(TP, self.offset + n), e.ts_ms)
                   for n, (_, _, e) in enumerate(events)]
        # Every batch holds offsets no earlier batch applied, so nothing is skipped: no applied offsets.
        now_ms = int(time.time() * 1000)
        plan = plan_batch(records, {}, self.contract, GROUP, now_ms, decay=self.decay)
        if plan.rejected:
            raise ValueError(f"{len(plan.rejected)} streamed events are invalid, first: {plan.rejected[0][1]}")
        self.store.apply_batch(plan.batch)
        self.offset += len(events)
        if self.decay is None:
            return plan.batch.edges
        self.decay = plan.batch.decay
        return plan_batch(records, {}, self.plain, GROUP, now_ms).batch.edges


def publish(index: EmbeddingIndex, rows: Sequence[EmbeddingRows], version: int, replace: bool = True) -> None:
    """Apply freshly computed rows to an index (``replace``: drop what it held)."""
    users = next(r for r in rows if r.kind is NodeKind.USER)
    items = next(r for r in rows if r.kind is NodeKind.ITEM)
    index.apply(users, items, version=version, written_ms=int(time.time() * 1000), replace=replace)


def batches(events: Sequence[StreamEvent], size: int) -> Iterator[Sequence[StreamEvent]]:
    for start in range(0, len(events), size):
        yield events[start:start + size]


def _floats(values: str) -> list[float]:
    return [float(v) for v in values.split(",") if v.strip()]


def run(args: argparse.Namespace, events: list[StreamEvent], fraction: float) -> list[System]:
    """One stream cut at ``fraction``: every system's score."""
    cut = int(fraction * len(events))
    history, stream = events[:cut], events[cut:]
    tmp = tempfile.TemporaryDirectory(prefix="streaming-eval-")
    settings = Settings(store_path=str(Path(tmp.name) / "graph.lbdb"), model_dir=str(Path(tmp.name) / "model"),
                        bootstrap_min_edges=0, refresh_max_seeds=100_000, model_method=args.method,
                        edge_half_life_h=args.edge_half_life)
    store = LadybugStore(settings.store_path)
    store.ensure_schema()
    feed = Feeder(store, EventContract.from_settings(settings))
    started = time.perf_counter()
    history_edges: list[EdgeDelta] = []
    for chunk in batches(history, 5000):
        history_edges += feed(chunk)
    checkpoint = train_from_store(store, ModelConfig.from_settings(settings), device="cpu")
    worker = RefreshWorker(store, RefreshConfig.from_settings(settings), settings.model_dir, device="cpu")
    worker.run_once()
    live = System("live (incremental refresh)", EmbeddingIndex())
    loader = IndexLoader(store, live.index)
    loader.poll_once()
    frozen = [store.read_embeddings(NodeKind.USER), store.read_embeddings(NodeKind.ITEM)]
    stale = System("stale (frozen at the cut)", EmbeddingIndex())
    retrain = System(f"retrain every {args.retrain_every:.0%} of the stream", EmbeddingIndex())
    both = System(f"retrain every {args.retrain_every:.0%} + live refresh", EmbeddingIndex())
    for system in (stale, retrain, both):
        publish(system.index, frozen, 1)
    both_refresh = SpectralRefresh(fit_spectral(store.snapshot(), rank=settings.spectral_rank,
                                                values=settings.spectral_values, device="cpu"))
    popularity = Popularity(live.index)
    trending = TrendingItems(args.half_life * 3600.0)
    trends = [Trending(live.index, trending)] + [
        Trending(live.index, TrendingItems(h * 3600.0)) for h in _floats(args.trending_half_lives)
        if h * 3_600_000 != trending.half_life_ms]
    graph = LiveGraph()
    graph.add(history_edges)
    next_items = ItemTransitions()
    priors = list(dict.fromkeys(_floats(args.blend_priors)))
    served = [Served(live.index, trending, p, next_items) for p in priors] + [Served(live.index, trending, priors[0])]
    served += [Served(live.index, trending, priors[0], next_items, w) for w in _floats(args.next_weights)]
    walk, cooc = RandomWalk(graph), CoOccurrence(graph)
    systems: list[System] = [live, stale, retrain, both, popularity, *trends, walk, cooc, *served]
    if args.hybrids and isinstance(checkpoint, SpectralCheckpoint):  # the fold-in is SpectralCF's
        systems += hybrids(args, live.index, graph, SpectralRefresh(checkpoint).fold_in(0),
                           [served[-1], walk, cooc, trends[0]], next_items)
    seen: dict[str, set[str]] = defaultdict(set)
    for user, item, _ in history:
        seen[user].add(item)
        popularity.counts[item] += 1
    for t in trends:
        t.trending.add_edges(history_edges)
    # Event by event, as a serving process that heard the history's commits one small batch at a
    # time would have learnt it (history_edges are 5,000-event aggregates: repeats folded together).
    next_items.add_edges([EdgeDelta(NodeId(u), NodeId(i), 1.0, 1, n) for n, (u, i, _) in enumerate(history)])
    print(f"  cut at event {cut:,} ({fraction:.0%}): graph {store.counts()}, {args.method} d={checkpoint.dim}, "
          f"built in {time.perf_counter() - started:.1f} s; {len(stream):,} events stream in batches of "
          f"{args.batch}", flush=True)

    retrain_at = max(1, int(args.retrain_every * len(stream)))
    next_retrain, done, retrains = retrain_at, 0, 0
    started = time.perf_counter()
    for chunk in batches(stream, args.batch):
        by_user: dict[str, list[str]] = defaultdict(list)
        for user, item, _ in chunk:
            by_user[user].append(item)
        for user, targets in by_user.items():
            segment = segment_of(len(seen[user]))
            for system in systems:
                for rank in system.ranks(user, targets, seen[user], args.k):
                    system.score.add(rank, args.k, segment)
        for system in served:
            system.judge_batch([(user, item) for user, item, _ in chunk], seen)
        edges = feed(chunk)
        worker.run_once()
        loader.poll_once()
        seeds = {NodeRef(NodeKind.USER, NodeId(u)) for u, _, _ in chunk} | \
            {NodeRef(NodeKind.ITEM, NodeId(i)) for _, i, _ in chunk}
        sub = store.k_hop_subgraph(sorted(seeds, key=str), hops=both_refresh.read_hops, fanout=both_refresh.fanout)
        publish(both.index, both_refresh.incremental(sub).rows, done + 2, replace=False)
        graph.add(edges)
        for t in trends:
            t.trending.add_edges(edges)
        next_items.add_edges(edges)
        for user, item, _ in chunk:
            seen[user].add(item)
            popularity.counts[item] += 1
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
    print(f"  streamed {done:,} events in {time.perf_counter() - started:.1f} s ({retrains} retrains, "
          f"{worker.stats.rounds} refresh rounds)", flush=True)
    items, pairs, users = next_items.counts()
    print(f"  next items held: {items:,} items, {pairs:,} item-to-item pairs, {users:,} users' latest items")
    for system in served:
        judged = "" if system.transitions is None or isinstance(system.judge, FixedWeight) else \
            "; mix (personal share, next-items weight) by segment at the end " + \
            str({seg: (mix.share, mix.beta) for seg, mix in system.judge.served().items()})
        print(f"  {system.name}: lists by source {dict(system.sources)} (requests){judged}")
    store.close()
    tmp.cleanup()
    return systems


def hybrids(args: argparse.Namespace, index: EmbeddingIndex, graph: LiveGraph, fold_in: UserFoldIn,
            baselines: list[System], transitions: ItemTransitions) -> list[System]:
    """The ``--hybrids`` rows (:mod:`stream_hybrids`): recency fold-ins, and rank fusions of them with
    trending (weighted toward it for new users, as the served blend), co-occurrence and the walk."""
    served, walk, cooc, trend = baselines  # trend: the served trending list's own row
    recency = [RecentFoldIn(index, graph, fold_in, h) for h in dict.fromkeys(_floats(args.recency_half_lives))]
    policy = BlendPolicy(Settings().blend_prior_interactions)
    new_users = lambda n: 1.0 - policy.personal_weight(n)  # noqa: E731 -- a weight, named for the row
    fused: list[System] = [RankFusion("fusion: served + co-occurrence + walk", [served, cooc, walk], [1, 1, 1])]
    for r in recency:
        h = f"{r.half_items:g}"
        fused += [RankFusion(f"fusion: recency {h} + trending", [r, trend], [1, 1]),
                  RankFusion(f"fusion: recency {h} + trending (new users)", [r, trend], [1, new_users]),
                  RankFusion(f"fusion: recency {h} + co-occurrence/2 + trending (new users)", [r, cooc, trend],
                             [1, 0.5, new_users])]
    nexts: list[System] = [NextItems("next items (else served)", index, transitions, served),
                           NextItems("next items x trending (else served)", index, transitions, served, trend.trending)]
    fused += [RankFusion("fusion: served + next items", [served, nexts[0]], [1, 1]),
              RankFusion("fusion: served + next items + trending (new users)", [served, nexts[0], trend],
                         [1, 1, new_users]),
              RankFusion("fusion: next items + recency 3 + trending (new users)", [nexts[0], *recency[:1], trend],
                         [1, 1, new_users])]
    return [*recency, *nexts, *fused]


def print_table(systems: list[System], k: int) -> None:
    names = [name for name, _ in SEGMENTS]
    print(f"\n| system | HR@{k} | NDCG@{k} | " + " | ".join(f"HR@{k} / NDCG@{k} {n}" for n in names)
          + " | events without a list |")
    print("|---|---|---|" + "---|" * len(names) + "---|")
    for s in systems:
        score = s.score
        print(f"| {s.name} | {score.hit_rate():.4f} | {score.mean_ndcg():.4f} | "
              + " | ".join(f"{score.hit_rate(n):.4f} / {score.mean_ndcg(n):.4f}" for n in names)
              + f" | {score.no_user} of {score.events} |")
    first = systems[0].score
    print("\nevents per segment: " + ", ".join(f"{n} {first.segment_events[n]:,}" for n in names) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/datasets",
                        help="datasets folder holding movielens-small/ (default: %(default)s)")
    parser.add_argument("--streams", default="movielens,drift", help="streams to replay (default: %(default)s)")
    parser.add_argument("--cuts", default="0.5,0.8", help="shares of each stream before the cut (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=100, help="streamed events per store batch / refresh round")
    parser.add_argument("--retrain-every", type=float, default=0.1, help="retrain period, share of the stream")
    parser.add_argument("--method", default="spectral", choices=["spectral", "lightgcn"],
                        help="model fitted at the cut (the retrain baseline is always SpectralCF)")
    parser.add_argument("--k", type=int, default=10, help="list length")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--half-life", type=float, default=defaults.trending_half_life_s / 3600.0,
                        help="served trending half-life, hours of event time (default: IG_TRENDING_HALF_LIFE's)")
    parser.add_argument("--trending-half-lives", default="0,24,720",
                        help="more trending rows at these half-lives, hours; 0 = all-time (default: %(default)s)")
    parser.add_argument("--blend-priors", default=f"0,{defaults.blend_prior_interactions:g},10,30",
                        help="n0 values of the served rows, comma-separated (default: %(default)s)")
    parser.add_argument("--next-weights", default="",
                        help="also score the served system with next items at each of these fixed weights (not judged)")
    parser.add_argument("--hybrids", action="store_true",
                        help="also score bench/stream_hybrids.py's candidates (SpectralCF only)")
    parser.add_argument("--recency-half-lives", default="3,8",
                        help="--hybrids: recency fold-in half-lives, in the user's items (default: %(default)s)")
    parser.add_argument("--edge-half-life", type=float, default=defaults.edge_half_life_h,
                        help="edge half-life of the store, hours of event time; 0 = no decay "
                             "(default: IG_EDGE_HALF_LIFE's, %(default)s)")
    parser.add_argument("--drift-users", type=int, default=1000, help="drift stream: users (default: %(default)s)")
    parser.add_argument("--drift-items", type=int, default=2000, help="drift stream: items (default: %(default)s)")
    parser.add_argument("--drift-clusters", type=int, default=8, help="drift stream: clusters (default: %(default)s)")
    parser.add_argument("--drift-events", type=int, default=40_000, help="drift stream: events (default: %(default)s)")
    parser.add_argument("--drift-every", type=int, default=8000,
                        help="drift stream: events between a user's moves (default: %(default)s)")
    parser.add_argument("--drift-skew", type=float, default=1.0,
                        help="drift stream: user activity ~ rank^-skew, 0 = uniform (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.streams.split(","):
        events = movielens_stream(args.data_dir) if name == "movielens" else drift_stream(args)
        for fraction in _floats(args.cuts):
            print(f"### {name}, cut {fraction:g} ({len(events):,} events)", flush=True)
            print_table(run(args, events, fraction), args.k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
