"""``train --data-dir``, ``evaluate`` and ``export``: offline quality on a ``train.txt``/``test.txt`` dataset.

A dataset model directory holds the fitted :class:`~models.spectral.model.SpectralCF` (``spectral.npz``),
the embeddings it serves (``embeddings.npz``: ``user_emb``/``item_emb`` in the dataset's id order)
and ``dataset.json`` (where it came from, how long it took). Scores are dot products of those
embeddings, so ``export`` hands anyone exactly what ``evaluate`` measured.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from core.settings import Settings

MODEL_FILE, EMBEDDINGS_FILE, META_FILE = "spectral.npz", "embeddings.npz", "dataset.json"

#: Published @20 figures on the LightGCN Gowalla split (LightGCN paper, Table 3).
PUBLISHED_GOWALLA = {"LightGCN": (0.1830, 0.1554), "NGCF": (0.1570, 0.1327), "Mult-VAE": (0.1641, 0.1335)}


class ModelDirError(ValueError):
    """The model directory is missing files or was not written by ``train --data-dir`` (not retryable)."""

    retryable = False


def train_on_dataset(settings: Settings, *, data_dir: Path, out: Path) -> int:
    """Fit SpectralCF on ``data_dir/train.txt`` and write the model directory ``out``."""
    from models.interactions import load_split
    from models.spectral.model import SpectralCF

    started = time.monotonic()
    split = load_split(data_dir)
    model = SpectralCF()
    user_emb, item_emb = model.fit(split.train)
    fit_s = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    np.savez(out / EMBEDDINGS_FILE, user_emb=user_emb.astype(np.float32), item_emb=item_emb.astype(np.float32),
             user_ids=np.asarray(split.user_ids), item_ids=np.asarray(split.item_ids))
    meta = {"method": "SpectralCF", "data_dir": str(data_dir), "users": split.num_users, "items": split.num_items,
            "train_interactions": int(split.train.nnz), "dim": int(item_emb.shape[1]), "fit_seconds": round(fit_s, 1)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    print(f"[train] SpectralCF on {split.num_users} users x {split.num_items} items "
          f"(d={item_emb.shape[1]}) in {fit_s:.1f} s -> {out}", file=sys.stderr)
    return 0


def _load_embeddings(model_dir: Path) -> dict[str, np.ndarray]:
    path = model_dir / EMBEDDINGS_FILE
    if not path.is_file():
        raise ModelDirError(f"{path} not found: write the model with `interest-graph train --data-dir DIR --out "
                            f"{model_dir}`")
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def evaluate_command(*, model_dir: Path, data_dir: Path, k: int = 20) -> int:
    """All-ranking recall@k / NDCG@k over every item, the user's train items masked."""
    from models.evaluation import evaluate
    from models.interactions import load_split

    emb = _load_embeddings(model_dir)
    split = load_split(data_dir)
    if emb["user_emb"].shape[0] != split.num_users or emb["item_emb"].shape[0] != split.num_items:
        raise ModelDirError(f"model has {emb['user_emb'].shape[0]} users x {emb['item_emb'].shape[0]} items, "
                            f"{data_dir} has {split.num_users} x {split.num_items}")
    started = time.monotonic()
    metrics = evaluate(emb["user_emb"], emb["item_emb"], split.train, split.test, k=k)
    print(f"{'model':<12} recall@{k:<4} ndcg@{k:<4}")
    print(f"{'ours':<12} {metrics['recall']:.4f}     {metrics['ndcg']:.4f}     "
          f"({int(metrics['n_users'])} test users, {time.monotonic() - started:.1f} s)")
    if data_dir.name == "gowalla" and k == 20:
        for name, (recall, ndcg) in PUBLISHED_GOWALLA.items():
            print(f"{name:<12} {recall:.4f}     {ndcg:.4f}     (published)")
    return 0


def export_command(*, model_dir: Path, out: Path) -> int:
    """Write ``user_emb``/``item_emb`` (float32, dataset id order) and the ids to ``out`` (.npz)."""
    emb = _load_embeddings(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, user_emb=emb["user_emb"].astype(np.float32), item_emb=emb["item_emb"].astype(np.float32),
             user_ids=emb["user_ids"], item_ids=emb["item_ids"])
    print(f"[export] user_emb {emb['user_emb'].shape}, item_emb {emb['item_emb'].shape} -> {out}", file=sys.stderr)
    return 0
