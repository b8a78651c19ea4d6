"""The store's behaviour written once over Cypher; backends supply only transactions.

:class:`CypherGraphStore` implements every :class:`~graph_store.base.GraphStore` method as a
*unit of work*: a function of a :class:`~graph_store.subgraph.Runner` that the backend runs inside
one transaction (:meth:`_read` / :meth:`_write`). LadybugDB runs it between ``BEGIN``/``COMMIT``
under a process-wide write lock; Neo4j hands it to ``session.execute_write``, which may run it
again after a transient error, so units of work only read and write through the runner.
"""

from __future__ import annotations

import abc
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from core.domain import (
    ChangeSet,
    EdgeDecay,
    EdgeSnapshot,
    EmbeddingRows,
    EmbeddingUpdate,
    Erasure,
    ForgottenUser,
    ItemMeta,
    NodeId,
    NodeKind,
    NodeRef,
    RefreshState,
    StoredEdge,
    Subgraph,
    TopicPartition,
    UpsertBatch,
    UserRow,
)
from graph_store import cypher, encode
from graph_store.base import DecayMismatchError, GraphStore, GraphStoreError, StaleBatchError
from graph_store.subgraph import KHopExpansion, Runner

T = TypeVar("T")

#: LIMIT used when the caller sets none (Cypher LIMIT needs a number).
_NO_LIMIT = 2**62


