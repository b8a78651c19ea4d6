"""Whole-stack freshness under load: the real ``interest-graph up`` at fixed offered loads (issue 13).

One run starts ``python -m interest_graph.cli up`` as a user does (its own Tansu broker, LadybugDB
store, refresh worker computing SpectralCF at its served width, gRPC server and metrics endpoint) in
a temporary folder on free ports, publishes an item catalog and ``--warmup-events`` Zipf events and
waits until everything is consumed and served. It then measures:

1. **idle Recommend**: ``--recommend-rate`` calls/s on warm-up users (``k=10``, ``exclude_seen``);
2. **each rate of ``--rates``** for ``--seconds``: a librdkafka producer process offers that many
   Zipf events/s (``--new-user-share`` of them from brand-new users), paced in 10 ms slices; beside
   it a Recommend load process at ``--recommend-rate`` and a new-user probe process (every
   ``--probe-every`` s a fresh user clicks 5 popular items, then Recommend is polled every 10 ms
   until it answers: the first-answer time). After ``--settle`` s the metrics endpoint is scraped,
   every 10 s after that, and at the end: sustained events/s, freshness (``ig_freshness_seconds``,
   Kafka record time -> serving holds a covering embedding), its per-stage split
   (``ig_freshness_stage_seconds``) and the exact last-minute quantiles
   (``ig_freshness_last_minute_seconds``), each "-" if absent; then the lag, ``up``'s and the
   broker's resident memory and CPU, the slowest scrape, and the share of the window ``up`` spent
   in garbage-collection passes (``ig_python_gc_pause_seconds``).

``up`` gets its settings from this process's ``IG_*`` variables where set (ports, paths and
``--rank`` are the bench's), so a variant is one variable away: ``IG_GC_YOUNG_THRESHOLD=0``.

``--soak MINUTES`` holds ``--soak-rate`` instead and samples lag, memory, freshness and scrape time
every ``--soak-every`` s, with a verdict per quantity: the mean of the last third of the samples
(the first sample left out) against the first third's, "flat" within 20 % (lag: or under one
second of traffic), else "growing" or "falling". Recommend latencies are of the calls answered;
a call due while 64 are waiting is shed and counted, not queued. Freshness quantiles come from
histogram buckets (PromQL's interpolation), so a p99 near 5, 10 or 30 s is a bucket bound.
Tables are Markdown, with the command line on top, to paste into bench/RESULTS.md. Usage::

    .venv/bin/python bench/freshness.py --rates 1000,3000,5000 --seconds 40
    .venv/bin/python bench/freshness.py --soak 30 --soak-rate 3000 --json /tmp/soak.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import multiprocessing
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import confluent_kafka
import numpy as np
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.domain import ItemMeta, NodeId  # noqa: E402
from core.histogram import HistogramSnapshot  # noqa: E402
from core.settings import Settings  # noqa: E402
from interest_graph.embedded_broker import free_port  # noqa: E402
from interest_graph.status_metrics import (  # noqa: E402
    MetricsReading,
    MetricsUnavailableError,
    histogram_delta,
    metrics_url,
    scrape,
)
from proto import recommender_pb2 as pb  # noqa: E402
from serving.client import RecommenderClient, RecommenderError  # noqa: E402
from streams.catalog import encode_item  # noqa: E402
from streams.datasets import SYNTHETIC_TYPE_MIX  # noqa: E402
from streams.lag import LagProbe, LagUnavailableError  # noqa: E402
from streams.validation import encode_event, event_key  # noqa: E402

STAGES = ("broker_to_agent", "batch_plan", "store_commit", "refresh_wait", "refresh_round", "embedding_handoff",
          "index_swap")
STAGE_METRIC, LAST_MINUTE = "ig_freshness_stage_seconds", "ig_freshness_last_minute_seconds"
GC_METRIC = "ig_python_gc_pause_seconds"
TYPES = [str(t) for t in SYNTHETIC_TYPE_MIX]
TYPE_P = np.array(list(SYNTHETIC_TYPE_MIX.values())) / sum(SYNTHETIC_TYPE_MIX.values())
PRODUCER = {"acks": "all", "linger.ms": 5, "partitioner": "murmur2_random", "message.timeout.ms": 30_000}
#: Recommend calls one load process keeps waiting at most (its threads); more are shed, not queued.
MAX_IN_FLIGHT = 64
Record = tuple[bytes, bytes]
Pair = tuple[float, float] | None  # (p50, p99)


class StackDiedError(RuntimeError):
    """``up`` exited while the bench still needed it."""


# --- events -------------------------------------------------------------------------------------
class EventSource:
    """Zipf users and items (rank r weighs r^-1.2); ranks map to the same ids in every process."""

    def __init__(self, users: int, items: int, seed: int, new_user_share: float = 0.0, prefix: str = "new") -> None:
        self.user_of_rank = np.random.default_rng(0).permutation(users)
        self.item_of_rank = np.random.default_rng(1).permutation(items)
        self.rng, self.seed = np.random.default_rng(seed), seed
        self.new_user_share, self.prefix = new_user_share, prefix
        self.made = self.new_users = 0

    def popular_items(self, n: int) -> list[str]:
        return [f"i{i}" for i in self.item_of_rank[:n]]

    def chunk(self, n: int) -> list[Record]:
        """``n`` encoded events (key, value), stamped now."""
        user = self.user_of_rank[np.minimum(self.rng.zipf(1.2, n) - 1, len(self.user_of_rank) - 1)]
        item = self.item_of_rank[np.minimum(self.rng.zipf(1.2, n) - 1, len(self.item_of_rank) - 1)]
        kind = self.rng.choice(len(TYPES), size=n, p=TYPE_P)
        fresh = self.rng.random(n) < self.new_user_share
        now, out = int(time.time() * 1000), []
        for j in range(n):
            if fresh[j]:
                user_id, self.new_users = f"{self.prefix}-{self.new_users}", self.new_users + 1
            else:
                user_id = f"u{user[j]}"
            out.append((event_key(user_id), encode_event(user_id, f"i{item[j]}", TYPES[kind[j]], now,
                                                          event_id=f"b{self.seed}-{self.made + j}")))
        self.made += n
        return out


def catalog(items: int) -> Iterable[Record]:
    for n in range(items):
        meta = ItemMeta(NodeId(f"i{n}"), title=f"item {n} genre-{n % 10}", categories=(f"genre-{n % 10}",))
        yield meta.item_id.encode(), encode_item(meta)


def produce_all(bootstrap: str, topic: str, records: Iterable[Record]) -> int:
    """Publish ``records`` as fast as the producer takes them; raises unless every one is acknowledged."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    errors: list[Any] = []
    count = 0

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for key, value in records:
        _produce(producer, topic, key, value, delivered)
        count += 1
    if producer.flush(60) or errors:
        raise RuntimeError(f"{topic}: not all records acknowledged ({errors[:3]})")
    return count


