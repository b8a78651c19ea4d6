"""The refreshed embeddings held in memory for maximum-inner-product search, swapped copy-on-write.

Every served model scores a user-item pair by the dot product of their embeddings,
:math:`\\hat{y}_{ui} = \\mathbf{e}_u^\\top \\mathbf{e}_i` (SpectralCF, the default, and LightGCN alike), so
the top-k items of a user are the top-k entries of :math:`\\mathbf{E}_I \\mathbf{e}_u`. This module holds
what a search reads; :mod:`serving.search` searches it: exactly (one dense matrix-vector product) for
catalogs under ``IG_ANN_MIN_ITEMS`` items, for filters that leave few items and until the first HNSW
graph is attached; approximately above that, from the snapshot's HNSW graph (:mod:`serving.ann`,
recall@10 measured against exact search in ``tests/serving/test_ann.py``) plus the rows changed since
it was built, rescored exactly.

Readers never take a lock. Every update builds new arrays and then swaps one reference to an
immutable :class:`IndexSnapshot`; a request reads that reference once and sees one consistent
version from start to end, however many updates land meanwhile.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from core.domain import EmbeddingRows, ItemMeta, NodeId, UserFoldIn, UserRow
from core.errors import InterestGraphError
from serving.ann import HnswIndex
from serving.catalog import Catalog
from serving.codec import F32, INT8, Int8Codec
from serving.live_users import LiveUsers

#: Called with the index's readiness (it holds item embeddings) whenever that changes.
ReadyListener = Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class IndexUpdate:
    """What one :meth:`EmbeddingIndex.apply` changed: user and item ids, or everything (``replaced``)."""

    users: frozenset[NodeId]
    items: frozenset[NodeId]
    replaced: bool


#: Called after every applied update (from the writer's thread), e.g. to invalidate caches.
UpdateListener = Callable[[IndexUpdate], None]


class EmbeddingDimensionError(InterestGraphError, ValueError):
    """An update's embedding width differs from the index's (a retrain changed ``embedding_dim``).

    Not retryable as a delta: the loader rebuilds the index from every stored embedding instead.
    """


def _frozen(array: np.ndarray) -> np.ndarray:
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
    return _frozen(array[:length].view())


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
    vectors: np.ndarray = field(default_factory=lambda: _frozen(np.zeros((0, 0), np.float32)))
    refreshed_ms: np.ndarray = field(default_factory=lambda: _frozen(np.zeros(0, np.int64)))
    append_only: bool = False
    dead: int = 0
    int8: bool = False
    codec: Int8Codec | None = None
    _buffer: _RowBuffer | None = None

    def __len__(self) -> int:
        """Ids held (live rows)."""
        return len(self.rows)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def vector_bytes(self) -> int:
        """Bytes one row's vector takes in memory."""
        return int(self.vectors.shape[1] * self.vectors.itemsize)

    def row(self, node_id: NodeId) -> int | None:
        return self.rows.get(node_id)

    # --- reading vectors -------------------------------------------------------------------------
    def gather(self, rows: int | np.ndarray) -> np.ndarray:
        """``float32`` vectors of ``rows`` (``[d]`` for one row, ``[m, d]`` for an array of them)."""
        return self.decode(self.vectors[rows])

    def decode(self, held: np.ndarray) -> np.ndarray:
        """``float32`` vectors of rows as :attr:`vectors` holds them."""
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


def _stale_vectors(items: EmbeddingTable, stale: np.ndarray) -> np.ndarray:
    return _frozen(np.ascontiguousarray(items.vectors[stale]))


