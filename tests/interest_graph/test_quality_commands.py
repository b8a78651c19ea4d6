"""``train --data-dir``, ``evaluate`` and ``export`` on a small dataset in the gowalla file format: the
settings and flags ``train --help`` names reach the fit, and the model dir is the one format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interest_graph.cli import main
from interest_graph.quality import ModelDirError
from models.inductive.checkpoint import InductiveCheckpoint
from models.lightgcn.checkpoint import LightGCNCheckpoint
from models.methods import load_checkpoint
from models.model_dir import MANIFEST, read_manifest
from models.spectral.checkpoint import SpectralCheckpoint

USERS, ITEMS, CLUSTERS = 60, 80, 4


def _write_split(folder: Path) -> tuple[list[list[int]], list[list[int]]]:
    """Clustered users: each likes most items of its cluster; one held out per user for test."""
    rng = np.random.default_rng(3)
    train, test = [], []
    for user in range(USERS):
        liked = [i for i in range(ITEMS) if i % CLUSTERS == user % CLUSTERS and rng.random() < 0.6]
        rng.shuffle(liked)
        test.append(sorted(liked[:2]))
        train.append(sorted(liked[2:]))
    folder.mkdir()
    for name, rows in (("train.txt", train), ("test.txt", test)):
        (folder / name).write_text("".join(f"{u} {' '.join(map(str, items))}\n" for u, items in enumerate(rows)))
    return train, test


def test_train_evaluate_export_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model, out = tmp_path / "toy", tmp_path / "model", tmp_path / "emb.npz"
    train, _ = _write_split(data)

    assert main(["train", "--data-dir", str(data), "--out", str(model)]) == 0
    assert main(["evaluate", "--model", str(model), "--data-dir", str(data)]) == 0
    printed = capsys.readouterr().out
    ours = next(line for line in printed.splitlines() if line.startswith("ours"))
    recall, ndcg = (float(x) for x in ours.split()[1:3])
    # Held-out items are in the user's cluster: a collaborative model finds most of them in the top 20.
    assert recall > 0.6 and ndcg > 0.3

    assert main(["export", "--model", str(model), "--out", str(out)]) == 0
    with np.load(out) as exported:
        user_emb, item_emb = exported["user_emb"], exported["item_emb"]
        assert user_emb.dtype == np.float32 and item_emb.dtype == np.float32
        assert user_emb.shape[0] == USERS and item_emb.shape[0] == ITEMS
        assert user_emb.shape[1] == item_emb.shape[1]
        assert list(exported["user_ids"][:3]) == ["0", "1", "2"]
    # Scores are dot products: a user's top item (train masked) lies in its own cluster.
    scores = user_emb @ item_emb.T
    for user in range(0, USERS, 7):
        scores[user, train[user]] = -np.inf
        assert int(np.argmax(scores[user])) % CLUSTERS == user % CLUSTERS


def test_evaluate_without_a_model_says_how_to_make_one(tmp_path: Path) -> None:
    _write_split(tmp_path / "toy")
    with pytest.raises(ModelDirError, match="train --data-dir"):
        main(["evaluate", "--model", str(tmp_path / "missing"), "--data-dir", str(tmp_path / "toy")])


def test_train_data_dir_follows_the_method_rank_and_epochs_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = tmp_path / "toy", tmp_path / "model"
    _write_split(data)

    monkeypatch.setenv("IG_SPECTRAL_RANK", "8")
    assert main(["train", "--data-dir", str(data), "--out", str(model)]) == 0
    spectral = load_checkpoint(model)
    assert isinstance(spectral, SpectralCheckpoint) and spectral.dim == 8 and spectral.meta["requested_rank"] == 8
    # The model dir of the store's `train`: a versioned manifest and its arrays, nothing else.
    assert read_manifest(model)["method"] == "spectral"
    assert sorted(p.name for p in model.iterdir()) == [MANIFEST, "spectral-1.npz"]
    assert main(["evaluate", "--model", str(model), "--data-dir", str(data)]) == 0

    # --epochs is for the trained methods: refused for SpectralCF rather than ignored.
    assert main(["train", "--data-dir", str(data), "--out", str(model), "--epochs", "3"]) == 2
    assert "--epochs is for lightgcn, sage, gat" in capsys.readouterr().err

    monkeypatch.setenv("IG_MODEL_METHOD", "lightgcn")
    monkeypatch.setenv("IG_EMBEDDING_DIM", "12")
    assert main(["train", "--data-dir", str(data), "--model-dir", str(model), "--epochs", "3"]) == 0
    lightgcn = load_checkpoint(model)
    assert isinstance(lightgcn, LightGCNCheckpoint) and lightgcn.version == 2 and lightgcn.dim == 12
    assert lightgcn.meta["epochs"] == 3 and len(lightgcn.meta["loss"]) == 3
    assert lightgcn.meta["source"] == "dataset" and lightgcn.meta["data_dir"] == str(data)

    # evaluate and export read the LightGCN checkpoint of the same dir the same way.
    assert main(["evaluate", "--model", str(model), "--data-dir", str(data)]) == 0
    assert any(line.startswith("ours") for line in capsys.readouterr().out.splitlines())
    out = tmp_path / "emb.npz"
    assert main(["export", "--model", str(model), "--out", str(out)]) == 0
    with np.load(out) as exported:
        assert exported["user_emb"].shape == (USERS, 12) and exported["item_emb"].shape == (ITEMS, 12)


@pytest.mark.parametrize("method", ["sage", "gat"])
def test_train_data_dir_fits_the_inductive_gnns_and_evaluate_serves_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], method: str) -> None:
    data, model = tmp_path / "toy", tmp_path / "model"
    _write_split(data)
    monkeypatch.setenv("IG_MODEL_METHOD", method)
    monkeypatch.setenv("IG_EMBEDDING_DIM", "16")
    monkeypatch.setenv("IG_NUM_LAYERS", "1")
    assert main(["train", "--data-dir", str(data), "--out", str(model), "--epochs", "40"]) == 0
    checkpoint = load_checkpoint(model)
    assert isinstance(checkpoint, InductiveCheckpoint) and checkpoint.conv == method
    assert (checkpoint.dim, checkpoint.layers, checkpoint.meta["epochs"]) == (16, 1, 40)
    assert read_manifest(model)["method"] == method
    assert main(["evaluate", "--model", str(model), "--data-dir", str(data)]) == 0
    ours = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ours"))
    assert float(ours.split()[1]) > 0.3  # recall@20: held-out items lie in the user's cluster
