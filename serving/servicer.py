"""The ``interestgraph.v1.Recommender`` service: requests in, top-k dot-product items out.

Status codes follow the gRPC conventions so clients know what to do without reading messages:
bad input is ``INVALID_ARGUMENT`` (do not retry), a user or item without an embedding is
``NOT_FOUND``, a store that cannot answer right now, an index that has not loaded yet or a server
that is stopping is ``UNAVAILABLE`` (retry with backoff), a passed deadline is
``DEADLINE_EXCEEDED`` and one stream too many is ``RESOURCE_EXHAUSTED``. ``INTERNAL`` is left for
server faults retrying will not fix (a store error that is not retryable) and real bugs; no request
content ever causes it.

The hot path (Recommend, SimilarItems) reads no store while its caches hold: embeddings, titles and
categories live in the index snapshot, each user's row (seen items, and the user vector when the
index folds users in at request time, :class:`~serving.index.LiveUsers`) in a cache that index
updates invalidate (``serve``) or that commits keep exact (``up``, where it holds every row).
Explain and RecommendFriends read one k-hop subgraph each.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np

from core.domain import EdgeDelta, NodeId, NodeKind, NodeRef, UserRow, epoch_ms
from graph_store.base import GraphStore, GraphStoreError
from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc
from serving import evidence
from serving.blending import BLENDED, PERSONAL, TRENDING, BlendPolicy
from serving.config import ServingConfig
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.item_rank import item_rank
from serving.mix_judge import BLEND, MixJudge
from serving.next_judging import JUDGED_PER_BATCH, JudgedCase, NextItemsJudging, sampled
from serving.next_mix import NextRows, served_search
from serving.requests import RequestChecker, abort, check_deadline
from serving.scoring import ScoreBatcher
from serving.search import EXACT, HNSW, Found, ItemQuery, search
from serving.transitions import ItemTransitions
from serving.trending import TrendingItems
from serving.user_rows import UserRowCache

log = logging.getLogger(__name__)

#: Neighbours read per node for Explain and RecommendFriends (highest edge weight first).
EVIDENCE_FANOUT = 100
#: How long a quiet stream sleeps before checking that its client is still there.
WATCH_WAKE_S = 5.0

Request = TypeVar("Request")
Reply = TypeVar("Reply")
Handler = Callable[[Any, Request, grpc.ServicerContext], Reply]
#: The two replies that carry a list of items.
ItemsReply = TypeVar("ItemsReply", pb.RecommendReply, pb.SimilarItemsReply)
SOURCES = {PERSONAL: pb.RECOMMEND_SOURCE_PERSONAL, BLENDED: pb.RECOMMEND_SOURCE_BLENDED,
           TRENDING: pb.RECOMMEND_SOURCE_TRENDING}


@contextlib.contextmanager
def store_errors_as_status(context: grpc.ServicerContext, rpc: str) -> Iterator[None]:
    """End the RPC with a status for the store's own errors: retryable ones ``UNAVAILABLE``, others ``INTERNAL``."""
    try:
        yield
    except GraphStoreError as exc:
        log.warning("%s failed: graph store: %s", rpc, exc)
        abort(context, grpc.StatusCode.UNAVAILABLE if exc.retryable else grpc.StatusCode.INTERNAL,
              f"graph store: {exc}")


def store_errors_to_status(handler: Handler[Request, Reply]) -> Handler[Request, Reply]:
    """:func:`store_errors_as_status` around a whole unary handler."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: Request, context: grpc.ServicerContext) -> Reply:
        with store_errors_as_status(context, handler.__name__):
            return handler(self, request, context)

    return wrapper


def _age_ms(refreshed_ms: int) -> int:
    return max(0, epoch_ms() - refreshed_ms) if refreshed_ms else 0


def _items_reply(reply: type[ItemsReply], snapshot: IndexSnapshot, found: Found, refreshed_ms: int) -> ItemsReply:
    """A Recommend or SimilarItems reply: the found items with titles and categories, the embedding
    version, and the age of the query's embedding (written at ``refreshed_ms``)."""
    ids, catalog = snapshot.items.ids, snapshot.catalog
    items = []
    for row, score in zip(found.rows.tolist(), found.scores.tolist(), strict=True):
        meta = catalog.meta.get(ids[row])
        items.append(pb.ScoredItem(item_id=ids[row], score=score, title=meta.title if meta else "",
                                   categories=meta.categories if meta else ()))
    return reply(items=items, embedding_version=snapshot.version, embedding_age_ms=_age_ms(refreshed_ms),
                 index_kind=found.index_kind)