def _produce(producer: confluent_kafka.Producer, topic: str, key: bytes, value: bytes,
             on_delivery: Callable[[Any, Any], Any]) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            return
        except BufferError:  # librdkafka's queue is full: let it send
            producer.poll(0.01)


# --- load generators: child processes ----------------------------------------------------------
def paced(rate: float, seconds: float, act: Callable[[int], None], slice_s: float = 0.01) -> tuple[int, float]:
    """Call ``act(n)`` every ``slice_s`` with what is due by the wall clock since the start; (done, seconds)."""
    start, done = time.monotonic(), 0
    while (now := time.monotonic()) - start < seconds:
        due = int(rate * (now - start))
        if due > done:
            act(due - done)
            done = due
        time.sleep(max(0.0, slice_s - (time.monotonic() - now)))
    return done, time.monotonic() - start


def produce_load(bootstrap: str, topic: str, rate: float, seconds: float, source_args: tuple[Any, ...],
                 ready: Any, go: Any, results: Any) -> None:
    source = EventSource(*source_args)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    producer.list_topics(topic, timeout=10)  # connected before the clock starts
    errors, pending = [0], deque(source.chunk(max(1000, int(rate))))

    def failed(err: Any, _msg: Any) -> None:
        errors[0] += err is not None

    def send(n: int) -> None:
        if len(pending) < n:
            pending.extend(source.chunk(max(n, int(rate / 4))))
        for _ in range(n):
            key, value = pending.popleft()
            _produce(producer, topic, key, value, failed)
        producer.poll(0)
        if len(pending) < rate / 4:  # encode the next ones now, after this slice's sends
            pending.extend(source.chunk(int(rate / 4) + 1))

    ready.put("producer")
    go.wait()
    sent, elapsed = paced(rate, seconds, send)
    unsent = producer.flush(60)
    results.put(("producer", {"sent": sent, "seconds": elapsed, "rate": sent / elapsed,
                              "errors": errors[0] + unsent, "new_users": source.new_users}))


