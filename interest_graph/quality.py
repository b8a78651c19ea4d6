"""``train --data-dir``, ``evaluate`` and ``export``: offline quality on a ``train.txt``/``test.txt`` dataset.

``train --data-dir`` fits what ``IG_MODEL_METHOD`` names on ``train.txt`` and saves it as ``train``
does from the store: a checkpoint in the one model directory format (:mod:`models.model_dir`),
whose ids are the dataset's (``"0"``, ``"1"``, ...) and whose ``meta["data_dir"]`` names the
dataset. ``evaluate`` and ``export`` embed the training graph with the checkpoint's method exactly
as a full refresh round does (:meth:`~models.protocol.RefreshMethod.full`), so they measure and
hand out what the refresh worker would serve; scores are dot products of those embeddings.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.domain import NodeKind
from core.errors import InterestGraphError
from core.settings import Settings

if TYPE_CHECKING:
    from models.interactions import InteractionSplit
    from models.methods import Checkpoint

#: Published @20 figures on the LightGCN Gowalla split (LightGCN paper, Table 3).
PUBLISHED_GOWALLA = {"LightGCN": (0.1830, 0.1554), "NGCF": (0.1570, 0.1327), "Mult-VAE": (0.1641, 0.1335)}


class ModelDirError(InterestGraphError, ValueError):
    """The model directory holds no readable checkpoint, or not one of this dataset (not retryable)."""


def train_on_dataset(settings: Settings, *, data_dir: Path, out: Path, epochs: int | None = None) -> Checkpoint:
    """Fit ``settings.model_method`` on ``data_dir/train.txt`` and save it into the model dir ``out``."""
    from models.config import ModelConfig
    from models.interactions import load_split, snapshot_from_matrix
    from models.methods import fit

    split = load_split(data_dir)
    checkpoint = fit(snapshot_from_matrix(split.train, split.user_ids, split.item_ids),
                     ModelConfig.from_settings(settings), epochs=epochs)
    checkpoint.meta.update(source="dataset", data_dir=str(data_dir), train_interactions=int(split.train.nnz))
    checkpoint.save(out)
    return checkpoint


def _load(model_dir: Path) -> Checkpoint:
    from models.methods import load_checkpoint
    from models.model_dir import CheckpointError

    try:
        return load_checkpoint(model_dir)
    except CheckpointError as exc:
        raise ModelDirError(f"{exc}: write the model with `interest-graph train --data-dir DIR --out {model_dir}`") \
            from exc


def _served(settings: Settings, checkpoint: Checkpoint, split: InteractionSplit,
            data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(user_emb, item_emb)`` of the training graph in the dataset's id order, as a full round makes them."""
    from models.config import RefreshConfig
    from models.interactions import snapshot_from_matrix
    from models.methods import refresh_method

    if checkpoint.user_ids != split.user_ids or checkpoint.item_ids != split.item_ids:
        raise ModelDirError(f"model has {len(checkpoint.user_ids)} users x {len(checkpoint.item_ids)} items, "
                            f"{data_dir} has {split.num_users} x {split.num_items}")
    method = refresh_method(checkpoint, RefreshConfig.from_settings(settings))
    rows = method.full(snapshot_from_matrix(split.train, split.user_ids, split.item_ids)).rows
    vectors = {r.kind: np.asarray(r.vectors, dtype=np.float32) for r in rows}
    return vectors[NodeKind.USER], vectors[NodeKind.ITEM]


def evaluate_command(settings: Settings, *, model_dir: Path, data_dir: Path, k: int = 20) -> int:
    """All-ranking recall@k / NDCG@k over every item, the user's train items masked."""
    from models.evaluation import evaluate
    from models.interactions import load_split

    checkpoint = _load(model_dir)
    split = load_split(data_dir)
    user_emb, item_emb = _served(settings, checkpoint, split, data_dir)
    started = time.monotonic()
    metrics = evaluate(user_emb, item_emb, split.train, split.test, k=k)
    print(f"{'model':<12} recall@{k:<4} ndcg@{k:<4}")
    print(f"{'ours':<12} {metrics['recall']:.4f}     {metrics['ndcg']:.4f}     "
          f"({int(metrics['n_users'])} test users, {time.monotonic() - started:.1f} s)")
    if data_dir.name == "gowalla" and k == 20:
        for name, (recall, ndcg) in PUBLISHED_GOWALLA.items():
            print(f"{name:<12} {recall:.4f}     {ndcg:.4f}     (published)")
    return 0


def export_command(settings: Settings, *, model_dir: Path, out: Path, data_dir: Path | None = None) -> int:
    """Write ``user_emb``/``item_emb`` (float32, dataset id order) and the ids to ``out`` (.npz).

    The training graph is ``data_dir``, by default the dataset the checkpoint was trained on.
    """
    from models.interactions import load_split

    checkpoint = _load(model_dir)
    if data_dir is None:
        if "data_dir" not in checkpoint.meta:
            raise ModelDirError(f"the checkpoint in {model_dir} was not trained on a dataset: pass --data-dir")
        data_dir = Path(checkpoint.meta["data_dir"])
    split = load_split(data_dir)
    user_emb, item_emb = _served(settings, checkpoint, split, data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, user_emb=user_emb, item_emb=item_emb, user_ids=np.asarray(split.user_ids),
             item_ids=np.asarray(split.item_ids))
    print(f"[export] user_emb {user_emb.shape}, item_emb {item_emb.shape} -> {out}", file=sys.stderr)
    return 0
