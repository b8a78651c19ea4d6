"""What this machine spends on each offered load before the stack's own work (issue 13).

``bench/freshness.py`` measures the whole stack; this command measures, in one run and side by
side, the parts of that load that no change to ``up`` can remove, each alone, in CPU cores:

1. **the broker and the Kafka clients**: a fresh Tansu broker, the same librdkafka load process as
   ``bench/freshness.py`` (Zipf events encoded and published at the offered rate) and a **no-op
   Faust agent** on our transport (``take``, ``json.loads`` each value, nothing else: Faust's own
   per-event cost, the floor of the ingest agent), consuming live, each in its own process, for
   ``--seconds`` per rate; also the events/s the no-op agent kept up with;
2. **the store alone**: the agent's pure half and its store half (``plan_batch`` then
   ``apply_batch`` into a LadybugDB store grown first by ``--grow-events``), one batch per
   ``--batch-seconds`` of the offered load, without Kafka or Faust: CPU seconds per event, all
   the store's threads included, scaled to the rate;
3. **serving the Recommend load**: the real ``interest-graph up`` (as ``bench/freshness.py``
   starts it, warm-up included) answering ``--recommend-rate`` calls/s with no ingest load,
   ``up``'s cores above its own idle and the load generator's.

The sum is a floor for the whole stack at that rate: it leaves out the refresh rounds, the
embedding persistence, the index updates, fold-ins, cold start and every wait. Next to it is what
the machine has (``os.cpu_count()``) and what the sum leaves. Usage::

    .venv/bin/python bench/box_budget.py --rates 1000,3000,5000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from freshness import (  # noqa: E402
    Children,
    Stack,
    cpu_s,
    descendants,
    header,
    produce_load,
    recommend_load,
    table,
    tansu_among,
    warm_up,
)
from ingest import noop_app, planned_batches, zipf_events  # noqa: E402

from core.settings import Settings  # noqa: E402
from graph_store.ladybug import LadybugStore  # noqa: E402
from interest_graph.embedded_broker import TansuBroker  # noqa: E402
from streams.config import EventContract  # noqa: E402
from streams.kafka_admin import create_topics  # noqa: E402

PARTITIONS = Settings().topic_partitions


def box_busy_s() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


# --- 1. broker and Kafka clients ----------------------------------------------------------------
def noop_faust(broker_url: str, topic: str, fetch_max_wait_s: float, seconds: float,
               ready: Any, go: Any, results: Any) -> None:
    """Child process: a no-op Faust agent consuming ``topic`` live; reports events seen in the window."""
    app, state = noop_app(broker_url, topic, tempfile.mkdtemp(prefix="budget-faust-"), fetch_max_wait_s)

    async def window() -> None:
        while not app.consumer.assignment():
            await asyncio.sleep(0.05)
        ready.put("noop faust")
        while not go.is_set():
            await asyncio.sleep(0.005)
        started = time.monotonic()
        await asyncio.sleep(seconds + 1.0)  # the last second: what was published late in the window
        results.put(("noop faust", {"seen": state["seen"], "seconds": time.monotonic() - started}))

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(app.start())
    try:
        loop.run_until_complete(window())
    finally:
        loop.run_until_complete(app.stop())


def kafka_step(broker: TansuBroker, rate: float, seconds: float, step: int, users: int, items: int) -> dict[str, Any]:
    """One offered rate through producer -> broker -> no-op Faust; cores of each over the window."""
    topic = f"budget-{step}-{uuid.uuid4().hex[:6]}"
    create_topics(broker.bootstrap, {topic: PARTITIONS})
    source = (users, items, 500 + step, 0.01, f"budget{step}")
    with Children((produce_load, (broker.bootstrap, topic, rate, seconds, source)),
                  (noop_faust, (broker.url, topic, Settings().broker_fetch_max_wait_s, seconds))) as children:
        t0 = children.start()
        pids = {"producer": children.procs[0].pid, "noop faust": children.procs[1].pid,
                "broker": tansu_among(descendants(os.getpid()))}
        before, box_before = {k: cpu_s([p]) for k, p in pids.items()}, box_busy_s()
        time.sleep(max(0.1, seconds - 0.5))  # the producer exits at ``seconds``: read it while it lives
        elapsed = time.monotonic() - t0
        cores = {k: (cpu_s([p]) - before[k]) / elapsed for k, p in pids.items()}
        box = (box_busy_s() - box_before) / elapsed
        got = children.collect(seconds + 60)
    kept_up = got["noop faust"]["seen"] / max(got["producer"]["sent"], 1)
    return {"rate": rate, "offered": got["producer"]["rate"], "cores": cores, "box": box, "noop_kept_up": kept_up}


# --- 2. the store -------------------------------------------------------------------------------
def store_step(path: Path, rate: float, seconds: float, batch_s: float, step: int, users: int,
               items: int, first_offset: int) -> dict[str, Any]:
    """CPU seconds per event of planning and applying ``rate * seconds`` events to the grown store."""
    contract = EventContract.from_settings(Settings())
    events = list(zipf_events(int(rate * seconds), users, items, seed=900 + step))
    batch = max(1, int(rate * batch_s))
    started = time.process_time()
    plans = planned_batches(events, batch, contract, first_offset)
    planned = time.process_time()
    with LadybugStore(str(path)) as store:
        opened = time.process_time()
        for plan in plans:
            store.apply_batch(plan)
        applied = time.process_time()
    plan_cores = (planned - started) / seconds
    apply_cores = (applied - opened) / seconds
    return {"rate": rate, "batch": batch, "plan_cores": plan_cores, "apply_cores": apply_cores}


def grow_store(path: Path, count: int, users: int, items: int, batch: int) -> None:
    contract = EventContract.from_settings(Settings())
    with LadybugStore(str(path)) as store:
        store.ensure_schema()
        for plan in planned_batches(list(zipf_events(count, users, items, seed=1)), batch, contract):
            store.apply_batch(plan)


# --- 3. serving ---------------------------------------------------------------------------------
def serving_cost(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``up`` warmed up as bench/freshness.py does; its idle cores, then under the Recommend load alone."""
    tmp.mkdir(parents=True)
    stack = Stack(tmp, None)
    try:
        stack.start()
        users = warm_up(stack, argparse.Namespace(items=args.items, users=args.users,
                                                  warmup_events=args.warmup_events, wait_cold_start=True))
        t0, idle_before = time.monotonic(), stack.cpu()[0]
        time.sleep(args.seconds)
        idle = (stack.cpu()[0] - idle_before) / (time.monotonic() - t0)
        with Children((recommend_load, (stack.settings.grpc_addr, users, args.recommend_rate, args.seconds, 3))) \
                as children:
            t0 = children.start()
            generator = children.procs[0].pid
            up_before, gen_before = stack.cpu()[0], cpu_s([generator])
            time.sleep(max(0.1, args.seconds - 0.5))
            elapsed = time.monotonic() - t0
            loaded = (stack.cpu()[0] - up_before) / elapsed
            generator_cores = (cpu_s([generator]) - gen_before) / elapsed
            got = children.collect(args.seconds + 60)["recommend"]
        return {"idle": idle, "up": loaded - idle, "generator": generator_cores, "answered": got["rate"]}
    finally:
        stack.stop()


