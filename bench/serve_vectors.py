"""Embeddings for the serving benchmark: clustered synthetic ones, or vectors fitted on a real dataset and
tiled to the catalog size, so the index sees the norms and the spread of trained embeddings.

A fitted catalog is SpectralCF at rank ``dim`` on ``train.txt`` (the served model's method), item vectors
as published and user vectors folded in from their rows (:math:`\\mathbf{R}\\mathbf{P}_U`, what ``up``
computes at request time). Past the dataset's own items, item ``n`` is a copy of item ``n mod I`` with
Gaussian noise added, as far from its source as the dataset's items are from their nearest neighbours
(the median, measured on a sample): a new item, as distinct from its source as real neighbours are from
each other. Tiling with less noise makes near-duplicates: at 10 % of each dimension's spread the exact
top 10 of every sampled user at 1,000,000 items were 10 of the ~25 copies of one item, within 0.5 % of
each other in score, and an approximate index was then measured on how it breaks those ties
(``bench/RESULTS.md``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

#: Items whose nearest neighbour sets the noise of tiled copies.
NEIGHBOUR_SAMPLE = 2000


def synthetic(n: int, dim: int, seed: int, centers: int = 512) -> np.ndarray:
    """Clustered embeddings (trained embeddings cluster; uniform noise would have no structure)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centers, dim)).astype(np.float32) * (3 / np.sqrt(dim))
    picked = middle[rng.integers(0, centers, n)]
    return (picked + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def neighbour_distance(base: np.ndarray, sample: int = NEIGHBOUR_SAMPLE, seed: int = 0) -> float:
    """Median Euclidean distance from a sample of ``base``'s rows to their nearest other row."""
    base = np.asarray(base, dtype=np.float32)
    rows = np.random.default_rng(seed).permutation(base.shape[0])[:sample]
    squared = (base * base).sum(axis=1)
    nearest = []
    for start in range(0, rows.size, 500):
        picked = rows[start:start + 500]
        distance = squared[picked, None] - 2.0 * base[picked] @ base.T + squared[None, :]
        distance[np.arange(picked.size), picked] = np.inf  # not its own neighbour
        nearest.append(np.sqrt(np.maximum(distance.min(axis=1), 0.0)))
    return float(np.median(np.concatenate(nearest)))


def tiled(base: np.ndarray, n: int, distance: float | None = None, seed: int = 0) -> np.ndarray:
    """``n`` rows: ``base`` itself, then noisy copies of its rows in order, each about ``distance`` from its
    source (default: :func:`neighbour_distance` of ``base``); the noise per dimension follows that
    dimension's spread."""
    out = np.resize(np.asarray(base, dtype=np.float32), (n, base.shape[1]))
    if n > base.shape[0]:
        rng = np.random.default_rng(seed)
        spread = base.std(axis=0).astype(np.float32)
        distance = neighbour_distance(base) if distance is None else distance
        spread *= distance / max(float(np.linalg.norm(spread)), 1e-12)  # E||noise|| ~ distance at high width
        for start in range(base.shape[0], n, 100_000):  # in slices: a 1M x 992 draw at once is 8 GB of float64
            stop = min(start + 100_000, n)
            out[start:stop] += rng.standard_normal((stop - start, base.shape[1]), dtype=np.float32) * spread
    return np.ascontiguousarray(out)


def fitted(data_dir: str, dim: int, items: int, users: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``items`` item vectors and ``users`` user vectors from a rank-``dim`` SpectralCF fit on
    ``data_dir/train.txt`` (module docs), and the fit's seconds."""
    from models.interactions import load_split
    from models.spectral.model import SpectralCF

    data = load_split(Path(data_dir))
    model = SpectralCF(rank=dim)
    started = time.perf_counter()
    model.fit(data.train)
    fit_s = time.perf_counter() - started
    assert model.item_emb is not None and model.user_projection is not None  # fitted just above
    user_vectors = np.asarray(data.train @ model.user_projection, dtype=np.float32)
    keep = np.flatnonzero(np.linalg.norm(user_vectors, axis=1) > 0)  # users with train rows
    return tiled(model.item_emb, items), tiled(user_vectors[keep], users), fit_s


def file_names(folder: str, n: int, dim: int) -> tuple[str, str]:
    """Item and user vector files of a catalog in ``folder``."""
    return str(Path(folder) / f"items-{n}-{dim}-nn.npy"), str(Path(folder) / f"users-{dim}.npy")


def catalog(source: str, n: int, dim: int, users: int, workdir: str) -> tuple[str, str, str]:
    """Write the benchmark's item and user vectors to ``workdir`` (``source``: ``synthetic`` or a
    dataset folder) and return their paths and a line saying what they are."""
    if source == "synthetic":
        items, queries, what = synthetic(n, dim, seed=1), synthetic(users, dim, seed=1)[::-1], "clustered synthetic"
    else:
        items, queries, fit_s = fitted(source, dim, n, users)
        what = f"SpectralCF rank {dim} fitted on {source} in {fit_s:.0f} s, tiled to {n:,} items"
    item_path, user_path = file_names(workdir, n, dim)
    np.save(item_path, items)
    np.save(user_path, np.ascontiguousarray(queries))
    return item_path, user_path, what


def cached_catalog(source: str, n: int, dim: int, users: int, folder: str) -> tuple[str, str, str]:
    """:func:`catalog`, reusing the files already in ``folder`` when they hold at least ``n`` items and
    ``users`` users of width ``dim`` (a 1M x 992 catalog takes a minute to fit and tile, and a graph
    cached beside it is only valid for the same vectors)."""
    item_path, user_path = map(Path, file_names(folder, n, dim))
    if item_path.exists() and user_path.exists() and np.load(user_path, mmap_mode="r").shape[0] >= users:
        return str(item_path), str(user_path), f"{source} vectors cached in {folder}"
    for stale in Path(folder).glob(f"hnsw-{n}-{dim}-nn-*.faiss"):  # built over the vectors about to be replaced
        stale.unlink()
    return catalog(source, n, dim, users, folder)
