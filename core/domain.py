"""Shared domain types, imported by every room (streams, graph_store, models, serving).

Data flows one way through these types::

    raw bytes --validate--> InteractionEvent --aggregate--> UpsertBatch(EdgeDelta, offsets)
      --store--> ChangeSet --k-hop--> Subgraph --GNN--> EmbeddingUpdate --index--> Recommendation

Ids are opaque strings chosen by the event producers (``NodeId``); they are never parsed and
never interpolated into queries.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NewType

import numpy as np

#: An id chosen by a producer: a user id or an item id. Opaque, compared verbatim.
NodeId = NewType("NodeId", str)


class IdProblem(enum.StrEnum):
    """Which part of the id rule an id breaks (see :func:`check_id`)."""

    BLANK = "blank"
    TOO_LONG = "too_long"


class InvalidIdError(ValueError):
    """An id breaks the id rule; the message names the field, ``problem`` says which part."""

    def __init__(self, problem: IdProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def check_id(value: str, field: str, max_length: int) -> NodeId:
    """The one id rule, shared by ingest (events, catalog records) and serving (request fields).

    An id must hold a non-blank character and have at most ``max_length`` characters. A blank id
    is rejected, not stripped: ids are compared verbatim, so ``"   "`` could never name the node a
    producer meant, and answering it with NOT_FOUND would hide the caller's bug.

    Args:
        value (str): the id as received.
        field (str): the field it came in (``user_id``, ``item_id``, ...), named in the message.
        max_length (int): the longest accepted id (``Settings.max_id_length``).

    Raises:
        InvalidIdError: the id is empty or blank, or longer than ``max_length``.
    """
    if not value.strip():
        raise InvalidIdError(IdProblem.BLANK, f"{field} is empty or blank")
    if len(value) > max_length:
        raise InvalidIdError(IdProblem.TOO_LONG,
                             f"{field} has {len(value)} characters; at most {max_length} are allowed")
    return NodeId(value)

#: Version of the event contract written into every event (``"v"`` field, optional on input).
EVENT_SCHEMA_VERSION = 1


class EventType(enum.StrEnum):
    """Kinds of user-item interaction, each with a default edge weight (see settings)."""

    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    LIKE = "like"
    RATING = "rating"


class NodeKind(enum.StrEnum):
    """The two sides of the bipartite interest graph."""

    USER = "user"
    ITEM = "item"


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A node of the graph: its side and its producer id."""

    kind: NodeKind
    id: NodeId


@dataclass(frozen=True, slots=True)
class TopicPartition:
    """A Kafka partition, the unit in which applied offsets are tracked."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """A validated event: the record the ingest agent aggregates.

    ``weight`` is already resolved (explicit weight, else rating-derived, else the type default).
    """

    event_id: str
    user_id: NodeId
    item_id: NodeId
    type: EventType
    ts_ms: int
    weight: float
    rating: float | None = None


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where an event was read from; lets a batch carry the offsets it covers."""

    tp: TopicPartition
    offset: int


