"""Erasure and pseudonymous ids through a real ``interest-graph up``: Kafka -> Faust -> LadybugDB -> gRPC.

A forgotten user leaves no trace in the store (a full scan of every table), serving answers them
as an unknown user, no reply to anyone else names them, and neither a restart nor a redelivery of
their old events brings them back. With ``IG_ID_KEY`` no raw user id reaches the store, the
dead-letter topic, the metrics or the log.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from core.privacy import PSEUDONYM_PATTERN
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from proto import recommender_pb2 as pb
from serving.client import RecommenderClient
from streams.datasets import ClusteredInterests
from streams.validation import encode_event, event_key
from tests.fixtures.broker import KafkaTopics
from tests.fixtures.stack import REPO, UpProcess, caught_up, eventually, stack_settings
from tests.fixtures.store import full_scan

pytestmark = pytest.mark.integration

GONE = "alice@example.com"
#: Another user with the same items, so the graph evidence of their replies would cite GONE.
NEIGHBOUR = "bob"
ITEMS = [f"i{n}" for n in range(0, 30, 3)]


def _publish(settings: Settings, values: list[tuple[str, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for user, value in values:
        producer.send(settings.events_topic, key=event_key(user), value=value)
    producer.flush()
    producer.close()


def _user_events(user: str, ts_ms: int) -> list[tuple[str, bytes]]:
    return [(user, encode_event(user, item, "purchase", ts_ms + n, event_id=f"{user}-{item}"))
            for n, item in enumerate(ITEMS)]


def _seed(settings: Settings) -> int:
    """A clustered graph plus GONE and NEIGHBOUR sharing ITEMS; how many records were published."""
    world = ClusteredInterests(users=40, items=60, clusters=3, in_cluster=0.9, seed=3)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    events = list(world.events(1200))
    for event in events:
        producer.send(settings.events_topic, key=event.key, value=event.value)
    producer.flush()
    producer.close()
    ts = events[-1].ts_ms
    _publish(settings, _user_events(GONE, ts) + _user_events(NEIGHBOUR, ts))
    return len(events) + 2 * len(ITEMS)


def _every_reply(client: RecommenderClient, users: list[str]) -> str:
    """The text of every method's reply for these users (and similar items of ITEMS)."""
    replies: list[object] = []
    for user in users:
        replies += [client.recommend(user, k=20), client.friends(user, k=50)]
        replies += [client.explain(user, item, limit=50) for item in ITEMS[:3]]
    replies += [client.similar_items(item, k=20) for item in ITEMS[:3]]
    return "\n".join(str(reply) for reply in replies)


def _cites(client: RecommenderClient, user: str) -> bool:
    return user in _every_reply(client, [NEIGHBOUR])


@pytest.fixture
def stack(kafka_topics: KafkaTopics, tmp_path: Path) -> Iterator[tuple[Settings, UpProcess]]:
    settings = stack_settings(kafka_topics, tmp_path, metrics_port=0)
    up = UpProcess(settings, tmp_path).start()
    try:
        yield settings, up
    finally:
        up.stop()