def recommend_load(addr: str, users: list[str], rate: float, seconds: float, seed: int,
                   ready: Any, go: Any, results: Any) -> None:
    """Open loop: calls start on the clock, whatever the replies; one over MAX_IN_FLIGHT is shed (counted)."""
    rng, lock = random.Random(seed), threading.Lock()
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    in_flight = [0]
    client = RecommenderClient(addr, timeout_s=2.0)

    def call(user: str) -> None:
        started = time.perf_counter()
        try:
            client.recommend(user, k=10, exclude_seen=True)
            code = "OK"
        except RecommenderError as exc:
            code = exc.code.name
        with lock:
            codes[code] += 1
            in_flight[0] -= 1
            if code == "OK":
                latencies.append((time.perf_counter() - started) * 1000)

    with contextlib.suppress(RecommenderError):
        client.serving()  # the channel is connected before the clock starts
    ready.put("recommend")
    go.wait()
    with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
        def submit(n: int) -> None:
            for _ in range(n):
                with lock:
                    if in_flight[0] >= MAX_IN_FLIGHT:
                        codes[f"shed ({MAX_IN_FLIGHT} in flight)"] += 1
                        continue
                    in_flight[0] += 1
                pool.submit(call, rng.choice(users))

        _, elapsed = paced(rate, seconds, submit)
    client.close()
    results.put(("recommend", {"latencies_ms": latencies, "codes": dict(codes), "rate": len(latencies) / elapsed}))


def probe_new_users(bootstrap: str, topic: str, addr: str, items: list[str], label: str, every_s: float,
                    seconds: float, ready: Any, go: Any, results: Any) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    producer.list_topics(topic, timeout=10)
    client = RecommenderClient(addr, timeout_s=1.0)
    answers: list[float | None] = []
    codes: Counter[str] = Counter()
    lock = threading.Lock()

    def probe(n: int) -> None:
        user = f"probe-{label}-{n}"
        sent = time.monotonic()
        for item in items:
            _produce(producer, topic, event_key(user), encode_event(user, item, "click", int(time.time() * 1000)),
                     lambda err, msg: None)
        producer.flush(10)
        while time.monotonic() - sent < 30:
            try:
                # Until the clicks are served, the user gets the trending list: not an answer to them.
                if client.recommend(user, k=10).source != pb.RECOMMEND_SOURCE_TRENDING:
                    answers.append(time.monotonic() - sent)
                    return
                with lock:
                    codes["trending"] += 1
            except RecommenderError as exc:  # NOT_FOUND where trending is off: not served yet
                with lock:
                    codes[exc.code.name] += 1
            time.sleep(0.01)
        answers.append(None)

    ready.put("probes")
    go.wait()
    threads: list[threading.Thread] = []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        threads.append(threading.Thread(target=probe, args=(len(threads),), daemon=True))
        threads[-1].start()
        time.sleep(max(0.0, start + len(threads) * every_s - time.monotonic()))
    for thread in threads:
        thread.join(35)
    client.close()
    results.put(("probes", {"seconds": [a for a in answers if a is not None],
                            "timed_out": sum(a is None for a in answers), "codes": dict(codes)}))


