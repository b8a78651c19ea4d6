"""deploy/prometheus/alerts.yml and the Grafana dashboard: valid for promtool, and their unit tests pass.

``make test`` installs Debian's ``prometheus`` package (promtool) when it is missing; only where
apt is unavailable do these tests skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "interest-graph.json"


def prometheus_tool(name: str) -> str:
    """Path of ``promtool``/``prometheus``; fail if apt could have installed it, skip if not."""
    found = shutil.which(name)
    if found:
        return found
    if shutil.which("apt-get"):
        pytest.fail(f"{name} is missing: run `make promtool` (apt-get install prometheus)")
    pytest.skip(f"{name} is missing and apt-get is unavailable to install Debian's prometheus package")


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run([prometheus_tool("promtool"), "check", "rules", str(PROMETHEUS / "alerts.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    result = subprocess.run([prometheus_tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    result = subprocess.run([prometheus_tool("promtool"), "check", "config", "--syntax-only",
                             str(PROMETHEUS / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_and_an_explanation() -> None:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    readme = (ROOT / "README.md").read_text()
    missing = [rule["alert"] for rule in rules if rule["alert"] not in readme]
    assert not missing, f"README does not explain alerts {missing}"


def dashboard_metrics() -> set[str]:
    """Base metric names the dashboard queries (``_bucket``/``_count``/``_total`` stripped)."""
    dashboard = json.loads(DASHBOARD.read_text())
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names.update(re.findall(r"\b(ig_[a-z_]+)", target["expr"]))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_dashboard_is_grafana_json_with_the_issue_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "interest-graph" and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    needed = {"ig_consumer_lag", "ig_events_accepted_total", "ig_events_dead_lettered_total",
              "ig_ingest_upsert_seconds",
              "ig_changed_node_backlog", "ig_refresh_round_seconds", "ig_refresh_nodes_total",
              "ig_embedding_staleness_seconds", "ig_freshness_seconds", "ig_grpc_server_handling_seconds",
              "ig_ingest_stalled"}
    assert needed <= dashboard_metrics()