class CypherGraphStore(GraphStore):
    """A :class:`GraphStore` over any Cypher backend that can run a unit of work in a transaction."""

    #: Key of this store's Meta node (Neo4j tests give each test its own).
    meta_key: str = cypher.META_KEY
    #: k-hop frontiers of at most this many nodes are read node by node, by id (:class:`KHopExpansion`):
    #: for backends whose frontier filter scans the node table. 0: never.
    frontier_seek_max: int = 0

    @abc.abstractmethod
    def _encode_vector(self, vector: np.ndarray) -> Any:
        """One embedding as the backend stores it."""

    @abc.abstractmethod
    def _decode_vectors(self, stored: Sequence[Any]) -> np.ndarray:
        """Stored embeddings back into a ``[n, d]`` float32 array."""

    @abc.abstractmethod
    def _read(self, work: Callable[[Runner], T]) -> T:
        """Run ``work`` in one read-only transaction."""

    @abc.abstractmethod
    def _write(self, work: Callable[[Runner], T]) -> T:
        """Run ``work`` in one write transaction; roll back if it raises."""

    def _meta(self, tx: Runner) -> Sequence[Any]:
        rows = tx.run(cypher.META, key=self.meta_key)
        if not rows:
            raise GraphStoreError("the store has no Meta node: call ensure_schema() first")
        return rows[0]

    # --- ingest ------------------------------------------------------------------------------
    def apply_batch(self, batch: UpsertBatch) -> int:
        edges = encode.edge_params(batch.edges)
        offsets = encode.offset_params(batch)

        def work(tx: Runner) -> int:
            self._check_not_stale(tx, offsets)
            seq = tx.run(cypher.BUMP_SEQ, key=self.meta_key)
            if not seq:
                raise GraphStoreError("the store has no Meta node: call ensure_schema() first")
            rows = self._in_store_units(tx, batch.decay, edges, int(seq[0][0])) if batch.decay else edges
            if rows:
                self._upsert_edges(tx, rows, int(seq[0][0]))
            if batch.erasures:
                self._erase(tx, batch.erasures, int(seq[0][0]))
            if offsets:
                tx.run(cypher.WRITE_OFFSETS, offsets=offsets)
            return int(seq[0][0])

        return self._write(work)

    def edge_decay(self, half_life_ms: float) -> EdgeDecay | None:
        half_life_ms = float(half_life_ms)
        if half_life_ms < 0:
            raise ValueError(f"half_life_ms must be >= 0, got {half_life_ms}")

        def work(tx: Runner) -> EdgeDecay | None:
            rows = tx.run(cypher.READ_DECAY, key=self.meta_key)
            stored, ref_ms = (float(rows[0][0]), int(rows[0][1])) if rows else (None, 0)
            if stored != half_life_ms:
                # Plain weights may start decaying; decayed ones cannot be converted.
                if stored and int(tx.run(cypher.COUNT_EDGES)[0][0]):
                    raise DecayMismatchError(
                        f"the store's edge weights decay with a half-life of {_hours(stored)}, not "
                        f"{_hours(half_life_ms)} (IG_EDGE_HALF_LIFE): keep it, or replay the events into a new store")
                ref_ms = 0
                tx.run(cypher.WRITE_DECAY, key=self.meta_key, half_life_ms=half_life_ms, ref_ms=0)
            return EdgeDecay(half_life_ms, ref_ms) if half_life_ms else None

        return self._write(work)

    def _in_store_units(self, tx: Runner, decay: EdgeDecay, edges: list[dict[str, Any]],
                        seq: int) -> list[dict[str, Any]]:
        """The batch's edge rows in the store's reference units, after a rebase if the batch moved it."""
        rows = tx.run(cypher.READ_DECAY, key=self.meta_key)
        if not rows or float(rows[0][0]) != decay.half_life_ms:
            found = _hours(float(rows[0][0])) if rows else "none declared"
            raise DecayMismatchError(f"batch weights decay with a half-life of {_hours(decay.half_life_ms)}, "
                                     f"the store's: {found} (call edge_decay first)")
        stored = EdgeDecay(decay.half_life_ms, int(rows[0][1]))
        if decay.ref_ms > stored.ref_ms:
            factor = stored.rescale_to(decay)
            if factor != 1.0:
                tx.run(cypher.SCALE_EDGES, factor=factor)
                tx.run(cypher.SCALE_TALLIES, factor=factor)
                for stamp in cypher.STAMP_ALL.values():
                    tx.run(stamp, seq=seq)
            tx.run(cypher.WRITE_DECAY, key=self.meta_key, half_life_ms=decay.half_life_ms, ref_ms=decay.ref_ms)
            return edges
        factor = decay.rescale_to(stored)
        # New rows: a Neo4j transaction function may run again, and must find the batch as it was.
        return edges if factor == 1.0 else [{**e, "weight": e["weight"] * factor} for e in edges]

    @staticmethod
    def _check_not_stale(tx: Runner, offsets: list[dict[str, Any]]) -> None:
        if not offsets:
            return
        rows = tx.run(cypher.READ_OFFSETS, keys=[o["key"] for o in offsets])
        stored: dict[str, int] = {key: int(applied) for key, applied in rows}
        stale = [o for o in offsets if o["key"] in stored and stored[o["key"]] >= o["first"]]
        if stale:
            detail = ", ".join(
                f"{o['topic']}[{o['part']}] first={o['first']} <= applied={stored[o['key']]}" for o in stale
            )
            raise StaleBatchError(f"batch of group {stale[0]['grp']!r} was already applied: {detail}")

    @staticmethod
    def _upsert_edges(tx: Runner, edges: list[dict[str, Any]], seq: int) -> None:
        tx.run(cypher.TOUCH_NODES[NodeKind.USER], ids=sorted({e["user_id"] for e in edges}), seq=seq)
        tx.run(cypher.TOUCH_NODES[NodeKind.ITEM], ids=sorted({e["item_id"] for e in edges}), seq=seq)
        found = {row[0] for row in tx.run(cypher.ADD_TO_EDGES, edges=edges)}
        new = [e for e in edges if e["k"] not in found]
        if new:
            tx.run(cypher.CREATE_EDGES, edges=new)

    @staticmethod
    def _erase(tx: Runner, erasures: Sequence[Erasure], seq: int) -> None:
        """Forget users: tallies, edges, nodes; stamp their items changed; add their digests to the deny-list."""
        ids = sorted({e.user_id for e in erasures})
        pairs = tx.run(cypher.ITEMS_OF_USERS, ids=ids)
        if pairs:
            tx.run(cypher.DELETE_TALLIES, keys=[encode.interaction_key(user, item) for user, item in pairs])
        tx.run(cypher.DELETE_USERS, ids=ids)
        if pairs:
            tx.run(cypher.STAMP_ITEMS, ids=sorted({item for _, item in pairs}), seq=seq)
        tx.run(cypher.DENY, rows=[{"digest": e.digest, "expires_ms": e.expires_ms} for e in erasures], seq=seq)
        # Entries past their expiry go with the next erasure, and at every ingest start (purge_forgotten).
        tx.run(cypher.PURGE_FORGOTTEN, now_ms=int(time.time() * 1000))

    def forgotten_users(self, since_seq: int = 0) -> list[ForgottenUser]:
        rows = self._read(lambda tx: tx.run(cypher.FORGOTTEN_SINCE, since=since_seq))
        return [ForgottenUser(str(digest), int(seq), int(expires)) for digest, seq, expires in rows]

    def purge_forgotten(self, now_ms: int) -> None:
        self._write(lambda tx: tx.run(cypher.PURGE_FORGOTTEN, now_ms=now_ms))

    def applied_offsets(self, group: str) -> dict[TopicPartition, int]:
        rows = self._read(lambda tx: tx.run(cypher.APPLIED_OFFSETS, consumer_group=group))
        return {TopicPartition(topic, int(part)): int(applied) for topic, part, applied in rows}

    def upsert_items(self, items: Sequence[ItemMeta]) -> None:
        rows = encode.item_params(items)
        if rows:
            self._write(lambda tx: tx.run(cypher.UPSERT_ITEMS, items=rows))

    # --- reads -------------------------------------------------------------------------------
    def edge(self, user_id: NodeId, item_id: NodeId) -> StoredEdge | None:
        pairs = encode.pair_params(user_id, [item_id])
        rows = self._read(lambda tx: tx.run(cypher.EDGE_TALLIES, pairs=pairs))
        return _stored_edge(rows[0]) if rows else None

    def edges_of_user(self, user_id: NodeId) -> list[StoredEdge]:
        def work(tx: Runner) -> list[Sequence[Any]]:
            items = [row[0] for row in tx.run(cypher.SEEN_ITEMS, user_id=user_id)]
            return tx.run(cypher.EDGE_TALLIES, pairs=encode.pair_params(user_id, items)) if items else []

        edges = [_stored_edge(row) for row in self._read(work)]
        return sorted(edges, key=lambda e: (-e.weight, e.item_id))

    def user_row(self, user_id: NodeId) -> UserRow:
        def work(tx: Runner) -> tuple[int, Sequence[Any]]:
            return int(self._meta(tx)[0]), tx.run(cypher.USER_ROW, user_id=user_id)

        seq, rows = self._read(work)
        return UserRow(tuple(NodeId(item) for item, _ in rows),
                       np.fromiter((float(w) for _, w in rows), np.float64, len(rows)), seq)

    def item_meta(self, item_ids: Iterable[NodeId]) -> dict[NodeId, ItemMeta]:
        ids = sorted(set(item_ids))
        if not ids:
            return {}
        rows = self._read(lambda tx: tx.run(cypher.ITEM_META, ids=ids))
        return {
            NodeId(i): ItemMeta(NodeId(i), title or "", tuple(categories or ()), text or "")
            for i, title, categories, text in rows
        }

    def cold_catalog_items(self, written_up_to: int, limit: int) -> list[ItemMeta]:
        rows = self._read(lambda tx: tx.run(cypher.COLD_CATALOG_ITEMS, written_up_to=written_up_to, limit=limit))
        return [ItemMeta(NodeId(i), title or "", tuple(categories or ()), text or "")
                for i, title, categories, text in rows]

    def counts(self) -> dict[str, int]:
        def work(tx: Runner) -> dict[str, int]:
            return {
                "users": int(tx.run(cypher.COUNT_NODES[NodeKind.USER])[0][0]),
                "items": int(tx.run(cypher.COUNT_NODES[NodeKind.ITEM])[0][0]),
                "edges": int(tx.run(cypher.COUNT_EDGES)[0][0]),
                "seq": int(self._meta(tx)[0]),
            }

        return self._read(work)

    def snapshot(self) -> EdgeSnapshot:
        """Every edge; ``user_ids``/``item_ids`` list the nodes that have at least one edge."""

        def work(tx: Runner) -> EdgeSnapshot:
            seq = int(self._meta(tx)[0])
            handles, ids = tx.run(cypher.SNAPSHOT_ITEMS)[0]
            snapshot = _edge_snapshot(handles, ids, tx.run(cypher.SNAPSHOT_EDGES), seq)
            decay = tx.run(cypher.READ_DECAY, key=self.meta_key)
            if decay and float(decay[0][0]) and int(decay[0][1]):
                snapshot.decay = EdgeDecay(float(decay[0][0]), int(decay[0][1]))
            return snapshot

        return self._read(work)

    # --- change log and subgraphs ---------------------------------------------------------------
    def changes_since(self, cursor: int, limit: int | None = None,
                      kinds: Sequence[NodeKind] = (NodeKind.USER, NodeKind.ITEM)) -> ChangeSet:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        return self._read(lambda tx: self._changes(tx, cursor, limit, tuple(kinds)))

    def _changes(self, tx: Runner, cursor: int, limit: int | None, kinds: tuple[NodeKind, ...]) -> ChangeSet:
        # Read the sequence first and never look past it: a batch committing meanwhile is left
        # whole for the next call instead of being seen in part.
        latest = max(int(self._meta(tx)[0]), cursor)
        rows = self._changed(tx, cursor, latest, _NO_LIMIT if limit is None else limit + 1, kinds)
        if limit is None or len(rows) <= limit:
            return ChangeSet(cursor, latest, tuple(ref for ref, _ in rows))
        # Cut before the sequence of the first row left out so that no sequence is split.
        cut = rows[limit][1]
        kept = tuple(ref for ref, seq in rows if seq < cut)
        if kept:
            return ChangeSet(cursor, cut - 1, kept)
        # One batch alone is larger than the limit: return it whole rather than make no progress.
        whole = self._changed(tx, cut - 1, cut, _NO_LIMIT, kinds)
        return ChangeSet(cursor, cut, tuple(ref for ref, _ in whole))

    @staticmethod
    def _changed(tx: Runner, since: int, upto: int, limit: int,
                 kinds: tuple[NodeKind, ...]) -> list[tuple[NodeRef, int]]:
        """Changed nodes of ``kinds``, merged in (sequence, kind, id) order."""
        rows = [
            (int(seq), kind, NodeId(node_id))
            for kind in kinds
            for node_id, seq in tx.run(cypher.CHANGED_NODES[kind], since=since, upto=upto, limit=limit)
        ]
        rows.sort()
        return [(NodeRef(kind, node_id), seq) for seq, kind, node_id in rows[:limit]]

    def k_hop_subgraph(self, seeds: Sequence[NodeRef], hops: int, fanout: int | None = None) -> Subgraph:
        return self._read(lambda tx: KHopExpansion(tx, hops, fanout, self.frontier_seek_max).run(seeds))

    # --- embeddings ----------------------------------------------------------------------------
    def write_embeddings(self, update: EmbeddingUpdate) -> None:
        rows = [(r.kind, encode.vector_params(r, self._encode_vector)) for r in update.rows]
        base = [(r.kind, encode.vector_params(r, self._encode_vector)) for r in update.base]
        written_ms = int(time.time() * 1000)

        def work(tx: Runner) -> None:
            # An update computed before an erasure committed may still hold the forgotten users:
            # then it writes only to users that exist, so it cannot bring one back.
            as_of = update.cursor if update.oldest_cursor is None else update.oldest_cursor
            erased = int(tx.run(cypher.ERASED_AFTER, cursor=as_of)[0][0]) > 0
            for kind in NodeKind:
                if erased and kind is NodeKind.USER:
                    continue
                ids = sorted({row["id"] for k, params in (*rows, *base) if k == kind for row in params})
                if ids:
                    tx.run(cypher.ENSURE_NODES[kind], ids=ids)
            for kind, params in rows:
                if params:
                    tx.run(cypher.WRITE_EMBEDDINGS[kind], rows=params, version=update.version)
            for kind, params in base:
                if params:
                    tx.run(cypher.WRITE_BASE_EMBEDDINGS[kind], rows=params, version=update.version)
            tx.run(
                cypher.WRITE_REFRESH_STATE,
                key=self.meta_key,
                version=update.version,
                cursor=update.cursor,
                written_ms=written_ms,
            )

        self._write(work)

    def read_embeddings(self, kind: NodeKind, since_version: int = 0) -> EmbeddingRows:
        rows = self._read(lambda tx: tx.run(cypher.READ_EMBEDDINGS[kind], since_version=since_version))
        return self._embedding_rows(kind, rows)

    def read_base_embeddings(self, kind: NodeKind) -> EmbeddingRows:
        return self._embedding_rows(kind, self._read(lambda tx: tx.run(cypher.READ_BASE_EMBEDDINGS[kind])))

    def _embedding_rows(self, kind: NodeKind, rows: list[Sequence[Any]]) -> EmbeddingRows:
        try:
            vectors = self._decode_vectors([row[1] for row in rows])
        except ValueError as exc:
            raise GraphStoreError(f"stored {kind} embeddings are unreadable: {exc}") from exc
        return EmbeddingRows(kind=kind, ids=[NodeId(row[0]) for row in rows], vectors=vectors)

    def refresh_state(self) -> RefreshState:
        _, version, cursor, written_ms = self._read(self._meta)
        return RefreshState(version=int(version), cursor=int(cursor), written_ms=int(written_ms))


