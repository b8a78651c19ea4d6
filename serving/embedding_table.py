"""One kind of node's embeddings for search: rows that never change once readers hold them.

:class:`EmbeddingTable` is what :class:`~serving.index.IndexSnapshot` holds twice (users, items):
the vectors (``float32``, or :mod:`serving.codec` int8 codes for items), each id's row and each
row's write time. A table is never mutated; :meth:`EmbeddingTable.upsert` returns the next one,
appending into a buffer the chain of tables shares, so a reader of an older table sees exactly
the rows it had.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from core.domain import EmbeddingRows, NodeId
from core.errors import InterestGraphError
from serving.codec import Int8Codec


class EmbeddingDimensionError(InterestGraphError, ValueError):
    """An update's embedding width differs from the index's (a retrain changed ``embedding_dim``).

    Not retryable as a delta: the loader rebuilds the index from every stored embedding instead.
    """


def read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


#: Most dead rows an append-only table keeps, as a share of its rows, before it compacts.
MAX_DEAD_SHARE = 0.25
#: Spare rows a table's buffer gets when it is (re)allocated, as a share of the rows it holds.
GROWTH = 0.5


class _RowBuffer:
    """Row storage a chain of tables shares. Each table sees ``[:its length]`` and never changes
    there; rows at or past ``used`` belong to nobody yet, so the newest table may append into them
    without copying what any reader holds."""

    __slots__ = ("stamps", "used", "vectors")

    def __init__(self, capacity: int, dim: int, dtype: type[np.generic] = np.float32) -> None:
        self.vectors = np.empty((capacity, dim), dtype=dtype)
        self.stamps = np.empty(capacity, dtype=np.int64)
        self.used = 0

    @property
    def capacity(self) -> int:
        return int(self.stamps.shape[0])


def _view(array: np.ndarray, length: int) -> np.ndarray:
    return read_only(array[:length].view())


@dataclass(frozen=True, slots=True)
class EmbeddingTable:
    """Embeddings of one node kind with the maps between producer ids and rows; never mutated.

    New ids are appended into spare rows of a shared buffer, so a table grows without copying
    what it holds. A rewritten id costs a full copy (rows keep their positions, which an HNSW
    graph over the items relies on), unless the table is ``append_only``: then the new vector
    takes a new row and the old one stays behind, dead, for the readers that still hold it, until
    dead rows pass :data:`MAX_DEAD_SHARE` and the table compacts. That is the user table, rewritten
    by every refresh round: copying all of it per round cost 120 ms at 100,000 users x 1,024 dims.

    With ``int8`` the rows are held as :class:`~serving.codec.Int8Codec` codes, a quarter of the
    memory: the codec is fitted on the first vectors an empty table takes and kept by every table
    that grows from it (a full reload starts an empty one). Readers go through :meth:`gather`,
    :meth:`dot` and :meth:`scan`, which decode; :attr:`vectors` is what the rows hold.

    Args:
        ids (tuple[NodeId, ...]): ``ids[r]`` owned row ``r`` when it was written (dead rows included).
        rows (Mapping[NodeId, int]): Each id's live row.
        vectors (np.ndarray): ``[n, d]`` embeddings, read-only (dead rows included): ``float32``,
            or ``int8`` codes of :attr:`codec`.
        refreshed_ms (np.ndarray): ``int64 [n]`` store write time (epoch ms) of each row's embedding.
        append_only (bool): Rewrites take new rows (default: :obj:`False`).
        dead (int): Rows no id owns any more.
        int8 (bool): Hold rows as int8 codes (default: :obj:`False`).
        codec (Int8Codec, optional): The codes' codec, once fitted.
    """

    ids: tuple[NodeId, ...] = ()
    rows: Mapping[NodeId, int] = field(default_factory=dict)
    vectors: np.ndarray = field(default_factory=lambda: read_only(np.zeros((0, 0), np.float32)))
    refreshed_ms: np.ndarray = field(default_factory=lambda: read_only(np.zeros(0, np.int64)))
    append_only: bool = False
    dead: int = 0
    int8: bool = False
    codec: Int8Codec | None = None
    _buffer: _RowBuffer | None = None
    #: Arrays derived from the rows on first use (norms, a decoded sample): the rows never change, so
    #: neither do they. Never passed or copied: every table starts with its own, empty.
    _derived: dict[str, np.ndarray] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        """Ids held (live rows)."""
        return len(self.rows)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def row(self, node_id: NodeId) -> int | None:
        return self.rows.get(node_id)

    # --- reading vectors -------------------------------------------------------------------------
    def gather(self, rows: int | slice | np.ndarray) -> np.ndarray:
        """``float32`` vectors of ``rows`` (``[d]`` for one row, ``[m, d]`` for an array or slice of them)."""
        held = self.vectors[rows]
        return self.codec.decode(held) if self.codec is not None else held

    def dot(self, held: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Dot products of rows as :attr:`vectors` holds them (``[m, d]``) with ``vector`` (``[d]``)."""
        if self.codec is None:
            return np.asarray(held @ vector, dtype=np.float32)
        return np.asarray(held, dtype=np.float32) @ self.codec.query(vector)

    def scan(self, queries: np.ndarray) -> np.ndarray:
        """Scores of every row: ``[n]`` for one ``[d]`` query, ``[b, n]`` for ``[b, d]`` queries."""
        if self.codec is not None:
            return self.codec.scan(self.vectors, queries)
        if np.ndim(queries) == 1:
            return self.vectors @ queries
        return queries @ self.vectors.T  # [b, n], rows contiguous

    def norms(self) -> np.ndarray:
        """``float32 [len(vectors)]``: each row's L2 norm (dead rows included), computed once per table
        (of int8 codes through one decoded copy: RecommendFriends asks it of the float user table)."""
        found = self._derived.get("norms")
        if found is None:
            found = np.linalg.norm(self.gather(slice(None)), axis=1).astype(np.float32)
            found = self._derived["norms"] = read_only(found)
        return found

    def sample_dot(self, count: int, vector: np.ndarray) -> np.ndarray:
        """Dot products, as :meth:`dot` computes them, of ``vector`` with ``count`` rows spread evenly
        over the table (every ``len / count``-th). The sampled rows are held as ``float32`` from the
        first call on (``count x d x 4`` bytes), so repeated samples skip decoding 8 ms of codes."""
        key = f"sample-{count}"
        held = self._derived.get(key)
        if held is None:
            rows = np.linspace(0, len(self) - 1, count).astype(np.int64)
            held = self._derived[key] = read_only(np.asarray(self.vectors[rows], dtype=np.float32))
        return self.dot(held, vector)

    def positions(self, node_ids: Collection[NodeId]) -> np.ndarray:
        """``int64 [len(node_ids)]``: each id's row, ``-1`` where the table does not hold it."""
        return np.fromiter((self.rows.get(i, -1) for i in node_ids), dtype=np.int64, count=len(node_ids))

    def rows_of(self, node_ids: Iterable[NodeId]) -> np.ndarray:
        """Rows of the ids this table holds (unknown ids are skipped), as ``int64``."""
        found = [r for r in map(self.rows.get, node_ids) if r is not None]
        return np.asarray(found, dtype=np.int64)

    def live_mask(self) -> np.ndarray:
        """``bool [len(vectors)]``: which rows an id owns (all of them unless ``append_only``)."""
        mask = np.zeros(len(self.ids), dtype=bool)
        if self.dead:
            mask[np.fromiter(self.rows.values(), dtype=np.int64, count=len(self.rows))] = True
        else:
            mask[:] = True
        return mask

    # --- writing -----------------------------------------------------------------------------------
    def upsert(self, update: EmbeddingRows, refreshed_ms: int) -> EmbeddingTable:
        """A new table with ``update``'s rows replaced or appended; ``self`` is left untouched."""
        ids, vectors = _last_of_each(update)
        if not ids:
            return self
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} {update.kind} ids but vectors of shape {vectors.shape}")
        if len(self.ids) and vectors.shape[1] != self.dim:
            raise EmbeddingDimensionError(
                f"{update.kind} embeddings of width {vectors.shape[1]} cannot join an index of width"
                f" {self.dim}"
            )
        if self.int8:
            codec = self.codec if self.codec is not None and len(self.ids) else Int8Codec.fitted(vectors)
            grown = dataclasses.replace(self, codec=codec)
            return grown._upsert_held(ids, codec.encode(vectors), refreshed_ms)
        return self._upsert_held(ids, vectors, refreshed_ms)

    def _upsert_held(self, ids: list[NodeId], vectors: np.ndarray, refreshed_ms: int) -> EmbeddingTable:
        """:meth:`upsert` of rows already as :attr:`vectors` holds them."""
        rewritten = sum(node_id in self.rows for node_id in ids)
        if rewritten and not self.append_only:
            return self._copied(ids, vectors, refreshed_ms)
        length, dead = len(self.ids) + len(ids), self.dead + rewritten
        buffer = self._buffer
        if buffer is None or buffer.used != len(self.ids) or length > buffer.capacity or \
                dead > MAX_DEAD_SHARE * length:
            return self._compacted(ids, vectors, refreshed_ms)
        buffer.vectors[len(self.ids):length] = vectors
        buffer.stamps[len(self.ids):length] = refreshed_ms
        buffer.used = length
        rows = dict(self.rows)
        rows.update(zip(ids, range(len(self.ids), length), strict=True))
        return EmbeddingTable((*self.ids, *ids), rows, _view(buffer.vectors, length), _view(buffer.stamps, length),
                              self.append_only, dead, self.int8, self.codec, buffer)

    def _copied(self, ids: list[NodeId], vectors: np.ndarray, refreshed_ms: int) -> EmbeddingTable:
        """Every row copied (positions kept), the rewritten ones replaced, new ids appended."""
        rows = dict(self.rows)
        all_ids = list(self.ids)
        for node_id in ids:
            if node_id not in rows:
                rows[node_id] = len(all_ids)
                all_ids.append(node_id)
        buffer = _RowBuffer(_with_room(len(all_ids)), vectors.shape[1], vectors.dtype.type)
        held = len(self.ids)
        buffer.vectors[:held] = self.vectors
        buffer.stamps[:held] = self.refreshed_ms
        target = np.fromiter((rows[i] for i in ids), dtype=np.int64, count=len(ids))
        buffer.vectors[target] = vectors
        buffer.stamps[target] = refreshed_ms
        buffer.used = len(all_ids)
        return EmbeddingTable(tuple(all_ids), rows, _view(buffer.vectors, buffer.used),
                              _view(buffer.stamps, buffer.used), self.append_only, self.dead, self.int8, self.codec,
                              buffer)

    def _compacted(self, ids: list[NodeId], vectors: np.ndarray, refreshed_ms: int) -> EmbeddingTable:
        """Live rows that ``update`` does not rewrite, in order, then ``update``'s rows: no dead rows."""
        fresh = set(ids)
        keep = np.asarray(sorted(r for node_id, r in self.rows.items() if node_id not in fresh), dtype=np.int64)
        all_ids = [self.ids[r] for r in keep.tolist()] + ids
        buffer = _RowBuffer(_with_room(len(all_ids)), vectors.shape[1], vectors.dtype.type)
        buffer.vectors[:len(keep)] = self.vectors[keep] if len(keep) else 0
        buffer.stamps[:len(keep)] = self.refreshed_ms[keep] if len(keep) else 0
        buffer.vectors[len(keep):len(all_ids)] = vectors
        buffer.stamps[len(keep):len(all_ids)] = refreshed_ms
        buffer.used = len(all_ids)
        rows = {node_id: r for r, node_id in enumerate(all_ids)}
        return EmbeddingTable(tuple(all_ids), rows, _view(buffer.vectors, buffer.used),
                              _view(buffer.stamps, buffer.used), self.append_only, 0, self.int8, self.codec, buffer)


    def without(self, node_ids: Collection[NodeId]) -> EmbeddingTable:
        """A table without ``node_ids`` (erasure): their live rows and any dead rows they left are
        not copied, so no vector of theirs stays in it; ``self`` is left untouched."""
        gone = set(node_ids)
        if gone.isdisjoint(self.ids):
            return self
        keep = np.asarray(sorted(r for node_id, r in self.rows.items() if node_id not in gone), dtype=np.int64)
        all_ids = [self.ids[r] for r in keep.tolist()]
        buffer = _RowBuffer(_with_room(len(all_ids)), self.dim, self.vectors.dtype.type)
        if len(keep):
            buffer.vectors[:len(keep)] = self.vectors[keep]
            buffer.stamps[:len(keep)] = self.refreshed_ms[keep]
        buffer.used = len(all_ids)
        rows = {node_id: r for r, node_id in enumerate(all_ids)}
        return EmbeddingTable(tuple(all_ids), rows, _view(buffer.vectors, buffer.used),
                              _view(buffer.stamps, buffer.used), self.append_only, 0, self.int8, self.codec, buffer)


def _with_room(rows: int) -> int:
    return max(16, int(rows * (1 + GROWTH)))


def _last_of_each(update: EmbeddingRows) -> tuple[list[NodeId], np.ndarray]:
    """The update's ids, each once (its last vector wins), and their vectors as ``float32``."""
    vectors = np.asarray(update.vectors, dtype=np.float32)
    ids = list(update.ids)
    if len(set(ids)) == len(ids):
        return ids, vectors
    last = {node_id: k for k, node_id in enumerate(ids)}
    keep = sorted(last.values())
    return [ids[k] for k in keep], vectors[keep]
