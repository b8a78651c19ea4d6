"""``train --data-dir``, ``evaluate`` and ``export`` on a small dataset in the gowalla file format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interest_graph.cli import main
from interest_graph.quality import ModelDirError

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