def _hours(ms: float) -> str:
    """A half-life as error messages name it (``IG_EDGE_HALF_LIFE`` is in hours)."""
    return f"{ms / 3_600_000:g} h"


def _stored_edge(row: Sequence[Any]) -> StoredEdge:
    user_id, item_id, weight, cnt, last_ts, *type_counts = row
    return StoredEdge(
        user_id=NodeId(user_id),
        item_id=NodeId(item_id),
        weight=float(weight),
        count=int(cnt),
        last_ts_ms=int(last_ts),
        type_counts={t.value: int(n or 0) for t, n in zip(cypher.TYPE_COUNT_COLUMNS, type_counts, strict=True)},
    )


def _edge_snapshot(
    item_handles: Sequence[Any], item_ids: Sequence[str], by_user: list[Sequence[Any]], seq: int
) -> EdgeSnapshot:
    """Flatten per-user adjacency rows into index arrays, keeping only items that have an edge."""
    position = {handle: k for k, handle in enumerate(item_handles)}
    lengths = np.fromiter((len(row[1]) for row in by_user), dtype=np.int64, count=len(by_user))
    total = int(lengths.sum())
    item_pos = np.fromiter(
        (position[h] for h in itertools.chain.from_iterable(row[1] for row in by_user)), np.int64, total
    )
    weight = np.fromiter(itertools.chain.from_iterable(row[2] for row in by_user), np.float32, total)
    used, item_index = np.unique(item_pos, return_inverse=True)
    return EdgeSnapshot(
        user_ids=[NodeId(row[0]) for row in by_user],
        item_ids=[NodeId(item_ids[k]) for k in used.tolist()],
        user_index=np.repeat(np.arange(len(by_user), dtype=np.int64), lengths),
        item_index=item_index.astype(np.int64, copy=False),
        weight=weight,
        seq=seq,
    )
