"""The refreshed embeddings held in memory for maximum-inner-product search, swapped copy-on-write.

Every served model scores a user-item pair by the dot product of their embeddings,
:math:`\\hat{y}_{ui} = \\mathbf{e}_u^\\top \\mathbf{e}_i` (SpectralCF, the default, and LightGCN alike), so
the top-k items of a user are the top-k entries of :math:`\\mathbf{E}_I \\mathbf{e}_u`. This module holds
what a search reads; :mod:`serving.search` searches it: exactly (one dense matrix-vector product) for
catalogs under ``IG_ANN_MIN_ITEMS`` items, for filters that leave few items and until the first HNSW
graph is attached; approximately above that, from the snapshot's HNSW graph (:mod:`serving.ann`,
recall@10 measured against exact search in ``tests/serving/test_ann.py``) plus the rows changed since
it was built, rescored exactly.

The tables themselves are :mod:`serving.embedding_table`'s. Readers never take a lock. Every
update builds new arrays and then swaps one reference to an immutable :class:`IndexSnapshot`; a
request reads that reference once and sees one consistent
version from start to end, however many updates land meanwhile.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from core.domain import EmbeddingRows, ItemMeta, NodeId, UserFoldIn, UserRow
from serving.ann import HnswIndex
from serving.catalog import Catalog
from serving.codec import CODECS, F32, INT8
from serving.embedding_table import EmbeddingDimensionError, EmbeddingTable, read_only
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


def _stale_vectors(items: EmbeddingTable, stale: np.ndarray) -> np.ndarray:
    return read_only(np.ascontiguousarray(items.vectors[stale]))


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
    stale_rows: np.ndarray = field(default_factory=lambda: read_only(np.zeros(0, np.int64)))
    stale_vectors: np.ndarray = field(default_factory=lambda: read_only(np.zeros((0, 0), np.float32)))
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
        if item_codec not in CODECS:
            raise ValueError(f"item_codec must be one of {CODECS}, got {item_codec!r}")
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
                stale_rows=read_only(stale),
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

    def forget_users(self, user_ids: Collection[NodeId]) -> IndexSnapshot:
        """Drop forgotten users' embeddings (erasure) and swap the result in; listeners hear it as an
        update of those users. Items keep their vectors: the refresh recomputes the ones the users
        touched. Returns the new snapshot (the current one when none of them was held)."""
        with self._write_lock:
            users = self._snapshot.users.without(user_ids)
            if users is self._snapshot.users:
                return self._snapshot
            updated = dataclasses.replace(self._snapshot, users=users, generation=self._snapshot.generation + 1)
            self._swap(updated)
            change = IndexUpdate(frozenset(user_ids), frozenset(), replaced=False)
            for listener in self._update_listeners:
                listener(change)
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
            self._swap(dataclasses.replace(current, ann=ann, stale_rows=read_only(stale),
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