@dataclass(frozen=True, slots=True)
class IndexSnapshot:
    """One consistent state of the index: both tables, the catalog and the embedding version.

    Args:
        users (EmbeddingTable): User embeddings.
        items (EmbeddingTable): Item embeddings.
        version (int): Embedding version loaded (the store's ``refresh_state`` version).
        written_ms (int): Store write time (epoch ms) of that version.
        catalog (Catalog): Titles and categories of the items.
        ann (HnswIndex, optional): An HNSW graph over the items of an earlier or equal version.
        stale_rows (np.ndarray): Item rows ``ann`` does not hold as they are now: rewritten or
            appended since it was built. Searches score them exactly beside the graph's candidates.
        stale_vectors (np.ndarray): ``[len(stale_rows), d]``, contiguous: their vectors as the item
            table holds them (:meth:`EmbeddingTable.dot` scores them),
            gathered once per update rather than once per request (up to 5 % of the catalog,
            4 MB at 20,000 x 1,024, which each search had copied).
        generation (int): Counts every swap (updates, catalogs, graphs), for waiters.
        live_users (LiveUsers, optional): set while user vectors are computed from user rows at
            request time (``up`` with SpectralCF); ``users`` then holds nothing current.
    """

    users: EmbeddingTable = field(default_factory=lambda: EmbeddingTable(append_only=True))
    items: EmbeddingTable = field(default_factory=EmbeddingTable)
    version: int = 0
    written_ms: int = 0
    catalog: Catalog = field(default_factory=Catalog)
    ann: HnswIndex | None = None
    stale_rows: np.ndarray = field(default_factory=lambda: _frozen(np.zeros(0, np.int64)))
    stale_vectors: np.ndarray = field(default_factory=lambda: _frozen(np.zeros((0, 0), np.float32)))
    generation: int = 0
    live_users: LiveUsers | None = None

    @property
    def ready(self) -> bool:
        """Whether there is anything to recommend: at least one item embedding."""
        return len(self.items) > 0

    def folds_in(self, item_ids: Collection[NodeId]) -> bool:
        """Whether user vectors come from user rows at request time and every one of these items adds
        to them: then an edge to them is served as soon as serving reads the committed row."""
        if self.live_users is None:
            return False
        rows = self.items.positions(item_ids)
        return bool((rows >= 0).all() and self.live_users.folds(rows).all())

    def live_user_vector(self, row: UserRow) -> np.ndarray | None:
        """A user's vector folded in from the user's row (:attr:`live_users` must be set); ``None``
        when none of its items adds anything."""
        assert self.live_users is not None  # only asked when the index folds users in
        rows = self.items.positions(row.items)
        rows, weights = rows[rows >= 0], row.weights[rows >= 0]
        if not self.live_users.folds(rows).any():
            return None
        return self.live_users.vector(self.items.gather, rows, weights)


