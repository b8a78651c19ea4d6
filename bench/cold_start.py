"""Cold start from text on MovieLens: rank items nobody has interacted with, from their text alone.

Usage::

    python bench/cold_start.py --data-dir ../shared/datasets --seeds 0 1 2

Protocol (strict cold-start items): a random ``--new-fraction`` of the rated movies is held out as
"new" and *all* their ratings are removed from training. :class:`~models.spectral.model.SpectralCF` is fitted
on the rest (every rating counts as one implicit interaction); users are embedded from their warm
history. Each user with at least one warm and one new-item rating ranks the new items only, and
recall@k / NDCG@k count the new items the user rated (LightGCN's metric definitions,
:mod:`models.evaluation`). Rows:

* ``text ridge``: :class:`~models.cold_start.text.TextProjection` (ridge, alpha by leave-one-out) from
  MiniLM vectors of ``"title | genres | tags"`` to the warm items' SpectralCF embeddings;
* ``text MLP`` (``--with-mlp``): the same map learned by a one-hidden-layer MLP (MSE, Adam), for comparison;
* ``text kNN``: mean SpectralCF embedding of the 20 warm items with the most similar text;
* ``text popularity``: ridge from the text to the warm items' log popularity, one list for all
  users: how much of the text rows' gain is guessing popularity rather than taste;
* ``genre popularity``: popularity is undefined for an item without interactions, so a new item
  scores the mean warm-item popularity of its genres (the same list for every user);
* ``genre affinity``: the user's share of warm ratings in the item's genres (personal, no text model);
* ``random``; and ``oracle fold-in``: the new items' true SpectralCF embeddings, folded in from the
  held-out ratings themselves (:meth:`~models.spectral.model.SpectralCF.item_embedding`), an upper reference
  that no cold-start method can see; ``oracle popularity`` ranks by the held-out rating counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from core.domain import ItemMeta
from core.settings import Settings
from models.cold_start.text import TextEncoder, TextProjection
from models.evaluation import evaluate_scorer
from models.interactions import load_ratings_csv
from models.spectral.model import SpectralCF
from streams.datasets import MOVIELENS_DIR, movielens_items

Scorer = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
TAGS, NO_TAGS = "title+genres+tags", "title+genres"


class ColdStartSplit:
    """Ratings with a random set of items held out as new: training sees none of their ratings."""

    def __init__(self, matrix: sp.csr_matrix, new_fraction: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        n_items = matrix.shape[1]
        self.new_items = np.sort(rng.choice(n_items, round(new_fraction * n_items), replace=False))
        self.warm_items = np.setdiff1d(np.arange(n_items), self.new_items)
        keep = np.ones(n_items, dtype=np.float32)
        keep[self.new_items] = 0.0
        self.train = sp.csr_matrix(matrix @ sp.diags(keep))
        self.train.eliminate_zeros()
        held_out = sp.csr_matrix(matrix[:, self.new_items])
        # Users who can be scored (a warm history) and have something to find (a new-item rating).
        self.users = np.flatnonzero((self.train.getnnz(axis=1) > 0) & (held_out.getnnz(axis=1) > 0))
        self.test = sp.csr_matrix(held_out[self.users])
        self.held_out = held_out


def text_vectors(metas: list[ItemMeta], cache: Path | None) -> dict[str, np.ndarray]:
    """MiniLM vectors of every item with and without its tags, read from ``cache`` when it holds the same items.

    MovieLens tags are written by the same users whose ratings are held out, and an item with tags
    is a popular one; a truly new item has none, so the text is also encoded without them.
    """
    ids = np.asarray([meta.item_id for meta in metas])
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            if np.array_equal(data["ids"], ids):
                return {TAGS: np.asarray(data["with_tags"]), NO_TAGS: np.asarray(data["without_tags"])}
    started = time.perf_counter()
    encoder = TextEncoder()
    vectors = {TAGS: encoder.encode_items(metas),
               NO_TAGS: encoder.encode_items([replace(meta, text="") for meta in metas])}
    print(f"encoded {len(metas)} items twice with MiniLM in {time.perf_counter() - started:.1f} s", flush=True)
    if cache is not None:
        np.savez(cache, ids=ids, with_tags=vectors[TAGS], without_tags=vectors[NO_TAGS])
    return vectors


def dot_scorer(user_emb: np.ndarray, item_emb: np.ndarray) -> Scorer:
    users_t, items_t = torch.as_tensor(user_emb), torch.as_tensor(item_emb, dtype=torch.float32)
    return lambda users: users_t[users] @ items_t.T


def ridge_embeddings(text: np.ndarray, item_emb: np.ndarray, split: ColdStartSplit) -> np.ndarray:
    projection = TextProjection().fit(text[split.warm_items], item_emb[split.warm_items])
    print(f"  ridge alpha={projection.alpha:g} (leave-one-out MSE by alpha: "
          f"{ {a: round(e, 6) for a, e in projection.loo_error.items()} })", flush=True)
    return projection.transform(text[split.new_items])


def mlp_embeddings(text: np.ndarray, item_emb: np.ndarray, split: ColdStartSplit, seed: int,
                   hidden: int = 256, epochs: int = 200) -> np.ndarray:
    """One hidden layer (ReLU, dropout 0.2), MSE on the warm items, full-batch Adam with weight decay."""
    torch.manual_seed(seed)
    x = torch.as_tensor(text[split.warm_items])
    y = torch.as_tensor(item_emb[split.warm_items])
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(hidden, y.shape[1]))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        return net(torch.as_tensor(text[split.new_items])).numpy()


def knn_embeddings(text: np.ndarray, item_emb: np.ndarray, split: ColdStartSplit, k: int = 20) -> np.ndarray:
    similarity = text[split.new_items] @ text[split.warm_items].T  # unit vectors: cosine
    nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
    return item_emb[split.warm_items][nearest].mean(axis=1)


def text_popularity_scorer(text: np.ndarray, split: ColdStartSplit) -> Scorer:
    """Non-personal: ridge from text to log(1 + warm popularity), the same list for every user."""
    popularity = np.log1p(np.asarray(split.train.sum(axis=0)).ravel())[:, None]
    projection = TextProjection().fit(text[split.warm_items], popularity[split.warm_items])
    scores_t = torch.as_tensor(projection.transform(text[split.new_items])[:, 0])
    return lambda users: scores_t.expand(users.shape[0], -1)


def true_popularity_scorer(split: ColdStartSplit) -> Scorer:
    counts = torch.as_tensor(np.asarray(split.held_out.sum(axis=0)).ravel(), dtype=torch.float32)
    return lambda users: counts.expand(users.shape[0], -1)


def genre_matrix(metas: list[ItemMeta]) -> sp.csr_matrix:
    """Binary ``[items, genres]`` matrix (items without a genre have an empty row)."""
    genres = sorted({g for meta in metas for g in meta.categories})
    index = {g: j for j, g in enumerate(genres)}
    rows = [i for i, meta in enumerate(metas) for _ in meta.categories]
    cols = [index[g] for meta in metas for g in meta.categories]
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(metas), len(genres)))


def genre_popularity_scorer(split: ColdStartSplit, genres: sp.csr_matrix) -> Scorer:
    warm = genres[split.warm_items]
    item_pop = np.asarray(split.train.sum(axis=0)).ravel()[split.warm_items]
    genre_pop = (warm.T @ item_pop) / np.maximum(np.asarray(warm.sum(axis=0)).ravel(), 1)
    new = genres[split.new_items]
    scores = (new @ genre_pop) / np.maximum(np.asarray(new.sum(axis=1)).ravel(), 1)
    scores_t = torch.as_tensor(scores, dtype=torch.float32)
    return lambda users: scores_t.expand(users.shape[0], -1)


def genre_affinity_scorer(split: ColdStartSplit, genres: sp.csr_matrix) -> Scorer:
    profile = np.asarray((split.train[split.users] @ genres).todense(), dtype=np.float32)
    profile /= np.maximum(np.asarray(split.train[split.users].sum(axis=1)), 1)
    return dot_scorer(profile, np.asarray(genres[split.new_items].todense(), dtype=np.float32))


def random_scorer(n_items: int, seed: int) -> Scorer:
    generator = torch.Generator().manual_seed(seed)
    return lambda users: torch.rand((users.shape[0], n_items), generator=generator)


def run_seed(matrix: sp.csr_matrix, texts: dict[str, np.ndarray], genres: sp.csr_matrix, args: argparse.Namespace,
             seed: int) -> dict[str, dict[str, float]]:
    split = ColdStartSplit(matrix, args.new_fraction, seed)
    model = SpectralCF(rank=args.rank, seed=seed, device="cpu")
    user_emb, item_emb = model.fit(split.train)
    user_emb = user_emb[split.users]
    print(f"seed {seed}: {len(split.new_items)} new items, {len(split.users)} users, {split.test.nnz} "
          f"new-item ratings, SpectralCF K={model.dim}", flush=True)
    text = texts[TAGS]
    methods: dict[str, Callable[[], Scorer]] = {
        f"text ridge, {TAGS} (ours)": lambda: dot_scorer(user_emb, ridge_embeddings(text, item_emb, split)),
        f"text ridge, {NO_TAGS} (ours)": lambda: dot_scorer(
            user_emb, ridge_embeddings(texts[NO_TAGS], item_emb, split)),
        f"text kNN-20, {TAGS}": lambda: dot_scorer(user_emb, knn_embeddings(text, item_emb, split)),
        f"text popularity, {TAGS} (not personal)": lambda: text_popularity_scorer(text, split),
        "genre affinity (no text)": lambda: genre_affinity_scorer(split, genres),
        "genre popularity": lambda: genre_popularity_scorer(split, genres),
        "random": lambda: random_scorer(len(split.new_items), seed),
        "oracle fold-in (sees test ratings)": lambda: dot_scorer(
            user_emb, model.item_embedding(sp.csr_matrix(split.held_out.T))),
        "oracle popularity (sees test ratings)": lambda: true_popularity_scorer(split),
    }
    if args.with_mlp:
        methods[f"text MLP, {TAGS}"] = lambda: dot_scorer(user_emb, mlp_embeddings(text, item_emb, split, seed))
    empty = sp.csr_matrix(split.test.shape, dtype=np.float32)
    results = {}
    for name, build in methods.items():
        started = time.perf_counter()
        metrics = evaluate_scorer(build(), empty, split.test, k=args.k)
        results[name] = {**metrics, "s": time.perf_counter() - started}
    return results


def print_table(per_seed: list[dict[str, dict[str, float]]], k: int) -> None:
    print(f"\n| method | recall@{k} | NDCG@{k} | s/seed |\n|---|---|---|---|")
    for name in per_seed[0]:
        recall, ndcg, seconds = (np.array([run[name][m] for run in per_seed]) for m in ("recall", "ndcg", "s"))
        print(f"| {name} | {recall.mean():.4f} ± {recall.std():.4f} | {ndcg.mean():.4f} ± {ndcg.std():.4f} "
              f"| {seconds.mean():.1f} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"datasets folder holding {MOVIELENS_DIR}/")
    parser.add_argument("--new-fraction", type=float, default=0.15, help="share of items held out as new")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one holdout per seed")
    parser.add_argument("--rank", type=int, default=Settings().spectral_rank,
                        help="SpectralCF rank (clipped to the data; default: IG_SPECTRAL_RANK's)")
    parser.add_argument("--k", type=int, default=20, help="ranking cut-off")
    parser.add_argument("--with-mlp", action="store_true", help="also fit the MLP map (minutes on 2 CPU cores)")
    parser.add_argument("--text-cache", type=Path, help="npz to keep the MiniLM vectors in between runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0.0 < args.new_fraction < 1.0:
        raise SystemExit(f"--new-fraction must be in (0, 1), got {args.new_fraction}")
    matrix, _, item_ids = load_ratings_csv(args.data_dir / MOVIELENS_DIR / "ratings.csv")
    catalog = {meta.item_id: meta for meta in movielens_items(args.data_dir)}
    metas = [catalog.get(item_id, ItemMeta(item_id)) for item_id in item_ids]
    print(f"movielens-small: {matrix.shape[0]} users, {matrix.shape[1]} rated items, {matrix.nnz} ratings; "
          f"{sum(bool(m.text) for m in metas)} items have tags", flush=True)
    texts = text_vectors(metas, args.text_cache)
    genres = genre_matrix(metas)
    per_seed = [run_seed(matrix, texts, genres, args, seed) for seed in args.seeds]
    print_table(per_seed, args.k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
