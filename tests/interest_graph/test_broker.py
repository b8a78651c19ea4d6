"""The Tansu launcher: starts on a free port, serves Kafka, creates topics idempotently, stops."""

from __future__ import annotations

import socket

import pytest
from kafka import KafkaAdminClient

from interest_graph.broker import BrokerStartError, TansuBroker, cluster_id, create_topics, free_port

pytestmark = pytest.mark.integration


def test_broker_serves_kafka_until_stopped() -> None:
    broker = TansuBroker().start()
    try:
        assert broker.running and broker.url == f"kafka://127.0.0.1:{broker.port}"
        assert cluster_id(broker.bootstrap) == broker.cluster_id != TansuBroker().cluster_id  # fresh per start
        assert create_topics([broker.bootstrap], {"a": 3, "b": 1}) == ["a", "b"]
        assert create_topics(broker.bootstrap, {"a": 3, "c": 2}) == ["c"]  # existing topics are left alone
        admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap])
        try:
            partitions = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(["a", "b", "c"])}
        finally:
            admin.close()
        assert partitions == {"a": 3, "b": 1, "c": 2}
    finally:
        broker.stop()
    assert not broker.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", broker.port), timeout=1):
        pass


def test_taken_port_fails_fast() -> None:
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(BrokerStartError), TansuBroker(port=port, start_timeout_s=5):
            pass


def test_missing_binary_is_reported() -> None:
    with pytest.raises(BrokerStartError, match="not found"):
        TansuBroker(binary="/nonexistent/tansu").start()