class Children:
    """Load processes that get ready, start together on ``go`` and each put one result."""

    def __init__(self, *targets: tuple[Callable[..., None], tuple[Any, ...]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.results, self.go = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.procs = [ctx.Process(target=f, args=(*a, self.ready, self.go, self.results), daemon=True)
                      for f, a in targets]

    def __enter__(self) -> Children:
        return self

    def start(self, timeout_s: float = 120.0) -> float:
        for proc in self.procs:
            proc.start()
        for _ in self.procs:
            self.ready.get(timeout=timeout_s)
        self.go.set()
        return time.monotonic()

    def collect(self, timeout_s: float) -> dict[str, dict[str, Any]]:
        out = dict(self.results.get(timeout=timeout_s) for _ in self.procs)
        for proc in self.procs:
            proc.join(10)
        return out

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


# --- the stack ----------------------------------------------------------------------------------
def rss_mb(pid: int | None) -> float | None:
    with contextlib.suppress(OSError, ValueError, TypeError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def cpu_s(pids: Iterable[int | None]) -> float:
    """User + system CPU seconds the processes have used (those still readable)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        out.extend(kids := parents.get(todo.pop(), []))
        todo.extend(kids)
    return out


def tansu_among(pids: Iterable[int]) -> int | None:
    """The Tansu broker process among ``pids`` (by its command name), if one is."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if "tansu" in Path(f"/proc/{pid}/comm").read_text():
                return pid
    return None


class Stack:
    """``interest-graph up`` in ``tmp`` on free ports, logging to ``tmp/up.log``."""

    def __init__(self, tmp: Path, rank: int | None) -> None:
        self.tmp, self.log_path = tmp, tmp / "up.log"
        overrides: dict[str, Any] = {
            "broker_url": f"kafka://127.0.0.1:{free_port()}", "grpc_addr": f"127.0.0.1:{free_port()}",
            "metrics_port": free_port(), "store_path": str(tmp / "graph.lbdb"), "model_dir": str(tmp / "model")}
        if rank:
            overrides["spectral_rank"] = rank
        # IG_* variables of this process reach up as they would reach up itself (e.g. IG_GC_YOUNG_THRESHOLD).
        self.settings = Settings.from_env(**overrides)
        self.bootstrap = self.settings.bootstrap_servers[0]
        self.url = metrics_url(self.settings)
        self.proc: subprocess.Popen[bytes] | None = None
        self._broker: int | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.settings.as_environ()}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "interest_graph.cli", "up"], cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise StackDiedError(f"up exited with {None if self.proc is None else self.proc.returncode}")

    def broker_pid(self) -> int | None:
        """The Tansu process: from its state file (``<tmp>/broker/tansu.json``), else among up's children."""
        if self._broker is None:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                self._broker = int(json.loads((self.tmp / "broker" / "tansu.json").read_text())["pid"])
        if self._broker is None and self.proc is not None:
            self._broker = tansu_among(descendants(self.proc.pid))
        return self._broker

    def up_pids(self) -> list[int]:
        """up and its children, but the broker."""
        if self.proc is None:
            return []
        return [pid for pid in (self.proc.pid, *descendants(self.proc.pid)) if pid != self.broker_pid()]

    def memory(self) -> tuple[float | None, float | None]:
        """Resident MB of up and of the broker."""
        up = [m for m in map(rss_mb, self.up_pids()) if m is not None]
        return (sum(up) if up else None), rss_mb(self.broker_pid())

    def cpu(self) -> tuple[float, float]:
        """CPU seconds used so far by up and by the broker."""
        return cpu_s(self.up_pids()), cpu_s([self.broker_pid()])

    def broker_listens(self) -> bool:
        host, port = self.bootstrap.rsplit(":", 1)
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=0.5):
            return True
        return False

    def lag(self) -> int | None:
        with contextlib.suppress(LagUnavailableError):
            return sum(p.lag for p in LagProbe([self.bootstrap], timeout_s=3.0)
                       .topic_lag(self.settings.events_topic, self.settings.consumer_group))
        return None

    def client(self, timeout_s: float = 2.0) -> RecommenderClient:
        return RecommenderClient(self.settings.grpc_addr, timeout_s=timeout_s)

    def stop(self) -> int | None:
        """SIGINT up, its process group killed after 60 s; then the broker if it outlived up."""
        broker = self.broker_pid()
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            code = self.proc.returncode
        if broker is not None and rss_mb(broker) is not None:
            for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(broker, sig)
                deadline = time.monotonic() + wait_s
                while rss_mb(broker) is not None and time.monotonic() < deadline:
                    time.sleep(0.1)
        return code

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def eventually(stack: Stack, what: str, probe: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check()
        with contextlib.suppress(RecommenderError, LagUnavailableError, confluent_kafka.KafkaException):
            if probe():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")


def served(stack: Stack) -> bool:
    with stack.client() as client:
        status = client.serving() and client.status()
    return bool(status and status.embedding_version > 0 and (status.users_indexed > 0 or status.users_folded_in))


def caught_up(stack: Stack) -> bool:
    with stack.client() as client:
        status = client.status()
    return status.changed_node_backlog == 0 and status.refresh_cursor == status.store_seq


class ColdStartSettled:
    """True once ``ig_refresh_cold_items_total`` is above 0 and has not moved for 10 s: the
    catalog's text is embedded (MiniLM on a CPU encodes a few hundred titles a second)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last: tuple[float, float] | None = None

    def __call__(self) -> bool:
        try:
            count = scrape(self.url, time.time(), timeout_s=10.0).value("ig_refresh_cold_items_total", 0.0)
        except MetricsUnavailableError:
            return False
        now = time.monotonic()
        if self.last is None or count != self.last[0]:
            self.last = (count, now)
            return False
        return count > 0 and now - self.last[1] >= 10.0


def warm_up(stack: Stack, args: argparse.Namespace) -> list[str]:
    """Catalog and warm-up events in, everything consumed and served; the warm-up users."""
    topics = {stack.settings.events_topic, stack.settings.items_topic}
    eventually(stack, "up's broker listening", stack.broker_listens, 180)  # librdkafka logs every refusal
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    eventually(stack, "up's topics", lambda: topics <= set(admin.list_topics(timeout=2).topics), 180)
    produce_all(stack.bootstrap, stack.settings.items_topic, catalog(args.items))
    events = EventSource(args.users, args.items, seed=1).chunk(args.warmup_events)
    started = time.monotonic()
    produce_all(stack.bootstrap, stack.settings.events_topic, events)
    print(f"published {args.items:,} catalog items and {len(events):,} warm-up events "
          f"in {time.monotonic() - started:.2f} s", flush=True)
    eventually(stack, "warm-up consumed", lambda: stack.lag() == 0, 300)
    eventually(stack, "embeddings served", lambda: served(stack), 600)
    with contextlib.suppress(TimeoutError):
        eventually(stack, "refresh caught up", lambda: caught_up(stack), 120)
    print(f"warm-up consumed and served after {time.monotonic() - started:.1f} s", flush=True)
    if args.wait_cold_start:
        cold_started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            eventually(stack, "cold start done", ColdStartSettled(stack.url), 600)
        print(f"cold start embedded the catalog's text in {time.monotonic() - cold_started:.0f} s more "
              "(a one-off after start; --no-wait-cold-start measures during it)", flush=True)
    return sorted({key.decode() for key, _ in events})


# --- metrics ------------------------------------------------------------------------------------
def timed_scrape(url: str) -> tuple[MetricsReading, float]:
    started = time.perf_counter()
    reading = scrape(url, time.time(), timeout_s=10.0)
    return reading, (time.perf_counter() - started) * 1000


def hist_pair(snap: HistogramSnapshot | None) -> Pair:
    return None if snap is None or snap.count == 0 else (snap.quantile(0.5), snap.quantile(0.99))


def list_pair(values: list[float]) -> Pair:
    if not values:
        return None
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99)


def last_minute(reading: MetricsReading) -> Pair:
    """The exact last-minute p50 / p99 gauges, if the stack exports them."""
    found = {dict(labels).get("quantile"): v for (name, labels), v in reading.values.items() if name == LAST_MINUTE}
    return (found["0.5"], found["0.99"]) if "0.5" in found and "0.99" in found else None


def by_stage(reading: MetricsReading) -> dict[str, HistogramSnapshot]:
    return {dict(labels).get("stage", ""): snap for (name, labels), snap in reading.histograms.items()
            if name == STAGE_METRIC}


def stage_pairs(after: MetricsReading, before: MetricsReading) -> dict[str, Pair]:
    now, then = by_stage(after), by_stage(before)
    names = [s for s in STAGES if s in now] + sorted(set(now) - set(STAGES))
    return {s: hist_pair(histogram_delta(now[s], then.get(s))) for s in names}


def gc_pause_s(reading: MetricsReading) -> float:
    """Seconds ``up`` has spent in garbage-collection passes, all generations."""
    return sum(snap.total for (name, _labels), snap in reading.histograms.items() if name == GC_METRIC)


def window_figures(before: MetricsReading, after: MetricsReading) -> dict[str, Any]:
    seconds = after.at_s - before.at_s
    accepted = after.value("ig_events_accepted_total", 0.0) - before.value("ig_events_accepted_total", 0.0)
    fresh = histogram_delta(after.histogram("ig_freshness_seconds"), before.histogram("ig_freshness_seconds"))
    return {"window_s": seconds, "sustained": accepted / seconds, "freshness": hist_pair(fresh),
            "freshness_n": fresh.count if fresh else 0, "last_minute": last_minute(after),
            "stages": stage_pairs(after, before), "gc_share": (gc_pause_s(after) - gc_pause_s(before)) / seconds}


def sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.monotonic()))


def measured_window(stack: Stack, t0: float, settle: float, seconds: float,
                    every: float = 10.0) -> tuple[MetricsReading, MetricsReading, float]:
    """Scrapes at ``t0 + settle`` and ``t0 + seconds`` (and every ``every`` s between, for the slowest)."""
    sleep_until(t0 + settle)
    first, slowest = timed_scrape(stack.url)
    last, at = first, t0 + settle
    while at < t0 + seconds:
        at = min(at + every, t0 + seconds)
        sleep_until(at)
        stack.check()
        with contextlib.suppress(MetricsUnavailableError):
            last, took = timed_scrape(stack.url)
            slowest = max(slowest, took)
    return first, last, slowest


# --- steps --------------------------------------------------------------------------------------
def idle_recommend(stack: Stack, args: argparse.Namespace, users: list[str]) -> dict[str, Any]:
    with Children((recommend_load, (stack.settings.grpc_addr, users, args.recommend_rate, args.idle_seconds, 7))) \
            as children:
        children.start()
        got = children.collect(args.idle_seconds + 60)["recommend"]
    return {"p": list_pair(got["latencies_ms"]), "codes": got["codes"], "rate": got["rate"]}


def rate_step(stack: Stack, args: argparse.Namespace, step: int, rate: float, users: list[str],
              popular: list[str]) -> dict[str, Any]:
    label, events_topic = f"{rate:g}", stack.settings.events_topic
    source = (args.users, args.items, 1000 + step, args.new_user_share, f"new{step}")
    with Children((produce_load, (stack.bootstrap, events_topic, rate, args.seconds, source)),
                  (recommend_load, (stack.settings.grpc_addr, users, args.recommend_rate, args.seconds, int(rate))),
                  (probe_new_users, (stack.bootstrap, events_topic, stack.settings.grpc_addr, popular, label,
                                     args.probe_every, args.seconds))) as children:
        t0, cpu_before = children.start(), stack.cpu()
        before, after, slowest = measured_window(stack, t0, args.settle, args.seconds)
        cpu = [(b - a) / (time.monotonic() - t0) for a, b in zip(cpu_before, stack.cpu(), strict=True)]
        ended, lag, (up_mb, broker_mb) = time.monotonic(), stack.lag(), stack.memory()
        got = children.collect(args.seconds + 120)  # the last probes may wait up to 30 s more
    try:
        eventually(stack, "lag drained", lambda: stack.lag() == 0, 60)
        drain_s: float | None = time.monotonic() - ended
    except TimeoutError:
        drain_s = None
    return {"rate": rate, "offered": got["producer"]["rate"], "produce_errors": got["producer"]["errors"],
            **window_figures(before, after), "first_answer": list_pair(got["probes"]["seconds"]),
            "probes": len(got["probes"]["seconds"]), "probes_timed_out": got["probes"]["timed_out"],
            "probe_codes": got["probes"]["codes"], "recommend": list_pair(got["recommend"]["latencies_ms"]),
            "recommend_codes": got["recommend"]["codes"], "lag_end": lag, "up_mb": up_mb, "broker_mb": broker_mb,
            "up_cores": cpu[0], "broker_cores": cpu[1], "drain_s": drain_s,
            "max_scrape_ms": slowest}


def soak(stack: Stack, args: argparse.Namespace) -> list[dict[str, Any]]:
    seconds = args.soak * 60
    source = (args.users, args.items, 99, args.new_user_share, "soak")
    samples: list[dict[str, Any]] = []
    with Children((produce_load, (stack.bootstrap, stack.settings.events_topic, args.soak_rate, seconds,
                                  source))) as children:
        t0 = children.start()
        previous, _ = timed_scrape(stack.url)
        for k in range(1, int(seconds // args.soak_every) + 1):
            sleep_until(t0 + k * args.soak_every)
            stack.check()
            reading, took = timed_scrape(stack.url)
            up_mb, broker_mb = stack.memory()
            fresh = last_minute(reading) or hist_pair(histogram_delta(reading.histogram("ig_freshness_seconds"),
                                                                 previous.histogram("ig_freshness_seconds")))
            samples.append({"at_s": k * args.soak_every, "lag": stack.lag(), "up_mb": up_mb, "broker_mb": broker_mb,
                            "freshness": fresh, "from": "last minute" if last_minute(reading) else "histogram",
                            "scrape_ms": took})
            print(f"  soak {k * args.soak_every:.0f} s: lag {samples[-1]['lag']}, up {num(up_mb)} MB, broker "
                  f"{num(broker_mb)} MB, freshness {pair(fresh)} s, scrape {took:.0f} ms", flush=True)
            previous = reading
        children.collect(120)
    return samples


def verdict(values: list[float | None], floor: float | None = None) -> str:
    """Mean of the last third of the samples (the first left out) against the first third's."""
    kept = [v for v in values[1:] if v is not None and not math.isnan(v)]
    if len(kept) < 3:
        return "too few samples"
    third = len(kept) // 3
    first, last = float(np.mean(kept[:third])), float(np.mean(kept[-third:]))
    if (floor is not None and last < floor) or abs(last - first) <= 0.2 * abs(first):
        return "flat"
    return "growing" if last > first else "falling"


# --- output -------------------------------------------------------------------------------------
def pair(p: Pair, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if p is None else f"{p[0] * scale:.{digits}f} / {p[1] * scale:.{digits}f}"


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


def print_steps(idle: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    headers = ["offered ev/s", "sustained ev/s", "freshness p50 / p99 s", "last-minute p50 / p99 s",
               "new user first answer p50 / p99 s (timed out)", "Recommend p50 / p99 ms", "idle p50 / p99 ms",
               "p99 load/idle", "lag at end", "up RSS MB", "broker RSS MB", "up / broker CPU cores",
               "max scrape ms", "GC pause share"]
    rows = []
    for s in steps:
        ratio = s["recommend"][1] / idle["p"][1] if s["recommend"] and idle["p"] else None
        rows.append([f"{s['offered']:,.0f} (of {s['rate']:,.0f})", num(s["sustained"]), pair(s["freshness"]),
                     pair(s["last_minute"]), f"{pair(s['first_answer'])} ({s['probes_timed_out']})",
                     pair(s["recommend"], digits=1), pair(idle["p"], digits=1), num(ratio, 1), num(s["lag_end"]),
                     num(s["up_mb"]), num(s["broker_mb"]), pair((s["up_cores"], s["broker_cores"])),
                     num(s["max_scrape_ms"]), f"{100 * s['gc_share']:.1f} %"])
    print(table(headers, rows))
    print(f"\nRecommend codes: idle {idle['codes']}; "
          + "; ".join(f"{s['rate']:g} ev/s {s['recommend_codes']}" for s in steps))
    print("probe poll codes before the first answer: " + "; ".join(f"{s['rate']:g} ev/s {s['probe_codes']}"
                                                                    for s in steps))
    stages = list(dict.fromkeys([*STAGES, *(name for s in steps for name in s["stages"])]))
    print("\nper-stage freshness p50 / p99 s (ig_freshness_stage_seconds)\n")
    print(table(["offered ev/s", *stages], [[f"{s['rate']:,.0f}", *(pair(s["stages"].get(n)) for n in stages)]
                                            for s in steps]))


def print_soak(samples: list[dict[str, Any]], rate: float) -> dict[str, str]:
    print(table(["t s", "lag", "up RSS MB", "broker RSS MB", "freshness p50 / p99 s", "from", "scrape ms"],
                [[num(s["at_s"]), num(s["lag"]), num(s["up_mb"]), num(s["broker_mb"]), pair(s["freshness"]),
                  s["from"], num(s["scrape_ms"])] for s in samples]))
    verdicts = {
        "lag": verdict([s["lag"] for s in samples], floor=rate),
        "up RSS": verdict([s["up_mb"] for s in samples]),
        "broker RSS": verdict([s["broker_mb"] for s in samples]),
        "freshness p50": verdict([s["freshness"][0] if s["freshness"] else None for s in samples]),
        "freshness p99": verdict([s["freshness"][1] if s["freshness"] else None for s in samples]),
        "scrape time": verdict([s["scrape_ms"] for s in samples]),
    }
    print("\nverdicts: " + ", ".join(f"{k} {v}" for k, v in verdicts.items()))
    return verdicts


def header(script: str = "bench/freshness.py") -> dict[str, str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {"command": " ".join([script, *sys.argv[1:]]), "commit": commit.stdout.strip(),
            "at": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="1000,3000,5000", help="offered loads, events/s (default: 1000,3000,5000)")
    p.add_argument("--seconds", type=float, default=40.0, help="length of each load step (default: 40)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds of each step before the window (default: 5)")
    p.add_argument("--users", type=int, default=100_000, help="Zipf users (default: 100,000)")
    p.add_argument("--items", type=int, default=20_000, help="Zipf items = catalog size (default: 20,000)")
    p.add_argument("--warmup-events", type=int, default=20_000, help="events before measuring (default: 20,000)")
    p.add_argument("--new-user-share", type=float, default=0.01, help="share of brand-new users (default: 0.01)")
    p.add_argument("--recommend-rate", type=float, default=200.0, help="Recommend calls/s (default: 200)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="idle Recommend seconds (default: 10)")
    p.add_argument("--probe-every", type=float, default=1.0, help="seconds between new-user probes (default: 1)")
    p.add_argument("--rank", type=int, default=None, help="IG_SPECTRAL_RANK (default: the setting's)")
    p.add_argument("--soak", type=float, default=None, metavar="MINUTES", help="soak instead of the rate steps")
    p.add_argument("--soak-rate", type=float, default=3000.0, help="soak load, events/s (default: 3000)")
    p.add_argument("--soak-every", type=float, default=30.0, help="seconds between soak samples (default: 30)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (store, logs)")
    p.add_argument("--no-wait-cold-start", dest="wait_cold_start", action="store_false",
                   help="measure while cold start still embeds the catalog's text after start (default: wait)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    top = header()
    print(f"    {top['command']}\n\n{top['at']}, commit {top['commit']}\n", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
    stack, died = Stack(tmp, args.rank), False
    out: dict[str, Any] = {**top}
    try:
        stack.start()
        users = warm_up(stack, args)
        if args.soak:
            out["soak"] = soak(stack, args)
            out["verdicts"] = print_soak(out["soak"], args.soak_rate)
        else:
            out["idle"] = idle_recommend(stack, args, users)
            popular = EventSource(args.users, args.items, seed=0).popular_items(5)
            out["steps"] = []
            for step, rate in enumerate(float(r) for r in args.rates.split(",")):
                out["steps"].append(rate_step(stack, args, step, rate, users, popular))
                drain_s = out["steps"][-1]["drain_s"]
                print(f"  step {rate:g} ev/s done: sustained {out['steps'][-1]['sustained']:,.0f} ev/s, lag drained "
                      f"{'NOT within 60 s' if drain_s is None else f'{drain_s:.0f} s after the load'}", flush=True)
            print()
            print_steps(out["idle"], out["steps"])
    except (StackDiedError, TimeoutError, queue.Empty) as exc:
        died = True  # the stack died, or never got ready, or a load process hung: nothing to report
        exc = exc if str(exc) else type(exc)(f"a load process gave no result in time ({type(exc).__name__})")
        print(f"\nFAILED: {exc}\n--- up.log (tail) ---\n{stack.log_tail()}", file=sys.stderr)
    finally:
        code = stack.stop()
        print(f"\nup stopped with exit code {code}; log {stack.log_path}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1, default=str))
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if died else 0


if __name__ == "__main__":
    sys.exit(main())
