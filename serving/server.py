"""The gRPC server: the Recommender service, standard health checks and server reflection.

A synchronous ``grpc.server`` on a thread pool, so it runs beside the Faust worker's event loop in
one process (``interest-graph up``) without sharing that loop. Health reports ``NOT_SERVING`` for
the whole server (``""``) and for ``interestgraph.v1.Recommender`` until the index holds item
embeddings, then ``SERVING``; on shutdown it turns ``NOT_SERVING`` before in-flight calls drain,
so load balancers stop routing first, then open WatchRecommendations streams end with
``UNAVAILABLE``. Reflection lets ``grpcurl`` list and call the service.

Optional, both off by default: TLS (``IG_TLS_CERT`` + ``IG_TLS_KEY``) and bearer-token auth
(``IG_AUTH_TOKEN``, :mod:`serving.auth`). Callers may add their own server interceptors (metrics).
Catalogs of at least ``IG_ANN_MIN_ITEMS`` items are searched with an HNSW graph that an
:class:`~serving.ann_builder.AnnBuilder` thread builds and swaps in without blocking requests.

Started one way, by ``interest_graph.launch`` (``interest-graph serve`` alone, or inside ``up``),
which opens the store first, waiting while it is locked or down::

    config = ServingConfig.from_settings(settings)   # at the top: serving reads only its own fields
    handle = start_serving(config, store)            # returns once the port is bound
    ...
    handle.stop(config.grace_s)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from core.errors import InterestGraphError
from graph_store.base import GraphStore
from proto import recommender_pb2_grpc
from serving import ADMIN_SERVICE_NAME, SERVICE_NAME
from serving.admin import AdminServicer, PublishErasures
from serving.ann import use_one_faiss_thread
from serving.ann_builder import AnnBuilder
from serving.auth import BearerTokenInterceptor
from serving.config import ServingConfig
from serving.erasure import ForgottenUsers
from serving.index import EmbeddingIndex
from serving.loader import IndexLoader
from serving.servicer import RecommenderServicer
from serving.trending import StoreTrendingFeed

log = logging.getLogger(__name__)


class ServingStartError(InterestGraphError, RuntimeError):
    """The server could not bind its address (taken, or not an address). Not retryable as is."""


def _report_health(servicer: health.HealthServicer, ready: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", SERVICE_NAME):
        servicer.set(service, status)


def create_server(
    address: str,
    index: EmbeddingIndex,
    store: GraphStore,
    config: ServingConfig,
    *,
    health_servicer: health.HealthServicer | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    publish_erasures: PublishErasures | None = None,
    erasure_topic: str = "",
) -> tuple[grpc.Server, int, RecommenderServicer]:
    """A bound, not yet started server for ``index``; health follows the index's readiness.

    Args:
        address (str): ``host:port`` to bind; port ``0`` picks a free port.
        index (EmbeddingIndex): The index the servicer reads (kept current by an
            :class:`~serving.loader.IndexLoader` the caller runs).
        store (GraphStore): For seen items, graph evidence and status counts.
        config (ServingConfig): Request limits, ``grpc_workers`` threads for unary RPCs (and
            ``max_streams`` more for streams), ``tls_cert``/``tls_key``, ``auth_token`` and
            ``grpc_share_port``.
        health_servicer (HealthServicer, optional): Pass one to control it at shutdown
            (default: a new one).
        interceptors (Sequence[grpc.ServerInterceptor]): Run before the auth check, so they see
            every call, refused ones included (default: none).
        publish_erasures (PublishErasures, optional): Where the Admin service's Forget publishes
            erasure requests (default: :obj:`None`: Forget answers FAILED_PRECONDITION).
        erasure_topic (str): The topic it publishes to, named in Forget replies (default: ``""``).

    Returns:
        The server, the port it is bound to and the Recommender servicer.
    """
    chain = list(interceptors)
    if config.auth_token:
        chain.append(BearerTokenInterceptor(config.auth_token))
    # SO_REUSEPORT only when asked (IG_GRPC_SHARE_PORT): otherwise a second server on a taken port
    # must fail, not silently share it.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.grpc_workers + config.max_streams, thread_name_prefix="grpc"),
        interceptors=chain,
        options=[("grpc.so_reuseport", int(config.grpc_share_port))],
    )
    servicer = RecommenderServicer(index, store, config)
    recommender_pb2_grpc.add_RecommenderServicer_to_server(servicer, server)
    services = [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME]
    if config.admin_service:
        admin = AdminServicer(servicer.check, publish_erasures, erasure_topic)
        recommender_pb2_grpc.add_AdminServicer_to_server(admin, server)
        services.append(ADMIN_SERVICE_NAME)
    health_servicer = health_servicer or health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    index.subscribe(lambda ready: _report_health(health_servicer, ready))
    reflection.enable_server_reflection(services, server)
    try:
        port = _bind(server, address, config)
    except RuntimeError as exc:
        raise ServingStartError(f"cannot bind the gRPC server to {address!r}: {exc}") from exc
    if port == 0:
        raise ServingStartError(f"cannot bind the gRPC server to {address!r}")
    return server, port, servicer


def _bind(server: grpc.Server, address: str, config: ServingConfig) -> int:
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ServingStartError("TLS needs both IG_TLS_CERT and IG_TLS_KEY (or neither)")
    if not config.tls_cert:
        return server.add_insecure_port(address)
    try:
        pair = (Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())
    except OSError as exc:
        raise ServingStartError(f"cannot read the TLS certificate or key: {exc}") from exc
    return server.add_secure_port(address, grpc.ssl_server_credentials([pair]))


@dataclass
class ServingHandle:
    """A running server with its index, loader and HNSW builder; :meth:`stop` shuts all of it down."""

    server: grpc.Server
    port: int
    index: EmbeddingIndex
    loader: IndexLoader
    health: health.HealthServicer
    servicer: RecommenderServicer
    ann: AnnBuilder
    #: Drops users the store's deny-list names (polled by the loader; ``up`` also calls it on commit).
    forgotten: ForgottenUsers | None = None
    #: Feeds trending from store snapshots (``serve``); ``None`` where the caller feeds it from commits.
    trending_feed: StoreTrendingFeed | None = None

    def stop(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, end streams, refuse new RPCs, let in-flight ones finish within ``grace_s``."""
        self.health.enter_graceful_shutdown()
        self.servicer.close()
        self.server.stop(grace_s).wait()
        self.loader.stop()
        self.ann.stop()
        if self.trending_feed is not None:
            self.trending_feed.stop()
        log.info("gRPC server on port %d stopped", self.port)


