"""A real Prometheus scrapes a running ``interest-graph up`` and answers PromQL about it.

Proves the exposition is what Prometheus accepts, that the lag series exists per partition and
returns to zero, and that every metric the dashboard and the alerts use is exported by the stack.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from interest_graph.embedded_broker import free_port
from interest_graph.freshness import STAGES
from serving.client import RecommenderClient
from streams.datasets import ClusteredInterests, KeyedEvent
from streams.replay import replay
from tests.deploy.test_alerts import PROMETHEUS, dashboard_metrics, prometheus_tool
from tests.fixtures.broker import KafkaTopics
from tests.fixtures.stack import UpProcess, caught_up, eventually, stack_settings

pytestmark = pytest.mark.integration


class PrometheusServer:
    """The ``prometheus`` binary on a free port, scraping ``target`` every second, with our alert rules."""

    def __init__(self, target: str, tmp_path: Path) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROMETHEUS / "alerts.yml")],
            "scrape_configs": [{"job_name": "interest-graph", "static_configs": [{"targets": [target]}]}],
        }
        self.config = tmp_path / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.data = tmp_path / "tsdb"
        self.log = tmp_path / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [prometheus_tool("prometheus"), f"--config.file={self.config}", f"--storage.tsdb.path={self.data}",
                 f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT)
        eventually("Prometheus to answer", lambda: self._ready(), timeout_s=30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(30)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]  # type: ignore[no-any-return]


@pytest.fixture
def stack(kafka_topics: KafkaTopics, tmp_path: Path) -> Iterator[UpProcess]:
    up = UpProcess(stack_settings(kafka_topics, tmp_path), tmp_path).start()
    try:
        yield up
    finally:
        up.stop()


def alert_metrics() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    names = set()
    for rule in (rule for group in groups for rule in group["rules"]):
        names.update(re.findall(r"\b(ig_[a-z_]+)", rule["expr"]))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_prometheus_scrapes_lag_and_every_dashboard_metric(stack: UpProcess, tmp_path: Path) -> None:
    settings = stack.settings
    world = ClusteredInterests(users=40, items=60, clusters=4, in_cluster=0.9, seed=11)
    with PrometheusServer(f"127.0.0.1:{settings.metrics_port}", tmp_path) as prometheus:
        events = [*world.events(1500), KeyedEvent(b"u1", b"{oops", 0)]  # one bad event: a dead-letter series
        sent = replay(events, settings.bootstrap_servers, settings.events_topic)
        accepted_events = sent - 1
        eventually("the stack to ingest and refresh everything", lambda: caught_up(settings, sent), timeout_s=90)
        with RecommenderClient(settings.grpc_addr, timeout_s=3.0) as client:
            client.status()  # one gRPC call, so the latency histogram has a series

        def lag_series() -> list[dict[str, Any]] | None:
            series = prometheus.query(f'ig_consumer_lag{{topic="{settings.events_topic}"}}')
            return series if len(series) == settings.topic_partitions and all(
                float(s["value"][1]) == 0 for s in series) else None

        series = eventually("Prometheus to see the lag back at zero on every partition", lag_series, timeout_s=30)
        assert {s["metric"]["partition"] for s in series} == {str(p) for p in range(settings.topic_partitions)}
        accepted = eventually("the accepted counter", lambda: prometheus.query("ig_events_accepted_total"))
        eventually("all events counted", lambda: float(prometheus.query("ig_events_accepted_total")[0]["value"][1])
                   == accepted_events or None, timeout_s=15)
        [dead] = prometheus.query("ig_events_dead_lettered_total")
        assert (dead["metric"]["reason"], float(dead["value"][1])) == ("bad_json", 1.0)
        assert accepted[0]["metric"]["job"] == "interest-graph"
        fresh = eventually("freshness observations", lambda: prometheus.query("ig_freshness_seconds_count > 0"))
        assert float(fresh[0]["value"][1]) == accepted_events  # every accepted event measured once

        def stage_counts() -> dict[str, float] | None:
            counts = {s["metric"]["stage"]: float(s["value"][1])
                      for s in prometheus.query("ig_freshness_stage_seconds_count")}
            return counts if set(counts.values()) == {accepted_events} else None

        # Every event passed every stage once, and its stages add up to its freshness.
        assert set(eventually("every stage counted", stage_counts, timeout_s=15)) == set(STAGES)
        stage_total = sum(float(s["value"][1]) for s in prometheus.query("ig_freshness_stage_seconds_sum"))
        [total] = prometheus.query("ig_freshness_seconds_sum")
        assert stage_total == pytest.approx(float(total["value"][1]), rel=1e-6, abs=1e-3)
        recent = prometheus.query("ig_freshness_last_minute_seconds")
        assert {s["metric"]["quantile"] for s in recent} == {"0.5", "0.99"}
        eventually("the gRPC histogram", lambda: prometheus.query(
            'ig_grpc_server_handling_seconds_count{method="GetStatus", code="OK"}'), timeout_s=15)
        graphs = prometheus.query("ig_serving_hnsw_graphs_total")  # 60 items: exact search, no graph yet
        assert {(g["metric"]["how"], float(g["value"][1])) for g in graphs} == {("extended", 0.0), ("built", 0.0)}
        weights = prometheus.query("ig_serving_next_items_weight")
        assert {w["metric"]["segment"] for w in weights} == {"<= 5", "<= 50", "> 50"}
        judged = prometheus.query("ig_serving_next_items_judged_events_total")
        assert {j["metric"]["outcome"] for j in judged} == {"judged", "not_judged", "dropped"}
        exported = {m["metric"]["__name__"] for m in prometheus.query('{__name__=~"ig_.+"}')}
        exported_bases = {re.sub(r"_(bucket|count|sum)$", "", n) for n in exported}
        missing = (dashboard_metrics() | alert_metrics()) - exported_bases
        assert not missing, f"dashboard/alerts use metrics the stack does not export: {missing}"
        rules = [r["name"] for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        assert len(rules) == 7
        firing = prometheus.query('ALERTS{alertstate="firing"}')
        assert firing == [], firing
    assert stack.alive(), stack.log_tail()
