"""Publish recorded events to Kafka in time order, at a chosen rate: demos, benchmarks, backfills.

Events keep their own timestamps (the ``ts`` field); the replay only paces *publishing*. Keys are
the user ids (see :func:`streams.validation.event_key`), so each user's events land on one
partition in order, which is what per-partition offsets and ``last_ts_ms`` rely on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from kafka import KafkaProducer
from tqdm import tqdm

from core.domain import ItemMeta
from streams.catalog import encode_item
from streams.datasets import KeyedEvent


class RatePacer:
    """Sleeps so that the ``n``-th call happens no earlier than ``n / rate`` seconds after the first.

    Pacing against the start time (not per event) absorbs jitter: a slow send is made up by the
    following ones instead of lowering the average rate. It sleeps only once it is at least ``tick``
    ahead, so events go out in small bursts (10 per 2 ms at 5,000/s) rather than one sleep per
    event: per-event sleeps of 0.2 ms cost the publisher more CPU than its sends, CPU that a
    benchmark on the same machine takes from the system under test.

    Args:
        rate (float, optional): events per second; ``None`` means no pacing (default: ``None``).
        tick (float): shortest sleep, in seconds (default: ``0.002`` s).
    """

    def __init__(self, rate: float | None = None, tick: float = 0.002) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 events/s, got {rate}")
        if tick < 0:
            raise ValueError(f"tick must be >= 0 s, got {tick}")
        self.rate = rate
        self.tick = tick
        self._start: float | None = None
        self._sent = 0

    def wait(self) -> None:
        if self.rate is None:
            return
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        ahead = self._start + self._sent / self.rate - now
        if ahead >= self.tick:
            time.sleep(ahead)
        self._sent += 1


def _producer(bootstrap: Sequence[str] | str) -> KafkaProducer:
    servers = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
    # acks="all": a replay that returned has every event on the broker.
    return KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5, batch_size=256 * 1024)


def replay(events: Iterable[KeyedEvent], bootstrap: Sequence[str] | str, topic: str,
           rate: float | None = None, progress: bool = False, total: int | None = None) -> int:
    """Publish ``events`` (already in time order) to ``topic``, keyed by user; returns how many.

    Args:
        events (Iterable[KeyedEvent]): the events, in the order to publish them.
        bootstrap (Sequence[str] | str): ``host:port`` of the brokers.
        topic (str): the events topic.
        rate (float, optional): events per second; ``None`` publishes as fast as possible (default: ``None``).
        progress (bool): show a tqdm progress bar (default: ``False``).
        total (int, optional): number of events, for the progress bar when ``events`` has no
            ``len`` (default: ``None``).
    """
    if total is None and isinstance(events, Sequence):
        total = len(events)
    pacer = RatePacer(rate)
    producer = _producer(bootstrap)
    count = 0
    try:
        with tqdm(total=total, disable=not progress, unit="ev", desc=f"replay -> {topic}") as bar:
            for event in events:
                pacer.wait()
                producer.send(topic, key=event.key, value=event.value)
                count += 1
                bar.update(1)
        producer.flush()
    finally:
        producer.close()
    return count


def publish_items(items: Iterable[ItemMeta], bootstrap: Sequence[str] | str, topic: str) -> int:
    """Publish catalog records to the items topic, keyed by item id; returns how many."""
    producer = _producer(bootstrap)
    count = 0
    try:
        for item in items:
            producer.send(topic, key=item.item_id.encode("utf-8"), value=encode_item(item))
            count += 1
        producer.flush()
    finally:
        producer.close()
    return count
