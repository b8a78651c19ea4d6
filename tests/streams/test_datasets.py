"""Event sources: MovieLens in time order with stable ids, the clustered synthetic generator."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import streams.replay as replay_module
from core.domain import EventType, InteractionEvent, NodeId
from streams.config import EventContract
from streams.datasets import MOVIELENS_DIR, ClusteredInterests, movielens_events, movielens_items
from streams.replay import RatePacer
from streams.validation import validate_event

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
needs_movielens = pytest.mark.skipif(not (DATASETS / MOVIELENS_DIR / "ratings.csv").exists(),
                                     reason=f"MovieLens not found under {DATASETS}")
NOW = 2_000_000_000_000
CONTRACT = EventContract()


def valid(value: bytes) -> InteractionEvent:
    event = validate_event(value, CONTRACT, NOW)
    assert isinstance(event, InteractionEvent), event
    return event


@needs_movielens
def test_movielens_events_are_valid_ratings_in_time_order() -> None:
    events = movielens_events(DATASETS, limit=2000)
    assert len(events) == 2000
    decoded = [valid(e.value) for e in events]
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events) == [d.ts_ms for d in decoded]
    first = decoded[0]
    assert first.type is EventType.RATING and first.rating is not None
    assert first.event_id == f"ml-{first.user_id}-{first.item_id}-{first.ts_ms}"
    assert first.weight == first.rating * CONTRACT.weight_rating_per_star
    assert all(e.key == d.user_id.encode() for e, d in zip(events, decoded, strict=True))
    assert movielens_events(DATASETS, limit=50) == events[:50]  # deterministic


@needs_movielens
def test_movielens_items_carry_genres_and_tags() -> None:
    items = {item.item_id: item for item in movielens_items(DATASETS)}
    toy_story = items[NodeId("1")]
    assert toy_story.title == "Toy Story (1995)"
    assert "Animation" in toy_story.categories
    assert "pixar" in toy_story.text
    assert all(item.categories != ("(no genres listed)",) for item in items.values())


def test_synthetic_events_are_valid_deterministic_and_clustered() -> None:
    world = ClusteredInterests(users=200, items=400, clusters=4, in_cluster=0.9, seed=7)
    events = list(world.events(5000))
    assert events == list(ClusteredInterests(200, 400, 4, 0.9, seed=7).events(5000))
    assert events != list(ClusteredInterests(200, 400, 4, 0.9, seed=8).events(5000))
    decoded = [valid(e.value) for e in events]
    assert [d.ts_ms for d in decoded] == sorted(d.ts_ms for d in decoded)
    assert set(Counter(d.type for d in decoded)) == set(EventType)
    same = sum(world.user_cluster(d.user_id) == world.item_cluster(d.item_id) for d in decoded)
    assert same / len(decoded) > 0.85  # 0.9 planted, plus chance hits from the uniform part
    assert len({d.event_id for d in decoded}) == len(decoded)
    assert all(json.loads(e.value)["user_id"].encode() == e.key for e in events)


def test_drifting_users_move_to_the_next_cluster_staggered() -> None:
    world = ClusteredInterests(users=300, items=600, clusters=4, in_cluster=1.0, seed=3, drift_every=2000,
                               mean_gap_ms=60_000)
    decoded = [valid(e.value) for e in world.events(8000)]
    # Every event stays in the cluster its user has at that point of the stream...
    assert all(world.user_cluster(d.user_id, n) == world.item_cluster(d.item_id) for n, d in enumerate(decoded))
    # ...which moves by one every 2,000 events, at a different point for different users.
    # u5's offset is 5 * 7919 % 2000 = 1595: its first move comes after 405 events.
    assert [world.user_cluster("u5", n) for n in (0, 404, 405, 2404, 2405)] == [1, 1, 2, 2, 3]
    first_moves = {next(n for n in range(1, 2001) if world.user_cluster(f"u{u}", n) != world.user_cluster(f"u{u}", 0))
                   for u in range(50)}
    assert len(first_moves) > 40
    for user in range(50):
        at = [world.user_cluster(f"u{user}", n) for n in range(0, 8000, 2000)]
        assert [(b - a) % 4 for a, b in itertools.pairwise(at)] == [1, 1, 1]
    gaps = np.diff([d.ts_ms for d in decoded])
    assert 50_000 < gaps.mean() < 70_000  # the stream spans about 8,000 minutes
    assert ClusteredInterests(10, 20, 2).user_cluster("u3", 10**6) == 1  # no drift by default


def test_skewed_users_have_a_heavy_head_and_a_late_long_tail() -> None:
    decoded = [valid(e.value) for e in ClusteredInterests(500, 600, 4, seed=2, user_skew=1.0).events(20_000)]
    per_user = Counter(d.user_id for d in decoded)
    counts = sorted(per_user.values(), reverse=True)
    assert counts[0] > 20 * counts[len(counts) // 2]  # rank^-1: the head is far above the median
    first_seen = {}
    for n, d in enumerate(decoded):
        first_seen.setdefault(d.user_id, n)
    assert max(first_seen.values()) > len(decoded) // 2  # some users arrive in the stream's second half
    assert len(Counter(e.key for e in ClusteredInterests(500, 600, 4, seed=2).events(20_000))) == 500  # uniform


def test_synthetic_catalog_names_every_item() -> None:
    world = ClusteredInterests(users=3, items=10, clusters=2)
    catalog = world.catalog()
    assert [item.item_id for item in catalog] == [f"i{m}" for m in range(10)]
    assert catalog[3].categories == ("cluster-1",)


def test_bad_generator_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="items >= clusters"):
        ClusteredInterests(users=10, items=2, clusters=4)


def test_rate_pacer_refuses_non_positive_rates() -> None:
    for rate in (0, -5.0):
        with pytest.raises(ValueError, match="rate must be > 0"):
            RatePacer(rate)


def test_rate_pacer_keeps_the_rate_sleeping_in_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 100.0}
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock["now"] += seconds

    monkeypatch.setattr(replay_module.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(replay_module.time, "sleep", sleep)
    pacer = RatePacer(1000.0, tick=0.005)
    for _ in range(101):  # sends take no time: the pacer alone sets the pace
        pacer.wait()
    assert clock["now"] - 100.0 >= 0.1 - 0.005  # the 101st call is due 0.1 s after the first
    assert len(sleeps) <= 20 and min(sleeps) >= 0.005  # at most one sleep per 5 events, none under a tick
