"""Start the components: all in one process (embedded LadybugDB) or one per process (Neo4j).

LadybugDB admits one read-write process, so ``up`` runs every writer in one process sharing one
store object: the Faust worker owns the main thread and its event loop, the refresh worker and the
index loader run in threads, gRPC serves from its own thread pool. With Neo4j each component can be
its own process (``ingest``, ``refresh``, ``serve``), as deploy/docker-compose.yml runs them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.retry import BACKOFF
from core.settings import Settings
from graph_store import StoreConfig, open_store
from graph_store.base import GraphStore
from interest_graph.gc_pauses import GcPauses, tune_collector
from interest_graph.metrics import StackCollector, start_metrics_server

if TYPE_CHECKING:  # each component's room is imported when that component starts (``--help`` stays fast)
    from interest_graph.freshness import FreshnessTracker
    from interest_graph.refresh_metrics import MeasuredRefreshWorker
    from models.refresh import RefreshWorker, WrittenRound
    from serving.interceptors import MetricsInterceptor
    from serving.server import ServingHandle
    from streams.ingest import AppliedBatch, AppliedHook

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _open_store_waiting(settings: Settings) -> Iterator[GraphStore]:
    """Open the store, waiting (with :data:`core.retry.BACKOFF`) while it is locked by another process or down.

    A LadybugDB file held by another writer (a maintenance tool, a previous ``up`` still shutting
    down) or a Neo4j server restarting is a retryable condition: crash-looping would not help.
    """
    def unavailable(exc: Exception, wait: float) -> None:
        log.warning("graph store unavailable (%s); retrying in %.1f s", exc, wait)

    with BACKOFF.call(lambda: open_store(StoreConfig.from_settings(settings)), on_retry=unavailable) as store:
        yield store


@contextlib.contextmanager
def _broker(settings: Settings, start: bool) -> Iterator[Settings]:
    """Start Tansu on the port of ``broker_url`` when asked; yield settings pointing at the broker."""
    if not start:
        yield settings
        return
    from interest_graph.embedded_broker import TansuBroker

    host, port = settings.bootstrap_servers[0].rsplit(":", 1)
    # The broker's pid and cluster id live beside the store: a broker a crash left running is re-attached.
    with TansuBroker(port=int(port), host=host, state_dir=Path(settings.store_path).parent / "broker") as broker:
        if broker.reattached:
            log.warning("re-attached to the Tansu broker a previous `up` left running on %s (cluster %s): the "
                        "events it holds are kept", broker.url, broker.cluster_id)
        else:
            log.info("Tansu broker listening on %s", broker.url)
        yield settings.replace(broker_url=broker.url)


def ensure_topics(settings: Settings) -> None:
    """Create the events, items and dead-letter topics if they do not exist."""
    from streams.kafka_admin import create_topics

    create_topics(settings.bootstrap_servers, {
        settings.events_topic: settings.topic_partitions,
        settings.items_topic: 1,
        settings.dead_letter_topic: 1,
    })


@contextlib.contextmanager
def _refresh_thread(settings: Settings, store: GraphStore, stop: threading.Event,
                    write_behind: bool = False, live_users: bool = False) -> Iterator[MeasuredRefreshWorker]:
    from interest_graph.refresh_metrics import MeasuredRefreshWorker
    from models.cold_start.catalog import ColdItems
    from models.config import ColdStartConfig, RefreshConfig
    from models.runtime import use_torch_threads

    # torch's thread count is process-wide: set it here, once, before the refresh thread runs a model.
    use_torch_threads()
    worker = MeasuredRefreshWorker(store, RefreshConfig.from_settings(settings), Path(settings.model_dir),
                                   cold=ColdItems.from_config(store, ColdStartConfig.from_settings(settings)),
                                   write_behind=write_behind, live_users=live_users)
    thread = threading.Thread(target=worker.run_forever, args=(stop,), name="refresh", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=90)
        if thread.is_alive():
            log.warning("the refresh worker did not stop within 90 s")


@contextlib.contextmanager
def _serving(settings: Settings, store: GraphStore, stop: threading.Event,
             trending_from_store: bool = True) -> Iterator[tuple[ServingHandle, MetricsInterceptor]]:
    """The running server and its latency interceptor; ``trending_from_store=False`` when the caller
    feeds trending from commits (``up``)."""
    from serving.config import ServingConfig
    from serving.interceptors import MetricsInterceptor
    from serving.server import start_serving
    from streams.erasure_publisher import ErasurePublisher

    config = ServingConfig.from_settings(settings)
    interceptor = MetricsInterceptor()
    # The Admin service's Forget publishes where producers publish events (serving speaks no Kafka).
    publisher = ErasurePublisher(settings.bootstrap_servers, settings.events_topic)
    handle = start_serving(config, store, interceptors=[interceptor], trending_from_store=trending_from_store,
                           publish_erasures=publisher.forget if config.admin_service else None,
                           erasure_topic=settings.events_topic)
    try:
        yield handle, interceptor
    finally:
        handle.stop(config.grace_s)
        publisher.close()


def _hand_over(refresh: RefreshWorker, serving: ServingHandle) -> FreshnessTracker:
    """Join the refresh worker to serving inside this process, and time the whole path.

    Each embedding write goes straight to the serving index (the loader's poll of the store stays,
    as a safety net and for what other processes write); freshness hears of every write and every
    index swap (see interest_graph.freshness).
    """
    from interest_graph.freshness import FreshnessTracker, watch_serving

    tracker = FreshnessTracker()
    watch_serving(tracker, refresh, serving.index)  # first, so a round is known before its swap
    def hand_over(written: WrittenRound) -> None:
        serving.loader.take(written.update)

    refresh.subscribe(hand_over)
    return tracker


def _on_commit(freshness: FreshnessTracker, refresh: RefreshWorker, serving: ServingHandle) -> AppliedHook:
    """What a committed ingest batch sets off in ``up``: serving judges a sample of it against the
    lists its users had and learns its transitions (serving.next_mix), adds its edges to the cached
    user rows (with users folded in at request time, that serves the batch) and to the trending
    list, freshness times it, and the next refresh round starts now."""
    def applied(batch: AppliedBatch) -> None:
        serving.servicer.take_committed(batch.edges)
        serving.servicer.user_rows.committed(batch.seq, batch.edges, batch.rescaled)
        for user in batch.erased:
            serving.servicer.transitions.forget_user(user)
        if batch.erased and serving.forgotten is not None:
            serving.forgotten.forget(batch.erased)
        serving.servicer.trending.add_edges(batch.edges, batch.decay)
        if serving.index.snapshot().folds_in(batch.items):
            freshness.batch_served(batch)
        else:
            freshness.batch_applied(batch)
        refresh.wake()

    return applied


def _hold_user_rows(store: GraphStore, serving: ServingHandle) -> None:
    """Load every user row into serving before ingest starts; from then on commits keep them, and
    Recommend reads no row from the store (see serving.user_rows). The same snapshot seeds the
    trending list, which commits then keep (see serving.trending)."""
    started = time.monotonic()
    snapshot = store.snapshot()
    serving.servicer.trending.add_totals(snapshot)
    if serving.servicer.user_rows.hold_all(snapshot):
        log.info("serving holds the rows of %d users (%d edges), loaded in %.1f s", len(snapshot.user_ids),
                 snapshot.weight.size, time.monotonic() - started)


def _started(settings: Settings, collector: StackCollector) -> None:
    """Start-up has loaded what the process keeps: tune the garbage collector for the long run
    (see interest_graph.gc_pauses), then export the metrics, its pauses among them, when asked."""
    tune_collector(settings.gc_young_threshold)
    if settings.metrics_port:
        collector.gc_pauses = GcPauses().watch()
        start_metrics_server(settings, collector)


def _single_threaded_blas() -> None:
    """One BLAS thread per caller, for the whole process.

    numpy's OpenBLAS starts as many threads as there are cores for every product, and each gRPC
    worker thread scores its request with one: on a 2-core machine a dozen concurrent
    matrix-vector products then fight over two cores with spinning BLAS workers (``bench/freshness.py``
    saw Recommend p99 near 2 s on an idle stack). gRPC's thread pool is the parallelism that matters.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _faust_datadir(settings: Settings) -> str:
    return str(Path(settings.store_path).parent / "faust")


