"""Faust failure modes through the real agent, broker and store: bad input, replays, a stalled agent.

* fuzzed bad events: every one lands in the dead-letter topic with the reason validation gives,
  the valid ones are applied exactly;
* a hung store write shows as ``ig_ingest_stalled`` while events wait, and clears afterwards.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from graph_store.ladybug import LadybugStore
from interest_graph.metrics import StackCollector
from interest_graph.status_metrics import parse_exposition
from streams.config import EventContract
from streams.datasets import KeyedEvent
from streams.replay import replay
from streams.validation import Rejection, validate_event
from tests.fixtures.broker import KafkaTopics
from tests.streams.test_ingest_integration import (
    T0,
    applied_count,
    make_events,
    pump,
    read_dead_letters,
    running_ingest,
    stored_totals,
)

pytestmark = pytest.mark.integration

JUNK = [None, True, -1, 0, 2**63, 1e308, "", "  ", "\u0000", "\U0001f600" * 300, "x" * 5000, [1], {"a": 1},
        "nan", -(10**15), 10**16]


def bad_payloads(seed: int) -> list[bytes]:
    """Valid events with one or two fields replaced by junk or removed, plus raw garbage; all invalid."""
    rng = random.Random(seed)
    base = {"v": 1, "event_id": "e", "user_id": "u1", "item_id": "i1", "type": "click", "ts": T0}
    out: list[bytes] = [b"", b"{", b"\xff\xfe", b"null", b"[]", b'"text"', b"1e999", json.dumps(base).encode("utf-16")]
    for name, junk in itertools.product(["v", "event_id", "user_id", "item_id", "type", "ts"], JUNK):
        event = dict(base)
        if rng.random() < 0.15:
            event.pop(name)
        else:
            event[name] = junk
        out.append(json.dumps(event, allow_nan=True).encode("utf-8"))
    for name in ("weight", "rating", "ts"):
        out.append(json.dumps(base | {name: float("nan")}, allow_nan=True).encode())
        out.append(json.dumps(base | {name: float("-inf")}, allow_nan=True).encode())
    return out


def test_fuzzed_bad_events_are_all_dead_lettered_with_their_reason(kafka_topics: KafkaTopics,
                                                                   ladybug_store: LadybugStore,
                                                                   tmp_path: Path) -> None:
    settings = kafka_topics.settings(batch_max_events=50)
    now = int(time.time() * 1000)
    contract = EventContract.from_settings(settings)
    bad = [raw for raw in bad_payloads(seed=41) if isinstance(validate_event(raw, contract, now), Rejection)]
    assert len(bad) > 80
    expected_reasons = Counter(str(validate_event(raw, contract, now).reason) for raw in bad)  # type: ignore[union-attr]
    good, expected = make_events(500, users=8, items=8, seed=42)
    mixed = list(good)
    rng = random.Random(43)
    for raw in bad:
        mixed.insert(rng.randrange(len(mixed) + 1), KeyedEvent(b"u1", raw, T0))
    with running_ingest(settings, ladybug_store, tmp_path / "faust") as ingest:
        replay(mixed, kafka_topics.bootstrap, kafka_topics.events)
        pump(ingest, lambda: applied_count(ladybug_store, kafka_topics.offsets_group) == len(mixed), 60,
             "every record applied or dead-lettered")
        assert ingest.app.crash_reason is None
        counters = ingest.stats.snapshot().dead_lettered
    letters = read_dead_letters(kafka_topics, len(bad), timeout_s=20)
    assert sorted(letter.original or b"" for letter in letters) == sorted(bad)
    assert all(letter.reason and letter.message for letter in letters)
    assert Counter(letter.reason for letter in letters) == expected_reasons == Counter(counters)
    assert stored_totals(ladybug_store) == expected


def _stalled(collector: StackCollector) -> float:
    registry = CollectorRegistry()
    registry.register(collector)
    collector.sample()  # read lag now, not the last reading
    reading = parse_exposition(generate_latest(registry).decode(), time.monotonic())
    return reading.value("ig_ingest_stalled", -1.0)


def test_a_hung_store_write_is_reported_as_a_stall(kafka_topics: KafkaTopics, ladybug_store: LadybugStore,
                                                   tmp_path: Path) -> None:
    events, _ = make_events(300, users=5, items=5, seed=45)
    settings = kafka_topics.settings(stall_after_s=1.0)
    with running_ingest(settings, ladybug_store, tmp_path / "faust") as ingest:
        collector = StackCollector(settings, ingest=ingest.stats)
        assert _stalled(collector) == 0.0
        # The store's own write lock, held here, hangs the agent's store call the way a stuck
        # database would: the agent cannot commit, lag stays up.
        with ladybug_store._write_lock:
            replay(events, kafka_topics.bootstrap, kafka_topics.events)
            pump(ingest, lambda: _stalled(collector) == 1.0, 30, "the stall to be reported")
        pump(ingest, lambda: ingest.stats.snapshot().events_accepted >= len(events), 30, "the agent to resume")
        pump(ingest, lambda: _stalled(collector) == 0.0, 30, "the stall to clear")


def test_oversized_events_are_dead_lettered_and_the_agent_keeps_running(kafka_topics: KafkaTopics,
                                                                        ladybug_store: LadybugStore,
                                                                        tmp_path: Path) -> None:
    """Issue 11's crash loop: one valid event with a 500,000-character user_id killed the worker on
    every restart (its dead letter was over the producer's limit). Now records of 100 kB, 500 kB and
    the broker's maximum are dead-lettered as too_large, cut, and the valid events around them stored."""
    from kafka import KafkaProducer

    settings = kafka_topics.settings(batch_max_events=40)
    limit = settings.broker_max_message_bytes
    repro = json.dumps({"v": 1, "event_id": "e", "user_id": "u" * 500_000, "item_id": "i1", "type": "click",
                        "ts": T0}).encode()
    big = [repro, b"x" * 100_000, b'{"user_id": "' + b"\xc3\xbc" * 250_000 + b'"}', b"\xff" * limit]
    good, expected = make_events(400, users=8, items=8, seed=46)
    mixed: list[tuple[bytes, bytes]] = [(e.key, e.value) for e in good]
    rng = random.Random(47)
    for value in big:
        mixed.insert(rng.randrange(len(mixed) + 1), (b"u1", value))
    # A third party's producer: the broker's limit plus room for the batch header, as kcat's default allows.
    producer = KafkaProducer(bootstrap_servers=kafka_topics.bootstrap, acks="all", max_request_size=limit + 4096,
                             linger_ms=5)
    try:
        for key, value in mixed:
            producer.send(kafka_topics.events, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close(5)
    with running_ingest(settings, ladybug_store, tmp_path / "faust") as ingest:
        pump(ingest, lambda: applied_count(ladybug_store, kafka_topics.offsets_group) == len(mixed), 90,
             "every record applied or dead-lettered")
        assert ingest.app.crash_reason is None
        assert ingest.stats.snapshot().dead_lettered == {"too_large": len(big)}
        assert ingest.dead_letters.minimal_sent == 0
    letters = sorted(read_dead_letters(kafka_topics, len(big), timeout_s=20),
                     key=lambda letter: letter.original_length or 0)
    assert [letter.original_length for letter in letters] == sorted(len(value) for value in big)
    for letter in letters:
        value = next(v for v in big if len(v) == letter.original_length)
        assert letter.reason == "too_large" and letter.original_truncated and not letter.minimal
        assert letter.original_sha256 == hashlib.sha256(value).hexdigest()
        assert letter.original is not None and value.startswith(letter.original)
        assert len(letter.original) <= settings.dead_letter_max_original_bytes
    assert stored_totals(ladybug_store) == expected
