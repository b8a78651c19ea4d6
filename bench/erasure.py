"""Erasure throughput on the real ``interest-graph up``: users forgotten per second, idle and at 3,000 events/s.

One run starts ``up`` as :mod:`bench/freshness.py <freshness>` does (its own Tansu broker, LadybugDB
store, SpectralCF at its served width, gRPC server, metrics) and warms it up with a catalog and Zipf
events. Erasure requests are published as ``interest-graph forget`` and the Admin service publish
them (keyed by user, the events topic); a burst is *applied* when ``ig_users_forgotten_total`` has
counted every request (the counter moves as the store transaction that erased them commits), and
*committed* when the consumer group's offsets have passed every request too (Faust commits once a
second). Then, side by side in one run:

1. **idle**: ``--forget-idle`` warm-up users forgotten in one burst, nothing else offered: users/s
   is the burst over the time until the last request was applied;
2. **under load**: one phase per rate of ``--forget-rates``: ``--rate`` events/s for ``--seconds``,
   and from ``--settle`` s on that many erasure requests per second (warm-up users first, who have
   edges, then other users of the load's Zipf range). Rate 0 is the reference: what the ingest
   sustains alone. Each phase prints the events/s the ingest consumed in the window
   (``ig_events_accepted_total`` plus skipped and forgotten events), users forgotten per second in
   the window, the lag at its end, and whether every request was applied once the lag drained.

Every phase also asks Recommend for a sample of the forgotten users and prints the share answered
with the trending list (the unknown-user answer). Usage::

    .venv/bin/python bench/erasure.py --rate 3000 --seconds 60 --forget-idle 1000 --forget-rates 0,200,1000
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import confluent_kafka

sys.path.insert(0, str(Path(__file__).resolve().parent))
import freshness as fr  # the stack, the load generators and the warm-up are shared

from proto import recommender_pb2 as pb
from serving.client import RecommenderError
from streams.lag import LagProbe, LagUnavailableError
from streams.validation import encode_erasure_request, event_key

#: Users per erasure phase whose Recommend is checked afterwards.
SAMPLE = 50


def publish_erasures(bootstrap: str, topic: str, users: list[str]) -> dict[int, tuple[int, int]]:
    """One erasure request per user, keyed like their events; the first and last offset per partition."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, **fr.PRODUCER})
    spans: dict[int, tuple[int, int]] = {}
    errors: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
            return
        first, last = spans.get(msg.partition(), (msg.offset(), msg.offset()))
        spans[msg.partition()] = (min(first, msg.offset()), max(last, msg.offset()))

    now = int(time.time() * 1000)
    for user in users:
        fr._produce(producer, topic, event_key(user), encode_erasure_request(user, now), delivered)
    if producer.flush(60) or errors:
        raise RuntimeError(f"erasure requests not all acknowledged ({errors[:3]})")
    return spans


def committed(stack: fr.Stack) -> dict[int, int]:
    """The group's committed offset per partition of the events topic (empty while unknown)."""
    with contextlib.suppress(LagUnavailableError):
        return {p.partition: p.committed or 0 for p in LagProbe([stack.bootstrap], timeout_s=3.0)
                .topic_lag(stack.settings.events_topic, stack.settings.consumer_group)}
    return {}


def forgotten_total(stack: fr.Stack) -> float:
    """``ig_users_forgotten_total``: erasures the ingest agent has committed to the store."""
    return fr.scrape(stack.url, time.time(), timeout_s=10.0).value("ig_users_forgotten_total", 0.0)


