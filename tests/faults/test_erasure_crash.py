"""A SIGKILLed ``up`` in the middle of a stream that mixes erasure requests with events.

Erasures ride the ingest transaction with their offsets, so after the kill and a restart every
request is applied exactly once: the forgotten users' edges are gone whichever side of the kill
their events and their request fell, and every other user's totals are exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.privacy import ForgetKey
from graph_store.ladybug import LadybugStore
from streams.datasets import KeyedEvent
from streams.replay import replay
from streams.validation import encode_erasure_request, event_key
from tests.fixtures.broker import KafkaTopics
from tests.fixtures.stack import UpProcess, caught_up, committed, eventually, stack_settings
from tests.fixtures.store import full_scan
from tests.streams.test_ingest_integration import applied_count, make_events, stored_totals

pytestmark = pytest.mark.integration

ERASURE_KEY = "erasure-crash-test-key-012345"
#: Users erased somewhere in the stream: each has events before and after its request.
FORGOTTEN = ("u3", "u17", "u42")


def test_erasures_survive_a_kill_mid_stream_exactly_once(kafka_topics: KafkaTopics, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_ERASURE_KEY", ERASURE_KEY)  # a secret reaches the child from the environment
    events, expected = make_events(8000, users=60, items=50, seed=33)
    stream: list[KeyedEvent] = list(events)
    for n, user in enumerate(FORGOTTEN):  # spread over the stream, so the kill falls among them
        at = 2000 * (n + 1)
        stream.insert(at, KeyedEvent(event_key(user), encode_erasure_request(user, 1_700_000_000_000), 0))
    settings = stack_settings(kafka_topics, tmp_path, batch_max_events=100)
    up = UpProcess(settings, tmp_path).start()
    try:
        replay(stream, settings.bootstrap_servers, settings.events_topic)
        eventually("a third of the records committed", lambda: committed(settings) >= len(stream) // 3, 90, 0.05)
        up.kill()
        up.start()
        eventually("the stack to catch up", lambda: caught_up(settings, len(stream)), 120)
    finally:
        code = up.stop()
    assert code == 0, up.log_tail()
    with LadybugStore(settings.store_path, read_only=True) as reader:
        assert applied_count(reader, kafka_topics.offsets_group) == len(stream)
        assert stored_totals(reader) == {edge: total for edge, total in expected.items() if edge[0] not in FORGOTTEN}
        scan = full_scan(reader)
        assert not any(f"'{user}'" in scan for user in FORGOTTEN)
        key = ForgetKey(ERASURE_KEY.encode())
        assert sorted(f.digest for f in reader.forgotten_users()) == sorted(key.digest(u) for u in FORGOTTEN)
