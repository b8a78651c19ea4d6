"""Real Tansu + real LadybugDB: exact totals, dead letters, and a SIGKILLed worker that restarts.

Event weights are multiples of 0.25, so float sums are exact whatever the batching: "exact" below
means ``==``, not approximately.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer

from core.domain import EventType, ItemMeta, NodeId
from core.settings import Settings
from graph_store.base import GraphStore
from graph_store.ladybug import LadybugStore
from interest_graph.embedded_broker import TansuBroker
from streams.app import IngestApp
from streams.config import IngestConfig
from streams.datasets import KeyedEvent
from streams.dead_letter import DeadLetter, decode_dead_letter
from streams.kafka_admin import create_topics
from streams.replay import publish_items, replay
from streams.validation import encode_event, event_key
from tests.fixtures.broker import KafkaTopics
from tests.fixtures.store import crashed_store_copy

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
EdgeTotals = dict[tuple[str, str], tuple[float, int]]


def make_events(count: int, users: int, items: int, seed: int) -> tuple[list[KeyedEvent], EdgeTotals]:
    """Events over few (user, item) pairs, so edges repeat within and across batches."""
    rng = random.Random(seed)
    events: list[KeyedEvent] = []
    weights: dict[tuple[str, str], float] = defaultdict(float)
    counts: Counter[tuple[str, str]] = Counter()
    for n in range(count):
        user, item = f"u{rng.randrange(users)}", f"i{rng.randrange(items)}"
        weight = rng.choice([0.25, 0.5, 1.0, 2.0, 3.75])
        kind = rng.choice(list(EventType))
        value = encode_event(user, item, kind, T0 + n, event_id=f"e{seed}-{n}", weight=weight)
        events.append(KeyedEvent(event_key(user), value, T0 + n))
        weights[(user, item)] += weight
        counts[(user, item)] += 1
    return events, {edge: (weights[edge], counts[edge]) for edge in weights}


def stored_totals(store: GraphStore) -> EdgeTotals:
    snap = store.snapshot()
    totals: EdgeTotals = {}
    for u, i, w in zip(snap.user_index, snap.item_index, snap.weight, strict=True):
        user, item = snap.user_ids[u], snap.item_ids[i]
        edge = store.edge(user, item)
        assert edge is not None
        totals[(user, item)] = (edge.weight, edge.count)
        assert float(w) == pytest.approx(edge.weight)
    return totals


def applied_count(store: GraphStore, group: str) -> int:
    """Records applied so far: offsets are 0-based and contiguous per partition."""
    return sum(offset + 1 for offset in store.applied_offsets(group).values())


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def read_dead_letters(topics: KafkaTopics, expected: int, timeout_s: float = 10.0) -> list[DeadLetter]:
    consumer = KafkaConsumer(topics.dead_letter, bootstrap_servers=topics.bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=500)
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(letters) < expected and time.monotonic() < deadline:
            letters.extend(decode_dead_letter(m.value) for m in consumer)
    finally:
        consumer.close()
    return letters


@contextlib.contextmanager
def running_ingest(settings: Settings, store: GraphStore, datadir: Path,
                   commit_interval_s: float | None = None) -> Iterator[IngestApp]:
    """The Faust app started in this thread's own event loop (no Worker: no signal handlers);
    ``commit_interval_s`` overrides how often Faust commits offsets to Kafka."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ingest = IngestApp(IngestConfig.from_settings(settings), store, datadir=str(datadir))
    if commit_interval_s is not None:
        ingest.app.conf.broker_commit_interval = commit_interval_s
    loop.run_until_complete(ingest.app.start())
    try:
        yield ingest
    finally:
        loop.run_until_complete(ingest.app.stop())
        ingest.close()
        loop.close()
        asyncio.set_event_loop(None)


