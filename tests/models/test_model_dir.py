"""Checkpoints: round trip, versioned manifest swapped atomically, old arrays pruned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.domain import NodeId
from models.lightgcn.checkpoint import LightGCNCheckpoint
from models.model_dir import MANIFEST, CheckpointError, manifest_version


def _checkpoint(seed: int = 0) -> LightGCNCheckpoint:
    rng = np.random.default_rng(seed)
    return LightGCNCheckpoint(
        user_ids=[NodeId("ü-1"), NodeId("user two"), NodeId("3")], item_ids=[NodeId("电影"), NodeId("i,2")],
        user_base=rng.standard_normal((3, 4)).astype(np.float32),
        item_base=rng.standard_normal((2, 4)).astype(np.float32), layers=3, meta={"epochs": 5},
    )


def test_round_trip_keeps_ids_rows_layers_and_meta(tmp_path: Path) -> None:
    original = _checkpoint()
    original.save(tmp_path)
    loaded = LightGCNCheckpoint.load(tmp_path)
    assert loaded.user_ids == original.user_ids and loaded.item_ids == original.item_ids
    np.testing.assert_array_equal(loaded.user_base, original.user_base)
    np.testing.assert_array_equal(loaded.item_base, original.item_base)
    assert loaded.layers == 3 and loaded.dim == 4
    assert loaded.meta == {"epochs": 5, "version": 1} and loaded.version == 1


def test_each_save_is_a_new_version_and_old_arrays_are_pruned(tmp_path: Path) -> None:
    assert manifest_version(tmp_path) == -1
    for seed in range(4):
        _checkpoint(seed).save(tmp_path)
    assert manifest_version(tmp_path) == 4
    np.testing.assert_array_equal(LightGCNCheckpoint.load(tmp_path).user_base, _checkpoint(3).user_base)
    # The current arrays and one previous file (for a reader holding the old manifest), no temp files.
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "lightgcn-3.npz", "lightgcn-4.npz"]


def test_missing_or_broken_checkpoint_is_a_retryable_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as missing:
        LightGCNCheckpoint.load(tmp_path)
    assert missing.value.retryable
    _checkpoint().save(tmp_path)
    arrays = tmp_path / "lightgcn-1.npz"
    whole = arrays.read_bytes()
    for broken in (b"not an npz", whole[: len(whole) // 2]):
        arrays.write_bytes(broken)
        with pytest.raises(CheckpointError):
            LightGCNCheckpoint.load(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    assert manifest_version(tmp_path) == -1


def test_rows_and_ids_must_agree() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        LightGCNCheckpoint([NodeId("u")], [], np.zeros((2, 4), np.float32), np.zeros((0, 4), np.float32), 2)
