"""Trained LightGCN base (layer-0) embeddings keyed by producer id, in the versioned model dir.

Array file ``lightgcn-<version>.npz`` (see :mod:`models.model_dir`) holds ``user_ids``,
``item_ids``, ``user_base`` and ``item_base``; the manifest says how many layers ``K`` they were
trained with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.domain import NodeId
from models.model_dir import load_versioned, save_versioned


@dataclass(slots=True)
class LightGCNCheckpoint:
    """Base (layer-0) LightGCN embeddings keyed by producer id.

    Args:
        user_ids (list[NodeId]): Row ``i`` of ``user_base`` belongs to ``user_ids[i]``.
        item_ids (list[NodeId]): Row ``i`` of ``item_base`` belongs to ``item_ids[i]``.
        user_base (np.ndarray): ``[U, d]`` float32.
        item_base (np.ndarray): ``[I, d]`` float32.
        layers (int): Propagation layers ``K`` the embeddings were trained with.
        meta (dict): Training facts (epochs, losses, snapshot seq...); ``version`` is set on save.
    """

    user_ids: list[NodeId]
    item_ids: list[NodeId]
    user_base: np.ndarray
    item_base: np.ndarray
    layers: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.user_base.shape[0] != len(self.user_ids) or self.item_base.shape[0] != len(self.item_ids):
            raise ValueError("checkpoint rows and ids differ in length")
        if self.user_base.shape[1:] != self.item_base.shape[1:]:
            raise ValueError("user and item embeddings differ in width")

    @property
    def dim(self) -> int:
        return int(self.user_base.shape[1])

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 0))

    def save(self, model_dir: str | os.PathLike[str]) -> Path:
        """Write under a new version and swap the manifest in atomically (see :func:`save_versioned`)."""
        arrays = {"user_ids": np.asarray(self.user_ids, dtype=str), "item_ids": np.asarray(self.item_ids, dtype=str),
                  "user_base": self.user_base.astype(np.float32), "item_base": self.item_base.astype(np.float32)}
        return save_versioned(model_dir, "lightgcn", arrays, self.meta, layers=self.layers)

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str]) -> LightGCNCheckpoint:
        """Read the current checkpoint; :class:`~models.model_dir.CheckpointError` if there is none,
        it is broken or it is not a LightGCN one."""
        return load_versioned(model_dir, "lightgcn", lambda manifest, arrays: cls(
            user_ids=[NodeId(str(x)) for x in arrays["user_ids"]],
            item_ids=[NodeId(str(x)) for x in arrays["item_ids"]],
            user_base=arrays["user_base"].astype(np.float32), item_base=arrays["item_base"].astype(np.float32),
            layers=int(manifest["layers"]), meta=dict(manifest.get("meta", {}))))
