"""Recommendation quality: fit :class:`~models.spectral.model.SpectralCF`, evaluate @k, compare with references.

Usage::

    python bench/quality.py --data-dir ../shared/datasets/gowalla
    python bench/quality.py --ratings-csv ../shared/datasets/movielens-small/ratings.csv
    python bench/quality.py --data-dir ... --baselines popularity,gfcf,lightgcn --lightgcn-epochs 20

Protocol (LightGCN's): rank all items, mask the user's training items, average recall@k and
NDCG@k over users with test items. Published numbers are printed for the datasets they belong to.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds

from core.domain import EdgeSnapshot, NodeId
from core.settings import Settings
from models.evaluation import evaluate, evaluate_scorer
from models.inductive.train import InductiveTrainConfig
from models.interactions import InteractionSplit, load_ratings_csv, load_split, snapshot_from_matrix, split_per_user
from models.spectral.model import SpectralCF

#: Published @20 results on the LightGCN splits, keyed by the dataset folder name.
PUBLISHED: dict[str, list[tuple[str, float, float, str]]] = {
    "gowalla": [
        ("LightGCN", 0.1830, 0.1554, "He et al. SIGIR 2020, Table 3"),
        ("NGCF", 0.1570, 0.1327, "He et al. SIGIR 2020, Table 3"),
        ("Mult-VAE", 0.1641, 0.1335, "He et al. SIGIR 2020, Table 3"),
        ("GF-CF", 0.1849, 0.1518, "Shen et al. CIKM 2021"),
    ],
}

Row = dict[str, object]


def _load(args: argparse.Namespace) -> tuple[str, InteractionSplit]:
    if args.ratings_csv:
        matrix, user_ids, item_ids = load_ratings_csv(args.ratings_csv)
        train, test = split_per_user(matrix, args.test_fraction, args.split_seed)
        name = f"{Path(args.ratings_csv).parent.name} (random {1 - args.test_fraction:.0%} split)"
        return name, InteractionSplit(train, test, user_ids, item_ids)
    return Path(args.data_dir).name, load_split(args.data_dir)


def _timed(label: str, fit: Callable[[], Callable[[torch.Tensor], torch.Tensor]], data: InteractionSplit,
           k: int) -> Row:
    started = time.perf_counter()
    scorer = fit()
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    metrics = evaluate_scorer(scorer, data.train, data.test, k=k, batch=1024)
    return {"method": label, **metrics, "fit_s": fit_s, "eval_s": time.perf_counter() - started,
            "source": "measured"}


def spectral_row(data: InteractionSplit, args: argparse.Namespace) -> Row:
    model = SpectralCF(rank=args.rank, power=args.power, seed=args.seed)
    started = time.perf_counter()
    user_emb, item_emb = model.fit(data.train)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    metrics = evaluate(user_emb, item_emb, data.train, data.test, k=args.k)
    label = f"SpectralCF (K={model.dim}, p={args.power:g}, dot product)"
    return {"method": label, **metrics, "fit_s": fit_s, "eval_s": time.perf_counter() - started,
            "source": "measured"}


def popularity_scorer(train: sp.csr_matrix) -> Callable[[torch.Tensor], torch.Tensor]:
    """Every user gets the items with the most training interactions."""
    counts = torch.as_tensor(np.asarray(train.sum(axis=0)).ravel(), dtype=torch.float32)
    return lambda users: counts.expand(users.shape[0], -1)


def gfcf_scorer(train: sp.csr_matrix, ideal_rank: int = 256, alpha: float = 0.3) -> Callable[
        [torch.Tensor], torch.Tensor]:
    """GF-CF as published: ``r_u R̃ᵀR̃ + alpha r_u D_I^{-1/2} V_k V_kᵀ D_I^{1/2}`` (not a dot product)."""
    user_degree = np.asarray(train.sum(axis=1)).ravel().clip(min=1)
    item_degree = np.asarray(train.sum(axis=0)).ravel().clip(min=1)
    normalized = sp.csr_matrix(sp.diags(user_degree**-0.5) @ train @ sp.diags(item_degree**-0.5))
    normalized_t = sp.csr_matrix(normalized.T)
    # ARPACK like the authors' code: a randomized SVD mixes in directions past the cut-off.
    _, _, vt = svds(normalized.astype(np.float64), k=ideal_rank, random_state=0)
    v = torch.as_tensor(vt.T.copy(), dtype=torch.float32)
    d_half = torch.as_tensor(item_degree, dtype=torch.float32).sqrt()

    def scorer(users: torch.Tensor) -> torch.Tensor:
        rows = train[users.numpy()]
        linear = torch.from_numpy(((rows @ normalized_t) @ normalized).toarray())
        ideal = ((torch.from_numpy(rows.toarray()) / d_half) @ v) @ v.T * d_half
        return linear + alpha * ideal

    return scorer


def _numbered_snapshot(train: sp.csr_matrix) -> EdgeSnapshot:
    """The training matrix as an edge snapshot whose ids are the row and column numbers."""
    return snapshot_from_matrix(train, [NodeId(str(u)) for u in range(train.shape[0])],
                                [NodeId(str(i)) for i in range(train.shape[1])])


def lightgcn_scorer(train: sp.csr_matrix, epochs: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """LightGCN (3 layers, d=64, BPR) trained for ``epochs`` by :func:`models.lightgcn.train.train_lightgcn`."""
    from models.lightgcn.propagation import propagate_full
    from models.lightgcn.train import train_lightgcn

    snapshot = _numbered_snapshot(train)
    layers = 3
    checkpoint = train_lightgcn(snapshot, dim=64, layers=layers, epochs=epochs, device="cpu")
    users_emb, items_emb = propagate_full(snapshot, checkpoint.user_base, checkpoint.item_base, layers, "cpu")
    return lambda users: users_emb[users] @ items_emb.T


def inductive_scorer(train: sp.csr_matrix, config: InductiveTrainConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """GraphSAGE or GAT trained as ``IG_MODEL_METHOD=sage|gat`` trains them
    (:func:`models.inductive.train.train_inductive`), served as its refresh worker's full round."""
    from models.inductive.refresh import InductiveRefresh
    from models.inductive.train import train_inductive

    snapshot = _numbered_snapshot(train)
    checkpoint = train_inductive(snapshot, config, device="cpu")
    users, items = InductiveRefresh(checkpoint, device="cpu").full(snapshot).rows
    user_emb, item_emb = torch.from_numpy(users.vectors), torch.from_numpy(items.vectors)
    return lambda rows: user_emb[rows] @ item_emb.T


