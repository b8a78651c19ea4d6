"""bench/freshness.py's own arithmetic: histogram deltas between scrapes, optional metrics, verdicts, pacing."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest

from interest_graph.status_metrics import parse_exposition

PATH = Path(__file__).resolve().parents[2] / "bench" / "freshness.py"
_spec = importlib.util.spec_from_file_location("bench_freshness", PATH)
assert _spec is not None and _spec.loader is not None
fresh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fresh)


def exposition(accepted: int, fast: int, slow: int, *, stages: bool = False, gauges: bool = False,
               gc_s: float | None = None) -> str:
    """A scrape with ``fast`` freshness observations under 0.5 s and ``slow`` ones in (1, 2] s."""
    def histogram(name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        rows = [f'{name}_bucket{{{labels}{sep}le="{le}"}} {n}' for le, n in
                (("0.5", fast), ("1.0", fast), ("2.0", fast + slow), ("+Inf", fast + slow))]
        return [*rows, f"{name}_sum{{{labels}}} {0.25 * fast + 1.5 * slow}", f"{name}_count{{{labels}}} {fast + slow}"]

    lines = ["# TYPE ig_events_accepted counter", f"ig_events_accepted_total {accepted}",
             "# TYPE ig_freshness_seconds histogram", *histogram("ig_freshness_seconds")]
    if stages:
        lines += ["# TYPE ig_freshness_stage_seconds histogram",
                  *histogram("ig_freshness_stage_seconds", 'stage="store_commit"'),
                  *histogram("ig_freshness_stage_seconds", 'stage="new_stage"'),
                  *histogram("ig_freshness_stage_seconds", 'stage="broker_to_agent"')]
    if gauges:
        lines += ["# TYPE ig_freshness_last_minute_seconds gauge",
                  'ig_freshness_last_minute_seconds{quantile="0.5"} 0.4',
                  'ig_freshness_last_minute_seconds{quantile="0.99"} 1.9']
    if gc_s is not None:  # the same pause time split over two generations
        lines += ["# TYPE ig_python_gc_pause_seconds histogram"]
        for generation in ("0", "2"):
            lines += [f'ig_python_gc_pause_seconds_bucket{{generation="{generation}",le="+Inf"}} 1',
                      f'ig_python_gc_pause_seconds_sum{{generation="{generation}"}} {gc_s / 2}',
                      f'ig_python_gc_pause_seconds_count{{generation="{generation}"}} 1']
    return "\n".join(lines) + "\n"


def test_gc_share_is_the_pause_time_of_the_window_over_its_length() -> None:
    before = parse_exposition(exposition(0, 0, 0, gc_s=1.0), at_s=0.0)
    after = parse_exposition(exposition(0, 0, 0, gc_s=3.0), at_s=10.0)
    assert fresh.window_figures(before, after)["gc_share"] == pytest.approx(0.2)
    plain = parse_exposition(exposition(0, 0, 0), at_s=0.0)  # a stack without the metric: no pauses
    assert fresh.window_figures(plain, parse_exposition(exposition(0, 0, 0), at_s=5.0))["gc_share"] == 0.0


def test_window_counts_only_what_happened_between_the_scrapes() -> None:
    before = parse_exposition(exposition(1000, fast=100, slow=0), at_s=10.0)
    after = parse_exposition(exposition(3000, fast=100, slow=100), at_s=20.0)
    got = fresh.window_figures(before, after)
    assert got["sustained"] == pytest.approx(200.0)
    assert got["freshness_n"] == 100
    assert 1.0 < got["freshness"][0] <= got["freshness"][1] <= 2.0  # only the slow ones are in the window
    assert got["last_minute"] is None and got["stages"] == {}  # absent metrics are "-", not an error


def test_stages_come_in_pipeline_order_then_unknown_ones_and_gauges_are_read() -> None:
    before = parse_exposition(exposition(0, 0, 0, stages=True, gauges=True), at_s=0.0)
    after = parse_exposition(exposition(10, 10, 0, stages=True, gauges=True), at_s=1.0)
    got = fresh.window_figures(before, after)
    assert list(got["stages"]) == ["broker_to_agent", "store_commit", "new_stage"]
    assert got["last_minute"] == (0.4, 1.9)
    assert fresh.pair(None) == "-" and fresh.pair((0.4, 1.9)) == "0.40 / 1.90"


def test_verdicts() -> None:
    assert fresh.verdict([50.0, 100, 101, 99, 100, 110, 105]) == "flat"
    assert fresh.verdict([50.0, 100, 100, 150, 160, 200, 210]) == "growing"
    assert fresh.verdict([0.0, 10, 10, 10, 10, 900, 900], floor=1000) == "flat"  # under a second of traffic
    assert fresh.verdict([1.0, 2.0, math.nan, None]) == "too few samples"


def test_paced_offers_the_rate_by_the_clock() -> None:
    sent: list[int] = []
    done, seconds = fresh.paced(2000, 0.5, sent.append)
    assert sum(sent) == done and done == pytest.approx(2000 * seconds, rel=0.05)
    assert max(sent) < 200  # small slices, not one burst


def test_events_are_valid_and_new_users_are_new() -> None:
    source = fresh.EventSource(50, 20, seed=3, new_user_share=0.5, prefix="new")
    records = source.chunk(200)
    users = {json.loads(value)["user_id"] for _, value in records}
    assert all(key.decode() == json.loads(value)["user_id"] for key, value in records)
    assert source.new_users == sum(u.startswith("new-") for u in users) > 50
    assert len({json.loads(value)["event_id"] for _, value in records}) == 200
    assert fresh.EventSource(50, 20, seed=9).popular_items(5) == source.popular_items(5)
    assert time.time() * 1000 - json.loads(records[0][1])["ts"] < 5000
