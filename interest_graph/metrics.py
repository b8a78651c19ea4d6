"""Prometheus exposition for whichever components run in this process.

Components keep plain counters (:class:`streams.ingest.IngestStats`, :class:`models.refresh.RefreshStats`,
the serving index); this collector reads them at scrape time, so the hot paths carry no metrics
code. Consumer lag is read from the broker (committed offsets vs partition ends), never from
Faust, so a stalled worker still shows its growing lag. Metric names are documented in README.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from interest_graph.settings import Settings

log = logging.getLogger(__name__)

#: Lag probes talk to the broker; a scrape every few seconds must not hammer it.
LAG_CACHE_S = 2.0


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class StackCollector(Collector):
    """Reads counters of the components given (any may be ``None``) when Prometheus scrapes.

    Args:
        settings (Settings): topics and consumer group for the lag probe.
        ingest (IngestStats, optional): the Faust agents' counters (default: ``None``).
        refresh (RefreshWorker, optional): the refresh worker (default: ``None``).
        serving (ServingHandle, optional): the gRPC server and its index (default: ``None``).
        probe_lag (bool): read consumer lag from the broker (default: ``True``).
    """

    def __init__(self, settings: Settings, *, ingest: Any = None, refresh: Any = None, serving: Any = None,
                 probe_lag: bool = True) -> None:
        self.settings = settings
        self.ingest, self.refresh, self.serving = ingest, refresh, serving
        self.probe_lag = probe_lag
        self._lag_cache: tuple[float, list[Any], int] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        if self.ingest is not None:
            yield from self._ingest()
        if self.refresh is not None:
            yield from self._refresh()
        if self.serving is not None:
            yield from self._serving()
        if self.probe_lag:
            yield from self._lag()

    def _ingest(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snap = self.ingest.snapshot()
        accepted = CounterMetricFamily("ig_events_accepted", "Valid events applied to the graph store.")
        accepted.add_metric([], snap["events_accepted"])
        yield accepted
        dead = CounterMetricFamily("ig_events_dead_lettered", "Invalid events sent to the dead-letter topic.",
                                   labels=["reason"])
        for reason, count in sorted(snap["dead_lettered"].items()):
            dead.add_metric([reason], count)
        yield dead
        skipped = CounterMetricFamily("ig_events_skipped", "Redelivered events already applied (not re-applied).")
        skipped.add_metric([], snap["events_skipped"])
        yield skipped
        batches = CounterMetricFamily("ig_ingest_batches", "Store transactions written by the ingest agent.")
        batches.add_metric([], snap["batches"])
        yield batches
        yield _gauge("ig_ingest_last_batch_seconds", "Duration of the last batch upsert.", snap["last_batch_ms"] / 1e3)
        yield _gauge("ig_ingest_last_write_timestamp_seconds", "When the last batch was committed.",
                     snap["last_write_at_ms"] / 1e3)

    def _refresh(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self.refresh.stats
        rounds = CounterMetricFamily("ig_refresh_rounds", "Refresh rounds run (incremental and full).")
        rounds.add_metric([], stats.rounds)
        yield rounds
        nodes = CounterMetricFamily("ig_refresh_nodes", "Node embeddings rewritten by the refresh worker.")
        nodes.add_metric([], stats.nodes_refreshed)
        yield nodes
        errors = CounterMetricFamily("ig_refresh_errors", "Refresh rounds that failed (retried next tick).")
        errors.add_metric([], stats.errors)
        yield errors
        yield _gauge("ig_refresh_last_round_seconds", "Duration of the last refresh round.", stats.last_round_ms / 1e3)
        yield _gauge("ig_embedding_version", "Latest embedding version written.", stats.version)
        yield _gauge("ig_refresh_cursor", "Change-log sequence the embeddings account for.", stats.cursor)

    def _serving(self) -> Iterator[GaugeMetricFamily]:
        snap = self.serving.index.snapshot()
        yield _gauge("ig_serving_embedding_version", "Embedding version loaded by the server.", snap.version)
        age = (time.time() * 1000 - snap.written_ms) / 1e3 if snap.written_ms else float("nan")
        yield _gauge("ig_serving_embedding_age_seconds", "Age of the newest embeddings loaded.", age)
        yield _gauge("ig_serving_ready", "1 when the server holds embeddings and reports SERVING.", float(snap.ready))

    def _lag(self) -> Iterator[GaugeMetricFamily]:
        from streams.lag import LagProbe, LagUnavailableError

        now = time.monotonic()
        if self._lag_cache is None or now - self._lag_cache[0] > LAG_CACHE_S:
            probe = LagProbe(self.settings.bootstrap_servers, timeout_s=2.0)
            try:
                lags = probe.topic_lag(self.settings.events_topic, self.settings.consumer_group)
                dead = probe.topic_size(self.settings.dead_letter_topic)
            except LagUnavailableError as exc:
                log.warning("lag probe failed: %s", exc)
                yield _gauge("ig_broker_up", "1 when the lag probe reached the broker.", 0.0)
                return
            self._lag_cache = (now, lags, dead)
        _, lags, dead = self._lag_cache
        yield _gauge("ig_broker_up", "1 when the lag probe reached the broker.", 1.0)
        family = GaugeMetricFamily("ig_consumer_lag", "Events not yet committed by the consumer group.",
                                   labels=["topic", "partition"])
        for p in lags:
            family.add_metric([p.topic, str(p.partition)], p.lag)
        yield family
        yield _gauge("ig_dead_letter_topic_records", "Records in the dead-letter topic.", dead)


def start_metrics_server(settings: Settings, **components: Any) -> StackCollector:
    """Register a :class:`StackCollector` for ``components`` and serve ``/metrics`` on ``metrics_port``."""
    collector = StackCollector(settings, ingest=components.get("ingest"), refresh=components.get("refresh"),
                               serving=components.get("serving"))
    REGISTRY.register(collector)
    start_http_server(settings.metrics_port, addr="127.0.0.1" if settings.grpc_addr.startswith("127.") else "0.0.0.0")
    log.warning("Prometheus metrics on port %d", settings.metrics_port)
    return collector
