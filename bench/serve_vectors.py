"""Embeddings for the serving benchmark: clustered synthetic ones, or vectors fitted on a real dataset and
tiled to the catalog size, so the index sees the norms and the spread of trained embeddings.

A fitted catalog is SpectralCF at rank ``dim`` on ``train.txt`` (the served model's method), item vectors
as published and user vectors folded in from their rows (:math:`\\mathbf{R}\\mathbf{P}_U`, what ``up``
computes at request time). Past the dataset's own items, item ``n`` is a copy of item ``n mod I`` with
Gaussian noise of ``jitter`` times the per-dimension spread added, so tiled copies are near, not equal,
neighbours (an exact duplicate would tie every query's top-k and flatter an approximate index).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

#: Noise added to tiled copies, as a share of each dimension's standard deviation.
JITTER = 0.1


def synthetic(n: int, dim: int, seed: int, centers: int = 512) -> np.ndarray:
    """Clustered embeddings (trained embeddings cluster; uniform noise would have no structure)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centers, dim)).astype(np.float32) * (3 / np.sqrt(dim))
    picked = middle[rng.integers(0, centers, n)]
    return (picked + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def tiled(base: np.ndarray, n: int, jitter: float = JITTER, seed: int = 0) -> np.ndarray:
    """``n`` rows: ``base`` itself, then jittered copies of its rows in order (module docs)."""
    out = np.resize(np.asarray(base, dtype=np.float32), (n, base.shape[1]))
    if n > base.shape[0]:
        rng = np.random.default_rng(seed)
        spread = base.std(axis=0).astype(np.float32) * jitter
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


def catalog(source: str, n: int, dim: int, users: int, workdir: str) -> tuple[str, str, str]:
    """Write the benchmark's item and user vectors to ``workdir`` (``source``: ``synthetic`` or a
    dataset folder) and return their paths and a line saying what they are."""
    if source == "synthetic":
        items, queries, what = synthetic(n, dim, seed=1), synthetic(users, dim, seed=1)[::-1], "clustered synthetic"
    else:
        items, queries, fit_s = fitted(source, dim, n, users)
        what = f"SpectralCF rank {dim} fitted on {source} in {fit_s:.0f} s, tiled to {n:,} items"
    item_path, user_path = str(Path(workdir) / f"items-{n}-{dim}.npy"), str(Path(workdir) / f"users-{dim}.npy")
    np.save(item_path, items)
    np.save(user_path, np.ascontiguousarray(queries))
    return item_path, user_path, what


def cached_catalog(source: str, n: int, dim: int, users: int, folder: str) -> tuple[str, str, str]:
    """:func:`catalog`, reusing the files already in ``folder`` when they hold at least ``n`` items and
    ``users`` users of width ``dim`` (a 1M x 992 catalog takes a minute to fit and tile, and a graph
    cached beside it is only valid for the same vectors)."""
    item_path, user_path = Path(folder) / f"items-{n}-{dim}.npy", Path(folder) / f"users-{dim}.npy"
    if item_path.exists() and user_path.exists() and np.load(user_path, mmap_mode="r").shape[0] >= users:
        return str(item_path), str(user_path), f"{source} vectors cached in {folder}"
    for stale in Path(folder).glob(f"hnsw-{n}-{dim}-*.faiss"):  # built over the vectors about to be replaced
        stale.unlink()
    return catalog(source, n, dim, users, folder)
