"""The gRPC server: the Recommender service, standard health checks and server reflection.

A synchronous ``grpc.server`` on a thread pool, so it runs beside the Faust worker's event loop in
one process (``interest-graph up``) without sharing that loop. Health reports ``NOT_SERVING`` for
the whole server (``""``) and for ``interestgraph.v1.Recommender`` until the index holds item
embeddings, then ``SERVING``; on shutdown it turns ``NOT_SERVING`` before in-flight calls drain,
so load balancers stop routing first. Reflection lets ``grpcurl`` list and call the service.

Embedding (what ``interest_graph.launch`` does)::

    handle = start_serving(settings, store)   # returns once the port is bound
    ...
    handle.stop(settings.grace_s)

Standalone: ``python -m serving.server`` (settings from ``IG_*`` environment variables).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from graph_store.base import GraphStore
from interest_graph.settings import Settings
from proto import recommender_pb2_grpc
from serving import SERVICE_NAME
from serving.index import EmbeddingIndex
from serving.loader import IndexLoader
from serving.servicer import RecommenderServicer

log = logging.getLogger(__name__)

#: Threads answering RPCs; scoring runs in numpy, which releases the GIL.
DEFAULT_MAX_WORKERS = 10


class ServingStartError(RuntimeError):
    """The server could not bind its address (taken, or not an address). Not retryable as is."""

    retryable = False


def _report_health(servicer: health.HealthServicer, ready: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", SERVICE_NAME):
        servicer.set(service, status)


def create_server(
    address: str,
    index: EmbeddingIndex,
    store: GraphStore,
    settings: Settings,
    *,
    max_workers: int = DEFAULT_MAX_WORKERS,
    health_servicer: health.HealthServicer | None = None,
) -> tuple[grpc.Server, int]:
    """A bound, not yet started server for ``index``; health follows the index's readiness.

    Args:
        address (str): ``host:port`` to bind; port ``0`` picks a free port.
        index (EmbeddingIndex): The index the servicer reads (kept current by an
            :class:`~serving.loader.IndexLoader` the caller runs).
        store (GraphStore): For seen items, titles and status counts.
        settings (Settings): ``max_k`` and ``max_id_length`` limits.
        max_workers (int): RPC threads (default: :obj:`10`).
        health_servicer (HealthServicer, optional): Pass one to control it at shutdown
            (default: a new one).

    Returns:
        The server and the port it is bound to.
    """
    # No SO_REUSEPORT: a second server on a taken port must fail, not silently share it.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    servicer = RecommenderServicer(index, store, settings)
    recommender_pb2_grpc.add_RecommenderServicer_to_server(servicer, server)
    health_servicer = health_servicer or health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    index.subscribe(lambda ready: _report_health(health_servicer, ready))
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ServingStartError(f"cannot bind the gRPC server to {address!r}: {exc}") from exc
    if port == 0:
        raise ServingStartError(f"cannot bind the gRPC server to {address!r}")
    return server, port


@dataclass
class ServingHandle:
    """A running server with its index and loader; :meth:`stop` shuts all of it down."""

    server: grpc.Server
    port: int
    index: EmbeddingIndex
    loader: IndexLoader
    health: health.HealthServicer

    def stop(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, refuse new RPCs, let in-flight ones finish within ``grace_s``."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        self.loader.stop()
        log.info("gRPC server on port %d stopped", self.port)


def start_serving(
    settings: Settings,
    store: GraphStore,
    *,
    address: str | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> ServingHandle:
    """Bind and start the server and the index loader; returns without blocking.

    Args:
        settings (Settings): ``grpc_addr``, ``index_poll_s`` and the request limits.
        store (GraphStore): The store the refresh worker writes embeddings to.
        address (str, optional): Overrides ``settings.grpc_addr`` (default: :obj:`None`).
        max_workers (int): RPC threads (default: :obj:`10`).
    """
    index = EmbeddingIndex()
    health_servicer = health.HealthServicer()
    server, port = create_server(
        address or settings.grpc_addr, index, store, settings,
        max_workers=max_workers, health_servicer=health_servicer,
    )
    loader = IndexLoader(store, index, settings.index_poll_s)
    server.start()
    loader.start()
    log.info("gRPC server listening on port %d (embedding version %d)", port, index.version)
    return ServingHandle(server, port, index, loader, health_servicer)


def serve(
    settings: Settings,
    store: GraphStore,
    stop_event: threading.Event | None = None,
    *,
    on_started: Callable[[ServingHandle], None] | None = None,
) -> None:
    """Serve until ``stop_event`` is set (or forever), then stop gracefully within ``settings.grace_s``.

    Args:
        settings (Settings): See :func:`start_serving`.
        store (GraphStore): The store the refresh worker writes embeddings to.
        stop_event (threading.Event, optional): Set it to stop (default: never; Ctrl-C in ``main``).
        on_started (callable, optional): Called with the handle once the port is bound, e.g. to
            learn the port when ``grpc_addr`` ends in ``:0`` (default: :obj:`None`).
    """
    stop_event = stop_event or threading.Event()
    handle = start_serving(settings, store)
    try:
        if on_started is not None:
            on_started(handle)
        stop_event.wait()
    finally:
        handle.stop(settings.grace_s)


def main() -> int:
    """Serve with settings from the environment until SIGINT/SIGTERM."""
    from graph_store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with open_store(settings) as store:
        serve(settings, store, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
