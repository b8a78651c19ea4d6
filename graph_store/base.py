"""The one interface every graph store backend implements, and its errors.

Backends: :mod:`graph_store.ladybug` (embedded, on disk, the default) and :mod:`graph_store.neo4j`
(production, through the official driver). Both speak Cypher with parameters only; the statements
live side by side in :mod:`graph_store.cypher` so a reader sees where the dialects differ.

All methods are synchronous and safe to call from one thread at a time per store object; async
callers (the Faust agent, the gRPC server) run them in an executor.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Self

from core.domain import (
    ChangeSet,
    EdgeDecay,
    EdgeSnapshot,
    EmbeddingRows,
    EmbeddingUpdate,
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
from core.errors import InterestGraphError


class GraphStoreError(InterestGraphError):
    """Base of the store's own errors. ``retryable`` tells callers whether to try again (default: no)."""


class StoreUnavailableError(GraphStoreError):
    """The store could not be reached or is locked by another process; retry with backoff."""

    retryable = True


class StaleBatchError(GraphStoreError):
    """A batch covers offsets the store has already applied (another writer got there first).

    Not retryable as is: re-read :meth:`GraphStore.applied_offsets` and drop what was applied.
    """

    retryable = False


class DecayMismatchError(GraphStoreError):
    """The store's weights decay with another half-life than the writer's (or it never declared one).

    Not retryable: weights already stored cannot be converted to another half-life (that needs
    every event's time); replay the events into a new store, or keep the store's half-life.
    """

    retryable = False


class GraphStore(abc.ABC):
    """A bipartite user-item interest graph with offsets, a change log and embeddings."""

    # --- lifecycle -----------------------------------------------------------------------
    @abc.abstractmethod
    def ensure_schema(self) -> None:
        """Create tables/constraints if missing (idempotent)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and file locks."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ingest --------------------------------------------------------------------------
    @abc.abstractmethod
    def apply_batch(self, batch: UpsertBatch) -> int:
        """Upsert the batch's edges, record its offsets and log its changed nodes, atomically.

        Edge weights/counts/per-type counts are added, ``last_ts_ms`` takes the max. The batch's
        erasures then delete each user's node, edges, tallies, embeddings and change stamp, stamp the
        items they had edges to as changed, and add the digests to the deny-list. Offsets are
        stored per (group, topic, partition) as the highest applied offset. Every touched user and
        item is stamped with a new change-log sequence number. Raises :class:`StaleBatchError`
        (and changes nothing) if any partition's stored offset is already ``>= first``.
        With ``batch.decay`` the weights are in that reference's units: a reference later than
        the store's first rescales every stored weight to it and stamps every node changed (the
        rebase), an earlier one (another writer moved it) has the batch's weights rescaled; a
        half-life other than the declared one raises :class:`DecayMismatchError`.
        Returns the new sequence number.
        """

    @abc.abstractmethod
    def edge_decay(self, half_life_ms: float) -> EdgeDecay | None:
        """Declare the edge half-life writers use (``0`` = no decay) and return the store's reference.

        A store without edges takes any half-life; one whose edges were written without decay may
        start decaying (those weights then count as of the first reference). Anything else raises
        :class:`DecayMismatchError`. ``None`` when ``half_life_ms`` is 0.
        """

    @abc.abstractmethod
    def applied_offsets(self, group: str) -> dict[TopicPartition, int]:
        """Highest offset applied per partition for a consumer group (absent = none applied)."""

    @abc.abstractmethod
    def forgotten_users(self, since_seq: int = 0) -> list[ForgottenUser]:
        """Deny-list entries whose erasure has a sequence ``> since_seq``, in sequence order
        (expired ones included until :meth:`purge_forgotten` drops them)."""

    @abc.abstractmethod
    def purge_forgotten(self, now_ms: int) -> None:
        """Drop deny-list entries that expire at or before ``now_ms``."""

    @abc.abstractmethod
    def upsert_items(self, items: Sequence[ItemMeta]) -> None:
        """Create or update catalog attributes of items (does not touch edges)."""

    # --- reads ---------------------------------------------------------------------------
    @abc.abstractmethod
    def edge(self, user_id: NodeId, item_id: NodeId) -> StoredEdge | None:
        """One edge as stored, or None."""

    @abc.abstractmethod
    def edges_of_user(self, user_id: NodeId) -> list[StoredEdge]:
        """All edges of a user, highest weight first."""

    @abc.abstractmethod
    def user_row(self, user_id: NodeId) -> UserRow:
        """The user's items with their accumulated edge weights, by item id (what a model folds in),
        and the change-log sequence they are as of (empty for a user without edges)."""

    @abc.abstractmethod
    def item_meta(self, item_ids: Iterable[NodeId]) -> dict[NodeId, ItemMeta]:
        """Catalog attributes of the given items that have any."""

    @abc.abstractmethod
    def cold_catalog_items(self, written_up_to: int, limit: int) -> list[ItemMeta]:
        """Up to ``limit`` catalog items (those with a title) that have no edge and whose embedding
        is missing or has a version ``<= written_up_to``, in id order (cold-start candidates)."""

    @abc.abstractmethod
    def snapshot(self) -> EdgeSnapshot:
        """Every edge in compact form (training input)."""

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """``users``, ``items``, ``edges`` and ``seq`` (latest change-log sequence)."""

    # --- change log and subgraphs ----------------------------------------------------------
    @abc.abstractmethod
    def changes_since(self, cursor: int, limit: int | None = None,
                      kinds: Sequence[NodeKind] = (NodeKind.USER, NodeKind.ITEM)) -> ChangeSet:
        """Nodes of ``kinds`` whose latest change has sequence in ``(cursor, upto]``.

        ``upto`` is the latest sequence, or lower when ``limit`` cuts the set (then the caller
        asks again from ``upto``); nodes are returned in sequence order so no change is skipped.
        """

    @abc.abstractmethod
    def k_hop_subgraph(self, seeds: Sequence[NodeRef], hops: int, fanout: int | None = None) -> Subgraph:
        """The subgraph within ``hops`` of ``seeds``; each expanded node contributes at most
        ``fanout`` neighbours, highest edge weight first (``None``/``0`` = all).

        Edges are those traversed by the BFS (between nodes at hop ``h`` and ``h+1``) plus edges
        between nodes already in the subgraph, so with no fanout cap the result is the induced
        subgraph. Degrees are full-graph degrees.
        """

    # --- embeddings ------------------------------------------------------------------------
    @abc.abstractmethod
    def write_embeddings(self, update: EmbeddingUpdate) -> None:
        """Write refreshed embeddings (and derived base embeddings) with their version, and the
        refresh cursor, in one transaction. Idempotent: rewriting the same update is harmless.
        Nodes an update names are created if missing, except users when an erasure committed after
        ``update.cursor`` (the update may hold a user forgotten since)."""

    @abc.abstractmethod
    def read_embeddings(self, kind: NodeKind, since_version: int = 0) -> EmbeddingRows:
        """Embeddings of ``kind`` written with a version ``> since_version``."""

    @abc.abstractmethod
    def read_base_embeddings(self, kind: NodeKind) -> EmbeddingRows:
        """Derived base embeddings written by earlier refreshes (nodes unknown to the checkpoint)."""

    @abc.abstractmethod
    def refresh_state(self) -> RefreshState:
        """Version, refresh cursor and write time of the latest embedding write."""
