"""Quality against serving cost of each way to serve SpectralCF: width, vector codec, user vectors.

Usage::

    python bench/serving_width.py --data-dir ../shared/datasets/gowalla
    python bench/serving_width.py --data-dir ... --widths 256,1024 --codecs f32,sq8 --scan-items 1000000

One SpectralCF fit at the widest rank (its columns are singular directions in descending order,
so the first ``K`` columns are the rank-``K`` model) is served every way the options allow:

* **width** ``K``: the first ``K`` columns;
* **codec** of the item vectors in serving memory: ``f32`` and ``int8``, the two the index holds
  (:mod:`serving.codec`: one signed byte per coordinate, one scale per dimension); and for
  comparison faiss' ``f16``, ``sq8`` and ``sq4`` (8 or 4 bits per coordinate, a trained min-max
  range per dimension) and ``pq`` (product quantiser, one byte per 4 dimensions);
* **user vectors** at request time from the user's row, as ``up`` serves them
  (:class:`~serving.live_users.LiveUsers`): SpectralCF's user vector is linear in the row,
  :math:`e_u = \\sum_i r_{ui} s_i E_i` with the fold-in scale :math:`s_i = 1 / d_i` the refresh
  worker publishes (:meth:`~models.spectral.refresh.SpectralRefresh.fold_in`, 4 bytes per item), so
  it is computed from the *decoded* item vectors and costs no memory per user. Quantisation error
  therefore reaches both sides of every score, as it would in serving.

Quality is LightGCN's all-ranking protocol (:func:`models.evaluation.evaluate`). The scan column
is the cost of one exact top-100 scan of a catalog of ``--scan-items`` items (Gowalla's item
vectors tiled) in that codec on one thread: serving's own kernels for ``f32`` (one BLAS
matrix-vector product) and ``int8`` (:meth:`~serving.codec.Int8Codec.scan`), faiss' flat scans for
the others; the floor of an exact Recommend at that size, before the HNSW graph that serves
large catalogs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp
import torch

from core.domain import NodeId
from models.evaluation import evaluate
from models.interactions import InteractionSplit, load_split
from models.spectral.checkpoint import SpectralCheckpoint
from models.spectral.model import SpectralCF
from models.spectral.refresh import SpectralRefresh
from serving.codec import Int8Codec

CODECS = ("f32", "int8", "f16", "sq8", "sq4", "pq")
#: Bytes per item beside the vector: the fold-in scale a request-time user vector multiplies by.
FOLD_IN_BYTES = 4


@dataclass(frozen=True, slots=True)
class Served:
    """Item vectors as one codec reconstructs them, and what they cost."""

    items: np.ndarray  # float32 [n, K], decoded
    code_bytes: int  # per item, the vector alone
    scan: Callable[[np.ndarray, int], Callable[[np.ndarray], object]]  # (base, n) -> one top-k scan


def _codec_index(codec: str, dim: int) -> faiss.Index:
    ip = faiss.METRIC_INNER_PRODUCT
    if codec == "pq":
        return faiss.IndexPQ(dim, dim // 4, 8, ip)
    kinds = {"f16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit,
             "sq4": faiss.ScalarQuantizer.QT_4bit}
    return faiss.IndexScalarQuantizer(dim, kinds[codec], ip)


def serve(items: np.ndarray, codec: str, k: int = 100) -> Served:
    """Encode ``items`` with ``codec`` and decode them back."""
    items = np.ascontiguousarray(items, dtype=np.float32)
    if codec == "f32":
        return Served(items, 4 * items.shape[1], lambda base, n: _numpy_scan(_tiled(base, n), k))
    if codec == "int8":
        int8 = Int8Codec.fitted(items)
        return Served(int8.decode(int8.encode(items)), items.shape[1],
                      lambda base, n: _int8_scan(int8, int8.encode(_tiled(base, n)), k))
    index = _codec_index(codec, items.shape[1])
    index.train(items)
    codes = index.sa_encode(items)
    return Served(np.ascontiguousarray(index.sa_decode(codes), np.float32), int(codes.shape[1]),
                  lambda base, n: _faiss_scan(index, base, n, k))


def _tiled(base: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(base, (n, base.shape[1])), dtype=np.float32)


def _numpy_scan(matrix: np.ndarray, k: int) -> Callable[[np.ndarray], object]:
    return lambda query: np.argpartition(-(matrix @ query), k)[:k]


def _int8_scan(codec: Int8Codec, codes: np.ndarray, k: int) -> Callable[[np.ndarray], object]:
    return lambda query: np.argpartition(-codec.scan(codes, query), k)[:k]


def _faiss_scan(trained: faiss.Index, base: np.ndarray, n: int, k: int) -> Callable[[np.ndarray], object]:
    index = faiss.clone_index(trained)
    index.reset()
    for start in range(0, n, base.shape[0]):
        index.add(np.ascontiguousarray(base[: n - start], dtype=np.float32))
    return lambda query: index.search(query[None, :], k)


def request_time_users(train: sp.csr_matrix, items: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Every user's vector from its row and the served item vectors: ``R D_I^-1 E``."""
    return np.asarray(train @ (items * scale[:, None]), dtype=np.float32)