def test_forget_erases_a_user_everywhere_and_for_good(stack: tuple[Settings, UpProcess]) -> None:
    settings, up = stack
    published = _seed(settings)
    with RecommenderClient(settings.grpc_addr, timeout_s=5.0) as client:
        eventually("the seed to be served", lambda: caught_up(settings, published), timeout_s=120)
        assert client.recommend(GONE).source != pb.RECOMMEND_SOURCE_TRENDING
        eventually("the neighbour's replies to cite the user", lambda: _cites(client, GONE))

        reply = client.forget([GONE])
        assert reply.topic == settings.events_topic and len(reply.receipts) == 1
        published += 1
        eventually("the erasure to be applied", lambda: caught_up(settings, published), timeout_s=60)
        gone = client.recommend(GONE, k=10)
        assert gone.source == pb.RECOMMEND_SOURCE_TRENDING and gone.embedding_age_ms == 0
        eventually("serving to drop the user", lambda: not _cites(client, GONE), timeout_s=30)
        others = [f"u{n}" for n in range(0, 40, 4)] + [NEIGHBOUR]
        assert GONE not in _every_reply(client, others)

        _publish(settings, _user_events(GONE, 1_700_000_000_000))  # a redelivery of their old events
        published += len(ITEMS)
        eventually("the redelivery to be consumed", lambda: caught_up(settings, published), timeout_s=60)
        assert client.recommend(GONE).source == pb.RECOMMEND_SOURCE_TRENDING
    assert up.stop() == 0
    with LadybugStore(settings.store_path, read_only=True) as store:
        assert GONE not in full_scan(store) and len(store.user_row(GONE).items) == 0  # type: ignore[arg-type]

    up.start()  # a restart reloads the deny-list from the store
    with RecommenderClient(settings.grpc_addr, timeout_s=5.0) as client:
        client.wait_until_serving(timeout_s=60)
        _publish(settings, _user_events(GONE, 1_700_000_001_000))
        published += len(ITEMS)
        eventually("the events after the restart to be consumed", lambda: caught_up(settings, published),
                   timeout_s=90)
        assert client.recommend(GONE).source == pb.RECOMMEND_SOURCE_TRENDING
        assert not _cites(client, GONE)
    assert up.stop() == 0
    with LadybugStore(settings.store_path, read_only=True) as store:
        assert GONE not in full_scan(store)


def _dead_letters(settings: Settings) -> bytes:
    consumer = KafkaConsumer(settings.dead_letter_topic, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        return b"\n".join((record.key or b"") + b" " + (record.value or b"") for record in consumer)
    finally:
        consumer.close()


def _metrics(settings: Settings) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_pseudonymous_ids_keep_raw_ids_out_of_store_dead_letters_metrics_and_log(
        kafka_topics: KafkaTopics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Secrets reach a child from the environment only (Settings.as_environ leaves them out).
    monkeypatch.setenv("IG_ID_KEY", "pseudonym-key-of-the-test-0123")
    monkeypatch.setenv("IG_ERASURE_KEY", "erasure-key-of-the-test-45678")
    settings = stack_settings(kafka_topics, tmp_path)
    up = UpProcess(settings, tmp_path).start()
    try:
        published = _seed(settings)
        bogus = b'{"event_id": "x", "user_id": "alice@example.com", "item_id": "i3", "type": "bogus", "ts": 1}'
        _publish(settings, [(GONE, bogus)])
        published += 1
        with RecommenderClient(settings.grpc_addr, timeout_s=5.0) as client:
            eventually("the seed to be served", lambda: caught_up(settings, published), timeout_s=120)
            # Clients keep using the ids they know: serving maps them as ingest did.
            assert client.recommend(GONE).source != pb.RECOMMEND_SOURCE_TRENDING
            friends = client.friends(NEIGHBOUR, k=50).users
            assert friends and all(PSEUDONYM_PATTERN.match(f.user_id) for f in friends)
            assert b"bogus" not in _dead_letters(settings) and b"alice" not in _dead_letters(settings)
            assert b'"redacted":true' in _dead_letters(settings)
            assert "alice" not in _metrics(settings) and "ig_" in _metrics(settings)

            forget = subprocess.run([sys.executable, "-m", "interest_graph.cli", "forget", GONE], cwd=REPO,
                                    env={**dict(__import__("os").environ), **settings.as_environ()},
                                    capture_output=True, text=True, timeout=60)
            assert forget.returncode == 0, forget.stderr
            published += 1
            eventually("the erasure to be applied", lambda: caught_up(settings, published), timeout_s=60)
            assert client.recommend(GONE).source == pb.RECOMMEND_SOURCE_TRENDING
    finally:
        assert up.stop() == 0
    with LadybugStore(settings.store_path, read_only=True) as store:
        scan = full_scan(store)
        users = store.snapshot().user_ids
    assert "alice" not in scan and "bob" not in scan and not re.search(r"'u\d+'", scan)
    assert users and all(PSEUDONYM_PATTERN.match(u) for u in users)
    assert "alice" not in up.log_tail(10**7)