class EmbeddingIndex:
    """User and item embeddings for top-k search, updated copy-on-write.

    Readers call :meth:`snapshot` once per request. One writer at a time (the index loader) calls
    :meth:`apply`, which builds the next snapshot from the current one and swaps it in; the HNSW
    builder attaches graphs with :meth:`attach_ann`. Listeners added with :meth:`subscribe` hear
    when the index becomes ready (or stops being ready), those added with
    :meth:`subscribe_updates` hear every update, and streams block in :meth:`wait_for_update`.

    Args:
        item_codec (str): How item vectors are held: :data:`~serving.codec.F32` or
            :data:`~serving.codec.INT8` (default: :obj:`"f32"`). User vectors stay ``float32``.
    """

    def __init__(self, item_codec: str = F32) -> None:
        if item_codec not in (F32, INT8):
            raise ValueError(f"item_codec must be {F32!r} or {INT8!r}, got {item_codec!r}")
        self.item_codec = item_codec
        self._snapshot = IndexSnapshot(items=self._empty_items())
        self._write_lock = threading.Lock()
        self._changed = threading.Condition()
        self._listeners: list[ReadyListener] = []
        self._update_listeners: list[UpdateListener] = []

    def snapshot(self) -> IndexSnapshot:
        """The current state; stays valid and unchanged however long the caller keeps it."""
        return self._snapshot

    @property
    def ready(self) -> bool:
        return self._snapshot.ready

    @property
    def version(self) -> int:
        return self._snapshot.version

    def subscribe(self, listener: ReadyListener) -> None:
        """Call ``listener(ready)`` now and whenever readiness changes (from the writer's thread)."""
        with self._write_lock:
            self._listeners.append(listener)
            listener(self._snapshot.ready)

    def subscribe_updates(self, listener: UpdateListener) -> None:
        """Call ``listener(update)`` after every applied update (from the writer's thread)."""
        with self._write_lock:
            self._update_listeners.append(listener)

    # --- writers ---------------------------------------------------------------------------------
    def apply(
        self,
        users: EmbeddingRows,
        items: EmbeddingRows,
        *,
        version: int,
        written_ms: int,
        replace: bool = False,
        meta: Mapping[NodeId, ItemMeta] | None = None,
        fold_in: UserFoldIn | None = None,
    ) -> IndexSnapshot:
        """Upsert changed embeddings (or, with ``replace``, start from empty) and swap them in.

        ``meta`` holds catalog records read with the update (merged into the catalog); ``fold_in``
        comes with a full round of a model whose users are folded in at request time (it is laid
        over the new item table; a replace without one drops the old one). Raises
        :class:`EmbeddingDimensionError` (and changes nothing) when a delta's width differs from
        the index's. Returns the new snapshot.
        """
        with self._write_lock:
            base = IndexSnapshot(catalog=self._snapshot.catalog, items=self._empty_items()) if replace \
                else self._snapshot
            item_table = base.items.upsert(items, written_ms)
            stale = np.union1d(base.stale_rows, item_table.rows_of(items.ids)) if base.ann is not None \
                else base.stale_rows
            # Both tables are built before the swap, so no reader sees new users with old items.
            updated = dataclasses.replace(
                base,
                users=base.users.upsert(users, written_ms),
                items=item_table,
                version=version,
                written_ms=written_ms,
                catalog=base.catalog.merge(meta or {}),
                stale_rows=_frozen(stale),
                stale_vectors=_stale_vectors(item_table, stale) if base.ann is not None else base.stale_vectors,
                generation=self._snapshot.generation + 1,
                live_users=LiveUsers.lay(fold_in, item_table.positions(fold_in.item_ids), len(item_table.ids))
                if fold_in is not None else base.live_users,
            )
            if len(updated.users) and len(updated.items) and updated.users.dim != updated.items.dim:
                raise EmbeddingDimensionError(
                    f"user width {updated.users.dim} differs from item width {updated.items.dim}"
                )
            was_ready = self._snapshot.ready
            self._swap(updated)
            # Still under the lock, so listeners hear changes in the order they happened.
            if updated.ready != was_ready:
                for listener in self._listeners:
                    listener(updated.ready)
            change = IndexUpdate(frozenset(users.ids), frozenset(items.ids), replace)
            for update_listener in self._update_listeners:
                update_listener(change)
        return updated

    def _empty_items(self) -> EmbeddingTable:
        return EmbeddingTable(int8=self.item_codec == INT8)

    def attach_ann(self, ann: HnswIndex, built_from: IndexSnapshot) -> bool:
        """Serve from ``ann`` (built from ``built_from``'s items); ``False`` if the index was
        reloaded since (rows renumbered or width changed), in which case nothing changes."""
        with self._write_lock:
            current = self._snapshot
            if current.items.dim != built_from.items.dim or len(current.items) < ann.n_rows or \
                    current.items.ids[: ann.n_rows] != built_from.items.ids[: ann.n_rows]:
                return False
            # Rows rewritten after the build keep being scored exactly until the next one.
            changed = np.flatnonzero(current.items.refreshed_ms[: ann.n_rows] != built_from.items.refreshed_ms)
            stale = np.concatenate([changed, np.arange(ann.n_rows, len(current.items))]).astype(np.int64)
            self._swap(dataclasses.replace(current, ann=ann, stale_rows=_frozen(stale),
                                           stale_vectors=_stale_vectors(current.items, stale),
                                           generation=current.generation + 1))
            return True

    def update_catalog(self, meta: Mapping[NodeId, ItemMeta]) -> None:
        """Merge catalog records read outside an embedding update (titles that arrived later)."""
        with self._write_lock:
            current = self._snapshot
            self._swap(dataclasses.replace(current, catalog=current.catalog.merge(meta),
                                           generation=current.generation + 1))

    def _swap(self, updated: IndexSnapshot) -> None:
        with self._changed:
            self._snapshot = updated
            self._changed.notify_all()

    # --- waiting ---------------------------------------------------------------------------------
    def wait_for_update(
        self, after_generation: int, timeout_s: float, stop: threading.Event | None = None
    ) -> int:
        """Block until the snapshot's generation differs from ``after_generation``, ``stop`` is
        set (then :meth:`wake_watchers` was called) or ``timeout_s`` passes; returns the generation."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._snapshot.generation != after_generation or (stop is not None and stop.is_set()),
                timeout=timeout_s,
            )
            return self._snapshot.generation

    def wake_watchers(self) -> None:
        """Wake every :meth:`wait_for_update` so it rechecks its ``stop`` event."""
        with self._changed:
            self._changed.notify_all()

