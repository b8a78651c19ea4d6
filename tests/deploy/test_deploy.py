"""deploy/ cannot be started here (no Docker engine), so its files are checked against the code.

Each check ties a deploy file to something the code defines: the CLI subcommands a container runs,
the settings its environment sets, the packages the image copies, the port Prometheus scrapes.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from core.settings import Settings
from interest_graph.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
APP_SERVICES = ("ingest", "refresh", "serve")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(actions[0].choices)  # type: ignore[attr-defined]  # argparse keeps choices on the action


def test_app_services_run_existing_subcommands(compose: dict) -> None:
    commands = _subcommands()
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["command"][0] in commands, f"{name} runs an unknown subcommand"


def test_environment_names_are_declared_settings(compose: dict) -> None:
    declared = {s.env for s in Settings.declared()}
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        unknown = {key for key in env if key.startswith(("IG_", "NEO4J_"))} - declared
        assert not unknown, f"{name} sets env vars no setting reads: {unknown}"
        assert env["IG_STORE"] == "neo4j", "separate processes need Neo4j (LadybugDB has one writer)"
        for value in env.values():
            settings_value = str(value)
            assert "localhost" not in settings_value and "127.0.0.1" not in settings_value


def test_app_depends_on_healthy_broker_and_store(compose: dict) -> None:
    for name in APP_SERVICES:
        deps = compose["services"][name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["neo4j"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["kafka"]
    assert "healthcheck" in compose["services"]["neo4j"]
    broker = compose["services"]["ingest"]["environment"]["IG_BROKER_URL"]
    assert broker.endswith(":9092") and "kafka://kafka:" in broker
    assert "PLAINTEXT://kafka:9092" in compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_image_copies_every_package_and_pins_torch() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = set(re.findall(r"^COPY (\S+) \./\S*$", dockerfile, flags=re.M))
    for package in packages:
        assert package in copied, f"Dockerfile does not copy {package}/"
        assert (ROOT / package).is_dir()
    assert "torch==2.13.0" in dockerfile
    assert "torch==2.13.0" in pyproject["project"]["dependencies"]
    assert re.search(r"^ENTRYPOINT \[\"interest-graph\"\]$", dockerfile, flags=re.M)
    assert pyproject["project"]["scripts"]["interest-graph"] == "interest_graph.cli:main"


def test_prometheus_scrapes_each_component_on_the_metrics_port(compose: dict) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    port = compose["services"]["ingest"]["environment"]["IG_METRICS_PORT"]
    assert targets == {f"{name}:{port}" for name in APP_SERVICES}
    assert int(port) == Settings.metrics_port.default


def test_serving_listens_on_all_interfaces_and_publishes_its_port(compose: dict) -> None:
    serve = compose["services"]["serve"]
    host, port = serve["environment"]["IG_GRPC_ADDR"].rsplit(":", 1)
    assert host == "0.0.0.0"
    assert f"{port}:{port}" in serve["ports"]
