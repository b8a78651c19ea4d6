"""RefreshWorker against a real LadybugDB store: new users get embeddings, cursors advance,
restarts resume, checkpoints are picked up, and published embeddings equal a full propagation."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import torch

from core.domain import EdgeDelta, NodeId, NodeKind, OffsetRange, TopicPartition, UpsertBatch
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from models.config import ModelConfig, RefreshConfig
from models.lightgcn.base_embeddings import BaseTable
from models.lightgcn.checkpoint import LightGCNCheckpoint
from models.lightgcn.propagation import propagate_full
from models.methods import train_from_store
from models.model_dir import MANIFEST
from models.refresh import RefreshWorker, WrittenRound

pytestmark = pytest.mark.integration

TP = TopicPartition("ig-events", 0)
#: Two interest clusters: users c0-* click items a*, users c1-* click items b*.
CLUSTER_EDGES = [(f"c{c}-{u}", f"{'ab'[c]}{(u + k) % 6}") for c in (0, 1) for u in range(6) for k in range(3)]


class Feed:
    """Applies edges to the store as the ingest agent would: one batch per call, offsets increasing."""

    def __init__(self, store: LadybugStore) -> None:
        self.store, self.offset = store, 0

    def __call__(self, edges: Iterable[tuple[str, str]]) -> int:
        deltas = [EdgeDelta(NodeId(u), NodeId(i), 1.0, 1, 1_000) for u, i in edges]
        batch = UpsertBatch(deltas, {TP: OffsetRange(self.offset, self.offset + len(deltas) - 1)})
        self.offset += len(deltas)
        return self.store.apply_batch(batch)


@pytest.fixture
def feed(ladybug_store: LadybugStore) -> Feed:
    return Feed(ladybug_store)


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"refresh_fanout": 0, "refresh_max_seeds": 100, "refresh_interval_s": 0.05,
                                 "embedding_dim": 16, "num_layers": 2, "bootstrap_min_edges": 0,
                                 "model_method": "lightgcn"}
    return Settings(**{**values, **overrides})


def _stored(store: LadybugStore, kind: NodeKind) -> dict[str, np.ndarray]:
    rows = store.read_embeddings(kind)
    return dict(zip(rows.ids, rows.vectors, strict=True))


def _recommend(store: LadybugStore, user: str, k: int = 3) -> list[str]:
    users, items = _stored(store, NodeKind.USER), _stored(store, NodeKind.ITEM)
    seen = set(store.user_row(NodeId(user)).items)
    scores = {item: float(vec @ users[user]) for item, vec in items.items() if item not in seen}
    return sorted(scores, key=lambda item: -scores[item])[:k]


def _assert_equals_full_propagation(store: LadybugStore, table: BaseTable, layers: int, device: str) -> None:
    """Every stored embedding equals one propagation of the whole current graph."""
    snapshot = store.snapshot()
    user_base, _ = table.known(NodeKind.USER, snapshot.user_ids)
    item_base, _ = table.known(NodeKind.ITEM, snapshot.item_ids)
    user_out, item_out = propagate_full(snapshot, user_base, item_base, layers, device)
    users, items = _stored(store, NodeKind.USER), _stored(store, NodeKind.ITEM)
    assert set(users) == set(snapshot.user_ids) and set(items) == set(snapshot.item_ids)
    for ids, out, stored in ((snapshot.user_ids, user_out, users), (snapshot.item_ids, item_out, items)):
        np.testing.assert_allclose(np.stack([stored[i] for i in ids]), out.numpy(), atol=1e-5)


def test_without_checkpoint_a_new_user_is_served_after_one_batch(
    ladybug_store: LadybugStore, feed: Feed, tmp_path: Path, device: torch.device
) -> None:
    feed(CLUSTER_EDGES)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(_settings()),
                           tmp_path / "model", device=str(device))
    first = worker.run_once()
    assert first.kind == "full" and first.nodes_refreshed == 12 + 12
    state = ladybug_store.refresh_state()
    assert (state.version, state.cursor) == (first.version, ladybug_store.counts()["seq"])

    seq = feed([("newbie", "a0"), ("newbie", "a1")])
    second = worker.run_once()
    assert second.kind == "incremental" and second.seeds == 3 and second.cursor == seq
    assert "newbie" in _stored(ladybug_store, NodeKind.USER)
    assert ladybug_store.read_embeddings(NodeKind.USER, since_version=first.version).ids.count(NodeId("newbie")) == 1
    before = _recommend(ladybug_store, "newbie")
    assert len(before) == 3

    feed([("newbie", f"b{i}") for i in range(6)])
    assert worker.run_once().kind == "incremental"
    assert _recommend(ladybug_store, "newbie") != before
    assert worker.run_once().kind == "idle"
    _assert_equals_full_propagation(ladybug_store, BaseTable(None, dim=16), 2, str(device))
    stats = worker.stats
    assert stats.rounds == 3 and stats.full_rounds == 1 and stats.cursor == ladybug_store.counts()["seq"]


def test_checkpoint_bases_and_derived_bases_for_new_nodes(
    ladybug_store: LadybugStore, feed: Feed, tmp_path: Path, device: torch.device
) -> None:
    feed(CLUSTER_EDGES)
    settings = _settings(model_dir=str(tmp_path / "model"))
    checkpoint = train_from_store(ladybug_store, ModelConfig.from_settings(settings), epochs=30, device=device)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device=str(device))
    assert worker.run_once().kind == "full" and worker.stats.model_version == 1

    feed([("newbie", "a0"), ("newbie", "a1"), ("c0-0", "fresh-item")])
    report = worker.run_once()
    assert report.kind == "incremental"
    derived = ladybug_store.read_base_embeddings(NodeKind.USER)
    assert derived.ids == ["newbie"]
    item_row: dict[str, int] = {i: r for r, i in enumerate(checkpoint.item_ids)}
    weights = 1 / np.sqrt([3.0, 3.0])  # a0 and a1 now have three users each
    expected = (weights[:, None] * checkpoint.item_base[[item_row["a0"], item_row["a1"]]]).sum(0) / weights.sum()
    np.testing.assert_allclose(derived.vectors[0], expected, rtol=1e-5, atol=1e-6)
    assert ladybug_store.read_base_embeddings(NodeKind.ITEM).ids == ["fresh-item"]

    # newbie's derived base sits in cluster a: the four unseen a-items (fresh-item is one) lead.
    assert not any(item.startswith("b") for item in _recommend(ladybug_store, "newbie", k=4))
    table = BaseTable(LightGCNCheckpoint.load(settings.model_dir))
    for kind in NodeKind:  # the reference uses the derived rows exactly as they were published
        table.add_derived(ladybug_store.read_base_embeddings(kind))
    _assert_equals_full_propagation(ladybug_store, table, checkpoint.layers, str(device))

    train_from_store(ladybug_store, ModelConfig.from_settings(settings), epochs=2, device=device)
    retrained = worker.run_once()
    assert retrained.kind == "full" and worker.stats.model_version == 2
    assert retrained.version == report.version + 1


def test_restart_resumes_version_and_cursor(
    ladybug_store: LadybugStore, feed: Feed, tmp_path: Path, device: torch.device
) -> None:
    feed(CLUSTER_EDGES)
    first = RefreshWorker(ladybug_store, RefreshConfig.from_settings(_settings(refresh_fanout=2)),
                          tmp_path / "model", device=str(device))
    first.run_once()
    feed([("u-late", "a0")])
    done = first.run_once()

    seq = feed([("u-while-down", "b1")])
    again = RefreshWorker(ladybug_store, RefreshConfig.from_settings(_settings(refresh_fanout=2)),
                          tmp_path / "model", device=str(device))
    resumed = again.run_once()
    assert resumed.version == done.version + 1 and resumed.cursor == seq
    assert "u-while-down" in _stored(ladybug_store, NodeKind.USER)
    feed([("u-after", "a2")])
    assert again.run_once().kind == "incremental"
    state = ladybug_store.refresh_state()
    assert (state.version, state.cursor) == (done.version + 2, ladybug_store.counts()["seq"])


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_run_forever_serves_new_clicks_and_survives_a_broken_checkpoint(
    ladybug_store: LadybugStore, feed: Feed, tmp_path: Path, device: torch.device
) -> None:
    feed(CLUSTER_EDGES)
    settings = _settings(model_dir=str(tmp_path / "model"))
    train_from_store(ladybug_store, ModelConfig.from_settings(settings), epochs=1, device=device)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device=str(device))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        _wait_for(lambda: worker.stats.model_version == 1)
        feed([("newbie", "b2")])
        _wait_for(lambda: "newbie" in _stored(ladybug_store, NodeKind.USER))

        # A checkpoint whose arrays are unreadable: the worker keeps its model and keeps trying.
        model_dir = Path(settings.model_dir)
        (model_dir / "lightgcn-2.npz").write_bytes(b"truncated")
        manifest = {"version": 2, "arrays": "lightgcn-2.npz", "layers": 2, "meta": {}}
        (model_dir / "next.json").write_text(json.dumps(manifest))
        os.replace(model_dir / "next.json", model_dir / MANIFEST)
        _wait_for(lambda: worker.stats.errors >= 1)
        assert thread.is_alive() and "CheckpointError" in worker.stats.last_error
        feed([("while-broken", "a1")])  # rounds go on with the model that works
        _wait_for(lambda: "while-broken" in _stored(ladybug_store, NodeKind.USER))
        assert worker.stats.model_version == 1
        train_from_store(ladybug_store, ModelConfig.from_settings(settings), epochs=1, device=device)
        _wait_for(lambda: worker.stats.model_version == 3)
        feed([("second", "a3")])
        _wait_for(lambda: "second" in _stored(ladybug_store, NodeKind.USER))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_worker_trains_its_own_checkpoint_and_retrains_as_the_graph_doubles(
    ladybug_store: LadybugStore, feed: Feed, tmp_path: Path, device: torch.device, request: pytest.FixtureRequest
) -> None:
    settings = _settings(bootstrap_min_edges=30, bootstrap_epochs=20, model_dir=str(tmp_path / "model"))
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device=str(device))
    request.addfinalizer(worker.close_bootstrap)  # the fits' process
    feed(CLUSTER_EDGES[:20])
    worker.run_once()
    assert worker.stats.bootstraps == 0  # 20 edges: too few to learn from
    feed(CLUSTER_EDGES[20:])
    worker.run_once()
    assert worker.join_bootstrap(120)  # the fit runs beside the rounds
    assert worker.stats.bootstraps == 1
    assert LightGCNCheckpoint.load(settings.model_dir).meta["source"] == "bootstrap"
    assert worker.run_once().kind == "full" and worker.stats.model_version == 1

    feed([(f"c0-{u}", f"a-extra{u}-{k}") for u in range(6) for k in range(7)])  # 36 -> 78 edges
    worker.run_once()
    assert worker.join_bootstrap(120)
    assert worker.stats.bootstraps == 2 and worker.run_once().kind == "full"

    # an operator's checkpoint
    train_from_store(ladybug_store, ModelConfig.from_settings(settings), epochs=1, device=device)
    worker.run_once()
    feed([(f"c1-{u}", f"b-extra{u}-{k}") for u in range(6) for k in range(20)])
    worker.run_once()
    assert worker.join_bootstrap(120)
    assert worker.stats.bootstraps == 2 and worker.stats.model_version == 3  # never replaced


def test_run_forever_keeps_retrying_when_the_store_fails(tmp_path: Path, device: torch.device) -> None:
    store = LadybugStore(str(tmp_path / "graph.lbdb"))
    store.ensure_schema()
    store.close()  # every call now raises the store's own GraphStoreError
    worker = RefreshWorker(store, RefreshConfig.from_settings(_settings()), tmp_path / "model", device=str(device))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        _wait_for(lambda: worker.stats.errors >= 3)
        assert thread.is_alive() and "closed" in worker.stats.last_error and worker.stats.rounds == 0
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_woken_worker_refreshes_at_once_and_tells_its_listeners(
    ladybug_store: LadybugStore, feed: Feed, tmp_path: Path, device: torch.device
) -> None:
    feed(CLUSTER_EDGES)
    # An hour between polls: only wake() can start the rounds this test waits for.
    settings = _settings(model_dir=str(tmp_path / "model"), refresh_interval_s=3600.0)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device=str(device))
    heard: list[WrittenRound] = []
    worker.subscribe(heard.append)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        _wait_for(lambda: worker.stats.version == 1)  # the first round runs at start
        seq = feed([("woken", "a2")])
        worker.wake()
        _wait_for(lambda: worker.stats.cursor >= seq)
        assert "woken" in _stored(ladybug_store, NodeKind.USER)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()  # a stop is seen without a wake, long before the hour
    assert [w.update.version for w in heard] == [1, 2] and heard[-1].update.cursor >= seq
    assert all(w.started_ms <= w.computed_ms <= w.written_ms for w in heard)
    assert "woken" in heard[-1].update.rows[0].ids
