"""The ``interestgraph.v1.Recommender`` service: requests in, top-k dot-product items out.

Status codes follow the gRPC conventions so clients know what to do without reading messages:
bad input is ``INVALID_ARGUMENT`` (do not retry), a user or item without an embedding is
``NOT_FOUND``, a store that cannot answer right now or an index that has not loaded yet is
``UNAVAILABLE`` (retry with backoff). ``INTERNAL`` is left for server faults retrying will not fix
(a store error that is not retryable) and real bugs; no request content ever causes it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import grpc
import numpy as np

from graph_store.base import GraphStore, GraphStoreError
from interest_graph.domain import NodeId, ScoredItem
from interest_graph.settings import Settings
from proto import recommender_pb2, recommender_pb2_grpc
from serving.index import EmbeddingIndex, IndexSnapshot

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Reply = TypeVar("Reply")
Handler = Callable[[Any, Request, grpc.ServicerContext], Reply]


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: ServicerContext.abort raises")  # for type checkers


def store_errors_to_status(handler: Handler[Request, Reply]) -> Handler[Request, Reply]:
    """Turn the store's own errors into status codes: retryable ones into ``UNAVAILABLE``."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: Request, context: grpc.ServicerContext) -> Reply:
        try:
            return handler(self, request, context)
        except GraphStoreError as exc:
            code = grpc.StatusCode.UNAVAILABLE if exc.retryable else grpc.StatusCode.INTERNAL
            log.warning("%s failed: graph store: %s", handler.__name__, exc)
            _abort(context, code, f"graph store: {exc}")

    return wrapper


def _now_ms() -> int:
    return int(time.time() * 1000)


def _age_ms(refreshed_ms: int) -> int:
    return max(0, _now_ms() - refreshed_ms) if refreshed_ms else 0


class RecommenderServicer(recommender_pb2_grpc.RecommenderServicer):
    """Answers Recommend / SimilarItems from the in-memory index and GetStatus from the store.

    Args:
        index (EmbeddingIndex): Embeddings kept current by an :class:`~serving.loader.IndexLoader`.
        store (GraphStore): Source of seen items, catalog titles and operational counts.
        settings (Settings): Limits (``max_k``, ``max_id_length``).
    """

    def __init__(self, index: EmbeddingIndex, store: GraphStore, settings: Settings) -> None:
        self.index = index
        self.store = store
        self.max_k = settings.max_k
        self.max_id_length = settings.max_id_length

    # --- RPCs ------------------------------------------------------------------------------------
    @store_errors_to_status
    def Recommend(  # CamelCase: names fixed by the generated servicer base
        self, request: recommender_pb2.RecommendRequest, context: grpc.ServicerContext
    ) -> recommender_pb2.RecommendReply:
        user_id = self._check_id(request.user_id, "user_id", context)
        k = self._check_k(request.k, context)
        snapshot = self._ready_snapshot(context)
        row = snapshot.users.row(user_id)
        if row is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"user {user_id!r} has no embedding yet")
        exclude = [snapshot.items.rows_of(self.store.seen_items(user_id))] if request.exclude_seen else []
        found = snapshot.search_items(snapshot.users.vectors[row], k, exclude)[0]
        return recommender_pb2.RecommendReply(
            items=self._with_titles(found),
            embedding_version=snapshot.version,
            embedding_age_ms=_age_ms(int(snapshot.users.refreshed_ms[row])),
        )

    @store_errors_to_status
    def SimilarItems(
        self, request: recommender_pb2.SimilarItemsRequest, context: grpc.ServicerContext
    ) -> recommender_pb2.SimilarItemsReply:
        item_id = self._check_id(request.item_id, "item_id", context)
        k = self._check_k(request.k, context)
        snapshot = self._ready_snapshot(context)
        row = snapshot.items.row(item_id)
        if row is None:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"item {item_id!r} has no embedding yet")
        itself = np.asarray([row], dtype=np.int64)
        found = snapshot.search_items(snapshot.items.vectors[row], k, [itself])[0]
        return recommender_pb2.SimilarItemsReply(
            items=self._with_titles(found),
            embedding_version=snapshot.version,
            embedding_age_ms=_age_ms(int(snapshot.items.refreshed_ms[row])),
        )

    @store_errors_to_status
    def GetStatus(
        self, request: recommender_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> recommender_pb2.StatusReply:
        snapshot = self.index.snapshot()
        counts = self.store.counts()
        _version, cursor, _written_ms = self.store.refresh_state()
        backlog = len(self.store.changes_since(cursor).nodes)
        return recommender_pb2.StatusReply(
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
        )

    # --- validation ------------------------------------------------------------------------------
    def _check_id(self, value: str, field: str, context: grpc.ServicerContext) -> NodeId:
        if not value:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{field} is required")
        if len(value) > self.max_id_length:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field} has {len(value)} characters; at most {self.max_id_length} are allowed",
            )
        return NodeId(value)

    def _check_k(self, k: int, context: grpc.ServicerContext) -> int:
        if not 1 <= k <= self.max_k:
            message = f"k must be between 1 and max_k={self.max_k}, got {k}"
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, message)
        return k

    def _ready_snapshot(self, context: grpc.ServicerContext) -> IndexSnapshot:
        snapshot = self.index.snapshot()
        if not snapshot.ready:
            _abort(context, grpc.StatusCode.UNAVAILABLE, "no item embeddings loaded yet: the refresh worker "
                   "has not written any (train a model, then let the refresh worker run)")
        return snapshot

    # --- replies ---------------------------------------------------------------------------------
    def _with_titles(self, found: Sequence[ScoredItem]) -> list[recommender_pb2.ScoredItem]:
        meta = self.store.item_meta(item.item_id for item in found)
        return [
            recommender_pb2.ScoredItem(
                item_id=item.item_id,
                score=item.score,
                title=meta[item.item_id].title if item.item_id in meta else "",
            )
            for item in found
        ]