class RecommenderServicer(recommender_pb2_grpc.RecommenderServicer):
    """Answers every Recommender RPC from the in-memory index (and the store for graph evidence).

    Args:
        index (EmbeddingIndex): Embeddings kept current by an :class:`~serving.loader.IndexLoader`.
        store (GraphStore): Seen items, subgraphs for evidence and operational counts.
        config (ServingConfig): Limits (``max_k``, ``max_id_length``, ``max_filter_values``,
            ``max_streams``) and ``ann_min_items``.
    """

    def __init__(self, index: EmbeddingIndex, store: GraphStore, config: ServingConfig) -> None:
        self.index = index
        self.store = store
        self.check = RequestChecker(config)
        self.privacy = config.privacy
        self.max_streams = config.max_streams
        self.use_ann = config.ann_min_items > 0
        #: Concurrent exact scans of one snapshot share one pass over its item matrix.
        self.scorer = ScoreBatcher()
        self.user_rows = UserRowCache(store)
        index.subscribe_updates(self.user_rows.invalidate)
        #: Fed by whoever starts serving (see :mod:`serving.trending`); read for users without a
        #: vector (when ``config.trending``) and for blended lists.
        self.trending = TrendingItems(config.trending_half_life_s)
        self.trending_for_unknown = config.trending
        self.blend = BlendPolicy(config.blend_prior_interactions)
        #: Fed and judged by commits in ``up`` (:meth:`take_committed`); empty in ``serve`` alone.
        self.transitions = ItemTransitions()
        self.mix_judge = MixJudge()
        self.next_items = config.next_items
        self.judging = NextItemsJudging(index, self.trending, self.blend, self.mix_judge,
                                        config.next_items_judged_per_s, self.use_ann, self.scorer)
        self._streams: set[threading.Event] = set()
        self._streams_lock = threading.Lock()
        self._closing = threading.Event()
        # Explain's and RecommendFriends' store reads, one at a time: concurrent LadybugDB reads cost
        # 1.5-2x the CPU each at the same reads per second, so serialising them left more of the 2 cores
        # to everything else (1M x 992, 8 in flight, two interleaved runs each: Explain 89-92 against
        # 59-78 calls/s, RecommendFriends 126-194 against 107-138; bench/RESULTS.md).
        self._evidence_reads = threading.Lock()

    # --- unary RPCs ------------------------------------------------------------------------------
    @store_errors_to_status
    def Recommend(  # CamelCase: names fixed by the generated servicer base
        self, request: pb.RecommendRequest, context: grpc.ServicerContext
    ) -> pb.RecommendReply:
        user_id = self._user_id(request.user_id, context)
        k = self.check.k(request.k, context)
        include, exclude = self.check.item_filter(request.filter, context)
        diversity = self.check.diversity(request.HasField("diversity_lambda"), request.diversity_lambda, context)
        snapshot = self._ready_snapshot(context)
        allowed = snapshot.catalog.allowed_rows(snapshot.items.rows, len(snapshot.items), include, exclude)
        return self._recommend(snapshot, user_id, k, request.exclude_seen, context, allowed, diversity)

    @store_errors_to_status
    def SimilarItems(
        self, request: pb.SimilarItemsRequest, context: grpc.ServicerContext
    ) -> pb.SimilarItemsReply:
        item_id = self.check.node_id(request.item_id, "item_id", context)
        k = self.check.k(request.k, context)
        include, exclude = self.check.item_filter(request.filter, context)
        snapshot = self._ready_snapshot(context)
        row = self._row(snapshot, NodeKind.ITEM, item_id, context)
        allowed = snapshot.catalog.allowed_rows(snapshot.items.rows, len(snapshot.items), include, exclude)
        query = ItemQuery(snapshot.items.gather(row), k, np.asarray([row], dtype=np.int64), allowed)
        found = search(snapshot, query, self.use_ann, scorer=self.scorer)
        return _items_reply(pb.SimilarItemsReply, snapshot, found, int(snapshot.items.refreshed_ms[row]))

    @store_errors_to_status
    def RecommendFriends(
        self, request: pb.RecommendFriendsRequest, context: grpc.ServicerContext
    ) -> pb.RecommendFriendsReply:
        user_id = self._user_id(request.user_id, context)
        k = self.check.k(request.k, context)
        snapshot = self._ready_snapshot(context)
        me, refreshed_ms = self._user_vector(snapshot, user_id, context)
        graph = self._graph([NodeRef(NodeKind.USER, user_id)], context)
        vector_of = functools.partial(self._live_vector, snapshot) if snapshot.live_users is not None else None
        friends = evidence.rank_friends(snapshot, user_id, me, graph, k, candidates=max(4 * k, 50),
                                        vector_of=vector_of)
        return pb.RecommendFriendsReply(
            users=[pb.ScoredUser(user_id=f.user_id, score=f.score, embedding_similarity=f.embedding_similarity,
                                 co_interaction=f.co_interaction, shared_items=f.shared_items) for f in friends],
            embedding_version=snapshot.version,
            embedding_age_ms=_age_ms(refreshed_ms),
        )

    @store_errors_to_status
    def Explain(self, request: pb.ExplainRequest, context: grpc.ServicerContext) -> pb.ExplainReply:
        user_id = self._user_id(request.user_id, context)
        item_id = self.check.node_id(request.item_id, "item_id", context)
        limit = self.check.limit(request.limit, context)
        snapshot = self._ready_snapshot(context)
        user_vector, _ = self._user_vector(snapshot, user_id, context)
        item_row = self._row(snapshot, NodeKind.ITEM, item_id, context)
        # Scored as every search scores it (from the table's codes), so score and rank agree.
        score = float(snapshot.items.dot(snapshot.items.vectors[[item_row]], user_vector)[0])
        rank = item_rank(snapshot, user_vector, score, self.use_ann, self.scorer)
        graph = self._graph([NodeRef(NodeKind.USER, user_id), NodeRef(NodeKind.ITEM, item_id)], context)
        items = evidence.explain_items(graph, snapshot, user_id, item_id, limit)
        neighbours = evidence.explain_neighbours(graph, user_id, item_id, limit)
        return pb.ExplainReply(
            score=score, rank=rank.rank, rank_estimated=rank.estimated, seen=(user_id, item_id) in graph.weight,
            title=snapshot.catalog.title(item_id),
            items=[pb.ItemEvidence(item_id=c.item_id, title=snapshot.catalog.title(c.item_id),
                                   contribution=c.contribution, edge_weight=c.edge_weight, similarity=c.similarity)
                   for c in items],
            neighbours=[pb.NeighbourEvidence(user_id=n.user_id, contribution=n.contribution,
                                             shared_items=n.shared_items) for n in neighbours],
            embedding_version=snapshot.version,
        )

    @store_errors_to_status
    def GetStatus(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        snapshot = self.index.snapshot()
        counts = self.store.counts()
        cursor = self.store.refresh_state().cursor
        backlog = len(self.store.changes_since(cursor).nodes)
        return pb.StatusReply(
            embedding_version=snapshot.version,
            embedding_age_ms=_age_ms(snapshot.written_ms),
            users_indexed=len(snapshot.users),
            items_indexed=len(snapshot.items),
            store_seq=counts["seq"],
            refresh_cursor=cursor,
            changed_node_backlog=backlog,
            store_users=counts["users"],
            store_items=counts["items"],
            store_edges=counts["edges"],
            index_kind=HNSW if self.use_ann and snapshot.ann is not None else EXACT,
            ann_version=snapshot.ann.version if snapshot.ann is not None else 0,
            open_streams=len(self._streams),
            users_folded_in=snapshot.live_users is not None,
        )

    # --- the stream ------------------------------------------------------------------------------
    def WatchRecommendations(
        self, request: pb.WatchRecommendationsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RecommendReply]:
        """Push the list now and after every index update that changes its ranked item ids.

        Sleeps on the index's update condition between updates (no polling); the client
        cancelling, its deadline or :meth:`close` wake it.
        """
        user_id = self._user_id(request.user_id, context)
        k = self.check.k(request.k, context)
        self._ready_snapshot(context)
        done = self._open_stream(context)
        try:
            sent: tuple[str, ...] | None = None
            generation = -1
            while True:
                if self._closing.is_set():
                    abort(context, grpc.StatusCode.UNAVAILABLE, "server is shutting down; reconnect")
                if done.is_set() or not context.is_active():
                    return
                snapshot = self.index.snapshot()
                if snapshot.generation != generation:
                    generation = snapshot.generation
                    # Here, not around the generator: a decorator would return before the stream runs.
                    with store_errors_as_status(context, "WatchRecommendations"):
                        reply = self._recommend(snapshot, user_id, k, request.exclude_seen, context)
                    ids = tuple(item.item_id for item in reply.items)
                    if ids != sent:
                        sent = ids
                        yield reply
                self.index.wait_for_update(generation, timeout_s=WATCH_WAKE_S, stop=done)
        finally:
            with self._streams_lock:
                self._streams.discard(done)

    def _open_stream(self, context: grpc.ServicerContext) -> threading.Event:
        done = threading.Event()
        with self._streams_lock:
            if len(self._streams) >= self.max_streams:
                abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"{len(self._streams)} streams open, at most max_streams={self.max_streams}; retry later")
            self._streams.add(done)

        def wake() -> None:
            done.set()
            self.index.wake_watchers()

        context.add_callback(wake)  # runs when the RPC ends: client cancel, deadline, server stop
        return done

    def close(self) -> None:
        """End every open stream (with UNAVAILABLE) and refuse new ones: the server is stopping."""
        self._closing.set()
        self.index.wake_watchers()
        self.judging.stop()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def take_committed(self, edges: Sequence[EdgeDelta]) -> None:
        """A committed batch, before serving's rows hold it (called on the ingest loop): a sample of
        its events captured as their users stood, for the judging thread (:mod:`serving.next_judging`),
        then its edges fed to the transitions. Cheap: no search runs here."""
        if not self.next_items:
            return
        snapshot = self.index.snapshot()
        for n in sampled(len(edges), self.judging.allowance(min(len(edges), JUDGED_PER_BATCH))):
            edge = edges[n]
            successors = self.transitions.successors(edge.user_id)
            row = self.user_rows.get(edge.user_id)
            vector, _ = self._user_vector_or_none(snapshot, edge.user_id, row)
            self.judging.take(JudgedCase(edge.item_id, len(row.items), list(row.items), vector, successors))
        self.transitions.add_edges(edges)

    # --- shared steps ----------------------------------------------------------------------------
    def _user_id(self, value: str, context: grpc.ServicerContext) -> NodeId:
        """A request's user id as the store names the user: checked, then pseudonymised when that is on."""
        return self.privacy.user_id(self.check.node_id(value, "user_id", context))

    def _recommend(
        self,
        snapshot: IndexSnapshot,
        user_id: NodeId,
        k: int,
        exclude_seen: bool,
        context: grpc.ServicerContext,
        allowed: np.ndarray | None = None,
        diversity: float = 1.0,
    ) -> pb.RecommendReply:
        # One read of the row serves the folded-in vector, exclude_seen and the blend's weight.
        wants_row = exclude_seen or snapshot.live_users is not None or self.blend.prior_interactions > 0
        row = self.user_rows.get(user_id) if wants_row else None
        vector, refreshed_ms = self._user_vector_or_none(snapshot, user_id, row)
        seen = snapshot.items.rows_of(row.items) if row is not None and exclude_seen else np.zeros(0, np.int64)
        check_deadline(context, "before scoring")
        if vector is None and not self.trending_for_unknown:
            abort(context, grpc.StatusCode.NOT_FOUND, f"user {user_id!r} has no embedding yet: none of its "
                  "interactions is with an item the model knows")
        interactions = len(row.items) if row is not None else 0
        mix = self.mix_judge.mix(interactions) if self.next_items else BLEND
        # Next items are read only where the judge serves them (a sparse read of the user's successors).
        nexts = NextRows.for_user(snapshot, self.transitions, user_id) if mix.beta > 0 else None
        query = ItemQuery(vector if vector is not None else np.zeros(0, np.float32), k, seen, allowed, diversity)
        found, source = served_search(snapshot, self.trending, self.blend, mix, vector, interactions, query, nexts,
                                      self.use_ann, self.scorer)
        if vector is None:
            refreshed_ms = 0
        reply = _items_reply(pb.RecommendReply, snapshot, found, refreshed_ms)
        reply.source = SOURCES[source]
        return reply

    def _user_vector_or_none(self, snapshot: IndexSnapshot, user_id: NodeId,
                             row: UserRow | None = None) -> tuple[np.ndarray | None, int]:
        """The user's embedding and when it was made (epoch ms): folded in now from the user's row
        (``row``, if the caller has read it already) when the index does that, else the stored one;
        ``(None, 0)`` when there is none."""
        if snapshot.live_users is None:
            stored = snapshot.users.row(user_id)
            if stored is None:
                return None, 0
            return snapshot.users.gather(stored), int(snapshot.users.refreshed_ms[stored])
        vector = snapshot.live_user_vector(row if row is not None else self.user_rows.get(user_id))
        return vector, epoch_ms() if vector is not None else 0

    def _user_vector(self, snapshot: IndexSnapshot, user_id: NodeId, context: grpc.ServicerContext,
                     row: UserRow | None = None) -> tuple[np.ndarray, int]:
        """:meth:`_user_vector_or_none`, ``NOT_FOUND`` when there is none (methods that need a known user)."""
        vector, refreshed_ms = self._user_vector_or_none(snapshot, user_id, row)
        if vector is None:
            abort(context, grpc.StatusCode.NOT_FOUND,
                  f"user {user_id!r} has no embedding yet: none of its interactions is with an item the model knows")
        return vector, refreshed_ms

    def _live_vector(self, snapshot: IndexSnapshot, user_id: NodeId) -> np.ndarray | None:
        """Another user's folded-in vector (RecommendFriends' candidates)."""
        return snapshot.live_user_vector(self.user_rows.get(user_id))

    def _graph(self, seeds: list[NodeRef], context: grpc.ServicerContext) -> evidence.NormalisedGraph:
        check_deadline(context, "before reading the graph")
        with self._evidence_reads:
            subgraph = self.store.k_hop_subgraph(seeds, hops=2, fanout=EVIDENCE_FANOUT)
        check_deadline(context, "while reading the graph")
        return evidence.NormalisedGraph(subgraph)

    def _ready_snapshot(self, context: grpc.ServicerContext) -> IndexSnapshot:
        if self._closing.is_set():
            abort(context, grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        snapshot = self.index.snapshot()
        if not snapshot.ready:
            abort(context, grpc.StatusCode.UNAVAILABLE, "no item embeddings loaded yet: the refresh worker "
                  "has not written any (train a model, then let the refresh worker run)")
        return snapshot

    @staticmethod
    def _row(snapshot: IndexSnapshot, kind: NodeKind, node_id: NodeId, context: grpc.ServicerContext) -> int:
        """``node_id``'s row in the ``kind`` table; ``NOT_FOUND`` when it has no embedding yet."""
        row = (snapshot.users if kind is NodeKind.USER else snapshot.items).row(node_id)
        if row is None:
            abort(context, grpc.StatusCode.NOT_FOUND, f"{kind.value} {node_id!r} has no embedding yet")
        return row
