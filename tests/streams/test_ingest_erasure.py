"""Erasure through the ingest step against a real LadybugStore: once, in order, and for good."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import streams.ingest
from core.domain import NodeId, SourcePosition, TopicPartition
from core.privacy import ForgetKey, Privacy
from core.retry import RetryPolicy
from graph_store.ladybug import LadybugStore
from streams.aggregate import SourceRecord
from streams.config import EventContract
from streams.ingest import EventIngestor, IngestStats, StoreWriter
from streams.validation import encode_erasure_request, encode_event
from tests.fixtures.store import full_scan
from tests.streams.test_ingest import Collected

T0 = 1_700_000_000_000
TP = TopicPartition("ev", 0)
OTHER_TP = TopicPartition("ev", 1)
PRIVACY = Privacy(forget_key=ForgetKey(b"ingest-erasure-test-key-0123"))


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def ingestor(store: LadybugStore, executor: ThreadPoolExecutor, stats: IngestStats | None = None) -> EventIngestor:
    stats = stats if stats is not None else IngestStats()
    writer = StoreWriter(store, executor, stats, retry=RetryPolicy(first_s=0.01))
    return EventIngestor(EventContract(), writer, Collected(), stats, group="g", privacy=PRIVACY)


def click(user: str, item: str, offset: int, tp: TopicPartition = TP) -> SourceRecord:
    return SourceRecord(encode_event(user, item, "click", T0 + offset), user.encode(), SourcePosition(tp, offset))


def forget(user: str, offset: int, tp: TopicPartition = TP) -> SourceRecord:
    return SourceRecord(encode_erasure_request(user, T0), user.encode(), SourcePosition(tp, offset))


def test_erasure_applies_once_and_later_events_of_the_user_are_ignored(
        ladybug_store: LadybugStore, executor: ThreadPoolExecutor) -> None:
    stats = IngestStats()
    first = ingestor(ladybug_store, executor, stats)
    asyncio.run(first.ingest([click("gone", "i1", 0), click("kept", "i1", 1), click("gone", "i2", 2)]))
    asyncio.run(first.ingest([forget("gone", 3), click("gone", "i3", 4)]))
    assert "gone" not in full_scan(ladybug_store)
    assert ladybug_store.edge(NodeId("kept"), NodeId("i1")) is not None
    counts = stats.snapshot()
    assert (counts.users_forgotten, counts.events_forgotten, counts.events_accepted) == (1, 1, 3)

    # A restart: the redelivered request is skipped by its offset, not applied again.
    restarted = ingestor(ladybug_store, executor, stats)
    asyncio.run(restarted.load_offsets())
    seq = ladybug_store.counts()["seq"]
    asyncio.run(restarted.ingest([forget("gone", 3), click("gone", "i3", 4)]))
    assert ladybug_store.counts()["seq"] == seq and stats.snapshot().users_forgotten == 1
    # The user's old events replayed at new offsets (a producer resending them): the deny-list holds.
    asyncio.run(restarted.ingest([click("gone", "i1", 5), click("gone", "i2", 6), click("kept", "i2", 7)]))
    assert "gone" not in full_scan(ladybug_store)
    assert ladybug_store.edge(NodeId("kept"), NodeId("i2")) is not None


def test_a_deny_entry_another_worker_wrote_is_read_again(
        ladybug_store: LadybugStore, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's event that reached another partition (a producer partitioning differently) is ignored too."""
    monkeypatch.setattr(streams.ingest, "DENY_LIST_REFRESH_S", 0.0)  # as if a second had passed
    mine, theirs = ingestor(ladybug_store, executor), ingestor(ladybug_store, executor)
    asyncio.run(mine.load_offsets())
    assert not mine.denied
    asyncio.run(theirs.ingest([click("gone", "i1", 0), forget("gone", 1)]))
    asyncio.run(mine.ingest([click("gone", "i9", 0, OTHER_TP)]))
    assert "gone" not in full_scan(ladybug_store)
    assert PRIVACY.forget_key.digest("gone") in mine.denied