@dataclass(slots=True)
class EdgeDelta:
    """The pre-aggregated effect of one batch on one (user, item) edge.

    LadybugDB does not accumulate duplicate keys inside one ``UNWIND … MERGE``, so every batch is
    reduced to one delta per edge before it reaches the store.
    """

    user_id: NodeId
    item_id: NodeId
    weight: float
    count: int
    last_ts_ms: int
    type_counts: dict[EventType, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Offsets ``first..last`` (inclusive) of one partition covered by a batch."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """A request to forget a user, read from the events topic in order with the user's events.

    ``user_id`` is as the producer names the user (the ingest step maps it like an event's).
    """

    user_id: NodeId
    requested_ms: int


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """Where an erasure request was published: applied once the ingest has passed this offset."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Erasure:
    """One user a store batch forgets: every node, edge, tally, embedding and change of ``user_id``
    goes, and the deny-list keeps ``digest`` (a keyed hash, never the id) until ``expires_ms``."""

    user_id: NodeId
    digest: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class ForgottenUser:
    """A deny-list entry as the store keeps it: the digest, the change-log sequence of its erasure
    and until when (epoch ms) events of that user are ignored."""

    digest: str
    seq: int
    expires_ms: int


#: Half-lives a decay reference may fall behind the newest event before it moves up to it: weights
#: stay below ``2**32`` times an event's own (float32, where models compute, holds ``2**127``).
REBASE_AFTER_HALF_LIVES = 32


@dataclass(frozen=True, slots=True)
class EdgeDecay:
    r"""Edge weights that halve every ``half_life_ms`` of event time, kept in reference-time units.

    An event of weight :math:`w` at event time :math:`t` adds :math:`w \, 2^{(t - t_{ref})/h}` to its
    edge. The decayed graph at any moment :math:`T` (each weight :math:`w \, 2^{-(T - t)/h}`) is then
    the stored graph times the one factor :math:`2^{-(T - t_{ref})/h}`: adding an event never
    touches another edge, and any model invariant to one factor on every weight (SpectralCF's
    normalised matrix, every per-user ranking) ranks exactly as on the decayed graph, so the
    incremental refresh stays exact. The reference moves up (:meth:`moved_to`) before weights grow
    past :data:`REBASE_AFTER_HALF_LIVES` half-lives; the store then rescales every stored weight.

    Args:
        half_life_ms (float): Event time for a weight to halve, in ms (> 0).
        ref_ms (int): The reference event time, epoch ms; ``0`` = none yet (the first batch sets it,
            and weights stored before then count as of it). (default: :obj:`0`)
    """

    half_life_ms: float
    ref_ms: int = 0

    def __post_init__(self) -> None:
        if not self.half_life_ms > 0:
            raise ValueError(f"half_life_ms must be > 0, got {self.half_life_ms}")

    def factor(self, at_ms: int) -> float:
        """What an event at ``at_ms`` is multiplied by (underflows to 0 for events thousands of half-lives old)."""
        return float(2.0 ** ((at_ms - self.ref_ms) / self.half_life_ms))

    def plain(self, weight: float, at_ms: int) -> float:
        """A weight in this reference's units back as of its own event time ``at_ms`` (0 if it underflowed)."""
        factor = self.factor(at_ms)
        return weight / factor if factor > 0 else 0.0

    def rescale_to(self, other: EdgeDecay) -> float:
        """The factor taking weights in this reference's units to ``other``'s (same half-life)."""
        if self.ref_ms == 0 or other.ref_ms == 0:
            return 1.0  # no reference yet: weights are taken as of the first one
        return other.factor(self.ref_ms)

    def moved_to(self, latest_ms: int) -> EdgeDecay:
        """This reference, or ``latest_ms`` when there is none yet or weights at ``latest_ms`` would be
        more than :data:`REBASE_AFTER_HALF_LIVES` half-lives above it."""
        if self.ref_ms and latest_ms - self.ref_ms <= REBASE_AFTER_HALF_LIVES * self.half_life_ms:
            return self
        return EdgeDecay(self.half_life_ms, max(int(latest_ms), 1))


@dataclass(slots=True)
class UpsertBatch:
    """Edge deltas, erasures and the per-partition offsets they cover: applied in one store transaction.

    Erasures apply after the edges; a batch never holds edges of a user it erases.
    """

    edges: list[EdgeDelta]
    offsets: dict[TopicPartition, OffsetRange]
    #: Consumer group the offsets belong to (several pipelines may share one store).
    group: str = "interest-graph"
    erasures: list[Erasure] = field(default_factory=list)
    #: The reference the edge weights are in (:class:`EdgeDecay`); ``None``: weights as given, no decay.
    decay: EdgeDecay | None = None


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """Catalog attributes of an item: shown to clients, used for filters and cold start."""

    item_id: NodeId
    title: str = ""
    categories: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True, slots=True)
class StoredEdge:
    """An edge as the store holds it (for reads, snapshots and tests)."""

    user_id: NodeId
    item_id: NodeId
    weight: float
    count: int
    last_ts_ms: int
    type_counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user's items and the accumulated weight of each edge, as of change-log sequence ``seq``.

    Read in one snapshot transaction (LadybugDB), the row holds exactly the batches up to ``seq``;
    Neo4j's read-committed reads may also catch a batch committed during the read.
    """

    items: tuple[NodeId, ...]
    weights: np.ndarray  # float64 [len(items)]
    seq: int


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Nodes changed by batches with sequence number in ``(since, upto]``."""

    since: int
    upto: int
    nodes: tuple[NodeRef, ...]

    def __bool__(self) -> bool:
        return bool(self.nodes)


@dataclass(slots=True)
class EdgeSnapshot:
    """All edges in compact form, with the mapping from row index to producer id.

    ``user_index[e]``/``item_index[e]`` index into ``user_ids``/``item_ids``.
    """

    user_ids: list[NodeId]
    item_ids: list[NodeId]
    user_index: np.ndarray  # int64 [E]
    item_index: np.ndarray  # int64 [E]
    weight: np.ndarray  # float32 [E]
    #: Change-log sequence the snapshot reflects (batches with seq <= this are included).
    seq: int = 0
    #: The reference its weights are in (:class:`EdgeDecay`); ``None``: plain weights.
    decay: EdgeDecay | None = None


@dataclass(slots=True)
class Subgraph:
    """A bipartite k-hop subgraph with its mapping back to producer ids.

    Local index ``i`` of users is ``user_ids[i]``; same for items. Translate to producer ids only at
    the edge of the system, as ``torch_geometric.utils.k_hop_subgraph`` returns its mapping.

    ``user_degree``/``item_degree`` are *full-graph* degrees (number of distinct neighbours in the
    store), not degrees inside the subgraph, so normalised propagation on the subgraph equals the
    full-graph computation for nodes far enough from the boundary. ``user_hops``/``item_hops`` give
    each node's BFS distance from the nearest seed.
    """

    user_ids: list[NodeId]
    item_ids: list[NodeId]
    edge_user: np.ndarray  # int64 [E] local user index
    edge_item: np.ndarray  # int64 [E] local item index
    edge_weight: np.ndarray  # float32 [E]
    user_degree: np.ndarray  # int64 [U]
    item_degree: np.ndarray  # int64 [I]
    user_hops: np.ndarray  # int64 [U]
    item_hops: np.ndarray  # int64 [I]

    @property
    def num_edges(self) -> int:
        return int(self.edge_user.shape[0])


@dataclass(slots=True)
class EmbeddingRows:
    """Embeddings of one node kind: ``vectors[i]`` belongs to ``ids[i]``."""

    kind: NodeKind
    ids: list[NodeId]
    vectors: np.ndarray  # float32 [n, d]


#: How an edge's stored weight becomes the value a model folds in (see :func:`edge_values`).
VALUE_MODES = ("weight", "binary")


def edge_values(weight: np.ndarray, values: str) -> np.ndarray:
    """Model values of edges: the stored weight (negative ones count as 0) or 1 for every edge.

    Args:
        weight (np.ndarray): ``[E]`` accumulated edge weights.
        values (str): ``"weight"`` or ``"binary"``.
    """
    if values not in VALUE_MODES:
        raise ValueError(f"values must be one of {VALUE_MODES}, got {values!r}")
    weight = np.asarray(weight, dtype=np.float32)
    if values == "binary":
        return np.ones_like(weight)
    return np.where(np.isfinite(weight), np.maximum(weight, 0.0), 0.0).astype(np.float32)


@dataclass(frozen=True, slots=True)
class UserFoldIn:
    r"""How a user's embedding follows from the user's row, for models whose user vectors are linear
    in it (SpectralCF): :math:`\mathbf{e}_u = \sum_i v(w_{ui})\, s_i\, \mathbf{e}_i` over the user's
    edges, with :math:`v` the model's edge values (:func:`edge_values`), :math:`s_i` the item's
    ``scale`` and :math:`\mathbf{e}_i` its published item embedding. Items without a scale add
    nothing. Serving computes user vectors from it at request time, so a committed edge is served
    without any user embedding being refreshed, written or loaded.

    Args:
        item_ids (tuple[NodeId, ...]): items that contribute (the model's fitted items).
        scale (np.ndarray): ``float32 [len(item_ids)]``: what one unit of edge value with each
            adds to a user, as a multiple of its embedding.
        values (str): the edge values the model was fitted on, one of :data:`VALUE_MODES`.
        model_version (int): the checkpoint it belongs to.
    """

    item_ids: tuple[NodeId, ...]
    scale: np.ndarray
    values: str
    model_version: int


@dataclass(slots=True)
class EmbeddingUpdate:
    """Refreshed embeddings to write, stamped with a monotonically increasing ``version``.

    ``cursor`` is the change-log sequence these embeddings account for; the refresh worker resumes
    from it after a restart. ``base`` holds base (layer-0) embeddings derived for nodes the
    checkpoint has never seen, so a restart reuses them.
    """

    version: int
    cursor: int
    rows: Sequence[EmbeddingRows]
    base: Sequence[EmbeddingRows] = ()
    created_ms: int = 0
    #: The lowest cursor any of its rows was computed as of, when updates were merged
    #: (:mod:`models.persister`); ``None`` = ``cursor``. The store refuses to recreate users an
    #: erasure after it removed.
    oldest_cursor: int | None = None
    #: Set by a full round of a model whose users serving folds in itself (then ``rows`` hold no
    #: users); in-process hand-over only, the store does not keep it.
    fold_in: UserFoldIn | None = None


@dataclass(frozen=True, slots=True)
class RefreshState:
    """Where the embeddings stand after the latest write (all ``0`` before the first one).

    ``version`` is the embedding version, ``cursor`` the change-log sequence those embeddings
    account for (the refresh worker resumes after it), ``written_ms`` the write's wall-clock time
    in epoch ms.
    """

    version: int = 0
    cursor: int = 0
    written_ms: int = 0


def epoch_ms() -> int:
    """Wall-clock now in epoch milliseconds: the unit of every timestamp events, batches and rounds carry."""
    return int(time.time() * 1000)
