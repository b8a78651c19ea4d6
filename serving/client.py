"""A small blocking client for the Recommender service, used by the CLI and the demo.

Every call carries a deadline, so a hung server costs at most ``timeout_s``; replies come back as
plain dataclasses and failures as one exception type, :class:`RecommenderError`, with the gRPC
status code and the server's message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from interest_graph.domain import NodeId, ScoredItem
from proto import recommender_pb2, recommender_pb2_grpc
from serving import SERVICE_NAME

#: Codes worth retrying after a pause: the server is starting, overloaded or briefly cut off.
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})


class RecommenderError(Exception):
    """A call failed: ``code`` is the gRPC status, ``message`` the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Top-k items with the embedding version they were scored with and its age."""

    items: list[ScoredItem] = field(default_factory=list)
    embedding_version: int = 0
    embedding_age_ms: int = 0


@dataclass(frozen=True, slots=True)
class ServingStatus:
    """The server's view of embeddings and the store (see ``StatusReply`` in the proto)."""

    embedding_version: int
    embedding_age_ms: int
    users_indexed: int
    items_indexed: int
    store_seq: int
    refresh_cursor: int
    changed_node_backlog: int
    store_users: int
    store_items: int
    store_edges: int


def _recommendation(
    reply: recommender_pb2.RecommendReply | recommender_pb2.SimilarItemsReply,
) -> Recommendation:
    return Recommendation(
        items=[ScoredItem(NodeId(i.item_id), i.score, i.title) for i in reply.items],
        embedding_version=reply.embedding_version,
        embedding_age_ms=reply.embedding_age_ms,
    )


class RecommenderClient:
    """Calls a Recommender server at ``address``; use as a context manager or :meth:`close`.

    Args:
        address (str): ``host:port`` of the server.
        timeout_s (float): Deadline of every call (default: :obj:`5.0`).
    """

    def __init__(self, address: str, timeout_s: float = 5.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(address)
        self._stub = recommender_pb2_grpc.RecommenderStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = False) -> Recommendation:
        """Top-``k`` items for a user (optionally leaving out items they have interacted with)."""
        request = recommender_pb2.RecommendRequest(user_id=user_id, k=k, exclude_seen=exclude_seen)
        return _recommendation(self._call(self._stub.Recommend, request))

    def similar_items(self, item_id: str, k: int = 10) -> Recommendation:
        """The ``k`` items closest to an item (never the item itself)."""
        request = recommender_pb2.SimilarItemsRequest(item_id=item_id, k=k)
        return _recommendation(self._call(self._stub.SimilarItems, request))

    def status(self) -> ServingStatus:
        reply = self._call(self._stub.GetStatus, recommender_pb2.StatusRequest())
        return ServingStatus(**{f.name: getattr(reply, f.name) for f in reply.DESCRIPTOR.fields})

    def serving(self) -> bool:
        """Whether health reports the Recommender service as SERVING (one check, no waiting)."""
        reply = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def wait_until_serving(self, timeout_s: float = 30.0) -> None:
        """Block until the server is up and has embeddings loaded.

        Raises :class:`RecommenderError` (``DEADLINE_EXCEEDED``) if that takes over ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        last = "no answer"  # the latest health status or error, for the timeout message
        while (left := deadline - time.monotonic()) > 0:
            # Watch streams every status change, and wait_for_ready rides out a server not yet bound.
            try:
                for reply in self._health.Watch(request, timeout=left, wait_for_ready=True):
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE_CODES:
                    raise _error(exc) from exc
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # our own deadline says nothing new
                    last = f"{exc.code().name}: {exc.details()}"
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        raise RecommenderError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"{self.address} not SERVING after {timeout_s:.1f} s (last: {last})",
        )

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> Any:
        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise _error(exc) from exc

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> RecommenderClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _error(exc: grpc.RpcError) -> RecommenderError:
    # Every RpcError raised by a blocking call is also a grpc.Call, which carries code and details.
    call: grpc.Call = exc
    return RecommenderError(call.code(), call.details() or "")
