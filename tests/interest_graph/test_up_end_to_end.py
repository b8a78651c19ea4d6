"""The whole path through a real ``interest-graph up`` process: Kafka → Faust → LadybugDB → GNN refresh → gRPC.

The stack runs as a child process (as a user runs it) against the session's Tansu broker, with its
store and model in a temporary folder. A clustered synthetic graph is replayed first so a new
user's few clicks have neighbours to borrow interests from.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaProducer

from interest_graph.broker import free_port
from interest_graph.domain import EventType
from interest_graph.settings import Settings
from serving.client import RecommenderClient, RecommenderError
from streams.datasets import ClusteredInterests
from streams.lag import LagProbe
from streams.replay import publish_items, replay
from streams.validation import encode_event, event_key
from tests.fixtures.broker import KafkaTopics

pytestmark = pytest.mark.integration

CLUSTERS = 6
T = TypeVar("T")


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.as_environ()}


def _eventually(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except (RecommenderError, grpc.RpcError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout_s} s (last error: {last})")


@pytest.fixture
def stack(kafka_topics: KafkaTopics, tmp_path: Path) -> Iterator[tuple[Settings, subprocess.Popen[bytes]]]:
    settings = kafka_topics.settings(
        store_path=str(tmp_path / "graph.lbdb"), model_dir=str(tmp_path / "model"),
        grpc_addr=f"127.0.0.1:{free_port()}", metrics_port=0, refresh_interval_s=0.1,
    )
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "interest_graph.cli", "up", "--external-broker"],
                            env=_env(settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield settings, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _publish(settings: Settings, user: str, items: list[str], kind: EventType, ts_ms: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for n, item in enumerate(items):
        producer.send(settings.events_topic, key=event_key(user),
                      value=encode_event(user, item, kind, ts_ms + n))
    producer.flush()
    producer.close()


def _cluster_share(items: list[Any], cluster: int) -> float:
    clusters = Counter(int(it.item_id[1:]) % CLUSTERS for it in items)
    return clusters[cluster] / max(1, len(items))


def test_new_user_gets_fresh_recommendations_through_the_live_stack(
        stack: tuple[Settings, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    settings, proc = stack
    world = ClusteredInterests(users=120, items=300, clusters=CLUSTERS, in_cluster=0.9, seed=7)
    publish_items(world.catalog(), settings.bootstrap_servers, settings.items_topic)
    sent = replay(list(world.events(6000)), settings.bootstrap_servers, settings.events_topic)
    assert sent == 6000

    probe = LagProbe(settings.bootstrap_servers)
    _eventually("lag to reach zero",
                lambda: sum(p.lag for p in probe.topic_lag(settings.events_topic, settings.consumer_group)) == 0
                or None, timeout_s=90)
    train = subprocess.run([sys.executable, "-m", "interest_graph.cli", "train", "--epochs", "20"],
                           env=_env(settings), capture_output=True, timeout=300)
    assert train.returncode == 0, train.stderr.decode()
    assert proc.poll() is None, (tmp_path / "up.log").read_text()

    with grpc.insecure_channel(settings.grpc_addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        _eventually("health SERVING", lambda: health.Check(health_pb2.HealthCheckRequest(service=""),
                                                           timeout=2).status
                    == health_pb2.HealthCheckResponse.SERVING or None)

    client = RecommenderClient(settings.grpc_addr, timeout_s=3.0)
    newcomer = "brand-new-user"
    with pytest.raises(RecommenderError) as unknown:
        client.recommend(newcomer, k=10)
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND

    first_cluster, second_cluster = 2, 5
    now = int(time.time() * 1000)
    _publish(settings, newcomer, [f"i{first_cluster + CLUSTERS * r}" for r in range(3)], EventType.CLICK, now)
    first = _eventually("a recommendation for the new user",
                        lambda: client.recommend(newcomer, k=10, exclude_seen=True), timeout_s=20)
    assert len(first.items) == 10
    # Borrowed from neighbours: mostly items of the cluster the user clicked in.
    assert _cluster_share(first.items, first_cluster) >= 0.5

    _publish(settings, newcomer, [f"i{second_cluster + CLUSTERS * r}" for r in range(10)], EventType.PURCHASE,
             now + 10)
    changed = _eventually(
        "the recommendation to follow the new purchases",
        lambda: (reply := client.recommend(newcomer, k=10, exclude_seen=True)).embedding_version
        > first.embedding_version and reply.items != first.items and reply, timeout_s=20)
    assert _cluster_share(changed.items, second_cluster) > _cluster_share(first.items, second_cluster)
    client.close()

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, (tmp_path / "up.log").read_text()
