"""Histogram, freshness tracker, stall detector and the status parser: the pure parts of the metrics."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from core.domain import EmbeddingUpdate
from core.histogram import Histogram
from core.settings import Settings
from interest_graph.freshness import STAGES, FreshnessTracker
from interest_graph.metrics import StackCollector
from interest_graph.status_metrics import parse_exposition, render_metrics
from models.refresh import WrittenRound
from streams.ingest import AppliedBatch, IngestSnapshot, IngestStats
from streams.stall import StallDetector


def test_histogram_bulk_and_single_observations_agree_and_quantiles_interpolate() -> None:
    one, bulk = Histogram((1.0, 2.0, 4.0)), Histogram((1.0, 2.0, 4.0))
    values = np.array([0.5, 1.5, 1.5, 3.0, 10.0])
    for v in values:
        one.observe(float(v))
    bulk.observe_many(values)
    assert one.snapshot() == bulk.snapshot()
    snap = bulk.snapshot()
    assert snap.cumulative == (1, 3, 4, 5) and snap.count == 5 and snap.total == values.sum()
    assert snap.quantile(0.5) == 1.0 + (2.5 - 1) / 2  # rank 2.5 inside the (1, 2] bucket
    assert snap.quantile(1.0) == 4.0 and math.isnan(Histogram().snapshot().quantile(0.5))


def _batch(seq: int, event_ms: list[int], at: int) -> AppliedBatch:
    """A batch received at ``at``, planned 10 ms and committed 30 ms later."""
    return AppliedBatch(seq, np.asarray(event_ms, dtype=np.int64), received_ms=at, planned_ms=at + 10,
                        committed_ms=at + 30)


def _round(version: int, cursor: int, started: int) -> WrittenRound:
    """A round that read changes at ``started``, computed 100 ms and wrote 150 ms later."""
    update = EmbeddingUpdate(version=version, cursor=cursor, rows=[])
    return WrittenRound(update, started_ms=started, computed_ms=started + 100, written_ms=started + 150)


def test_freshness_observes_each_event_once_when_the_index_holds_a_round_covering_it() -> None:
    tracker = FreshnessTracker()
    tracker.batch_applied(_batch(1, [1_000, 1_500], at=1_600))
    tracker.batch_applied(_batch(2, [2_000, 0], at=2_100))  # 0 = no Kafka timestamp: not measured
    tracker.round_written(_round(version=1, cursor=1, started=1_700))
    assert tracker.index_holds(1, at_ms=3_000) == 2
    assert tracker.index_holds(1, at_ms=9_000) == 0  # observed once
    tracker.round_written(_round(version=2, cursor=5, started=2_200))
    assert tracker.index_holds(2, at_ms=4_000) == 1
    snap = tracker.histogram.snapshot()
    assert snap.count == 3 and snap.total == 2.0 + 1.5 + 2.0
    assert tracker.pending_batches == 0 and tracker.oldest_pending_age_s() == 0.0


def test_freshness_stages_add_up_to_the_total() -> None:
    tracker = FreshnessTracker()
    tracker.batch_applied(_batch(7, [1_000], at=1_200))
    tracker.round_written(_round(version=3, cursor=9, started=1_250))
    tracker.index_holds(3, at_ms=1_480)
    stages = {values[0]: snap.total for values, snap in tracker.stages.snapshots().items()}
    assert stages == pytest.approx({"broker_to_agent": 0.2, "batch_plan": 0.01, "store_commit": 0.02,
                                    "refresh_wait": 0.02, "refresh_round": 0.1, "embedding_handoff": 0.05,
                                    "index_swap": 0.08})
    assert sum(stages.values()) == pytest.approx(tracker.histogram.snapshot().total) == 0.48
    recent = tracker.recent_quantiles((0.5,))
    assert recent["total"] == pytest.approx([0.48]) and recent["refresh_round"] == pytest.approx([0.1])


def test_freshness_of_a_batch_served_at_its_commit_skips_the_refresh_stages_and_is_observed_once() -> None:
    tracker = FreshnessTracker()
    assert tracker.batch_served(_batch(3, [1_000, 1_100], at=1_200), served_ms=1_235) == 2
    tracker.round_written(_round(version=1, cursor=3, started=1_300))  # a later round does not count it again
    assert tracker.index_holds(1, at_ms=2_000) == 0 and tracker.pending_batches == 0
    stages = {values[0]: snap.total for values, snap in tracker.stages.snapshots().items()}
    assert stages == pytest.approx({"broker_to_agent": 0.2 + 0.1, "batch_plan": 0.02, "store_commit": 0.04,
                                    "refresh_wait": 0.0, "refresh_round": 0.0, "embedding_handoff": 0.0,
                                    "index_swap": 0.01})
    assert tracker.histogram.snapshot().total == pytest.approx(0.235 + 0.135)


def test_freshness_of_a_round_the_loader_served_before_its_report_is_observed_late_not_early() -> None:
    tracker = FreshnessTracker()
    tracker.batch_applied(_batch(1, [int(time.time() * 1000) - 500], at=int(time.time() * 1000) - 400))
    tracker.index_holds(4)  # the loader read version 4 from the store first
    tracker.round_written(_round(version=4, cursor=1, started=int(time.time() * 1000) - 300))
    snap = tracker.histogram.snapshot()
    assert snap.count == 1 and snap.total >= 0.5


def test_stall_needs_pending_lag_and_no_write_for_the_whole_period() -> None:
    detector = StallDetector(after_s=10)
    assert not detector.observe(5, last_write_ms=0, now_ms=100_000).stalled  # lag just appeared
    assert not detector.observe(5, last_write_ms=0, now_ms=105_000).stalled
    assert detector.observe(5, last_write_ms=0, now_ms=110_000).stalled
    assert not detector.observe(5, last_write_ms=109_000, now_ms=112_000).stalled  # it wrote meanwhile
    assert not detector.observe(0, last_write_ms=109_000, now_ms=200_000).stalled  # nothing pending


def test_status_reads_what_the_collector_exports() -> None:
    stats = IngestStats(IngestSnapshot(events_accepted=7))
    stats.count_dead_letters(["bad_json", "bad_json"])
    stats.upsert_seconds.observe(0.02)
    registry = CollectorRegistry()
    registry.register(StackCollector(Settings(), ingest=stats, probe_lag=False))
    reading = parse_exposition(generate_latest(registry).decode(), at_s=1.0)
    assert reading.value("ig_events_accepted_total") == 7
    assert reading.by_label("ig_events_dead_lettered_total", "reason") == {"bad_json": 2.0}
    hist = reading.histogram("ig_ingest_upsert_seconds")
    assert hist is not None and hist.count == 1
    text = "\n".join(render_metrics(reading))
    assert "accepted 7 since start" in text and "bad_json=2" in text and "upsert batch" in text


def test_status_renders_several_grpc_series() -> None:
    from serving.interceptors import MetricsInterceptor

    grpc_metrics = MetricsInterceptor()
    grpc_metrics.histograms.child("interestgraph.v1.Recommender", "Recommend", "OK").observe(0.002)
    grpc_metrics.histograms.child("interestgraph.v1.Recommender", "Recommend", "NOT_FOUND").observe(0.001)
    grpc_metrics.histograms.child("interestgraph.v1.Recommender", "GetStatus", "OK").observe(0.004)
    registry = CollectorRegistry()
    registry.register(StackCollector(Settings(), grpc=grpc_metrics, probe_lag=False))
    reading = parse_exposition(generate_latest(registry).decode(), at_s=1.0)
    lines = [line for line in render_metrics(reading) if line.startswith("grpc ")]
    assert [line.split()[1:3] for line in lines] == [
        ["GetStatus", "OK"], ["Recommend", "NOT_FOUND"], ["Recommend", "OK"]]


def test_status_shows_the_last_minute_of_freshness_and_every_stage_is_exported() -> None:
    tracker = FreshnessTracker()
    now = int(time.time() * 1000)
    tracker.batch_applied(_batch(1, [now - 900, now - 700], at=now - 600))
    tracker.round_written(_round(version=1, cursor=1, started=now - 500))
    tracker.index_holds(1, at_ms=now - 200)
    registry = CollectorRegistry()
    registry.register(StackCollector(Settings(), freshness=tracker, probe_lag=False))
    reading = parse_exposition(generate_latest(registry).decode(), at_s=1.0)
    assert reading.by_label("ig_freshness_last_minute_seconds", "quantile") == pytest.approx(
        {"0.5": 0.6, "0.99": 0.698})
    assert set(reading.by_label("ig_freshness_stage_last_minute_seconds", "stage")) == set(STAGES)
    line = next(line for line in render_metrics(reading) if "last minute" in line)
    assert "p50 600 ms" in line and "p99 698 ms" in line


def test_a_sampling_collector_answers_scrapes_from_its_last_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once its thread samples, a scrape never waits for the broker: it exports the last reading."""
    import threading

    from streams.lag import PartitionLag

    collector = StackCollector(Settings())
    reads: list[float] = []

    def read_lag() -> tuple[list[PartitionLag], int]:
        reads.append(time.monotonic())
        return [PartitionLag("events", 0, committed=3, end=10)], 7

    monkeypatch.setattr(collector, "_read_lag", read_lag)  # the broker's answer, without a broker
    stop = threading.Event()
    collector.start_sampling(stop, every_s=3600.0)
    try:
        deadline = time.monotonic() + 10
        while not reads and time.monotonic() < deadline:
            time.sleep(0.01)
        registry = CollectorRegistry()
        registry.register(collector)
        for _ in range(3):
            reading = parse_exposition(generate_latest(registry).decode(), at_s=1.0)
            assert reading.value("ig_dead_letter_topic_records") == 7
            assert reading.value("ig_broker_up") == 1.0
        assert len(reads) == 1  # the scrapes read nothing themselves
    finally:
        stop.set()