def forget_burst(stack: fr.Stack, users: list[str], timeout_s: float = 600.0) -> dict[str, Any]:
    """Publish the burst and time it until every request is applied (``ig_users_forgotten_total`` has
    counted them all: the counter moves when the store transaction that erased them commits), then
    until the consumer group has committed past them; then how many of a sample Recommend answers as
    unknown users."""
    before = forgotten_total(stack)
    started = time.monotonic()
    spans = publish_erasures(stack.bootstrap, stack.settings.events_topic, users)
    first_s: float | None = None
    while (done := forgotten_total(stack) - before) < len(users):
        stack.check()
        if first_s is None and done > 0:
            first_s = time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{len(users)} erasures not applied within {timeout_s:.0f} s")
        time.sleep(0.02)
    took = time.monotonic() - started
    while not (offsets := committed(stack)) or any(offsets.get(p, 0) <= last for p, (_, last) in spans.items()):
        time.sleep(0.05)  # Faust commits offsets every second; the store already holds the erasures
    return {"users": len(users), "first_s": first_s or took, "applied_s": took, "per_s": len(users) / took,
            "committed_s": time.monotonic() - started, "unknown_share": unknown_share(stack, users, len(users))}


def unknown_share(stack: fr.Stack, users: list[str], seed: int) -> float | None:
    """Share of a sample of ``users`` that Recommend answers with the trending list (``None``: no users)."""
    sample = random.Random(seed).sample(users, min(SAMPLE, len(users)))
    unknown = 0
    with stack.client(timeout_s=5.0) as client:
        for user in sample:
            with contextlib.suppress(RecommenderError):
                unknown += client.recommend(user, k=10).source == pb.RECOMMEND_SOURCE_TRENDING
    return unknown / len(sample) if sample else None


def sustained(before: fr.MetricsReading, after: fr.MetricsReading) -> float:
    """Records the ingest consumed per second between two scrapes (accepted, skipped and forgotten)."""
    names = ("ig_events_accepted_total", "ig_events_skipped_total", "ig_events_forgotten_total")
    done = sum(after.value(n, 0.0) - before.value(n, 0.0) for n in names)
    return done / max(after.at_s - before.at_s, 1e-9)


