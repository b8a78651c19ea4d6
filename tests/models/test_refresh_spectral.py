"""RefreshWorker serving SpectralCF checkpoints from a real LadybugDB store: `train` fits SpectralCF
by default, the worker's bootstrap does too, and incremental rounds equal a full recompute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.domain import (
    REBASE_AFTER_HALF_LIVES,
    EdgeDecay,
    EdgeDelta,
    EmbeddingRows,
    EmbeddingUpdate,
    NodeId,
    NodeKind,
    OffsetRange,
    UpsertBatch,
)
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from models.config import ModelConfig, RefreshConfig
from models.lightgcn.checkpoint import LightGCNCheckpoint
from models.methods import load_checkpoint, train_from_store
from models.model_dir import MANIFEST, CheckpointError
from models.refresh import RefreshWorker, WrittenRound
from models.spectral.checkpoint import SpectralCheckpoint
from models.spectral.refresh import SpectralRefresh
from serving.index import EmbeddingIndex
from tests.models.test_refresh import CLUSTER_EDGES, TP, Feed, _recommend, _stored

pytestmark = pytest.mark.integration


@pytest.fixture
def feed(ladybug_store: LadybugStore) -> Feed:
    return Feed(ladybug_store)


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"refresh_fanout": 2, "refresh_max_seeds": 100, "bootstrap_min_edges": 0,
                                 "model_dir": str(tmp_path / "model")}
    return Settings(**{**values, **overrides})


def _assert_equals_full_recompute(store: LadybugStore, checkpoint: SpectralCheckpoint) -> None:
    full = SpectralRefresh(checkpoint).full(store.snapshot()).rows
    for rows in full:
        stored = _stored(store, rows.kind)
        assert set(stored) == set(rows.ids)
        got = np.stack([stored[i] for i in rows.ids])
        assert np.abs(got - rows.vectors).max() < 1e-4


def test_train_fits_spectral_and_incremental_rounds_equal_a_full_recompute(
        ladybug_store: LadybugStore, feed: Feed, tmp_path: Path) -> None:
    feed(CLUSTER_EDGES)
    settings = _settings(tmp_path)
    trained = train_from_store(ladybug_store, ModelConfig.from_settings(settings), device="cpu")
    assert isinstance(trained, SpectralCheckpoint) and trained.dim <= 12  # clipped to min(users, items)
    manifest = json.loads((Path(settings.model_dir) / MANIFEST).read_text())
    assert manifest["method"] == "spectral" and manifest["values"] == "weight" and manifest["version"] == 1
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device="cpu")
    assert worker.run_once().kind == "full" and worker.method == "spectral"
    assert _stored(ladybug_store, NodeKind.ITEM)["a0"].shape == (trained.dim,)

    feed([("newbie", "a0"), ("newbie", "a1"), ("c0-0", "fresh-item"), ("c0-1", "fresh-item"),
          ("c1-2", "b0"), ("loner", "unknown-item")])
    report = worker.run_once()
    # Only the changed nodes move, whatever the fan-out cap says: 5 users and the 2 new items (the 3
    # fitted items a0, a1 and b0 keep their fitted vectors, so they are not republished).
    assert report.kind == "incremental" and report.seeds == 10 and report.nodes_refreshed == 7
    _assert_equals_full_recompute(ladybug_store, trained)
    # newbie's clicks sit in cluster a: its best unseen items do too (the ring's far side scores ~0, like b).
    assert not any(item.startswith("b") for item in _recommend(ladybug_store, "newbie", k=2))
    assert not _stored(ladybug_store, NodeKind.USER)["loner"].any()  # only a new item: zero, as folded in

    feed([("newbie", f"b{i}") for i in range(6)] + [("c1-3", "fresh-item")])
    assert worker.run_once().kind == "incremental"
    _assert_equals_full_recompute(ladybug_store, trained)

    # A LightGCN checkpoint is the next version, and the worker serves it in full.
    lightgcn = train_from_store(ladybug_store, ModelConfig.from_settings(settings.replace(embedding_dim=8)),
                                epochs=2, device="cpu",
                                method="lightgcn")
    assert isinstance(lightgcn, LightGCNCheckpoint) and lightgcn.version == 2
    assert worker.run_once().kind == "full" and worker.method == "lightgcn"
    assert _stored(ladybug_store, NodeKind.ITEM)["a0"].shape == (8,)
    assert sorted(p.name for p in Path(settings.model_dir).glob("*.npz")) == ["lightgcn-2.npz", "spectral-1.npz"]


def test_worker_bootstraps_a_spectral_checkpoint(ladybug_store: LadybugStore, feed: Feed, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    settings = _settings(tmp_path, bootstrap_min_edges=30)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device="cpu")
    request.addfinalizer(worker.close_bootstrap)  # the fit's process
    feed(CLUSTER_EDGES)
    worker.run_once()
    assert worker.join_bootstrap(120)  # the fit runs beside the rounds, in a process of its own
    assert worker.stats.bootstraps == 1
    checkpoint = load_checkpoint(settings.model_dir)
    assert isinstance(checkpoint, SpectralCheckpoint) and checkpoint.meta["source"] == "bootstrap"
    assert worker.run_once().kind == "full" and worker.method == "spectral"
    feed([("newbie", "b1"), ("newbie", "b2")])
    assert worker.run_once().kind == "incremental"
    _assert_equals_full_recompute(ladybug_store, checkpoint)


def test_spectral_checkpoint_round_trip_and_method_checks(ladybug_store: LadybugStore, feed: Feed,
                                                          tmp_path: Path) -> None:
    feed(CLUSTER_EDGES)
    saved = train_from_store(ladybug_store, ModelConfig.from_settings(_settings(tmp_path)), device="cpu")
    loaded = SpectralCheckpoint.load(tmp_path / "model")
    assert loaded.user_ids == saved.user_ids and loaded.item_ids == saved.item_ids and loaded.version == 1
    assert saved.model.item_emb is not None and loaded.model.item_emb is not None
    np.testing.assert_array_equal(loaded.model.item_emb, saved.model.item_emb)
    assert loaded.meta["source"] == "train" and loaded.values == "weight"
    with pytest.raises(CheckpointError, match="not a LightGCN"):
        LightGCNCheckpoint.load(tmp_path / "model")
    with pytest.raises(ValueError, match="model_method"):
        train_from_store(ladybug_store, ModelConfig.from_settings(_settings(tmp_path)), method="svd")
    (tmp_path / "model" / "spectral-1.npz").write_bytes(b"broken")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "model")


def test_a_spectral_backlog_is_worked_off_in_incremental_rounds(
        ladybug_store: LadybugStore, feed: Feed, tmp_path: Path) -> None:
    feed(CLUSTER_EDGES)
    settings = _settings(tmp_path, refresh_max_seeds=4)
    trained = train_from_store(ladybug_store, ModelConfig.from_settings(settings), device="cpu")
    assert isinstance(trained, SpectralCheckpoint)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device="cpu")
    assert worker.run_once().kind == "full"
    for n in range(5):  # five batches, each changing more nodes than a round takes
        feed([(f"late-{n}", "a0"), (f"late-{n}", "b1"), (f"other-{n}", "a3"), ("c0-1", f"new-{n}")])
    kinds = []
    while (report := worker.run_once()).kind != "idle":
        kinds.append(report.kind)
        assert report.seeds <= 7  # a batch changes 7 nodes: over the limit, yet never split
    assert set(kinds) == {"incremental"} and len(kinds) >= 3
    _assert_equals_full_recompute(ladybug_store, trained)


def test_live_users_rounds_refresh_items_only_and_serving_folds_users_in_exactly(
        ladybug_store: LadybugStore, feed: Feed, tmp_path: Path) -> None:
    feed(CLUSTER_EDGES)
    settings = _settings(tmp_path)
    trained = train_from_store(ladybug_store, ModelConfig.from_settings(settings), device="cpu")
    assert isinstance(trained, SpectralCheckpoint)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device="cpu",
                           live_users=True)
    handed: list[WrittenRound] = []
    worker.subscribe(handed.append)
    index = EmbeddingIndex()

    def hand_over() -> None:  # what `up` does with each round: straight into the serving index
        update = handed[-1].update
        index.apply(_rows(update, NodeKind.USER), _rows(update, NodeKind.ITEM), version=update.version,
                    written_ms=update.created_ms, fold_in=update.fold_in)

    assert worker.run_once().kind == "full"
    full = handed[-1].update
    assert full.fold_in is not None and full.fold_in.model_version == trained.version
    assert not _rows(full, NodeKind.USER).ids  # users are left to serving
    hand_over()

    feed([("newbie", "a0"), ("newbie", "a1"), ("c0-0", "fresh-item"), ("c0-1", "fresh-item"),
          ("loner", "unknown-item")])
    report = worker.run_once()
    assert report.kind == "incremental" and report.nodes_refreshed == 2  # the two new items, no user
    assert set(_rows(handed[-1].update, NodeKind.ITEM).ids) == {"fresh-item", "unknown-item"}
    hand_over()

    # Every user's request-time vector (from the store's row and the served items) is the full recompute's.
    snapshot = index.snapshot()
    assert snapshot.live_users is not None
    recompute = {rows.kind: rows for rows in SpectralRefresh(trained).full(ladybug_store.snapshot()).rows}
    users = recompute[NodeKind.USER]
    for user, expected in zip(users.ids, users.vectors, strict=True):
        row = ladybug_store.user_row(user)
        rows = np.asarray([snapshot.items.rows[item] for item in row.items], dtype=np.int64)
        got = snapshot.live_users.vector(snapshot.items.gather, rows, row.weights)
        assert np.abs(got - expected).max() < 1e-4, user
    # An edge to an item the model knows folds in at once; one to an item it does not know adds nothing.
    assert snapshot.folds_in(["a0", "a1"]) and not snapshot.folds_in(["a0", "fresh-item"])


def _rows(update: EmbeddingUpdate, kind: NodeKind) -> EmbeddingRows:
    blocks = [rows for rows in update.rows if rows.kind == kind]
    ids = [i for b in blocks for i in b.ids]
    vectors = np.concatenate([b.vectors for b in blocks]) if ids else np.zeros((0, 0), np.float32)
    return EmbeddingRows(kind, ids, vectors)


def test_incremental_rounds_after_a_decay_rebase_equal_a_full_recompute(
        ladybug_store: LadybugStore, tmp_path: Path) -> None:
    """A rebase rescales every stored weight and stamps every node: the rounds that follow leave
    every vector equal to the full recompute on the rescaled graph (compared row by row relative
    to its size, since rows of old edges shrink by 2^-33)."""
    half_life = 3_600_000.0
    ladybug_store.edge_decay(half_life)
    offsets = iter(range(0, 1_000_000, 1_000))

    def feed_at(edges: list[tuple[str, str]], ref_ms: int) -> None:
        deltas = [EdgeDelta(NodeId(u), NodeId(i), 1.0, 1, ref_ms) for u, i in edges]
        first = next(offsets)
        ladybug_store.apply_batch(UpsertBatch(deltas, {TP: OffsetRange(first, first + len(deltas) - 1)},
                                              decay=EdgeDecay(half_life, ref_ms)))

    t0 = 1_700_000_000_000
    feed_at(CLUSTER_EDGES, t0)
    settings = _settings(tmp_path)
    trained = train_from_store(ladybug_store, ModelConfig.from_settings(settings), device="cpu")
    assert isinstance(trained, SpectralCheckpoint)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir, device="cpu")
    assert worker.run_once().kind == "full"
    feed_at([("newbie", "a0"), ("newbie", "a1"), ("c0-0", "fresh-item"), ("c0-1", "fresh-item")], t0)
    assert worker.run_once().kind == "incremental"

    later = t0 + int((REBASE_AFTER_HALF_LIVES + 1) * half_life)
    feed_at([("newbie", "b0"), ("c1-2", "fresh-item"), ("c1-3", "fresh-item")], later)
    assert ladybug_store.edge_decay(half_life) == EdgeDecay(half_life, later)
    rounds = 0
    while worker.run_once().kind != "idle":
        rounds += 1
    assert rounds >= 1
    full = SpectralRefresh(trained).full(ladybug_store.snapshot()).rows
    for rows in full:
        stored = _stored(ladybug_store, rows.kind)
        assert set(stored) == set(rows.ids)
        for node, want in zip(rows.ids, rows.vectors, strict=True):
            size = float(np.linalg.norm(want))
            assert np.abs(stored[node] - want).max() <= 1e-4 * size + 1e-30, node
