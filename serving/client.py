"""A small blocking client for the Recommender service, used by the CLI and the demo.

Every unary call carries a deadline, so a hung server costs at most ``timeout_s``; replies come
back as the reply messages themselves (typed by ``proto/recommender_pb2.pyi``, so there is no second
copy of their fields to keep in step) and failures as one exception type, :class:`RecommenderError`,
with the gRPC status code and the server's message. TLS (``root_cert``) and a bearer token (``token``) are
optional, matching the server's ``IG_TLS_*`` and ``IG_AUTH_TOKEN``; :meth:`RecommenderClient.from_config`
reads them from a :class:`~serving.config.ClientConfig`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from proto import recommender_pb2, recommender_pb2_grpc
from serving import SERVICE_NAME
from serving.auth import bearer_metadata
from serving.config import ClientConfig

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


def _filter(include: Sequence[str], exclude: Sequence[str]) -> recommender_pb2.ItemFilter:
    return recommender_pb2.ItemFilter(include_categories=list(include), exclude_categories=list(exclude))


class RecommendationStream:
    """Iterate for ``RecommendReply`` lists; :meth:`cancel` (from any thread) ends it.

    Iteration stops quietly after a cancel and raises :class:`RecommenderError` otherwise
    (UNAVAILABLE when the server stops, DEADLINE_EXCEEDED when the deadline passes).
    """

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[recommender_pb2.RecommendReply]:
        try:
            yield from self._call
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise _error(exc) from exc

    def __next__(self) -> recommender_pb2.RecommendReply:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            raise _error(exc) from exc

    def cancel(self) -> None:
        self._call.cancel()

    def __enter__(self) -> RecommendationStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class RecommenderClient:
    """Calls a Recommender server at ``address``; use as a context manager or :meth:`close`.

    Args:
        address (str): ``host:port`` of the server.
        timeout_s (float): Deadline of every unary call (default: :obj:`5.0`).
        root_cert (bytes, optional): PEM CA certificate to trust; turns TLS on (default: plaintext).
        token (str, optional): Bearer token sent with every call (default: none).
    """

    def __init__(
        self, address: str, timeout_s: float = 5.0, *, root_cert: bytes | None = None, token: str | None = None
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        if root_cert is not None:
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root_cert))
        else:
            self._channel = grpc.insecure_channel(address)
        self._metadata = bearer_metadata(token) if token else ()
        self._stub = recommender_pb2_grpc.RecommenderStub(self._channel)
        self._admin = recommender_pb2_grpc.AdminStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @classmethod
    def from_config(cls, config: ClientConfig, timeout_s: float = 5.0) -> RecommenderClient:
        """A client for ``config.grpc_addr`` with its TLS root certificate and auth token, if set."""
        root = Path(config.tls_root_cert).read_bytes() if config.tls_root_cert else None
        return cls(config.grpc_addr, timeout_s, root_cert=root, token=config.auth_token or None)

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = False,
        *,
        include_categories: Sequence[str] = (),
        exclude_categories: Sequence[str] = (),
        diversity_lambda: float | None = None,
    ) -> recommender_pb2.RecommendReply:
        """Top-``k`` items for a user, optionally without seen items, filtered and diversified
        (``diversity_lambda`` in [0, 1]; ``None`` or 1 = pure relevance)."""
        request = recommender_pb2.RecommendRequest(
            user_id=user_id, k=k, exclude_seen=exclude_seen, filter=_filter(include_categories, exclude_categories)
        )
        if diversity_lambda is not None:
            request.diversity_lambda = diversity_lambda
        return self._call(self._stub.Recommend, request)

    def similar_items(
        self, item_id: str, k: int = 10, *, include_categories: Sequence[str] = (),
        exclude_categories: Sequence[str] = (),
    ) -> recommender_pb2.SimilarItemsReply:
        """The ``k`` items closest to an item (never the item itself), optionally filtered."""
        request = recommender_pb2.SimilarItemsRequest(
            item_id=item_id, k=k, filter=_filter(include_categories, exclude_categories)
        )
        return self._call(self._stub.SimilarItems, request)

    def friends(self, user_id: str, k: int = 10) -> recommender_pb2.RecommendFriendsReply:
        """Users with interests like ``user_id``'s (never the user), best first."""
        return self._call(
            self._stub.RecommendFriends, recommender_pb2.RecommendFriendsRequest(user_id=user_id, k=k))

    def explain(self, user_id: str, item_id: str, limit: int = 0) -> recommender_pb2.ExplainReply:
        """The graph evidence behind ``item_id``'s score for ``user_id`` (``limit`` 0 = server default)."""
        return self._call(
            self._stub.Explain, recommender_pb2.ExplainRequest(user_id=user_id, item_id=item_id, limit=limit))

    def watch(
        self, user_id: str, k: int = 10, exclude_seen: bool = False, timeout_s: float | None = None
    ) -> RecommendationStream:
        """The user's list now and again whenever a refresh changes it (see :class:`RecommendationStream`).

        ``timeout_s`` bounds the whole stream (then DEADLINE_EXCEEDED); default: no deadline."""
        request = recommender_pb2.WatchRecommendationsRequest(user_id=user_id, k=k, exclude_seen=exclude_seen)
        call = self._stub.WatchRecommendations(request, timeout=timeout_s, metadata=self._metadata)
        return RecommendationStream(call)

    def status(self) -> recommender_pb2.StatusReply:
        """The server's view of its index and the store (see ``StatusReply`` in the proto)."""
        return self._call(self._stub.GetStatus, recommender_pb2.StatusRequest())

    def forget(self, user_ids: Sequence[str]) -> recommender_pb2.ForgetReply:
        """Ask the Admin service to erase users (see ``Admin.Forget`` in the proto); returns once the
        broker holds the requests, with where each went."""
        return self._call(self._admin.Forget, recommender_pb2.ForgetRequest(user_ids=list(user_ids)))

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
            return method(request, timeout=self.timeout_s, metadata=self._metadata)
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