def start_serving(
    config: ServingConfig,
    store: GraphStore,
    *,
    address: str | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    index: EmbeddingIndex | None = None,
    trending_from_store: bool = True,
    publish_erasures: PublishErasures | None = None,
    erasure_topic: str = "",
) -> ServingHandle:
    """Bind and start the server, the index loader and the HNSW builder; returns without blocking.

    Args:
        config (ServingConfig): ``grpc_addr``, ``index_poll_s``, ``ann_min_items``, ``ann_min_scan_mb``,
            TLS, auth and limits.
        store (GraphStore): The store the refresh worker writes embeddings to.
        address (str, optional): Overrides ``config.grpc_addr`` (default: :obj:`None`).
        interceptors (Sequence[grpc.ServerInterceptor]): Extra server interceptors, e.g. metrics
            (default: none).
        index (EmbeddingIndex, optional): Serve this index, e.g. one filled directly by a
            benchmark (default: a new, empty one).
        trending_from_store (bool): Feed the trending list from store snapshots every
            ``trending_reseed_s``; ``False`` when the caller feeds it from commits, as ``up`` does
            (default: :obj:`True`).
        publish_erasures (PublishErasures, optional): The Admin service's publisher (default: :obj:`None`).
        erasure_topic (str): The topic it publishes to (default: ``""``).
    """
    index = index if index is not None else EmbeddingIndex(config.item_codec)
    health_servicer = health.HealthServicer()
    server, port, servicer = create_server(
        address or config.grpc_addr, index, store, config,
        health_servicer=health_servicer, interceptors=interceptors,
        publish_erasures=publish_erasures, erasure_topic=erasure_topic,
    )
    forgotten = ForgottenUsers(store, config.privacy.forget_key, index, servicer.user_rows)
    loader = IndexLoader(store, index, config.index_poll_s, forgotten=forgotten)
    ann = AnnBuilder(index, config.ann_min_items, config.ann_ef_search,
                     min_scan_bytes=int(config.ann_min_scan_mb * 1e6), target_recall=config.ann_target_recall,
                     ef_max=config.ann_ef_max)
    use_one_faiss_thread()
    feed = StoreTrendingFeed(store, servicer.trending, config.trending_reseed_s) if trending_from_store else None
    server.start()
    loader.start()
    ann.start()
    if feed is not None:
        feed.start()
    log.info("gRPC server listening on port %d (embedding version %d)", port, index.version)
    return ServingHandle(server, port, index, loader, health_servicer, servicer, ann, forgotten, feed)

