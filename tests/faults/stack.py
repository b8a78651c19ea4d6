"""A real ``interest-graph up`` child process for fault and scrape tests, and what they check after it.

Each test gets its own store, model dir, gRPC port and metrics port in ``tmp_path`` on the
session's Tansu broker (unique topics and group). The process is started as a user starts it, so
SIGKILL hits the Faust worker, the refresh thread and the gRPC server together.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc

from graph_store.ladybug import LadybugStore
from interest_graph.broker import free_port
from interest_graph.domain import NodeKind
from interest_graph.settings import Settings
from serving.client import RecommenderClient, RecommenderError
from streams.lag import LagProbe, LagUnavailableError
from tests.fixtures.broker import KafkaTopics

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def stack_settings(topics: KafkaTopics, tmp_path: Path, **overrides: object) -> Settings:
    """Settings of a small, fast stack: no self-training (hashed bases), quick refresh polls."""
    values: dict[str, object] = {
        "store_path": str(tmp_path / "graph.lbdb"), "model_dir": str(tmp_path / "model"),
        "grpc_addr": f"127.0.0.1:{free_port()}", "metrics_port": free_port(), "refresh_interval_s": 0.1,
        "bootstrap_min_edges": 0, "batch_max_events": 200, "grace_s": 1.0,
    }
    values.update(overrides)
    return topics.settings(**values)


def eventually(what: str, probe: Callable[[], T | None], timeout_s: float = 60.0, every_s: float = 0.2) -> T:
    """``probe()`` until it returns something truthy; transient broker/gRPC errors count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except (RecommenderError, grpc.RpcError, LagUnavailableError) as exc:
            last = exc
        time.sleep(every_s)
    raise AssertionError(f"{what} did not happen within {timeout_s} s (last error: {last})")


class UpProcess:
    """``interest-graph up --external-broker`` as a child process, logging to ``tmp_path/up.log``."""

    def __init__(self, settings: Settings, tmp_path: Path, *command: str) -> None:
        self.settings = settings
        self.log_path = tmp_path / "up.log"
        self.command = command or ("up", "--external-broker")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> UpProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.settings.as_environ()}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "interest_graph.cli", *self.command], cwd=REPO,
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGINT and wait (SIGKILL after 60 s); returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def total_lag(settings: Settings) -> int:
    return sum(p.lag for p in LagProbe(settings.bootstrap_servers, timeout_s=2.0)
               .topic_lag(settings.events_topic, settings.consumer_group))


def committed(settings: Settings) -> int:
    """Records the group has committed (the stack commits only what the store holds)."""
    return sum(p.committed or 0 for p in LagProbe(settings.bootstrap_servers, timeout_s=2.0)
               .topic_lag(settings.events_topic, settings.consumer_group))


def caught_up(settings: Settings, events: int) -> bool:
    """Every event committed, and serving reports no changed node waiting for a refresh."""
    if committed(settings) < events or total_lag(settings) != 0:
        return False
    with RecommenderClient(settings.grpc_addr, timeout_s=2.0) as client:
        status = client.status()
    return status.changed_node_backlog == 0 and status.refresh_cursor == status.store_seq


def assert_everything_refreshed(store: LadybugStore) -> None:
    """Every node with an edge has an embedding, and the refresh cursor covers the whole change log."""
    _, cursor, _ = store.refresh_state()
    assert cursor == store.counts()["seq"]
    assert not store.changes_since(cursor).nodes
    snap = store.snapshot()
    assert set(snap.user_ids) <= set(store.read_embeddings(NodeKind.USER).ids)
    assert set(snap.item_ids) <= set(store.read_embeddings(NodeKind.ITEM).ids)