def print_table(dataset: str, rows: list[Row], k: int) -> None:
    print(f"\n{dataset}: all-ranking, train items masked, @{k}")
    print(f"{'method':44s} {'recall':>8s} {'ndcg':>8s} {'fit s':>8s} {'eval s':>8s}  source")
    for row in rows:
        fit_s = f"{row['fit_s']:8.1f}" if "fit_s" in row else f"{'-':>8s}"
        eval_s = f"{row['eval_s']:8.1f}" if "eval_s" in row else f"{'-':>8s}"
        print(f"{row['method']!s:44s} {row['recall']:8.4f} {row['ndcg']:8.4f} {fit_s} {eval_s}  {row['source']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="folder with train.txt and test.txt (user item item ...)")
    source.add_argument("--ratings-csv", help="MovieLens-style ratings.csv, split at random per user")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held-out share per user (csv only)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the csv split")
    parser.add_argument("--rank", type=int, default=Settings().spectral_rank,
                        help="SpectralCF rank K = width; 0 = no SpectralCF row (default: IG_SPECTRAL_RANK's)")
    parser.add_argument("--power", type=float, default=1.0, help="SpectralCF spectral exponent p")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomized SVD")
    parser.add_argument("--k", type=int, default=20, help="ranking cut-off")
    parser.add_argument("--baselines", default="popularity,gfcf",
                        help="comma list of measured references: popularity, gfcf, lightgcn, sage, gat "
                             "('' for none)")
    parser.add_argument("--lightgcn-epochs", type=int, default=10, help="epochs of the lightgcn reference")
    parser.add_argument("--gnn-epochs", type=int, default=None,
                        help="epochs of the sage and gat rows (default: the trainer's, InductiveTrainConfig)")
    parser.add_argument("--gnn-lr", type=float, default=None, help="their learning rate (default: the trainer's)")
    parser.add_argument("--gnn-batch", type=int, default=None, help="their triples per step (default: the trainer's)")
    parser.add_argument("--gnn-init", default=InductiveTrainConfig().init, choices=["random", "spectral"],
                        help="their item rows' start (default: %(default)s, the trainer's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dataset, data = _load(args)
    print(f"{dataset}: {data.num_users} users, {data.num_items} items, {data.train.nnz} train / "
          f"{data.test.nnz} test interactions (loaded in {time.perf_counter() - started:.1f} s)", flush=True)
    rows = [spectral_row(data, args)] if args.rank else []
    baselines: dict[str, tuple[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]]] = {
        "popularity": ("popularity", lambda: popularity_scorer(data.train)),
        "gfcf": ("GF-CF (exact, K=256, alpha=0.3)", lambda: gfcf_scorer(data.train)),
        "lightgcn": (f"LightGCN ({args.lightgcn_epochs} epochs, d=64)",
                     lambda: lightgcn_scorer(data.train, args.lightgcn_epochs)),
    }
    for conv, name in (("sage", "GraphSAGE"), ("gat", "GAT")):
        config = InductiveTrainConfig(conv=conv)
        config = dataclasses.replace(config, epochs=args.gnn_epochs or config.passes, lr=args.gnn_lr or config.lr,
                                     batch_size=args.gnn_batch or config.batch_size, init=args.gnn_init)
        baselines[conv] = (f"{name} ({config.passes} ep, lr {config.lr:g}, batch {config.batch_size}, d={config.dim}, "
                           f"{config.init} init)",
                           lambda config=config: inductive_scorer(data.train, config))
    for name in filter(None, args.baselines.split(",")):
        if name not in baselines:
            raise SystemExit(f"unknown baseline {name!r}; choose from {sorted(baselines)}")
        label, fit = baselines[name]
        rows.append(_timed(label, fit, data, args.k))
        print(f"  measured {label}", flush=True)
    for method, recall, ndcg, cite in PUBLISHED.get(Path(args.data_dir or "").name, []) if args.k == 20 else []:
        rows.append({"method": f"{method} (published)", "recall": recall, "ndcg": ndcg, "source": cite})
    print_table(dataset, rows, args.k)
    if args.json:
        Path(args.json).write_text(json.dumps({"dataset": dataset, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
