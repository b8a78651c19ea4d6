"""Ingest throughput: Zipf events through the real Tansu broker and Faust into LadybugDB (issue 5).

One run measures, on one broker, in this order:

1. **ceiling: aiokafka** - a plain ``AIOKafkaConsumer`` drains the pre-filled events topic
   (``getmany``, no decoding): what the broker and the Kafka client alone allow;
2. **ceiling: no-op Faust** - a Faust agent ``take(5000)``s the same topic, ``json.loads`` every
   value and acks (Faust's own per-event cost, no store);
3. **sustained ingest** - the real :class:`streams.app.IngestApp` (validation, aggregation, dead
   letters, one LadybugDB transaction per batch with its offsets) drains the same backlog into a
   fresh store; upsert batch p50/p99 are exact per-batch timings of ``apply_batch``;
4. **the store alone** - the same events planned (``plan_batch``: decode, validate, aggregate)
   and applied to a fresh LadybugDB store in batches of the size Faust handed the agent in (3),
   with no Kafka and no Faust: what the store side allows, to compare (3) against;
5. **freshness at a fixed offered load** - a separate process publishes new events to a second
   topic at ``--rate`` events/s while the same app ingests them live. The publisher starts once
   the app holds its partitions: the figure is the app keeping up with the load, not catching up
   on what queued during its group join (that start-up backlog, a few seconds of load, had made
   the tail of earlier runs). The first ``--warmup`` seconds still start cold (the producer's
   first metadata, the consumer's first fetches after its assignment: the first events wait
   about 1.5 s), so freshness is printed for the steady state after them and for the whole run.
   Freshness here is *Kafka record timestamp -> committed store write covering the event* (the
   ``on_applied`` hook runs right after the commit), not the full refresh + serving path: that one
   adds a LightGCN refresh round and the index poll, measured by ``interest_graph.freshness`` in ``up``.

Events: users and items are both Zipf-distributed (a few heavy users and hub items, a long tail),
types follow :data:`streams.datasets.SYNTHETIC_TYPE_MIX`. Usage::

    .venv/bin/python bench/ingest.py --events 1000000 --rate 5000 --freshness-seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faust
import numpy as np
from aiokafka import AIOKafkaConsumer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.domain import SourcePosition, TopicPartition, UpsertBatch  # noqa: E402
from core.settings import Settings  # noqa: E402
from graph_store.ladybug import LadybugStore  # noqa: E402
from interest_graph.embedded_broker import TansuBroker  # noqa: E402
from streams.aggregate import SourceRecord, plan_batch  # noqa: E402
from streams.app import IngestApp  # noqa: E402
from streams.config import EventContract, IngestConfig  # noqa: E402
from streams.datasets import SYNTHETIC_TYPE_MIX, KeyedEvent  # noqa: E402
from streams.ingest import AppliedBatch  # noqa: E402
from streams.kafka_admin import create_topics  # noqa: E402
from streams.kafka_transport import kafka_transport  # noqa: E402
from streams.replay import replay  # noqa: E402
from streams.validation import encode_event, event_key  # noqa: E402

PARTITIONS = 4


def zipf_events(count: int, users: int, items: int, seed: int, exponent: float = 1.2) -> Iterator[KeyedEvent]:
    """``count`` events whose users and items are both Zipf-ranked (rank r has weight ~ r^-exponent)."""
    rng = np.random.default_rng(seed)
    types = list(SYNTHETIC_TYPE_MIX)
    type_p = np.array([SYNTHETIC_TYPE_MIX[t] for t in types])
    # Permute ranks so the heavy ids are not simply u0, u1, ... (and not one partition's keys).
    user_of_rank, item_of_rank = rng.permutation(users), rng.permutation(items)
    ts = int(time.time() * 1000) - 3_600_000
    for start in range(0, count, 10_000):
        n = min(10_000, count - start)
        user = user_of_rank[np.minimum(rng.zipf(exponent, n) - 1, users - 1)]
        item = item_of_rank[np.minimum(rng.zipf(exponent, n) - 1, items - 1)]
        kind = rng.choice(len(types), size=n, p=type_p / type_p.sum())
        for j in range(n):
            user_id = f"u{user[j]}"
            value = encode_event(user_id, f"i{item[j]}", types[kind[j]], ts + start + j,
                                 event_id=f"z{seed}-{start + j}")
            yield KeyedEvent(event_key(user_id), value, ts + start + j)


def quantiles(values: list[float], scale: float = 1.0) -> str:
    if not values:
        return "n/a"
    p50, p99 = np.percentile(np.asarray(values) * scale, [50, 99])
    return f"p50 {p50:.1f} / p99 {p99:.1f}"


async def aiokafka_ceiling(bootstrap: str, topic: str, count: int) -> float:
    """Events/s of a plain aiokafka consumer draining ``count`` records (no decoding)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    try:
        seen, started = 0, None
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            got = sum(len(records) for records in batches.values())
            if got and started is None:
                started = time.perf_counter()
            seen += got
        assert started is not None
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def run_app(app: faust.App, done: Callable[[], bool], timeout_s: float) -> float:
    """Start ``app`` in a fresh loop, run until ``done()``; returns ``perf_counter()`` at done."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if app.crash_reason is not None:
                raise RuntimeError(f"app crashed: {app.crash_reason!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {timeout_s} s")
            await asyncio.sleep(0.01)

    try:
        loop.run_until_complete(app.start())
        loop.run_until_complete(wait())
        return time.perf_counter()
    finally:
        loop.run_until_complete(app.stop())
        loop.close()
        asyncio.set_event_loop(None)


def noop_app(broker_url: str, topic: str, datadir: str,
             fetch_max_wait_s: float | None = None) -> tuple[faust.App, dict[str, float]]:
    """A Faust app whose one agent only take(5000)s, json-decodes and counts ``topic``'s records:
    Faust's own per-event cost. ``fetch_max_wait_s``: on our transport (:mod:`streams.kafka_transport`)
    with that fetch wait; ``None``: Faust's stock one. The dict counts ``seen`` and the
    ``perf_counter()`` of the ``first`` batch."""
    app = faust.App(f"bench-noop-{uuid.uuid4().hex[:8]}", broker=broker_url, datadir=datadir,
                    web_enabled=False, autodiscover=False, consumer_auto_offset_reset="earliest",
                    broker_max_poll_records=5000, broker_session_timeout=2.0, broker_rebalance_timeout=2.0,
                    broker_heartbeat_interval=0.3)
    if fetch_max_wait_s is not None:
        app.transport = kafka_transport(fetch_max_wait_s)(app.conf.broker_consumer, app)
    source = app.topic(topic, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw")
    state = {"seen": 0.0, "first": 0.0}

    @app.agent(source, concurrency=1)
    async def noop(stream: Any) -> None:
        async for values in stream.take(5000, within=0.05):
            if not state["first"]:
                state["first"] = time.perf_counter()
            for value in values:
                json.loads(value)
            state["seen"] += len(values)

    return app, state


def noop_faust_ceiling(config: IngestConfig, topic: str, count: int, datadir: str, *, ours: bool = False) -> float:
    """Events/s of :func:`noop_app` draining ``count`` records.

    ``ours``: with our transport (:mod:`streams.kafka_transport`) instead of Faust's stock one.
    """
    app, state = noop_app(config.broker_url, topic, datadir, config.broker_fetch_max_wait_s if ours else None)
    end = run_app(app, lambda: state["seen"] >= count, timeout_s=3600)
    return count / (end - state["first"])


class TimedStore(LadybugStore):
    """The LadybugDB store, timing every ``apply_batch`` (seconds, exact, per batch)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.batch_seconds: list[float] = []

    def apply_batch(self, batch: Any) -> int:
        started = time.perf_counter()
        seq = super().apply_batch(batch)
        self.batch_seconds.append(time.perf_counter() - started)
        return seq


