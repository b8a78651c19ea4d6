"""What ``status`` reads from a component's ``/metrics`` endpoint: the same numbers Prometheus sees.

``status`` scrapes the exposition of the local stack (``IG_METRICS_PORT`` on the gRPC host) and
shows throughput, latency quantiles, freshness, staleness and the stall flag; ``--watch`` turns the
counters into per-second rates between two scrapes. Quantiles come from the histogram buckets with
PromQL's interpolation, so the terminal and a Grafana panel agree.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from core.errors import InterestGraphError
from core.histogram import HistogramSnapshot
from core.settings import Settings


class MetricsUnavailableError(InterestGraphError, RuntimeError):
    """The metrics endpoint did not answer (component down, metrics off). Retryable."""

    retryable = True


def metrics_url(settings: Settings) -> str:
    """The local stack's exposition: the gRPC host (loopback for a wildcard bind), metrics port."""
    host = settings.grpc_addr.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "[::]", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.metrics_port}/metrics"


@dataclass
class MetricsReading:
    """One scrape: plain samples by (name, labels) and histograms by (name, labels without ``le``)."""

    at_s: float
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], HistogramSnapshot] = field(default_factory=dict)

    def value(self, name: str, default: float = math.nan) -> float:
        """Sum of a metric over all its label sets (``default`` when absent)."""
        found = [v for (n, _), v in self.values.items() if n == name]
        return sum(found) if found else default

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for (n, labels), v in self.values.items():
            if n == name:
                out[dict(labels).get(label, "")] += v
        return dict(out)

    def histogram(self, name: str, **labels: str) -> HistogramSnapshot | None:
        return self.histograms.get((name, tuple(sorted(labels.items()))))


def parse_exposition(text: str, at_s: float) -> MetricsReading:
    """Parse Prometheus text exposition into a :class:`MetricsReading`."""
    reading = MetricsReading(at_s)
    buckets: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = defaultdict(list)
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            plain = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if family.type == "histogram" and sample.name.endswith("_bucket"):
                buckets[(family.name, plain)].append((float(sample.labels["le"]), sample.value))
            elif family.type == "histogram" and sample.name.endswith("_sum"):
                sums[(family.name, plain)] = sample.value
            elif family.type != "histogram":
                reading.values[(sample.name, plain)] = sample.value
    for key, pairs in buckets.items():
        pairs.sort()
        reading.histograms[key] = HistogramSnapshot(tuple(b for b, _ in pairs), tuple(int(c) for _, c in pairs),
                                                    sums.get(key, 0.0), int(pairs[-1][1]))
    return reading


def scrape(url: str, at_s: float, timeout_s: float = 3.0) -> MetricsReading:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as exc:
        raise MetricsUnavailableError(f"{url}: {exc}") from exc
    return parse_exposition(text, at_s)


def histogram_delta(now: HistogramSnapshot | None, before: HistogramSnapshot | None) -> HistogramSnapshot | None:
    """Observations between two scrapes (the whole history when there is no earlier scrape)."""
    if now is None or before is None or before.bounds != now.bounds:
        return now
    return HistogramSnapshot(now.bounds, tuple(a - b for a, b in zip(now.cumulative, before.cumulative, strict=True)),
                             now.total - before.total, now.count - before.count)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def _quantiles(snap: HistogramSnapshot | None) -> str:
    if snap is None or snap.count == 0:
        return "-"
    return f"p50 {_ms(snap.quantile(0.5))}  p99 {_ms(snap.quantile(0.99))}  (n={snap.count})"


def _rate(now: MetricsReading, before: MetricsReading | None, name: str, absent: float = math.nan) -> str:
    """Per-second rate of a counter since ``before``, else its count since the process started.

    ``absent`` is the count to assume when the scrape has no sample of the counter (default: NaN,
    shown as ``-``).
    """
    total = now.value(name, absent)
    if math.isnan(total):
        return "-"
    if before is None or now.at_s <= before.at_s:
        # "since start", not "total": the broker's topic sizes on the same screen are all-time totals.
        return f"{total:.0f} since start"
    return f"{(total - before.value(name, 0.0)) / (now.at_s - before.at_s):.1f}/s"