# --- output -------------------------------------------------------------------------------------
def print_budget(kafka: list[dict[str, Any]], store: list[dict[str, Any]], serving: dict[str, Any] | None) -> None:
    have = os.cpu_count() or 1
    headers = ["offered ev/s", "broker", "load generator", "no-op Faust (kept up)", "store: plan", "store: apply",
               "Recommend: up + generator", "sum (floor)", "machine", "left for the rest", "box busy (step 1)"]
    serve = (serving["up"] + serving["generator"]) if serving else 0.0
    rows = []
    for k, s in zip(kafka, store, strict=True):
        c = k["cores"]
        total = c["broker"] + c["producer"] + c["noop faust"] + s["plan_cores"] + s["apply_cores"] + serve
        rows.append([f"{k['offered']:,.0f} (of {k['rate']:,.0f})", f"{c['broker']:.2f}", f"{c['producer']:.2f}",
                     f"{c['noop faust']:.2f} ({100 * k['noop_kept_up']:.0f} %)", f"{s['plan_cores']:.3f}",
                     f"{s['apply_cores']:.3f}",
                     f"{serving['up']:.2f} + {serving['generator']:.2f}" if serving else "-",
                     f"{total:.2f}", f"{have}", f"{have - total:.2f}", f"{k['box']:.2f}"])
    print(table(headers, rows))
    if serving:
        print(f"\nRecommend: {serving['answered']:.0f} calls/s answered; up idle {serving['idle']:.2f} cores "
              "(pollers, metrics), not in the sum")
    print("store batches: " + ", ".join(f"{s['batch']:,} events at {s['rate']:,.0f} ev/s" for s in store))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="1000,3000,5000", help="offered loads, events/s (default: 1000,3000,5000)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each measurement (default: 20)")
    p.add_argument("--users", type=int, default=100_000, help="Zipf users (default: 100,000)")
    p.add_argument("--items", type=int, default=20_000, help="Zipf items = catalog size (default: 20,000)")
    p.add_argument("--grow-events", type=int, default=100_000,
                   help="events in the store before its steps are timed (default: 100,000)")
    p.add_argument("--batch-seconds", type=float, default=0.5,
                   help="seconds of the offered load per store batch (default: 0.5)")
    p.add_argument("--warmup-events", type=int, default=20_000, help="up's warm-up events (default: 20,000)")
    p.add_argument("--recommend-rate", type=float, default=200.0, help="Recommend calls/s (default: 200)")
    p.add_argument("--no-serving", dest="serving", action="store_false",
                   help="leave out part 3 (starting up and warming it takes minutes)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    top = header("bench/box_budget.py")
    print(f"    {top['command']}\n\n{top['at']}, commit {top['commit']}\n", flush=True)
    rates = [float(r) for r in args.rates.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    try:
        serving = serving_cost(args, tmp / "up") if args.serving else None
        with TansuBroker() as broker:
            kafka = [kafka_step(broker, rate, args.seconds, k, args.users, args.items) for k, rate in enumerate(rates)]
        store_path = tmp / "store.lbdb"
        grow_store(store_path, args.grow_events, args.users, args.items, batch=2500)
        store, offset = [], args.grow_events
        for k, rate in enumerate(rates):  # offsets go on: each step's records are new to the store
            store.append(store_step(store_path, rate, args.seconds, args.batch_seconds, k, args.users, args.items,
                                    offset))
            offset += int(rate * args.seconds)
        print_budget(kafka, store, serving)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