def ingest_run(config: IngestConfig, store: TimedStore, count: int, datadir: str, timeout_s: float,
               when_ready: Callable[[], None] | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Run the real ingest app until ``count`` events are accepted.

    Returns (events/s, each accepted event's Kafka timestamp in epoch ms, its freshness in ms).
    ``when_ready`` is called once the app has its partitions and its applied offsets (the fixed
    load starts then, so freshness measures the app keeping up with it, not catching up after
    the group join).
    """
    ingest = IngestApp(config, store, datadir=datadir)
    first: list[tuple[float, int]] = []  # (time, events accepted) at the first commit
    sent_ms: list[np.ndarray] = []
    freshness: list[np.ndarray] = []
    ready_hook = when_ready

    def applied(batch: AppliedBatch) -> None:
        if not first:
            first.append((time.perf_counter(), ingest.stats.snapshot().events_accepted))
        sent_ms.append(batch.event_ms)
        freshness.append(batch.committed_ms - batch.event_ms)

    def done() -> bool:
        nonlocal ready_hook
        if ready_hook is not None and ingest.stats.snapshot().started and ingest.app.consumer.assignment():
            ready_hook()
            ready_hook = None
        return ingest.stats.snapshot().events_accepted >= count

    ingest.stats.on_applied = applied
    try:
        end = run_app(ingest.app, done, timeout_s)
    finally:
        ingest.close()
    # Counted from the first commit (the group join and the first batch are start-up, not throughput).
    since, accepted = first[0]
    rate = (ingest.stats.snapshot().events_accepted - accepted) / max(end - since, 1e-9)
    if not freshness:
        return rate, np.zeros(0), np.zeros(0)
    return rate, np.concatenate(sent_ms), np.concatenate(freshness)


def planned_batches(events: list[KeyedEvent], batch_size: int, contract: EventContract,
                    first_offset: int = 0) -> list[UpsertBatch]:
    """``events`` as one partition's records from ``first_offset`` on, planned (decode, validate,
    aggregate) ``batch_size`` at a time."""
    tp = TopicPartition("store-only", 0)
    now = int(time.time() * 1000) + 10**9
    records = [SourceRecord(value=e.value, key=e.key, position=SourcePosition(tp, first_offset + k),
                            timestamp_ms=e.ts_ms) for k, e in enumerate(events)]
    return [plan_batch(records[k:k + batch_size], {}, contract, "store-only", now).batch
            for k in range(0, len(records), batch_size)]


def store_only(events: list[KeyedEvent], batch_size: int, path: str, contract: EventContract) -> tuple[float, float]:
    """(plan events/s, apply events/s): the agent's two halves without Kafka or Faust, one batch at a time."""
    started = time.perf_counter()
    plans = planned_batches(events, batch_size, contract)
    planned = time.perf_counter()
    with LadybugStore(path) as store:
        store.ensure_schema()
        for batch in plans:
            store.apply_batch(batch)
    applied = time.perf_counter()
    return len(events) / (planned - started), len(events) / (applied - planned)


def publish_paced(bootstrap: str, topic: str, count: int, rate: float, users: int, items: int, seed: int) -> None:
    """Child process: publish ``count`` new events at ``rate``/s (kept off the consumer's GIL).

    The payloads are encoded before the first send: the load generator shares the machine's two
    cores with the system under test, so it does as little as it can while the load runs.
    """
    replay(list(zipf_events(count, users, items, seed)), bootstrap, topic, rate=rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="backlog events (default: 1,000,000)")
    parser.add_argument("--users", type=int, default=100_000, help="distinct users (default: 100,000)")
    parser.add_argument("--items", type=int, default=20_000, help="distinct items (default: 20,000)")
    parser.add_argument("--rate", type=float, default=5000.0, help="offered load for freshness, events/s "
                        "(default: 5000)")
    parser.add_argument("--freshness-seconds", type=float, default=30.0, help="length of the fixed-load run "
                        "(default: 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of the fixed load left out of the "
                        "steady-state freshness: producer connection, first fetches (default: 5)")
    parser.add_argument("--batch-max-events", type=int, default=5000, help="ingest batch size (default: 5000)")
    parser.add_argument("--batch-window", type=float, default=Settings().batch_window_s,
                        help="ingest batch window in seconds (default: the setting's default)")
    args = parser.parse_args()

    with TansuBroker() as broker, tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        backlog, live = f"bench-events-{uuid.uuid4().hex[:6]}", f"bench-live-{uuid.uuid4().hex[:6]}"
        config = IngestConfig.from_settings(Settings(
            broker_url=broker.url, events_topic=backlog, items_topic=f"{backlog}-items",
            dead_letter_topic=f"{backlog}-dead", consumer_group=f"bench-{uuid.uuid4().hex[:6]}",
            topic_partitions=PARTITIONS, batch_max_events=args.batch_max_events, batch_window_s=args.batch_window,
            broker_session_timeout_s=2.0, broker_rebalance_timeout_s=2.0))
        create_topics(broker.bootstrap, {backlog: PARTITIONS, live: PARTITIONS, config.items_topic: 1,
                                         config.dead_letter_topic: 1})
        started = time.perf_counter()
        replay(zipf_events(args.events, args.users, args.items, seed=1), broker.bootstrap, backlog)
        print(f"published {args.events:,} events in {time.perf_counter() - started:.1f} s "
              f"({args.users:,} Zipf users, {args.items:,} Zipf items, {PARTITIONS} partitions)", flush=True)

        raw = asyncio.run(aiokafka_ceiling(broker.bootstrap, backlog, args.events))
        print(f"ceiling  aiokafka consumer      {raw:10,.0f} events/s", flush=True)
        noop = noop_faust_ceiling(config, backlog, args.events, f"{tmp}/noop")
        print(f"ceiling  no-op Faust take(5000)  {noop:10,.0f} events/s   (Faust's stock transport)", flush=True)
        noop_ours = noop_faust_ceiling(config, backlog, args.events, f"{tmp}/noop-ours", ours=True)
        print(f"         no-op Faust take(5000)  {noop_ours:10,.0f} events/s   (our transport: "
              f"streams.kafka_transport, {noop_ours / noop:.2f}x stock)", flush=True)

        store = TimedStore(f"{tmp}/graph.lbdb")
        store.ensure_schema()
        try:
            rate, _, _ = ingest_run(config, store, args.events, f"{tmp}/ingest", timeout_s=7200)
            print(f"sustained ingest into LadybugDB  {rate:10,.0f} events/s "
                  f"({rate / noop:.0%} of no-op Faust, {rate / noop_ours:.0%} of it on our transport)"
                  f"   upsert batch ms {quantiles(store.batch_seconds, 1e3)} "
                  f"over {len(store.batch_seconds)} batches   store {store.counts()}", flush=True)

            faust_batch = max(1, round(args.events / max(len(store.batch_seconds), 1)))
            plan_rate, apply_rate = store_only(list(zipf_events(args.events, args.users, args.items, seed=1)),
                                               faust_batch, f"{tmp}/store-only.lbdb", config.contract)
            print(f"store alone (no Kafka, no Faust; batches of {faust_batch:,} events as Faust handed them): "
                  f"plan_batch {plan_rate:10,.0f} events/s   apply_batch {apply_rate:10,.0f} events/s", flush=True)

            live_count = int(args.rate * args.freshness_seconds)
            producer = multiprocessing.get_context("spawn").Process(
                target=publish_paced, args=(broker.bootstrap, live, live_count, args.rate, args.users, args.items, 2))
            store.batch_seconds.clear()
            live_config = dataclasses.replace(config, events_topic=live, consumer_group=f"{config.consumer_group}-live")
            load_started_ms = 0.0

            def start_load() -> None:
                nonlocal load_started_ms
                load_started_ms = time.time() * 1000
                producer.start()

            try:
                _, sent_ms, fresh = ingest_run(live_config, store, live_count, f"{tmp}/live",
                                               timeout_s=args.freshness_seconds * 4 + 120, when_ready=start_load)
            finally:
                if producer.pid is not None:
                    producer.join()
            steady = fresh[sent_ms >= load_started_ms + args.warmup * 1000]
            print(f"fixed load {args.rate:,.0f} events/s for {args.freshness_seconds:.0f} s, started once the "
                  f"consumer was ready: freshness ms (Kafka timestamp -> committed store write) "
                  f"steady state (events sent after the first {args.warmup:.0f} s, {len(steady):,} events) "
                  f"{quantiles(steady.tolist())}   whole run ({len(fresh):,} events) {quantiles(fresh.tolist())}"
                  f"   upsert batch ms {quantiles(store.batch_seconds, 1e3)} over {len(store.batch_seconds)} "
                  f"batches", flush=True)
        finally:
            store.close()


if __name__ == "__main__":
    main()