def run_embedded_stack(settings: Settings, *, start_broker: bool = True) -> int:
    """``interest-graph up``: every component in this process until Ctrl-C / SIGTERM."""
    from streams.config import IngestConfig
    from streams.ingest import IngestStats
    from streams.worker import run_ingest_worker

    Path(settings.store_path).parent.mkdir(parents=True, exist_ok=True)
    _single_threaded_blas()
    stop = threading.Event()
    with _broker(settings, start_broker) as settings, _open_store_waiting(settings) as store:
        store.ensure_schema()
        ensure_topics(settings)
        # Write-behind: serving is a listener of the worker here, so rounds reach it before the store.
        # Live users: serving folds users in from their committed rows, so rounds refresh items only.
        with (_refresh_thread(settings, store, stop, write_behind=True, live_users=True) as refresh,
              _serving(settings, store, stop, trending_from_store=False) as (serving, grpc_metrics)):
            freshness = _hand_over(refresh, serving)
            _hold_user_rows(store, serving)
            stats = IngestStats(on_applied=_on_commit(freshness, refresh, serving))
            _started(settings, StackCollector(settings, ingest=stats, refresh=refresh, serving=serving,
                                              grpc=grpc_metrics, freshness=freshness, store=store))
            return run_ingest_worker(IngestConfig.from_settings(settings), store, datadir=_faust_datadir(settings),
                                     stats=stats)
    return 0


def run_ingest(settings: Settings) -> int:
    """``interest-graph ingest``: the Faust worker alone."""
    from streams.config import IngestConfig
    from streams.ingest import IngestStats
    from streams.worker import run_ingest_worker

    stats = IngestStats()
    with _open_store_waiting(settings) as store:
        store.ensure_schema()
        ensure_topics(settings)
        _started(settings, StackCollector(settings, ingest=stats))
        return run_ingest_worker(IngestConfig.from_settings(settings), store, datadir=_faust_datadir(settings),
                                 stats=stats)


def _wait_for_signal(stop: threading.Event) -> None:
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def run_refresh(settings: Settings) -> int:
    """``interest-graph refresh``: the refresh worker alone."""
    stop = threading.Event()
    with _open_store_waiting(settings) as store, _refresh_thread(settings, store, stop) as refresh:
        _started(settings, StackCollector(settings, refresh=refresh, store=store))
        _wait_for_signal(stop)
    return 0


def run_serve(settings: Settings) -> int:
    """``interest-graph serve``: the gRPC server alone."""
    _single_threaded_blas()
    stop = threading.Event()
    with _open_store_waiting(settings) as store, _serving(settings, store, stop) as (serving, grpc_metrics):
        _started(settings, StackCollector(settings, serving=serving, grpc=grpc_metrics, store=store))
        _wait_for_signal(stop)
    return 0