def pump(ingest: IngestApp, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Run the event loop the agents live in until ``condition`` holds (fail fast if the app crashed)."""
    loop = asyncio.get_event_loop()

    async def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if ingest.app.crash_reason is not None:
                raise AssertionError(f"ingest crashed: {ingest.app.crash_reason!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            await asyncio.sleep(0.02)

    loop.run_until_complete(wait())


def test_stored_weights_equal_event_sums_across_batches(kafka_topics: KafkaTopics,
                                                        ladybug_store: LadybugStore, tmp_path: Path) -> None:
    events, expected = make_events(3000, users=20, items=15, seed=1)
    settings = kafka_topics.settings(batch_max_events=97)  # many batches, edges repeat within and across
    with running_ingest(settings, ladybug_store, tmp_path / "faust") as ingest:
        assert replay(events[:1000], kafka_topics.bootstrap, kafka_topics.events) == 1000
        pump(ingest, lambda: ingest.stats.snapshot().events_accepted >= 1000, 30, "first 1000 events")
        replay(events[1000:], kafka_topics.bootstrap, kafka_topics.events)
        pump(ingest, lambda: ingest.stats.snapshot().events_accepted >= len(events), 30, "all events")
        stats = ingest.stats.snapshot()
    assert stored_totals(ladybug_store) == expected
    assert applied_count(ladybug_store, kafka_topics.offsets_group) == len(events)
    assert stats.events_accepted == len(events)
    assert stats.batches > 1 and stats.dead_lettered_total == 0


def test_malformed_events_are_dead_lettered_and_ingest_goes_on(kafka_topics: KafkaTopics,
                                                               ladybug_store: LadybugStore, tmp_path: Path) -> None:
    good, expected = make_events(400, users=5, items=5, seed=2)
    bad = {
        b"{oops": "bad_json",
        b"\xff\xfe\xfd": "bad_json",
        b"[1, 2]": "not_object",
        encode_event("u1", "i1", "click", T0).replace(b'"click"', b'"hover"'): "unknown_event_type",
        encode_event("u1", "i1", "click", 5): "absurd_ts",
        encode_event("u1", "i1", "click", T0, weight=1.0).replace(b"1.0", b"-1.0"): "bad_weight",
        encode_event("u1", "", "click", T0): "empty_id",
    }
    mixed = list(good)
    for n, value in enumerate(bad):
        mixed.insert(50 * n + 3, KeyedEvent(b"u1", value, T0))
    settings = kafka_topics.settings(batch_max_events=64)
    with running_ingest(settings, ladybug_store, tmp_path / "faust") as ingest:
        replay(mixed, kafka_topics.bootstrap, kafka_topics.events)
        pump(ingest, lambda: ingest.stats.snapshot().events_accepted >= len(good), 30, "the valid events")
        pump(ingest, lambda: applied_count(ladybug_store, kafka_topics.offsets_group) == len(mixed), 10,
             "offsets past the rejects")
        counters = ingest.stats.snapshot().dead_lettered
    letters = read_dead_letters(kafka_topics, len(bad))
    assert sorted((letter.original, letter.reason) for letter in letters) == sorted(bad.items())
    assert all(letter.topic == kafka_topics.events and letter.key == b"u1" and letter.message
               for letter in letters)
    assert counters == dict(Counter(bad.values()))
    assert stored_totals(ladybug_store) == expected


def test_catalog_records_reach_the_store(kafka_topics: KafkaTopics, ladybug_store: LadybugStore,
                                         tmp_path: Path) -> None:
    items = [ItemMeta(NodeId("i1"), "Toy Story (1995)", ("Animation",), "pixar"),
             ItemMeta(NodeId("i2"), "Heat (1995)"),
             ItemMeta(NodeId("i1"), "Toy Story (1995)", ("Animation", "Comedy"), "pixar, fun")]  # update
    settings = kafka_topics.settings()
    with running_ingest(settings, ladybug_store, tmp_path / "faust") as ingest:
        publish_items(items, kafka_topics.bootstrap, kafka_topics.items)
        replay([KeyedEvent(b"i3", b'{"item_id": 3}', T0)], kafka_topics.bootstrap, kafka_topics.items)
        pump(ingest, lambda: len(ladybug_store.item_meta([NodeId("i1"), NodeId("i2")])) == 2, 30, "the items")
        pump(ingest, lambda: ingest.stats.snapshot().dead_lettered.get("wrong_type") == 1, 10, "the invalid record")
    meta = ladybug_store.item_meta([NodeId("i1"), NodeId("i2"), NodeId("i3")])
    assert meta == {NodeId("i1"): items[2], NodeId("i2"): items[1]}
    [letter] = read_dead_letters(kafka_topics, 1)
    assert (letter.reason, letter.field, letter.topic) == ("wrong_type", "item_id", kafka_topics.items)


def test_sigkilled_worker_restarts_without_loss_or_double_counting(kafka_topics: KafkaTopics,
                                                                   tmp_path: Path) -> None:
    events, expected = make_events(6000, users=50, items=40, seed=3)
    store_path = tmp_path / "graph.lbdb"
    env = {**os.environ, "PYTHONPATH": str(REPO), "IG_STORE": "ladybug", "IG_STORE_PATH": str(store_path),
           "IG_BROKER_URL": kafka_topics.broker.url, "IG_EVENTS_TOPIC": kafka_topics.events,
           "IG_ITEMS_TOPIC": kafka_topics.items, "IG_DEAD_LETTER_TOPIC": kafka_topics.dead_letter,
           "IG_CONSUMER_GROUP": kafka_topics.group, "IG_BROKER_SESSION_TIMEOUT": "2",
           "IG_BROKER_REBALANCE_TIMEOUT": "2", "IG_BATCH_MAX_EVENTS": "100", "IG_METRICS_PORT": "0"}
    replay(events, kafka_topics.bootstrap, kafka_topics.events)
    # Progress is read from the group's committed offsets: the worker commits only what the store
    # holds, and polling the store beside its writer would slow the writer down.
    admin = KafkaAdminClient(bootstrap_servers=kafka_topics.bootstrap)

    def committed() -> int:
        offsets = admin.list_group_offsets(kafka_topics.group).get(kafka_topics.group, {})
        return sum(max(meta.offset, 0) for meta in offsets.values())

    log_path = tmp_path / "worker.log"

    def start_worker() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen([sys.executable, "-m", "interest_graph.cli", "ingest"], cwd=REPO, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)

    worker = start_worker()
    try:
        wait_until(lambda: committed() >= len(events) // 5, 60, "the worker to apply a fifth of the events")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        with crashed_store_copy(str(store_path), tmp_path / "at-kill") as at_kill:
            killed_at = applied_count(at_kill, kafka_topics.offsets_group)
        assert committed() <= killed_at < len(events), "the kill was not mid-stream; the test proves nothing"
        worker = start_worker()
        wait_until(lambda: committed() >= len(events), 60, "the restarted worker to catch up")
    finally:
        admin.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, log_path.read_text(errors="replace")[-3000:]
    with LadybugStore(str(store_path), read_only=True) as reader:
        assert stored_totals(reader) == expected
        assert applied_count(reader, kafka_topics.offsets_group) == len(events)


def test_restarted_empty_broker_does_not_inherit_applied_offsets(kafka_topics: KafkaTopics,
                                                                 ladybug_store: LadybugStore,
                                                                 tmp_path: Path) -> None:
    """A memory-backed Tansu restarts empty and numbers records from 0 again: none may be skipped."""
    first, first_totals = make_events(300, users=4, items=4, seed=4)
    with running_ingest(kafka_topics.settings(), ladybug_store, tmp_path / "faust") as ingest:
        replay(first, kafka_topics.bootstrap, kafka_topics.events)
        pump(ingest, lambda: ingest.stats.snapshot().events_accepted >= len(first), 30, "the first broker's events")
    second, second_totals = make_events(100, users=4, items=4, seed=5)
    with TansuBroker() as restarted:
        topics = dataclasses.replace(kafka_topics, broker=restarted)
        create_topics(topics.bootstrap, {topics.events: topics.partitions, topics.items: 1, topics.dead_letter: 1})
        with running_ingest(topics.settings(), ladybug_store, tmp_path / "faust2") as ingest:
            replay(second, topics.bootstrap, topics.events)
            pump(ingest, lambda: ingest.stats.snapshot().events_accepted >= len(second), 30,
                 "the second broker's events")
    assert applied_count(ladybug_store, topics.offsets_group) == len(second)
    totals = stored_totals(ladybug_store)
    for edge, (weight, count) in second_totals.items():
        before = first_totals.get(edge, (0.0, 0))
        assert totals[edge] == (before[0] + weight, before[1] + count)


def test_consumer_fetch_wait_comes_from_settings(kafka_topics: KafkaTopics, ladybug_store: LadybugStore,
                                                 tmp_path: Path) -> None:
    """Faust fixes the fetch wait at 1.5 s, which Tansu waits out on every fetch; ours is the setting."""
    settings = kafka_topics.settings(broker_fetch_max_wait_s=0.05)
    with running_ingest(settings, ladybug_store, tmp_path / "faust") as ingest:
        consumer = ingest.app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]  # Faust internals
        assert consumer._fetch_max_wait_ms == 50
        events, _ = make_events(50, users=5, items=5, seed=3)
        replay(events, kafka_topics.bootstrap, kafka_topics.events)
        pump(ingest, lambda: ingest.stats.snapshot().events_accepted >= 50, 30, "events through the custom transport")