def scan_ms(served: Served, base: np.ndarray, n_items: int, queries: np.ndarray) -> float:
    """Median ms of one exact top-k scan of ``n_items`` tiled item vectors, one query at a time."""
    one_scan = served.scan(base, n_items)
    times = []
    for query in queries:
        started = time.perf_counter()
        one_scan(query)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def fit(data: InteractionSplit, rank: int, cache: Path | None) -> tuple[SpectralCF, float]:
    """The widest model, from ``cache`` when it holds one of this rank (fit time then from the cache)."""
    if cache is not None and cache.is_file():
        with np.load(cache) as state:
            arrays = {name: state[name] for name in state.files}
        model = SpectralCF.from_state(arrays)
        if model.rank == rank:
            return model, float(arrays["fit_s"])
    model = SpectralCF(rank=rank)
    started = time.perf_counter()
    model.fit(data.train)
    fit_s = time.perf_counter() - started
    if cache is not None:
        arrays = {**model.state(), "fit_s": np.asarray(fit_s)}
        np.savez(cache, **arrays)
    return model, fit_s


def measure(data: InteractionSplit, model: SpectralCF, widths: list[int], codecs: list[str],
            scan_items: int, k: int) -> list[dict[str, object]]:
    checkpoint = SpectralCheckpoint([NodeId(str(u)) for u in range(data.num_users)],
                                    [NodeId(str(i)) for i in range(data.num_items)], model)
    scale = SpectralRefresh(checkpoint).fold_in(model_version=0).scale
    item_emb = model.item_emb
    assert item_emb is not None  # fit() returns a fitted model
    queries = None
    rows: list[dict[str, object]] = []
    for width in widths:
        full = item_emb[:, :width]
        for codec in codecs:
            started = time.perf_counter()
            served = serve(full, codec)
            users = request_time_users(data.train, served.items, scale)
            metrics = evaluate(users, served.items, data.train, data.test, k=k)
            if queries is None or queries.shape[1] != width:
                pick = np.random.default_rng(0).choice(users.shape[0], 20, replace=False)
                queries = np.ascontiguousarray(users[pick])
            scan = scan_ms(served, full, scan_items, queries) if scan_items else float("nan")
            row = {"width": width, "codec": codec, "recall": metrics["recall"], "ndcg": metrics["ndcg"],
                   "item_bytes": served.code_bytes + FOLD_IN_BYTES, "user_bytes": 0,
                   "store_item_bytes": 4 * width, "store_user_bytes": 4 * width,
                   "scan_ms": scan, "seconds": time.perf_counter() - started}
            rows.append(row)
            print(_line(row, scan_items), flush=True)
    return rows


def _line(row: dict[str, object], scan_items: int) -> str:
    return (f"| {row['width']} | {row['codec']} | {row['recall']:.4f} | {row['ndcg']:.4f} | "
            f"{row['item_bytes']:,} | {row['user_bytes']} | {row['store_item_bytes']:,} / "
            f"{row['store_user_bytes']:,} | {row['scan_ms']:.1f} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder with train.txt and test.txt")
    parser.add_argument("--rank", type=int, default=1024, help="rank of the one fit; widths are its prefixes")
    parser.add_argument("--widths", default="64,128,256,512,992,1024",
                        help="comma list of served widths (992: IG_SPECTRAL_RANK's default)")
    parser.add_argument("--codecs", default="f32,int8,f16,sq8,pq", help=f"comma list of {', '.join(CODECS)}")
    parser.add_argument("--scan-items", type=int, default=1_000_000, help="catalog size of the scan timing; 0 = skip")
    parser.add_argument("--k", type=int, default=20, help="ranking cut-off")
    parser.add_argument("--cache", help="npz to keep the fit in between runs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(1)
    codecs = [c for c in args.codecs.split(",") if c]
    unknown = sorted(set(codecs) - set(CODECS))
    if unknown:
        raise SystemExit(f"unknown codecs {unknown}; choose from {CODECS}")
    widths = [int(w) for w in args.widths.split(",")]
    if max(widths) > args.rank:
        raise SystemExit("every width must be at most --rank")
    data = load_split(args.data_dir)
    model, fit_s = fit(data, args.rank, Path(args.cache) if args.cache else None)
    print(f"{Path(args.data_dir).name}: {data.num_users} users, {data.num_items} items; SpectralCF rank "
          f"{model.dim} fitted in {fit_s:.0f} s; scan over {args.scan_items:,} items, 1 thread", flush=True)
    print("| width | codec | recall@20 | NDCG@20 | serving B/item | serving B/user | store B/item / user | "
          "scan ms |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    rows = measure(data, model, widths, codecs, args.scan_items, args.k)
    if args.json:
        Path(args.json).write_text(json.dumps({"fit_s": fit_s, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
