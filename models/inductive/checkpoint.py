"""A trained GraphSAGE or GAT recommender keyed by producer ids, in the versioned model dir.

Array file ``sage-<version>.npz`` or ``gat-<version>.npz`` (see :mod:`models.model_dir`) holds
``user_ids``, ``item_ids`` and the module's parameters as ``param:<name>``; the manifest keeps the
width and the layers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.domain import NodeId
from models.inductive.model import CONVS, BipartiteGNN
from models.model_dir import load_versioned, save_versioned

_PARAM = "param:"


@dataclass(slots=True)
class InductiveCheckpoint:
    """A fitted :class:`~models.inductive.model.BipartiteGNN`.

    Args:
        user_ids (list[NodeId]): The users it was fitted on (they hold no parameters: kept for the record).
        item_ids (list[NodeId]): Row ``i`` of the item embedding belongs to ``item_ids[i]``.
        conv (str): ``"sage"`` or ``"gat"`` (the checkpoint's method name).
        dim (int): Width.
        layers (int): ``K``.
        state (dict[str, np.ndarray]): The module's ``state_dict`` as float32 arrays.
        meta (dict): Training facts; ``version`` is set on save.
    """

    user_ids: list[NodeId]
    item_ids: list[NodeId]
    conv: str
    dim: int
    layers: int
    state: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {self.conv!r}")
        rows = self.state.get("item_embedding.weight")
        if rows is None or rows.shape != (len(self.item_ids), self.dim):
            raise ValueError("the item embedding does not match item_ids and dim")

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 0))

    def module(self, device: torch.device | str = "cpu") -> BipartiteGNN:
        """The fitted module, in eval mode on ``device``."""
        model = BipartiteGNN(len(self.item_ids), self.dim, self.layers, self.conv)
        model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in self.state.items()})
        return model.to(device).eval()

    def save(self, model_dir: str | os.PathLike[str]) -> Path:
        """Write under a new version and swap the manifest in atomically (see :func:`save_versioned`)."""
        arrays = {"user_ids": np.asarray(self.user_ids, dtype=str), "item_ids": np.asarray(self.item_ids, dtype=str)}
        arrays.update({_PARAM + name: value.astype(np.float32) for name, value in self.state.items()})
        return save_versioned(model_dir, self.conv, arrays, self.meta, dim=self.dim, layers=self.layers)

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], conv: str) -> InductiveCheckpoint:
        """Read the current ``conv`` checkpoint (:class:`~models.model_dir.CheckpointError` if there is
        none, it is broken or it is of another method)."""
        return load_versioned(model_dir, conv, lambda manifest, arrays: cls(
            user_ids=[NodeId(str(x)) for x in arrays["user_ids"]],
            item_ids=[NodeId(str(x)) for x in arrays["item_ids"]],
            conv=conv, dim=int(manifest["dim"]), layers=int(manifest["layers"]),
            state={key[len(_PARAM):]: value for key, value in arrays.items() if key.startswith(_PARAM)},
            meta=dict(manifest.get("meta", {}))))
