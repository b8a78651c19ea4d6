"""BPR training lowers its loss and beats popularity on a clustered graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.domain import EdgeSnapshot, NodeId
from models.interactions import snapshot_from_pairs
from models.lightgcn.propagation import propagate_full
from models.lightgcn.train import train_lightgcn

CLUSTERS, USERS_PER, ITEMS_PER = 4, 30, 25


def _clustered(seed: int = 0) -> tuple[EdgeSnapshot, dict[int, set[int]]]:
    """Users click items of their own cluster (popular items there more often); 2 clicks held out."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, ITEMS_PER + 1)
    train_pairs: list[tuple[int, int]] = []
    held_out: dict[int, set[int]] = {}
    for user in range(CLUSTERS * USERS_PER):
        cluster = user // USERS_PER
        local = rng.choice(ITEMS_PER, size=8, replace=False, p=popularity / popularity.sum())
        items = [cluster * ITEMS_PER + int(i) for i in local]
        held_out[user] = set(items[:2])
        train_pairs += [(user, i) for i in items[2:]]
        # A little noise: one click anywhere.
        train_pairs.append((user, int(rng.integers(CLUSTERS * ITEMS_PER))))
    snapshot = snapshot_from_pairs([f"u{u:03d}" for u, _ in train_pairs], [f"i{i:03d}" for _, i in train_pairs])
    return snapshot, held_out


def _hit_rate(user_vec: np.ndarray, item_vec: np.ndarray, snapshot: EdgeSnapshot,
              held_out: dict[int, set[int]], k: int = 5) -> float:
    item_pos = {int(name[1:]): n for n, name in enumerate(snapshot.item_ids)}
    scores = user_vec @ item_vec.T
    scores[snapshot.user_index, snapshot.item_index] = -np.inf
    hits = 0
    for row, name in enumerate(snapshot.user_ids):
        wanted = {item_pos[i] for i in held_out[int(name[1:])] if i in item_pos}
        hits += bool(wanted & set(np.argsort(-scores[row])[:k].tolist()))
    return hits / len(snapshot.user_ids)


def test_training_lowers_bpr_loss_and_beats_popularity(device: torch.device) -> None:
    snapshot, held_out = _clustered()
    checkpoint = train_lightgcn(snapshot, dim=16, layers=2, epochs=40, lr=0.02, batch_size=256, seed=1,
                                device=device)
    losses = checkpoint.meta["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert checkpoint.user_ids == snapshot.user_ids and checkpoint.user_base.shape == (len(snapshot.user_ids), 16)

    user_out, item_out = propagate_full(snapshot, checkpoint.user_base, checkpoint.item_base, 2, device)
    model_hr = _hit_rate(user_out.numpy(), item_out.numpy(), snapshot, held_out)
    counts = np.bincount(snapshot.item_index, minlength=len(snapshot.item_ids)).astype(np.float32)
    popular_hr = _hit_rate(np.ones((len(snapshot.user_ids), 1)), counts[:, None], snapshot, held_out)
    assert model_hr > popular_hr + 0.1


def test_training_is_reproducible_for_a_seed() -> None:
    snapshot, _ = _clustered()
    first = train_lightgcn(snapshot, dim=8, epochs=2, batch_size=128, seed=7, device="cpu")
    second = train_lightgcn(snapshot, dim=8, epochs=2, batch_size=128, seed=7, device="cpu")
    np.testing.assert_array_equal(first.item_base, second.item_base)


def test_empty_snapshot_is_refused() -> None:
    empty = EdgeSnapshot([], [NodeId("i")], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="without edges"):
        train_lightgcn(empty, epochs=1)
