"""The broker restarts under a running stack (Tansu with memory storage: it comes back empty).

A restarted memory-backed Tansu is a new cluster: topics are gone and offsets start at 0 again.
The running stack must reconnect, notice the new cluster id (applied offsets are keyed by it, so
the old cluster's offsets cannot mask new records), and apply the new events exactly once. With
a durable Kafka the same restart only pauses ingest: topics and committed offsets survive.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from graph_store.ladybug import LadybugStore
from interest_graph.embedded_broker import TansuBroker, free_port
from serving.client import RecommenderClient
from streams.kafka_admin import create_topics
from streams.replay import replay
from tests.fixtures.broker import KafkaTopics
from tests.fixtures.stack import UpProcess, assert_everything_refreshed, caught_up, eventually, stack_settings
from tests.streams.test_ingest_integration import make_events, stored_totals

pytestmark = pytest.mark.integration


def _create(topics: KafkaTopics) -> None:
    create_topics(topics.bootstrap, {topics.events: topics.partitions, topics.items: 1, topics.dead_letter: 1})


def test_stack_survives_a_broker_restart_and_applies_the_new_clusters_events(kafka_topics: KafkaTopics,
                                                                             tmp_path: Path) -> None:
    port = free_port()
    first, first_totals = make_events(1500, users=20, items=20, seed=31)
    second, second_totals = make_events(1000, users=20, items=20, seed=32)
    broker = TansuBroker(port=port).start()
    topics = dataclasses.replace(kafka_topics, broker=broker)
    _create(topics)
    settings = stack_settings(topics, tmp_path)
    up = UpProcess(settings, tmp_path).start()
    try:
        replay(first, settings.bootstrap_servers, settings.events_topic)
        eventually("the first broker's events", lambda: caught_up(settings, len(first)), 90)
        broker.stop()
        broker = TansuBroker(port=port).start()  # same address, empty, new cluster id
        _create(topics)
        replay(second, settings.bootstrap_servers, settings.events_topic)
        eventually("the restarted broker's events", lambda: caught_up(settings, len(second)), 120)
        with RecommenderClient(settings.grpc_addr, timeout_s=3.0) as client:
            assert client.serving()
        assert up.alive(), up.log_tail()
    finally:
        code = up.stop()
        broker.stop()
    assert code == 0, up.log_tail()
    with LadybugStore(settings.store_path, read_only=True) as reader:
        totals = stored_totals(reader)
        assert_everything_refreshed(reader)
    expected = {edge: (first_totals.get(edge, (0.0, 0))[0] + second_totals.get(edge, (0.0, 0))[0],
                       first_totals.get(edge, (0.0, 0))[1] + second_totals.get(edge, (0.0, 0))[1])
                for edge in first_totals.keys() | second_totals.keys()}
    assert totals == expected
