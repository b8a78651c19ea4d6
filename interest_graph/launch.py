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
from collections.abc import Iterator
from pathlib import Path

from graph_store import open_store
from graph_store.base import GraphStore
from interest_graph.settings import Settings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _broker(settings: Settings, start: bool) -> Iterator[Settings]:
    """Start Tansu on the port of ``broker_url`` when asked; yield settings pointing at the broker."""
    if not start:
        yield settings
        return
    from interest_graph.broker import TansuBroker

    port = int(settings.bootstrap_servers[0].rsplit(":", 1)[1])
    with TansuBroker(port=port) as broker:
        log.warning("Tansu broker listening on %s", broker.url)
        yield settings.replace(broker_url=broker.url)


def ensure_topics(settings: Settings) -> None:
    """Create the events, items and dead-letter topics if they do not exist."""
    from interest_graph.broker import create_topics

    create_topics(settings.bootstrap_servers, {
        settings.events_topic: settings.topic_partitions,
        settings.items_topic: 1,
        settings.dead_letter_topic: 1,
    })


@contextlib.contextmanager
def _refresh_thread(settings: Settings, store: GraphStore, stop: threading.Event) -> Iterator[object]:
    from models.refresh import RefreshWorker

    worker = RefreshWorker(store, settings, Path(settings.model_dir))
    thread = threading.Thread(target=worker.run_forever, args=(stop,), name="refresh", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=30)


@contextlib.contextmanager
def _serving(settings: Settings, store: GraphStore, stop: threading.Event) -> Iterator[object]:
    from serving.server import start_serving

    handle = start_serving(settings, store)
    log.warning("gRPC server listening on port %d", handle.port)
    try:
        yield handle
    finally:
        handle.stop(settings.grace_s)


def _metrics(settings: Settings, **components: object) -> None:
    from interest_graph.metrics import start_metrics_server

    if settings.metrics_port:
        start_metrics_server(settings, **components)


def _faust_datadir(settings: Settings) -> str:
    return str(Path(settings.store_path).parent / "faust")


def run_embedded_stack(settings: Settings, *, start_broker: bool = True) -> int:
    """``interest-graph up``: every component in this process until Ctrl-C / SIGTERM."""
    from streams.ingest import IngestStats
    from streams.worker import run_ingest_worker

    Path(settings.store_path).parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    stats = IngestStats()
    with _broker(settings, start_broker) as settings, open_store(settings) as store:
        store.ensure_schema()
        ensure_topics(settings)
        with _refresh_thread(settings, store, stop) as refresh, _serving(settings, store, stop) as serving:
            _metrics(settings, ingest=stats, refresh=refresh, serving=serving)
            return run_ingest_worker(settings, store, datadir=_faust_datadir(settings), stats=stats)
    return 0


def run_ingest(settings: Settings) -> int:
    """``interest-graph ingest``: the Faust worker alone."""
    from streams.ingest import IngestStats
    from streams.worker import run_ingest_worker

    stats = IngestStats()
    with open_store(settings) as store:
        store.ensure_schema()
        ensure_topics(settings)
        _metrics(settings, ingest=stats)
        return run_ingest_worker(settings, store, datadir=_faust_datadir(settings), stats=stats)


def _wait_for_signal(stop: threading.Event) -> None:
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def run_refresh(settings: Settings) -> int:
    """``interest-graph refresh``: the refresh worker alone."""
    stop = threading.Event()
    with open_store(settings) as store, _refresh_thread(settings, store, stop) as refresh:
        _metrics(settings, refresh=refresh)
        _wait_for_signal(stop)
    return 0


def run_serve(settings: Settings) -> int:
    """``interest-graph serve``: the gRPC server alone."""
    stop = threading.Event()
    with open_store(settings) as store, _serving(settings, store, stop) as serving:
        _metrics(settings, serving=serving)
        _wait_for_signal(stop)
    return 0
