"""Faults against a real ``interest-graph up``: SIGKILL mid-replay, a store held by another process.

In the embedded stack the Faust worker, the refresh worker and the gRPC server share one process
(LadybugDB admits one writer process), so SIGKILL takes all three down mid-replay at once; the
restart must then be exact (no event lost or counted twice), refresh every changed node, bring
lag back to zero and answer again. Event weights are multiples of 0.25, so "exact" is ``==``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graph_store.ladybug import LadybugStore
from interest_graph.embedded_broker import free_port
from serving.client import RecommenderClient
from streams.ingest import offsets_group
from streams.kafka_admin import cluster_id
from streams.replay import replay
from tests.fixtures.broker import KafkaTopics
from tests.fixtures.stack import (
    UpProcess,
    assert_everything_refreshed,
    caught_up,
    committed,
    eventually,
    stack_settings,
    topic_names,
)
from tests.fixtures.store import crashed_store_copy
from tests.streams.test_ingest_integration import applied_count, make_events, stored_totals

pytestmark = pytest.mark.integration


def broker_running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its reaper has an empty command line)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False

REPO = Path(__file__).resolve().parents[2]

#: Holds a LadybugDB store open read-write (the file lock) for argv[2] seconds, then exits. It opens
#: through LadybugStore, as every opener must: the store it gets was SIGKILLed, and LadybugDB's
#: defaults refuse a write-ahead log with a torn tail. "locked" is printed only once the open succeeded.
HOLD_LOCK = """
import sys, time
from graph_store.ladybug import LadybugStore
store = LadybugStore(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
store.close()
"""


def hold_store_lock(path: str, seconds: float) -> subprocess.Popen[str]:
    """A child process holding the store at ``path`` open read-write for ``seconds``, once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, path, str(seconds)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stderr is not None
    if holder.stdout.readline().strip() != "locked":
        holder.kill()
        _, stderr = holder.communicate(timeout=30)
        raise AssertionError(f"the lock holder could not open {path!r} (exit {holder.returncode}):\n{stderr}")
    return holder


def wait_for_holder(holder: subprocess.Popen[str], timeout_s: float) -> None:
    """The lock holder exits cleanly within ``timeout_s``; its stderr otherwise."""
    _, stderr = holder.communicate(timeout=timeout_s)
    assert holder.returncode == 0, f"the lock holder failed (exit {holder.returncode}):\n{stderr}"


def test_sigkilled_stack_restarts_exactly_even_while_the_store_is_locked(kafka_topics: KafkaTopics,
                                                                        tmp_path: Path) -> None:
    events, expected = make_events(8000, users=60, items=50, seed=21)
    settings = stack_settings(kafka_topics, tmp_path, batch_max_events=100)
    up = UpProcess(settings, tmp_path).start()
    try:
        replay(events, settings.bootstrap_servers, settings.events_topic)
        eventually("a fifth of the events committed", lambda: committed(settings) >= len(events) // 5, 90, 0.05)
        up.kill()  # Faust worker, refresh thread and gRPC server die together, mid-replay
        with crashed_store_copy(settings.store_path, tmp_path / "at-kill") as at_kill:
            killed_at = applied_count(at_kill, kafka_topics.offsets_group)
        assert committed(settings) <= killed_at < len(events), "the kill was not mid-replay; the test proves nothing"

        # Another process holds the store's lock for a few seconds: the restart waits, then resumes.
        holder = hold_store_lock(settings.store_path, 4.0)
        restarted_at = time.monotonic()
        up.start()
        eventually("the stack to catch up and refresh", lambda: caught_up(settings, len(events)), 120)
        wait_for_holder(holder, 10)
        assert time.monotonic() - restarted_at >= 3.0
        assert "graph store unavailable" in up.log_tail(200_000)
        with RecommenderClient(settings.grpc_addr, timeout_s=3.0) as client:
            assert client.serving()
            user = next(iter(expected))[0]
            assert len(client.recommend(user, k=5).items) == 5
    finally:
        code = up.stop()
    assert code == 0, up.log_tail()
    with LadybugStore(settings.store_path, read_only=True) as reader:
        assert stored_totals(reader) == expected
        assert applied_count(reader, kafka_topics.offsets_group) == len(events)
        assert_everything_refreshed(reader)


def test_up_killed_with_its_process_group_reattaches_its_broker_and_applies_every_event_once(
        kafka_topics: KafkaTopics, tmp_path: Path) -> None:
    """Issue 11: after kill -9 the embedded broker was an orphan on the port and `up` failed with a
    traceback. Now the same command re-attaches to it: events acknowledged before the kill, consumed
    or not, are applied exactly once, and a clean stop ends the broker. One oversized event from a
    librdkafka producer (kcat's library) rides along: it is dead-lettered, not a crash loop."""
    from confluent_kafka import Producer

    events, expected = make_events(6000, users=50, items=40, seed=23)
    settings = stack_settings(kafka_topics, tmp_path, batch_max_events=100,
                              broker_url=f"kafka://127.0.0.1:{free_port()}")
    up = UpProcess(settings, tmp_path, "up").start()  # its own embedded broker, as a user runs it
    try:
        eventually("the embedded broker and topics", lambda: (tmp_path / "broker" / "tansu.json").exists()
                   and settings.events_topic in topic_names(settings), 60)
        group = offsets_group(settings.consumer_group, cluster_id(settings.bootstrap_servers))
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers[0], "acks": "all",
                             "partitioner": "murmur2_random", "message.max.bytes": 2_000_000})
        oversized = json.dumps({"v": 1, "event_id": "big", "user_id": "u" * 500_000, "item_id": "i1",
                                "type": "click", "ts": 1_700_000_000_000}).encode()
        producer.produce(settings.events_topic, key=b"u-big", value=oversized)
        for event in events:
            producer.produce(settings.events_topic, key=event.key, value=event.value)
            producer.poll(0)
        assert producer.flush(60) == 0, "every event acknowledged by the broker before the kill"
        eventually("a fifth of the events committed", lambda: committed(settings) >= len(events) // 5, 90, 0.05)
        up.kill_group()
        broker_pid = json.loads((tmp_path / "broker" / "tansu.json").read_text())["pid"]
        assert committed(settings) < len(events) + 1, "the kill was not mid-stream; the test proves nothing"

        up.start()  # the same command
        eventually("the stack to catch up and refresh", lambda: caught_up(settings, len(events) + 1), 120)
        assert "re-attached to the Tansu broker" in up.log_tail(200_000)
        assert "Traceback" not in up.log_tail(200_000)
    finally:
        code = up.stop()
    assert code == 0, up.log_tail()
    assert not (tmp_path / "broker" / "tansu.json").exists()
    assert not broker_running(broker_pid), "a clean stop ends the embedded broker"
    with LadybugStore(settings.store_path, read_only=True) as reader:
        assert stored_totals(reader) == expected
        assert applied_count(reader, group) == len(events) + 1  # every record once, the oversized one included
