"""A fitted :class:`~models.spectral.model.SpectralCF` keyed by producer ids, in the versioned model dir.

Array file ``spectral-<version>.npz`` (see :mod:`models.model_dir`) holds ``user_ids``,
``item_ids`` and the model's :meth:`~models.spectral.model.SpectralCF.state`; the manifest says
``"method": "spectral"`` and which edge values the model was fitted on, because serving must fold
new interactions in with the same values.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from core.domain import VALUE_MODES, EdgeSnapshot, NodeId, edge_values
from models.model_dir import load_versioned, save_versioned
from models.spectral.model import SpectralCF


def interaction_matrix(rows: np.ndarray, cols: np.ndarray, weight: np.ndarray, shape: tuple[int, int],
                       values: str) -> sp.csr_matrix:
    """``[shape]`` CSR of the edges' values; repeated ``(row, col)`` pairs are one edge."""
    matrix = sp.csr_matrix((edge_values(weight, values), (rows, cols)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    if values == "binary":
        matrix.data[:] = 1.0
    return matrix


@dataclass(slots=True)
class SpectralCheckpoint:
    """A fitted SpectralCF whose rows and columns belong to producer ids.

    Args:
        user_ids (list[NodeId]): Row ``u`` of ``model.item_projection`` belongs to ``user_ids[u]``.
        item_ids (list[NodeId]): Row ``i`` of ``model.item_emb``/``model.user_projection``.
        model (SpectralCF): The fitted filter.
        values (str): Edge values it was fitted on, see :func:`edge_values`. (default: ``"weight"``)
        meta (dict): Fit facts (rank, edges, seconds, source...); ``version`` is set on save.
    """

    user_ids: list[NodeId]
    item_ids: list[NodeId]
    model: SpectralCF
    values: str = "weight"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.values not in VALUE_MODES:
            raise ValueError(f"values must be one of {VALUE_MODES}, got {self.values!r}")
        if self.model.item_emb is None or self.model.item_projection is None:
            raise ValueError("the SpectralCF of a checkpoint must be fitted")
        if self.model.item_emb.shape[0] != len(self.item_ids) or \
                self.model.item_projection.shape[0] != len(self.user_ids):
            raise ValueError("checkpoint rows and ids differ in length")

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 0))

    def save(self, model_dir: str | os.PathLike[str]) -> Path:
        """Write under a new version and swap the manifest in atomically; returns the manifest path."""
        arrays = {"user_ids": np.asarray(self.user_ids, dtype=str), "item_ids": np.asarray(self.item_ids, dtype=str),
                  **self.model.state()}
        return save_versioned(model_dir, "spectral", arrays, self.meta, values=self.values, layers=1)

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], device: torch.device | str | None = None) -> SpectralCheckpoint:
        """Read the current checkpoint; :class:`~models.model_dir.CheckpointError` if there is none,
        it is broken or it is not a spectral one."""

        def build(manifest: dict[str, Any], state: dict[str, np.ndarray]) -> SpectralCheckpoint:
            return cls(user_ids=[NodeId(str(x)) for x in state.pop("user_ids")],
                       item_ids=[NodeId(str(x)) for x in state.pop("item_ids")],
                       model=SpectralCF.from_state(state, device=device), values=str(manifest["values"]),
                       meta=dict(manifest.get("meta", {})))

        return load_versioned(model_dir, "spectral", build)


def fit_spectral(snapshot: EdgeSnapshot, *, rank: int = 992, values: str = "weight",
                 device: torch.device | str | None = None) -> SpectralCheckpoint:
    """Fit SpectralCF on every edge of ``snapshot`` (rank clipped to ``min(users, items)``).

    Args:
        snapshot (EdgeSnapshot): The graph.
        rank (int): Largest rank = embedding width. (default: ``992``)
        values (str): Edge values, see :func:`edge_values`. (default: ``"weight"``)
        device (torch.device or str, optional): (default: CUDA if present, else CPU)
    """
    num_users, num_items = len(snapshot.user_ids), len(snapshot.item_ids)
    if num_users == 0 or num_items == 0 or len(snapshot.user_index) == 0:
        raise ValueError("cannot train on a snapshot without edges")
    matrix = interaction_matrix(snapshot.user_index, snapshot.item_index, snapshot.weight,
                                (num_users, num_items), values)
    model = SpectralCF(rank=min(rank, num_users, num_items), device=device)
    started = time.perf_counter()
    model.fit(matrix)
    seconds = time.perf_counter() - started
    meta = {"method": "spectral", "rank": model.dim, "requested_rank": rank, "values": values,
            "edges": int(matrix.nnz), "users": num_users, "items": num_items, "snapshot_seq": snapshot.seq,
            "device": str(model.device), "train_seconds": round(seconds, 3), "created_ms": int(time.time() * 1000)}
    return SpectralCheckpoint(list(snapshot.user_ids), list(snapshot.item_ids), model, values, meta)
