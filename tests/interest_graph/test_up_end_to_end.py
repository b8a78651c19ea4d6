"""The whole path through a real ``interest-graph up`` process: Kafka → Faust → LadybugDB → GNN refresh → gRPC.

The stack runs as a child process (as a user runs it) against the session's Tansu broker, with its
store and model in a temporary folder. A clustered synthetic graph is replayed first so a new
user's few clicks have neighbours to borrow interests from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaProducer

from core.domain import EventType
from core.settings import Settings
from proto import recommender_pb2 as pb
from serving.client import RecommenderClient
from streams.datasets import ClusteredInterests
from streams.lag import LagProbe
from streams.replay import publish_items, replay
from streams.validation import encode_event, event_key
from tests.fixtures.broker import KafkaTopics
from tests.fixtures.stack import UpProcess, eventually, stack_settings

pytestmark = pytest.mark.integration

CLUSTERS = 6


@pytest.fixture
def stack(kafka_topics: KafkaTopics, tmp_path: Path) -> Iterator[tuple[Settings, UpProcess]]:
    # The worker trains its own model once the graph has enough edges, as on a fresh deployment.
    # Personal lists only (no trending blended in): this test follows the fold-in of a user's own
    # clicks; tests/serving/test_trending_api.py covers blending.
    settings = stack_settings(kafka_topics, tmp_path, metrics_port=0, batch_max_events=5000,
                              bootstrap_min_edges=1000, blend_prior_interactions=0.0)
    up = UpProcess(settings, tmp_path).start()
    try:
        yield settings, up
    finally:
        up.stop()


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
        stack: tuple[Settings, UpProcess]) -> None:
    settings, up = stack
    world = ClusteredInterests(users=120, items=300, clusters=CLUSTERS, in_cluster=0.9, seed=7)
    publish_items(world.catalog(), settings.bootstrap_servers, settings.items_topic)
    sent = replay(list(world.events(6000)), settings.bootstrap_servers, settings.events_topic)
    assert sent == 6000

    probe = LagProbe(settings.bootstrap_servers)
    eventually("lag to reach zero",
                lambda: sum(p.lag for p in probe.topic_lag(settings.events_topic, settings.consumer_group)) == 0
                or None, timeout_s=90)
    train = subprocess.run([sys.executable, "-m", "interest_graph.cli", "train"],
                           env={**os.environ, **settings.as_environ()}, capture_output=True, timeout=300)
    assert train.returncode == 0, train.stderr.decode()
    assert up.alive(), up.log_tail()

    with grpc.insecure_channel(settings.grpc_addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        eventually("health SERVING", lambda: health.Check(health_pb2.HealthCheckRequest(service=""),
                                                           timeout=2).status
                    == health_pb2.HealthCheckResponse.SERVING or None)

    client = RecommenderClient(settings.grpc_addr, timeout_s=3.0)
    newcomer = "brand-new-user"
    # Nothing known of them yet: what is trending (the store's totals at start, then every commit).
    unknown = client.recommend(newcomer, k=10)
    assert unknown.source == pb.RECOMMEND_SOURCE_TRENDING and len(unknown.items) == 10
    assert [it.score for it in unknown.items] == sorted((it.score for it in unknown.items), reverse=True)

    first_cluster, second_cluster = 2, 5
    now = int(time.time() * 1000)
    _publish(settings, newcomer, [f"i{first_cluster + CLUSTERS * r}" for r in range(3)], EventType.CLICK, now)
    first = eventually("a personal recommendation for the new user",
                        lambda: (reply := client.recommend(newcomer, k=10, exclude_seen=True)).source
                        == pb.RECOMMEND_SOURCE_PERSONAL and reply, timeout_s=20)
    assert len(first.items) == 10
    # Borrowed from neighbours: mostly items of the cluster the user clicked in.
    assert _cluster_share(first.items, first_cluster) >= 0.5

    _publish(settings, newcomer, [f"i{second_cluster + CLUSTERS * r}" for r in range(10)], EventType.PURCHASE,
             now + 10)
    # Users are folded in from their committed rows, so the list follows the purchases as soon as
    # they are committed, whether or not a refresh round wrote a new embedding version meanwhile.
    changed = eventually(
        "the recommendation to follow the new purchases",
        lambda: (reply := client.recommend(newcomer, k=10, exclude_seen=True)).items != first.items
        and _cluster_share(reply.items, second_cluster) > _cluster_share(first.items, second_cluster)
        and reply, timeout_s=20)
    assert changed.embedding_version >= first.embedding_version
    client.close()

    assert up.stop() == 0, up.log_tail()
