"""The garbage collector in a long-running process: tuned once after start-up, every pass timed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from core.settings import Settings
from interest_graph.gc_pauses import GcPauses, tune_collector
from interest_graph.metrics import StackCollector


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Leave the interpreter's collector as the test found it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_every_pass_is_timed_by_generation_and_exported() -> None:
    pauses = GcPauses().watch()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        pauses.stop()
    snaps = pauses.snapshots()
    assert snaps[("0",)].count >= 1 and snaps[("2",)].count >= 1
    assert all(s.total >= 0 and s.cumulative[-1] == s.count for s in snaps.values())
    gc.collect(2)  # after stop: not counted
    assert pauses.snapshots()[("2",)].count == snaps[("2",)].count

    registry = CollectorRegistry()
    registry.register(StackCollector(Settings(), probe_lag=False, gc_pauses=pauses))
    text = generate_latest(registry).decode()
    assert 'ig_python_gc_pause_seconds_count{generation="2"}' in text
    assert 'ig_python_gc_pause_seconds_bucket{generation="0",le="+Inf"}' in text


def test_a_reader_inside_a_collection_does_not_deadlock() -> None:
    """The callback may run while the same thread reads the counts (a scrape that allocates)."""
    pauses = GcPauses().watch()
    seen: list[int] = []

    def read_during_collection(phase: str, _info: dict[str, int]) -> None:
        if phase == "stop":
            seen.append(sum(s.count for s in pauses.snapshots().values()))

    gc.callbacks.append(read_during_collection)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(read_during_collection)
        pauses.stop()
    assert seen and seen[-1] >= 1


def test_tuning_freezes_start_up_state_and_raises_the_young_threshold(collector_state: None) -> None:
    loaded = [{"row": n} for n in range(1000)]  # long-lived state start-up has loaded
    tune_collector(20_000)
    assert gc.get_threshold()[0] == 20_000
    assert gc.get_freeze_count() >= len(loaded)


def test_zero_leaves_the_collector_as_cpython_set_it(collector_state: None) -> None:
    before = gc.get_threshold()
    tune_collector(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