def _dead_lettered(now: MetricsReading, before: MetricsReading | None, topic_records: int | None) -> str:
    """Dead letters per second or since start; the dead-letter topic's size when the scrape has neither."""
    # Labelled by reason, the counter exports no sample before this process's first dead letter. With
    # the ingest agent in the scraped process (its accepted counter is there) that means none yet.
    ingest_here = not math.isnan(now.value("ig_events_accepted_total"))
    shown = _rate(now, before, "ig_events_dead_lettered_total", absent=0.0 if ingest_here else math.nan)
    if shown != "-":
        return shown
    if topic_records is None:
        scraped = now.value("ig_dead_letter_topic_records")
        topic_records = None if math.isnan(scraped) else int(scraped)
    return "-" if topic_records is None else f"{topic_records} in the topic"


def render_metrics(now: MetricsReading, before: MetricsReading | None = None, *,
                   dead_letter_topic_records: int | None = None, with_backlog: bool = True) -> list[str]:
    """Lines for ``status``: rates since ``before`` (``--watch``) or totals, and latency quantiles.

    Args:
        now (MetricsReading): the latest scrape.
        before (MetricsReading, optional): the previous scrape, for rates (default: ``None``: counts).
        dead_letter_topic_records (int, optional): the dead-letter topic's size as the broker reported
            it, shown when the scrape has no dead-letter count (default: ``None``: the scraped gauge).
        with_backlog (bool): show the scraped changed-node backlog; ``status`` leaves it out when the
            gRPC status already shows one, so a screen never holds two backlog figures (default: ``True``).
    """
    window = "since last refresh" if before is not None else "since start"
    dead = now.by_label("ig_events_dead_lettered_total", "reason")
    lines = [f"ingest        accepted {_rate(now, before, 'ig_events_accepted_total')}   dead-lettered "
             f"{_dead_lettered(now, before, dead_letter_topic_records)}"
             + (f"  ({', '.join(f'{r}={int(c)}' for r, c in sorted(dead.items()))})" if dead else "")]
    stalled = now.value("ig_ingest_stalled", 0.0)
    waiting = now.value("ig_ingest_pending_without_write_seconds", 0.0)
    lines.append(f"              {'STALLED: ' if stalled else ''}events pending without a store write for "
                 f"{waiting:.0f} s" if waiting else "              not stalled")
    rows: Iterable[tuple[str, str]] = (
        ("upsert batch", "ig_ingest_upsert_seconds"),
        ("refresh round", "ig_refresh_round_seconds"),
        ("freshness", "ig_freshness_seconds"),
    )
    for label, name in rows:
        hist = histogram_delta(now.histogram(name), before.histogram(name) if before else None)
        lines.append(f"{label:<14}{_quantiles(hist)}   [{window}]")
    recent = now.by_label("ig_freshness_last_minute_seconds", "quantile")
    if recent:
        lines.append(f"{'freshness':<14}p50 {_ms(recent.get('0.5'))}  p99 {_ms(recent.get('0.99'))}   "
                     "[last minute, exact]")
    backlog = now.value("ig_changed_node_backlog")
    shown_backlog = f"   backlog {backlog:.0f} nodes" if with_backlog and not math.isnan(backlog) else ""
    lines.append(f"refresh       nodes {_rate(now, before, 'ig_refresh_nodes_total')}{shown_backlog}   staleness "
                 f"{now.value('ig_embedding_staleness_seconds', math.nan):.1f} s   cold items from text "
                 f"{_rate(now, before, 'ig_refresh_cold_items_total')}")
    grpc = sorted(((dict(labels), snap) for (name, labels), snap in now.histograms.items()
                   if name == "ig_grpc_server_handling_seconds"),
                  key=lambda row: (row[0].get("method", ""), row[0].get("code", "")))
    for labels, snap in grpc:
        before_snap = before.histogram("ig_grpc_server_handling_seconds", **labels) if before else None
        spread = _quantiles(histogram_delta(snap, before_snap))
        lines.append(f"grpc {labels['method']:<20} {labels['code']:<18} {spread}")
    return lines
