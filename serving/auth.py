"""Bearer-token authentication for the Recommender and Admin services, as a gRPC server interceptor.

Off unless ``IG_AUTH_TOKEN`` is set. Every Recommender and Admin call must then carry the metadata
``authorization: Bearer <token>`` or fails with ``UNAUTHENTICATED``; health checks and reflection
stay open, so load balancers and ``grpcurl list`` work without the secret. Tokens are compared in
constant time (``hmac.compare_digest``) so the reply time leaks nothing about a wrong guess.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

from serving import ADMIN_SERVICE_NAME, SERVICE_NAME

#: The services a token guards (health and reflection stay open).
GUARDED = frozenset({SERVICE_NAME, ADMIN_SERVICE_NAME})


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that authenticates a client holding ``token``."""
    return (("authorization", f"Bearer {token}"),)


def _service_of(method: str) -> str:
    # Full method names look like "/interestgraph.v1.Recommender/Recommend".
    return method.lstrip("/").split("/", 1)[0]


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Rejects Recommender and Admin calls without ``authorization: Bearer <token>``.

    Args:
        token (str): The shared secret; must be non-empty.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("BearerTokenInterceptor needs a non-empty token")
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        # Only our services need a token: health and reflection stay open (see module doc).
        if handler is None or _service_of(handler_call_details.method) not in GUARDED:
            return handler
        return handler if self._authorised(handler_call_details) else _refusing(handler)

    def _authorised(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that fails with UNAUTHENTICATED."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (metadata "
                      "'authorization: Bearer <token>', the server's IG_AUTH_TOKEN)")

    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse, **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, **codec)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(refuse, **codec)
    return grpc.unary_unary_rpc_method_handler(refuse, **codec)
