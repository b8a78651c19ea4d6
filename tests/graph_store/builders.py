"""Small builders shared by the graph_store tests (batches from plain tuples, a Python model)."""

from __future__ import annotations

from collections.abc import Iterable

from core.domain import EdgeDelta, EventType, NodeId, OffsetRange, TopicPartition, UpsertBatch

TOPIC = TopicPartition("ig-events", 0)


class OffsetClock:
    """Hands out consecutive offset ranges of one partition, as a consumer would see them."""

    def __init__(self, tp: TopicPartition = TOPIC) -> None:
        self.tp = tp
        self.next = 0

    def take(self, n: int = 1) -> dict[TopicPartition, OffsetRange]:
        rng = OffsetRange(self.next, self.next + n - 1)
        self.next += n
        return {self.tp: rng}


def delta(user: str, item: str, weight: float = 1.0, count: int = 1, ts: int = 1_000, **types: int) -> EdgeDelta:
    return EdgeDelta(NodeId(user), NodeId(item), weight, count, ts, {EventType(t): n for t, n in types.items()})


def batch(edges: Iterable[EdgeDelta], clock: OffsetClock, group: str) -> UpsertBatch:
    edges = list(edges)
    return UpsertBatch(edges, clock.take(max(len(edges), 1)), group=group)
