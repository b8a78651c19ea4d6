"""Approximate maximum-inner-product search for large catalogs: faiss HNSW on the dot product.

HNSW (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs", TPAMI 2018) is built and searched here directly with
the inner product as similarity, as in ip-NSW (Morozov & Babenko, "Non-metric similarity graphs
for maximum inner product search", NeurIPS 2018): every served model ranks by :math:`e_u^\top e_i`,
and on clustered embeddings this keeps recall@10 above 0.95 at a fraction of a millisecond per query
(measured against exact search in ``tests/serving/test_ann.py`` and ``bench/serve_latency.py``;
the Euclidean reduction of Bachrach et al., RecSys 2014, needed twice the build time for the same
recall in our measurements).

Building takes seconds to minutes (about a minute for a million 64-d items on two cores), so
:class:`serving.ann_builder.AnnBuilder` builds in a background thread and the index keeps serving
meanwhile: exactly until the first build lands, then from the previous graph plus an exact scan
of the rows changed since it was built (see :mod:`serving.search`). Later graphs are mostly
extensions of the last (:meth:`HnswIndex.extended`): under a steady load the refresh rewrites a
few hundred rows at a time, and inserting those costs a fraction of rebuilding every row. This
module knows nothing of the index (the index holds graphs; the builder, above both, makes and
attaches them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

from serving.codec import Int8Codec

#: Graph degree M of HNSW: 16 keeps the graph at 128 bytes per item.
HNSW_M = 16
#: Build breadth efConstruction: higher builds a better graph, slower.
HNSW_EF_CONSTRUCTION = 64
#: Rows handed to faiss per add: int8 codes go in as float32, so a build never holds a float
#: copy of the catalog (16 MB per block at 1,024 dims).
ADD_BLOCK = 4096
#: Code rows an 8-bit graph's range per dimension is trained on.
TRAIN_ROWS = 65_536


def use_one_faiss_thread() -> None:
    """Scoring threads come from gRPC, one query each; faiss' own OpenMP threads would only compete.

    Process-wide, so the server calls it when it starts rather than this module on import.
    """
    faiss.omp_set_num_threads(1)


@dataclass(frozen=True, slots=True)
class HnswIndex:
    """An HNSW graph over the item rows ``0..n_rows-1`` of one embedding version.

    The graph only grows: :meth:`extended` inserts the new vectors of rewritten rows as new
    entries (HNSW is built by insertion, so this costs the changed rows, not the catalog), and the
    entries they replace stay in the graph as waypoints, never as results. ``entry_rows`` maps each
    graph entry to its item row and ``live_entry`` each row to the one entry that holds its vector.

    Over int8 item codes (``codec`` set) the graph holds a byte per coordinate too, no float copy:
    faiss' 8-bit scalar quantiser (``QT_8bit``, its range per dimension trained on the codes, which
    it then reproduces to within half a code step) over the codes taken as numbers, searched with
    the query scaled by the codec. Its candidates are rescored from the table's own codes, as every
    graph's are. (faiss' ``QT_8bit_direct_signed``, which would store the codes unchanged, ranked
    wrongly under the inner product in faiss 1.15: recall@10 0.26 against 1.0 for ``QT_8bit``.)

    Args:
        graph (faiss.IndexHNSW): The inner-product graph over the item vectors.
        version (int): Embedding version it was built from.
        entry_rows (np.ndarray): ``int64 [graph.ntotal]``: the item row of each graph entry.
        live_entry (np.ndarray): ``int64 [n_rows]``: the entry holding each row's vector; its
            length is the number of item rows the graph holds (rows appended later are not in it).
        codec (Int8Codec, optional): The codec of the item codes the graph holds; ``None`` for
            ``float32`` vectors (default: :obj:`None`).
    """

    graph: faiss.IndexHNSW
    version: int
    entry_rows: np.ndarray
    live_entry: np.ndarray
    codec: Int8Codec | None = None

    @classmethod
    def build(cls, vectors: np.ndarray, version: int, ef_search: int = 128,
              codec: Int8Codec | None = None) -> HnswIndex:
        """Build over ``vectors`` (row ``r`` = item row ``r``): ``float32 [n, d]``, or ``int8`` codes
        of ``codec``."""
        dim = vectors.shape[1]
        graph: faiss.IndexHNSW
        if codec is None:
            graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        else:
            graph = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, HNSW_M,  # type: ignore[arg-type]  # the stub names the class where SWIG takes its int enum
                                      faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).permutation(vectors.shape[0])[:TRAIN_ROWS]
            graph.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        graph.hnsw.efSearch = ef_search
        _add(graph, vectors)
        rows = np.arange(vectors.shape[0], dtype=np.int64)
        return cls(graph, version, rows, rows.copy(), codec)

    @property
    def n_rows(self) -> int:
        """Item rows the graph holds: ``0..n_rows-1``."""
        return int(self.live_entry.size)

    @property
    def replaced(self) -> int:
        """Entries whose row has a newer entry: waypoints only."""
        return int(self.graph.ntotal) - self.n_rows

    def extended(self, rows: np.ndarray, vectors: np.ndarray, n_rows: int, version: int) -> HnswIndex:
        """A new graph: this one plus ``vectors`` as the current vectors of item ``rows``.

        Args:
            rows (np.ndarray): ``int64 [m]`` distinct item rows, every row from this graph's
                ``n_rows`` up to ``n_rows`` among them.
            vectors (np.ndarray): ``[m, d]``, the vector of each of ``rows``, held as the graph
                holds them (codes of its :attr:`codec` if it has one).
            n_rows (int): Items the new graph holds.
            version (int): Embedding version the vectors are of.

        This graph is left as it is (searches may be running on it): the new one starts as a copy.
        """
        rows = np.asarray(rows, dtype=np.int64)
        appended = np.arange(self.n_rows, n_rows, dtype=np.int64)
        if np.unique(rows).size != rows.size or not np.isin(appended, rows).all() or \
                (rows.size and (rows.min() < 0 or rows.max() >= n_rows)):
            raise ValueError("rows must be distinct, below n_rows, and hold every row the graph lacks")
        graph: faiss.IndexHNSW = faiss.clone_index(self.graph)  # type: ignore[assignment]  # faiss returns the clone's own class, typed as its base
        first = int(graph.ntotal)
        _add(graph, vectors)
        live = np.empty(n_rows, dtype=np.int64)
        live[: self.n_rows] = self.live_entry
        live[rows] = np.arange(first, first + rows.size, dtype=np.int64)
        return HnswIndex(graph, version, np.concatenate([self.entry_rows, rows]), live, self.codec)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Candidate rows for the ``k`` largest dot products per query, ``int64 [b, k']``.

        Every candidate the search visited comes back (``k'`` is at least efSearch), so the
        caller's exact rescoring picks the best of all of them: a graph's ranking can differ from
        the current vectors'. Search breadth and ``k'`` both grow by the share of replaced entries,
        which take room in the candidate list without ever being returned (their slots hold ``-1``,
        as do slots with no result).
        """
        if self.codec is not None:
            queries = self.codec.query(queries)
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        total = int(self.graph.ntotal)
        widen = total / max(self.n_rows, 1)
        ef = math.ceil(max(int(self.graph.hnsw.efSearch), k) * widen)
        k = max(1, min(ef, total))
        params = faiss.SearchParametersHNSW(efSearch=ef)  # type: ignore[attr-defined]  # SWIG class faiss does not declare
        _similarities, entries = self.graph.search(queries, k, params=params)
        found = entries >= 0
        rows = np.where(found, self.entry_rows[np.where(found, entries, 0)], -1)
        live = found & (self.live_entry[np.where(found, rows, 0)] == entries)
        return np.where(live, rows, -1)


def _add(graph: faiss.IndexHNSW, vectors: np.ndarray) -> None:
    """Insert ``vectors`` (float32, or int8 codes that faiss takes as the floats they equal) a block at a time."""
    for start in range(0, vectors.shape[0], ADD_BLOCK):
        graph.add(np.ascontiguousarray(vectors[start:start + ADD_BLOCK], dtype=np.float32))
