"""The Tansu launcher: starts on a free port, serves Kafka, creates topics idempotently, stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from interest_graph.embedded_broker import BrokerStartError, TansuBroker, free_port
from streams.kafka_admin import cluster_id, create_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


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


#: Starts a broker that keeps its state in argv[1], publishes argv[2] records, then waits to be killed.
_OWNER = """
import sys, time
from pathlib import Path
from kafka import KafkaProducer
from interest_graph.embedded_broker import TansuBroker
from streams.kafka_admin import create_topics
broker = TansuBroker(state_dir=Path(sys.argv[1])).start()
create_topics(broker.bootstrap, {"held": 1})
producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
for n in range(int(sys.argv[2])):
    producer.send("held", value=b"%d" % n)
producer.flush()
print(broker.port, broker.cluster_id, flush=True)
time.sleep(600)
"""


def _records(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], consumer_timeout_ms=2000, auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, 0)])
        return sum(1 for _ in consumer)
    finally:
        consumer.close()


def test_a_broker_left_by_a_killed_owner_is_reattached_with_what_it_holds(tmp_path: Path) -> None:
    """kill -9 of the owner's whole process group leaves the broker (own session) and its records;
    the next start on the same address and state folder re-attaches instead of failing on the port."""
    state_dir = tmp_path / "broker"
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(state_dir), "250"], cwd=REPO, stdout=subprocess.PIPE,
                             text=True, start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert owner.stdout is not None
        port, cluster = owner.stdout.readline().split()
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(10)
    pid = json.loads((state_dir / "tansu.json").read_text())["pid"]
    broker = TansuBroker(port=int(port), state_dir=state_dir).start()
    try:
        assert broker.reattached and broker.running and broker.cluster_id == cluster
        assert cluster_id(broker.bootstrap) == cluster and _records(broker.bootstrap, "held") == 250
    finally:
        broker.stop()
    assert not Path(f"/proc/{pid}").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()  # gone, or a zombie
    assert not (state_dir / "tansu.json").exists()


def test_a_stale_state_file_does_not_stop_a_fresh_start(tmp_path: Path) -> None:
    state_dir = tmp_path / "broker"
    state_dir.mkdir()
    # The pid of this test process: alive, but no Tansu broker.
    (state_dir / "tansu.json").write_text(json.dumps({"pid": os.getpid(), "cluster_id": "gone"}))
    with TansuBroker(state_dir=state_dir) as broker:
        assert not broker.reattached and broker.cluster_id != "gone"
        assert json.loads((state_dir / "tansu.json").read_text())["pid"] != os.getpid()


def test_up_on_a_port_taken_by_another_process_says_so_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        env = {**os.environ, "PYTHONPATH": str(REPO), "IG_BROKER_URL": f"kafka://127.0.0.1:{port}",
               "IG_STORE_PATH": str(tmp_path / "graph.lbdb"), "IG_METRICS_PORT": "0"}
        done = subprocess.run([sys.executable, "-m", "interest_graph.cli", "up"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"port 127.0.0.1:{port} is taken" in done.stderr and "IG_BROKER_URL" in done.stderr
