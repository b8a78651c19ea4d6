"""RefreshWorker serving GraphSAGE and GAT checkpoints from a real LadybugDB store: incremental rounds
over the changed nodes' 2K-hop subgraphs equal a full recompute, and a new user is embedded from its
first items without a refit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.domain import NodeKind
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from models.config import ModelConfig, RefreshConfig
from models.inductive.checkpoint import InductiveCheckpoint
from models.inductive.refresh import InductiveRefresh
from models.methods import load_checkpoint, train_from_store
from models.refresh import RefreshWorker
from tests.models.test_refresh import CLUSTER_EDGES, Feed, _stored

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("conv", ["sage", "gat"])
def test_incremental_rounds_equal_a_full_recompute_and_new_users_need_no_refit(
        ladybug_store: LadybugStore, tmp_path: Path, conv: str, device: torch.device) -> None:
    feed = Feed(ladybug_store)
    feed(CLUSTER_EDGES)
    settings = Settings(model_method=conv, embedding_dim=8, num_layers=2, refresh_fanout=0, refresh_max_seeds=100,
                        bootstrap_min_edges=0, model_dir=str(tmp_path / "model"))
    trained = train_from_store(ladybug_store, ModelConfig.from_settings(settings), epochs=30, device=device)
    assert isinstance(trained, InductiveCheckpoint) and trained.conv == conv
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings), settings.model_dir,
                           device=str(device))
    assert worker.run_once().kind == "full" and worker.method == conv
    before = _stored(ladybug_store, NodeKind.ITEM)

    feed([("newbie", "a0"), ("newbie", "a1"), ("c0-0", "fresh-item"), ("c1-2", "b0")])
    report = worker.run_once()
    assert report.kind == "incremental" and report.seeds == 7
    checkpoint = load_checkpoint(settings.model_dir)
    assert isinstance(checkpoint, InductiveCheckpoint) and checkpoint.version == trained.version
    full = InductiveRefresh(checkpoint, device=str(device)).full(ladybug_store.snapshot()).rows
    for rows in full:
        stored = _stored(ladybug_store, rows.kind)
        assert set(stored) == set(rows.ids)
        got = np.stack([stored[node] for node in rows.ids])
        np.testing.assert_allclose(got, rows.vectors, rtol=1e-4, atol=1e-5)
    # The changes reached past the seeds: nobody new clicked a2, but c0-0 (who has it) clicked fresh-item.
    after = _stored(ladybug_store, NodeKind.ITEM)
    assert np.abs(after["a2"] - before["a2"]).max() > 1e-4
    # newbie holds no parameter: its vector came from its two items in this round.
    assert "newbie" not in checkpoint.user_ids and _stored(ladybug_store, NodeKind.USER)["newbie"].any()
