"""``interest-graph recommend/friends/explain/watch`` against a real server: readable tables with titles."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from core.domain import EdgeDelta, ItemMeta, NodeId, OffsetRange, TopicPartition, UpsertBatch
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from interest_graph.cli import main
from interest_graph.console import StatusView, render_status
from interest_graph.metrics import StackCollector
from interest_graph.status_metrics import parse_exposition
from serving.client import RecommenderClient
from serving.config import ServingConfig
from serving.server import start_serving
from streams.ingest import IngestSnapshot, IngestStats
from tests.serving.conftest import DIM, EmbeddingWriter

pytestmark = pytest.mark.integration


@pytest.fixture
def address(settings: Settings, ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter):
    rng = np.random.default_rng(1)
    ladybug_store.upsert_items([ItemMeta(NodeId(f"i{n}"), title=f"Film {n}", categories=("drama",) if n % 2 else ())
                                for n in range(6)])
    edges = [EdgeDelta(NodeId(u), NodeId(i), 1.0, 1, 1) for u, i in [("u0", "i0"), ("u1", "i0"), ("u1", "i3")]]
    ladybug_store.apply_batch(UpsertBatch(edges, {TopicPartition("events", 0): OffsetRange(0, 2)}))
    write_embeddings(1, users={f"u{n}": rng.standard_normal(DIM) for n in range(3)},
                     items={f"i{n}": rng.standard_normal(DIM) for n in range(6)})
    handle = start_serving(ServingConfig.from_settings(settings), ladybug_store)
    try:
        deadline = time.monotonic() + 10
        while not handle.index.ready and time.monotonic() < deadline:
            time.sleep(0.01)
        yield handle, f"127.0.0.1:{handle.port}"
    finally:
        handle.stop(0)


def test_recommend_with_a_category_prints_titles(address, capsys: pytest.CaptureFixture[str]) -> None:
    _, grpc_addr = address
    assert main(["recommend", "u0", "-k", "3", "--category", "drama", "--diversity", "0.5", "--grpc", grpc_addr]) == 0
    out = capsys.readouterr().out
    assert "user u0: top 3, personal" in out and "exact index" in out
    assert out.count("Film ") == 3 and all(f"Film {n}" not in out for n in (0, 2, 4))


def test_friends_and_explain_print_tables(address, capsys: pytest.CaptureFixture[str]) -> None:
    _, grpc_addr = address
    assert main(["friends", "u0", "-k", "2", "--grpc", grpc_addr]) == 0
    out = capsys.readouterr().out
    assert "users with interests like u0" in out and "shared items" in out and "u1" in out
    assert main(["explain", "u0", "i3", "--grpc", grpc_addr]) == 0
    out = capsys.readouterr().out
    assert "item i3 (Film 3) for user u0" in out
    assert "Film 0" in out  # u0's own item, as evidence
    assert "u1" in out  # the neighbour who shares i0 and interacted with i3


def test_errors_go_to_stderr_with_their_code(address, capsys: pytest.CaptureFixture[str]) -> None:
    _, grpc_addr = address
    assert main(["explain", "nobody", "i3", "--grpc", grpc_addr]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_watch_prints_lists_until_the_server_stops(address, capsys: pytest.CaptureFixture[str]) -> None:
    handle, grpc_addr = address
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(["watch", "u2", "-k", "2", "--grpc", grpc_addr])))
    thread.start()
    out = ""
    deadline = time.monotonic() + 10
    while "Film" not in out and time.monotonic() < deadline:
        out += capsys.readouterr().out
        time.sleep(0.01)
    handle.stop(1.0)
    thread.join(timeout=10)
    assert result == [1]
    assert "user u2: top 2 (embedding version 1" in out and "Film" in out
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_status_shows_one_backlog_and_a_dead_letter_figure(address, settings: Settings,
                                                           ladybug_store: LadybugStore) -> None:
    handle, grpc_addr = address
    with RecommenderClient(grpc_addr) as client:
        serving = client.status()
    assert serving.changed_node_backlog > 0  # the fixture's edges are newer than the embeddings' cursor
    # This process's ingest agent has dead-lettered nothing yet; the topic holds 52 from earlier runs.
    registry = CollectorRegistry()
    registry.register(StackCollector(settings, ingest=IngestStats(IngestSnapshot(events_accepted=3)), serving=handle,
                                     store=ladybug_store, probe_lag=False))
    metrics = parse_exposition(generate_latest(registry).decode(), at_s=1.0)
    view = StatusView(lag=[(0, 5, 5, 0)], lag_error="", dead_letters=52, serving=serving, serving_error="",
                      metrics=metrics)

    screen = render_status(view, settings)
    assert "dead letters (" in screen and "): 52" in screen
    assert "dead-lettered 0 since start" in screen and "dead-lettered -" not in screen
    assert screen.count("backlog") == 1 and "changed-node backlog" in screen  # the gRPC figure only

    without_server = render_status(dataclasses.replace(view, serving=None, serving_error="UNAVAILABLE"), settings)
    assert without_server.count("backlog") == 1
    assert f"backlog {serving.changed_node_backlog} nodes" in without_server  # the scraped figure stands in

    # A scrape without the ingest agent has no dead-letter count at all: the broker's total stands in.
    registry = CollectorRegistry()
    registry.register(StackCollector(settings, serving=handle, store=ladybug_store, probe_lag=False))
    serving_only = parse_exposition(generate_latest(registry).decode(), at_s=1.0)
    assert "dead-lettered 52 in the topic" in render_status(dataclasses.replace(view, metrics=serving_only),
                                                           settings)
