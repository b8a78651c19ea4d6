"""The methods by name: fit one, load whichever a model dir holds, and make its refresh rounds.

``model_method`` (``IG_MODEL_METHOD``) picks the method a fit uses: ``"spectral"``
(:mod:`models.spectral`, the default), ``"lightgcn"`` (:mod:`models.lightgcn`), or the inductive
GNNs ``"sage"`` (GraphSAGE) and ``"gat"`` (GAT) of :mod:`models.inductive`. Whichever it was,
the checkpoint lands in the one model dir format (:mod:`models.model_dir`), and the manifest says
which method reads it back.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from core.domain import EdgeSnapshot
from graph_store.base import GraphStore
from models.config import ModelConfig, RefreshConfig
from models.inductive.checkpoint import InductiveCheckpoint
from models.inductive.model import CONVS
from models.inductive.refresh import InductiveRefresh
from models.inductive.train import InductiveTrainConfig, train_inductive
from models.lightgcn.base_embeddings import BaseTable
from models.lightgcn.checkpoint import LightGCNCheckpoint
from models.lightgcn.refresh import LightGCNRefresh
from models.lightgcn.train import TrainConfig, train_lightgcn
from models.model_dir import METHODS, CheckpointError, manifest_method, read_manifest
from models.protocol import RefreshMethod
from models.spectral.checkpoint import SpectralCheckpoint, fit_spectral
from models.spectral.refresh import SpectralRefresh

#: A checkpoint of any method.
Checkpoint = LightGCNCheckpoint | SpectralCheckpoint | InductiveCheckpoint

#: Every method a fit can use is one a model dir can hold: ``METHODS`` (imported from there).
__all__ = ["METHODS", "TRAINED_METHODS", "Checkpoint", "fit", "fit_and_save", "load_checkpoint", "refresh_method",
           "train_from_store"]
#: The methods trained by gradient descent (``--epochs`` applies).
TRAINED_METHODS = ("lightgcn", *CONVS)


def fit(snapshot: EdgeSnapshot, config: ModelConfig, *, method: str | None = None, epochs: int | None = None,
        device: torch.device | str | None = None) -> Checkpoint:
    """Fit ``method`` on every edge of ``snapshot`` (no saving).

    Args:
        snapshot (EdgeSnapshot): The graph.
        config (ModelConfig): ``model_method``; ``spectral_rank`` and ``spectral_values`` (SpectralCF);
            ``embedding_dim`` and ``num_layers`` (LightGCN, GraphSAGE, GAT).
        method (str, optional): One of :data:`METHODS`. (default: ``config.model_method``)
        epochs (int, optional): Epochs of a trained method. (default: its trainer's config's)
        device (torch.device or str, optional): (default: CUDA if present, else CPU)
    """
    method = method or config.model_method
    if method == "spectral":
        return fit_spectral(snapshot, rank=config.spectral_rank, values=config.spectral_values, device=device)
    if method == "lightgcn":
        defaults = TrainConfig()
        return train_lightgcn(snapshot, dim=config.embedding_dim, layers=config.num_layers,
                              epochs=defaults.epochs if epochs is None else epochs, lr=defaults.lr,
                              reg=defaults.reg, batch_size=defaults.batch_size, seed=defaults.seed, device=device)
    if method in CONVS:
        inductive = InductiveTrainConfig(conv=method, dim=config.embedding_dim, layers=config.num_layers)
        if epochs is not None:
            inductive = dataclasses.replace(inductive, epochs=epochs)
        return train_inductive(snapshot, inductive, device=device)
    raise ValueError(f"model_method must be one of {METHODS}, got {method!r}")


def train_from_store(store: GraphStore, config: ModelConfig, out_dir: str | Path | None = None, *,
                     epochs: int | None = None, device: torch.device | str | None = None,
                     source: str = "train", method: str | None = None) -> Checkpoint:
    """``interest-graph train``: snapshot the store, :func:`fit`, save into ``out_dir`` (default: ``model_dir``).

    The refresh worker watching that dir reloads the checkpoint and republishes every embedding.

    Args:
        store (GraphStore): Source of the snapshot.
        config (ModelConfig): What :func:`fit` reads, and ``model_dir``.
        out_dir (str or Path, optional): Model dir. (default: ``config.model_dir``)
        epochs (int, optional): LightGCN epochs. (default: :class:`~models.lightgcn.train.TrainConfig`'s)
        device (torch.device or str, optional): (default: CUDA if present, else CPU)
        source (str): Who trained, kept in ``meta["source"]``; the refresh worker only ever
            replaces checkpoints of its own (``"bootstrap"``). (default: ``"train"``)
        method (str, optional): One of :data:`METHODS`. (default: ``config.model_method``)
    """
    return fit_and_save(store.snapshot(), config, out_dir, epochs=epochs, device=device, source=source, method=method)


def fit_and_save(snapshot: EdgeSnapshot, config: ModelConfig, out_dir: str | Path | None = None, *,
                 epochs: int | None = None, device: torch.device | str | None = None,
                 source: str = "train", method: str | None = None) -> Checkpoint:
    """:func:`fit` ``snapshot``, mark who trained it (``meta["source"]``), save it into ``out_dir``
    (default: ``model_dir``); the arguments are :func:`train_from_store`'s."""
    checkpoint = fit(snapshot, config, method=method, epochs=epochs, device=device)
    checkpoint.meta["source"] = source
    checkpoint.save(out_dir if out_dir is not None else config.model_dir)
    return checkpoint


def load_checkpoint(model_dir: str | os.PathLike[str], device: torch.device | str | None = None) -> Checkpoint:
    """The current checkpoint of ``model_dir``, whichever method wrote it (:class:`CheckpointError`
    if there is none or it is unreadable)."""
    method = manifest_method(read_manifest(model_dir))
    if method == "spectral":
        return SpectralCheckpoint.load(model_dir, device=device)
    if method == "lightgcn":
        return LightGCNCheckpoint.load(model_dir)
    if method in CONVS:
        return InductiveCheckpoint.load(model_dir, method)
    raise CheckpointError(f"{model_dir} holds a checkpoint of unknown method {method!r}")


def refresh_method(checkpoint: Checkpoint | None, config: RefreshConfig, device: str | None = None) -> RefreshMethod:
    """The refresh rounds of ``checkpoint``; without one, LightGCN over hashed bases
    (``config.model.embedding_dim`` wide, ``num_layers`` deep). ``refresh_fanout`` caps LightGCN's reads."""
    if isinstance(checkpoint, SpectralCheckpoint):
        return SpectralRefresh(checkpoint)
    if isinstance(checkpoint, InductiveCheckpoint):
        return InductiveRefresh(checkpoint, config.refresh_fanout or None, device)
    table = BaseTable(checkpoint, dim=config.model.embedding_dim)
    layers = checkpoint.layers if checkpoint is not None else config.model.num_layers
    return LightGCNRefresh(table, layers, config.refresh_fanout or None, device)