def paced_erasures(bootstrap: str, topic: str, users: list[str], rate: float, seconds: float,
                   out: dict[str, Any]) -> None:
    """Publish erasure requests of ``users`` at ``rate`` per second for ``seconds`` (a thread's body)."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, **fr.PRODUCER})
    errors: list[Any] = []
    queue = iter(users)

    def send(n: int) -> None:
        now = int(time.time() * 1000)
        for user in itertools.islice(queue, n):
            fr._produce(producer, topic, event_key(user), encode_erasure_request(user, now),
                        lambda err, _msg: errors.append(err) if err is not None else None)
            out["sent"].append(user)
        producer.poll(0)

    fr.paced(rate, seconds, send)
    out["unsent"] = producer.flush(60) + len(errors)


def load_phase(stack: fr.Stack, args: argparse.Namespace, step: int, forget_rate: float,
               pool: list[str]) -> dict[str, Any]:
    """``args.rate`` events/s for ``args.seconds``; from ``args.settle`` on, ``forget_rate`` erasures/s of
    users from ``pool`` (0 = none). Figures are of the window from ``settle`` to the end."""
    source = (args.users, args.items, 2000 + step, 0.0, f"erasure{step}")
    published: dict[str, Any] = {"sent": [], "unsent": 0}
    with fr.Children((fr.produce_load, (stack.bootstrap, stack.settings.events_topic, args.rate, args.seconds,
                                        source))) as children:
        t0 = children.start()
        fr.sleep_until(t0 + args.settle)
        before = fr.scrape(stack.url, time.time(), timeout_s=10.0)
        thread = threading.Thread(target=paced_erasures, args=(
            stack.bootstrap, stack.settings.events_topic, pool, forget_rate, args.seconds - args.settle, published))
        if forget_rate:
            thread.start()
        fr.sleep_until(t0 + args.seconds)
        after = fr.scrape(stack.url, time.time(), timeout_s=10.0)
        lag = stack.lag()
        if forget_rate:
            thread.join(120)
        got = children.collect(args.seconds + 120)["producer"]
    window = max(after.at_s - before.at_s, 1e-9)
    forgotten = after.value("ig_users_forgotten_total", 0.0) - before.value("ig_users_forgotten_total", 0.0)
    fr.eventually(stack, "lag drained", lambda: stack.lag() == 0, 180)
    sent = published["sent"]
    applied_all = forgotten_total(stack) - before.value("ig_users_forgotten_total", 0.0) >= len(sent)
    return {"forget_rate": forget_rate, "offered": got["rate"], "sustained": sustained(before, after),
            "lag_end": lag, "published": len(sent), "unsent": published["unsent"], "per_s": forgotten / window,
            "all_applied": applied_all, "unknown_share": unknown_share(stack, sent, step)}


def print_results(idle: dict[str, Any], phases: list[dict[str, Any]], rate: float) -> None:
    print(fr.table(["burst while idle", "users", "users/s", "first applied s", "all applied s",
                    "offsets committed s", "sample answered as unknown"],
                   [["idle", f"{idle['users']:,}", f"{idle['per_s']:,.0f}", f"{idle['first_s']:.2f}",
                     f"{idle['applied_s']:.2f}", f"{idle['committed_s']:.2f}", f"{idle['unknown_share']:.0%}"]]))
    print()
    rows = []
    for phase in phases:
        share = phase["unknown_share"]
        rows.append([f"{rate:,.0f} ev/s + {phase['forget_rate']:,.0f} erasures/s", f"{phase['offered']:,.0f}",
                     f"{phase['sustained']:,.0f}", f"{phase['lag_end']}", f"{phase['published']:,}",
                     f"{phase['per_s']:,.0f}", "yes" if phase["all_applied"] else "NO",
                     "-" if share is None else f"{share:.0%}"])
    print(fr.table(["phase", "offered ev/s", "ingest sustained ev/s", "lag at end", "erasures published",
                    "users forgotten/s in the window", "all applied after", "sample answered as unknown"], rows))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=3000.0, help="offered events/s under load (default: 3000)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each load phase (default: 60)")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds into a load phase before measuring (default: 10)")
    p.add_argument("--forget-idle", type=int, default=1000, help="users forgotten while idle (default: 1,000)")
    p.add_argument("--forget-rates", default="0,200,1000",
                   help="erasures/s offered beside the load, one phase each (default: 0,200,1000)")
    p.add_argument("--users", type=int, default=100_000, help="Zipf users (default: 100,000)")
    p.add_argument("--items", type=int, default=20_000, help="Zipf items = catalog size (default: 20,000)")
    p.add_argument("--warmup-events", type=int, default=20_000, help="events before measuring (default: 20,000)")
    p.add_argument("--rank", type=int, default=None, help="IG_SPECTRAL_RANK (default: the setting's)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (store, logs)")
    args = p.parse_args()
    args.wait_cold_start = False
    return args


def main() -> int:
    args = parse_args()
    top = fr.header("bench/erasure.py")
    print(f"    {top['command']}\n\n{top['at']}, commit {top['commit']}\n", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-erasure-"))
    stack = fr.Stack(tmp, args.rank)
    try:
        stack.start()
        users = fr.warm_up(stack, args)
        random.Random(0).shuffle(users)
        if len(users) < args.forget_idle:
            raise SystemExit(f"only {len(users)} warm-up users for {args.forget_idle} erasures: raise --warmup-events")
        idle = forget_burst(stack, users[:args.forget_idle])
        print(f"idle: {idle['users']:,} users forgotten in {idle['applied_s']:.2f} s", flush=True)
        # Then the remaining warm-up users (they have edges), then any other user of the load's Zipf range.
        warm = set(users)
        pool = users[args.forget_idle:] + [u for u in (f"u{n}" for n in random.Random(1).sample(
            range(args.users), args.users)) if u not in warm]
        phases = []
        for step, rate in enumerate(float(r) for r in args.forget_rates.split(",")):
            phases.append(load_phase(stack, args, step, rate, pool))
            pool = pool[phases[-1]["published"]:]
            print(f"  {rate:g} erasures/s done", flush=True)
        print()
        print_results(idle, phases, args.rate)
    except (fr.StackDiedError, TimeoutError) as exc:
        print(f"\nFAILED: {exc}\n--- up.log (tail) ---\n{stack.log_tail()}", file=sys.stderr)
        return 1
    finally:
        code = stack.stop()
        print(f"\nup stopped with exit code {code}; log {stack.log_path}", flush=True)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
