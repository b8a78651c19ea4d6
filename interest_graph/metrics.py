"""Prometheus exposition for whichever components run in this process.

Components keep plain counters and :class:`~core.histogram.Histogram` objects
(:class:`streams.ingest.IngestStats`, the refresh worker, the serving index, the gRPC
:class:`~serving.interceptors.MetricsInterceptor`, the :class:`~interest_graph.freshness.FreshnessTracker`);
this collector reads them at scrape time, so the hot paths carry no ``prometheus_client`` code.
Consumer lag is read from the broker (committed offsets vs partition ends), never from Faust, so a
stalled or dead worker still shows its growing lag. Every metric is documented in README ("Metrics").

The two slow readings, the lag probe (a broker round trip) and the changed-node backlog (a store
read beside the writer), are taken every :data:`LAG_CACHE_S` by a thread of their own once
:meth:`StackCollector.start_sampling` is called (the launchers do): under load each took seconds,
and a scrape that waited for them missed Prometheus' timeout. A scrape then answers from the last
readings at once; without the thread (tests, one-off tools) it takes them inline when stale.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core.histogram import HistogramSnapshot
from core.settings import Settings
from streams.stall import StallDetector

if TYPE_CHECKING:  # the components' rooms are imported by whoever runs them, not by every metrics import
    from graph_store.base import GraphStore
    from interest_graph.freshness import FreshnessTracker
    from interest_graph.gc_pauses import GcPauses
    from models.refresh import RefreshWorker
    from serving.interceptors import MetricsInterceptor
    from serving.server import ServingHandle
    from streams.ingest import IngestStats
    from streams.lag import PartitionLag

log = logging.getLogger(__name__)

#: Lag probes talk to the broker and backlog reads the store: read this often, not once per scrape.
LAG_CACHE_S = 2.0
#: Quantiles of the last minute's freshness exported as gauges (``status`` shows them).
RECENT_QUANTILES = (0.5, 0.99)
#: Most changed nodes counted for ``ig_changed_node_backlog`` (the count saturates there).
BACKLOG_COUNT_LIMIT = 100_000


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _histogram(name: str, doc: str, snaps: dict[tuple[str, ...], HistogramSnapshot],
               labels: tuple[str, ...] = ()) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for values, snap in snaps.items():
        buckets = [(_le(bound), count) for bound, count in zip(snap.bounds, snap.cumulative, strict=True)]
        family.add_metric(list(values), buckets, snap.total)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class StackCollector(Collector):
    """Reads counters of the components given (any may be ``None``) when Prometheus scrapes.

    Args:
        settings (Settings): topics and consumer group for the lag probe, ``stall_after_s``.
        ingest (IngestStats, optional): the Faust agents' counters (default: ``None``).
        refresh (RefreshWorker, optional): the refresh worker; a
            :class:`~interest_graph.refresh_metrics.MeasuredRefreshWorker` adds round latency
            (default: ``None``).
        serving (ServingHandle, optional): the gRPC server and its index (default: ``None``).
        grpc (MetricsInterceptor, optional): the server's latency interceptor (default: ``None``).
        freshness (FreshnessTracker, optional): end-to-end freshness (default: ``None``).
        store (GraphStore, optional): for the changed-node backlog (default: ``None``).
        probe_lag (bool): read consumer lag from the broker (default: ``True``).
        gc_pauses (GcPauses, optional): this process's garbage-collection pauses (default: ``None``).
    """

    def __init__(self, settings: Settings, *, ingest: IngestStats | None = None, refresh: RefreshWorker | None = None,
                 serving: ServingHandle | None = None, grpc: MetricsInterceptor | None = None,
                 freshness: FreshnessTracker | None = None, store: GraphStore | None = None,
                 probe_lag: bool = True, gc_pauses: GcPauses | None = None) -> None:
        self.settings = settings
        self.gc_pauses = gc_pauses
        self.ingest, self.refresh, self.serving = ingest, refresh, serving
        self.grpc, self.freshness, self.store = grpc, freshness, store
        self.probe_lag = probe_lag
        self.stall = StallDetector(settings.stall_after_s)
        #: Latest lag per partition and dead-letter count (``None``: the broker did not answer).
        self._lag_reading: tuple[list[PartitionLag], int] | None = None
        #: Latest changed-node backlog (``None``: the store did not answer).
        self._backlog_reading: int | None = None
        self._sampled_at: float | None = None
        self._sampling: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- the slow readings ----------------------------------------------------------------------
    def sample(self) -> None:
        """Take the lag and backlog readings now (the thread does it every :data:`LAG_CACHE_S`)."""
        lag = self._read_lag() if self.probe_lag else None
        backlog = self._read_backlog() if self._wants_backlog else None
        with self._lock:
            self._lag_reading, self._backlog_reading = lag, backlog
            self._sampled_at = time.monotonic()

    def start_sampling(self, stop: threading.Event, every_s: float = LAG_CACHE_S) -> None:
        """Take the readings in a daemon thread every ``every_s`` until ``stop`` is set."""
        def run() -> None:
            while not stop.is_set():
                try:
                    self.sample()
                except Exception:  # a reading must never end the thread; the next one tries again
                    log.exception("metrics sampling failed")
                stop.wait(every_s)

        self._sampling = threading.Thread(target=run, name="metrics-sampler", daemon=True)
        self._sampling.start()

    @property
    def _wants_backlog(self) -> bool:
        return self.store is not None and (self.refresh is not None or self.serving is not None)

    def _fresh_readings(self) -> tuple[tuple[list[PartitionLag], int] | None, int | None]:
        """The latest readings; taken inline first if no thread samples and they are stale."""
        if self._sampling is None and (self._sampled_at is None or time.monotonic() - self._sampled_at > LAG_CACHE_S):
            self.sample()
        with self._lock:
            return self._lag_reading, self._backlog_reading

    def _read_lag(self) -> tuple[list[PartitionLag], int] | None:
        from streams.lag import LagProbe, LagUnavailableError

        probe = LagProbe(self.settings.bootstrap_servers, timeout_s=2.0)
        try:
            return (probe.topic_lag(self.settings.events_topic, self.settings.consumer_group),
                    probe.topic_size(self.settings.dead_letter_topic))
        except LagUnavailableError as exc:
            log.warning("lag probe failed: %s", exc)
            return None

    def _read_backlog(self) -> int | None:
        from graph_store.base import GraphStoreError

        assert self.store is not None  # asked only when _wants_backlog
        try:
            cursor = self.store.refresh_state().cursor
            return len(self.store.changes_since(cursor, limit=BACKLOG_COUNT_LIMIT).nodes)
        except GraphStoreError as exc:
            log.warning("backlog read failed: %s", exc)
            return None

    # --- exposition -----------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        lag_reading, backlog = self._fresh_readings()
        lags = None
        if self.probe_lag:
            yield from self._lag(lag_reading)
            lags = lag_reading[0] if lag_reading is not None else None
        if self.ingest is not None:
            yield from self._ingest(self.ingest, lags)
        if self.refresh is not None:
            yield from self._refresh(self.refresh)
        if self._wants_backlog:
            yield from self._backlog(backlog)
        if self.serving is not None:
            yield from self._serving(self.serving)
        if self.grpc is not None:
            yield _histogram("ig_grpc_server_handling_seconds", "gRPC call latency by service, method and code.",
                             self.grpc.histograms.snapshots(), ("service", "method", "code"))
        if self.freshness is not None:
            yield from self._freshness(self.freshness)
        if self.gc_pauses is not None:
            yield _histogram("ig_python_gc_pause_seconds", "Garbage-collection passes of this process by "
                             "generation (each holds the interpreter lock throughout).",
                             self.gc_pauses.snapshots(), ("generation",))

    def _ingest(self, ingest: IngestStats, lags: list[PartitionLag] | None) -> Iterator[Metric]:
        snap = ingest.snapshot()
        yield _counter("ig_events_accepted", "Valid events applied to the graph store.", snap.events_accepted)
        dead = CounterMetricFamily("ig_events_dead_lettered", "Invalid events sent to the dead-letter topic.",
                                   labels=["reason"])
        for reason, count in sorted(snap.dead_lettered.items()):
            dead.add_metric([reason], count)
        yield dead
        yield _counter("ig_events_skipped", "Redelivered events already applied (not re-applied).",
                       snap.events_skipped)
        yield _counter("ig_events_forgotten", "Valid events ignored because their user was forgotten (erasure).",
                       snap.events_forgotten)
        yield _counter("ig_users_forgotten", "Users erased (each erasure request applied once).", snap.users_forgotten)
        yield _counter("ig_ingest_batches", "Store transactions written by the ingest agent.", snap.batches)
        yield _counter("ig_ingest_store_retries", "Store writes retried after a retryable error.",
                       snap.store_retries)
        yield _histogram("ig_ingest_upsert_seconds", "Store write time of one event batch (retries included).",
                         {(): ingest.upsert_seconds.snapshot()})
        yield _gauge("ig_ingest_last_batch_seconds", "Duration of the last batch upsert.", snap.last_batch_ms / 1e3)
        yield _gauge("ig_ingest_last_write_timestamp_seconds", "When the last batch was committed.",
                     snap.last_write_at_ms / 1e3)
        if lags is not None:
            state = self.stall.observe(sum(p.lag for p in lags), snap.last_write_at_ms, int(time.time() * 1000))
            if state.stalled:
                log.warning("ingest agent stalled: events pending for %.0f s without a store write", state.waiting_s)
            yield _gauge("ig_ingest_stalled", "1 when events are pending and no batch was written for "
                         "IG_STALL_AFTER seconds.", float(state.stalled))
            yield _gauge("ig_ingest_pending_without_write_seconds",
                         "How long events have been pending without a store write.", state.waiting_s)

    def _refresh(self, refresh: RefreshWorker) -> Iterator[Metric]:
        # The worker is running in this process, so importing its room costs nothing more here.
        from interest_graph.refresh_metrics import MeasuredRefreshWorker

        stats = refresh.stats
        yield _counter("ig_refresh_rounds", "Refresh rounds run (incremental and full).", stats.rounds)
        yield _counter("ig_refresh_nodes", "Node embeddings rewritten by the refresh worker.", stats.nodes_refreshed)
        yield _counter("ig_refresh_errors", "Refresh rounds that failed (retried next tick).", stats.errors)
        yield _counter("ig_refresh_cold_items", "Catalog items without interactions embedded from their text "
                       "(cold start).", stats.cold_items)
        yield _gauge("ig_refresh_last_round_seconds", "Duration of the last refresh round.", stats.last_round_ms / 1e3)
        if isinstance(refresh, MeasuredRefreshWorker):
            yield _histogram("ig_refresh_round_seconds", "Duration of one refresh round (incremental or full).",
                             {(): refresh.round_seconds.snapshot()})
        yield _gauge("ig_embedding_version", "Latest embedding version written.", stats.version)
        yield _gauge("ig_refresh_cursor", "Change-log sequence the embeddings account for.", stats.cursor)

    @staticmethod
    def _backlog(backlog: int | None) -> Iterator[Metric]:
        yield _gauge("ig_store_up", "1 when the store answered the last metrics read.", float(backlog is not None))
        if backlog is not None:
            yield _gauge("ig_changed_node_backlog", "Changed nodes the refresh worker has not refreshed yet.", backlog)

    def _serving(self, serving: ServingHandle) -> Iterator[Metric]:
        snap = serving.index.snapshot()
        yield _gauge("ig_serving_embedding_version", "Embedding version loaded by the server.", snap.version)
        age = (time.time() * 1000 - snap.written_ms) / 1e3 if snap.written_ms else float("nan")
        yield _gauge("ig_serving_embedding_age_seconds", "Age of the newest embeddings loaded.", age)
        yield _gauge("ig_serving_ready", "1 when the server holds embeddings and reports SERVING.", float(snap.ready))
        builds = CounterMetricFamily("ig_serving_hnsw_graphs", "HNSW graphs made for the items, by how: "
                                     "extended with the changed rows, or built afresh from every row.", labels=["how"])
        builder = serving.ann
        builds.add_metric(["extended"], builder.extensions)
        builds.add_metric(["built"], builder.builds - builder.extensions)
        yield builds
        calibration = builder.calibration
        breadth = float(snap.ann.graph.hnsw.efSearch) if snap.ann is not None else float("nan")
        yield _gauge("ig_serving_hnsw_ef_search", "Search breadth of the HNSW graph serving (calibrated to "
                     "IG_ANN_TARGET_RECALL when that is set).", breadth)
        yield _gauge("ig_serving_hnsw_recall", "Recall@10 of the served search against exact search, measured by "
                     "the last calibration.", calibration.recall if calibration else float("nan"))
        yield _gauge("ig_serving_hnsw_stale_rows", "Item rows the HNSW graph does not hold as they are now "
                     "(scored exactly by every search until the next graph).", snap.stale_rows.size)
        yield from self._next_items(serving)

    @staticmethod
    def _next_items(serving: ServingHandle) -> Iterator[Metric]:
        servicer = serving.servicer
        weight = GaugeMetricFamily("ig_serving_next_items_weight", "Weight of next items in Recommend lists, by "
                                   "segment of the user's distinct items (chosen by the judged events).",
                                   labels=["segment"])
        share = GaugeMetricFamily("ig_serving_personal_share", "Share of the blend's personal weight Recommend "
                                  "lists serve, by segment (1: the blend's own; chosen by the judged events).",
                                  labels=["segment"])
        for segment, mix in servicer.mix_judge.served().items():
            weight.add_metric([segment], mix.beta if servicer.next_items else 0.0)
            share.add_metric([segment], mix.share if servicer.next_items else 1.0)
        yield weight
        yield share
        _, pairs, users = servicer.transitions.counts()
        yield _gauge("ig_serving_next_items_pairs", "Item-to-item transitions held for next items (each item keeps "
                     "its heaviest successors).", pairs)
        yield _gauge("ig_serving_next_items_users", "Users whose latest items are held for next items.", users)
        judging = servicer.judging
        events = CounterMetricFamily("ig_serving_next_items_judged_events", "Committed events captured for "
                                     "judging the next-items weight, by outcome.", labels=["outcome"])
        events.add_metric(["judged"], judging.judged)
        events.add_metric(["not_judged"], judging.captured - judging.judged)
        events.add_metric(["dropped"], judging.dropped)
        yield events

    def _freshness(self, freshness: FreshnessTracker) -> Iterator[Metric]:
        yield _histogram("ig_freshness_seconds", "Kafka record time of an event to serving holding an embedding "
                         "that covers it.", {(): freshness.histogram.snapshot()})
        yield _histogram("ig_freshness_stage_seconds", "The part of ig_freshness_seconds an event spent in one "
                         "stage (they add up to it; see README, Metrics).", freshness.stages.snapshots(),
                         labels=("stage",))
        recent = freshness.recent_quantiles(RECENT_QUANTILES)
        total = GaugeMetricFamily("ig_freshness_last_minute_seconds", "Exact quantiles of ig_freshness_seconds "
                                  "over the events observed in the last minute.", labels=["quantile"])
        stages = GaugeMetricFamily("ig_freshness_stage_last_minute_seconds", "Exact quantiles of each stage over "
                                   "the events observed in the last minute.", labels=["stage", "quantile"])
        for series, values in recent.items():
            for q, value in zip(RECENT_QUANTILES, values, strict=True):
                if series == "total":
                    total.add_metric([str(q)], value)
                else:
                    stages.add_metric([series, str(q)], value)
        yield total
        yield stages
        yield _gauge("ig_embedding_staleness_seconds", "Age of the oldest committed change serving does not "
                     "cover yet (0 = all covered).", freshness.oldest_pending_age_s())

    @staticmethod
    def _lag(reading: tuple[list[PartitionLag], int] | None) -> Iterator[Metric]:
        yield _gauge("ig_broker_up", "1 when the lag probe reached the broker.", float(reading is not None))
        if reading is None:
            return
        lags, dead = reading
        family = GaugeMetricFamily("ig_consumer_lag", "Events not yet committed by the consumer group.",
                                   labels=["topic", "partition"])
        for p in lags:
            family.add_metric([p.topic, str(p.partition)], p.lag)
        yield family
        yield _gauge("ig_dead_letter_topic_records", "Records in the dead-letter topic.", dead)


def start_metrics_server(settings: Settings, collector: StackCollector) -> StackCollector:
    """Register ``collector``, start its sampling thread (a daemon: it ends with the process) and
    serve ``/metrics`` on ``metrics_port``."""
    collector.start_sampling(threading.Event())
    REGISTRY.register(collector)
    start_http_server(settings.metrics_port, addr=metrics_host(settings))
    log.info("Prometheus metrics on port %d", settings.metrics_port)
    return collector


def metrics_host(settings: Settings) -> str:
    """Interface the exposition binds: loopback when gRPC does, else every interface."""
    return "127.0.0.1" if settings.grpc_addr.startswith("127.") else "0.0.0.0"
