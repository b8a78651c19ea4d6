"""Kafka clients against the embedded Tansu broker: librdkafka, kafka-python and aiokafka.

Producers outside this repo mostly use librdkafka (confluent-kafka, kcat, librdkafka bindings for
Go, .NET, Node, Rust), so these tests prove that what each client writes with ``acks=all``, every
client reads back byte for byte, each as a member of its own consumer group, and that the ingest
pipeline stores exact totals for librdkafka-produced events. librdkafka below 2.2 cannot read
Tansu 0.6's ApiVersions reply; :func:`test_kcat_below_librdkafka_2_2_cannot_talk_to_tansu` pins
that failure down where such a ``kcat`` is installed (Debian 12's ``kcat`` is).

librdkafka's default partitioner hashes keys with CRC32, the Java client, kafka-python and
aiokafka with murmur2: a producer mixing both would split one user's events over two partitions and
lose their order. Our librdkafka producers therefore set ``partitioner=murmur2_random``, and
:func:`test_librdkafka_murmur2_partitioner_places_keys_as_the_python_clients_do` proves it agrees.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import confluent_kafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from core.domain import EventType
from graph_store.ladybug import LadybugStore
from streams.validation import encode_event, event_key
from tests.fixtures.broker import KafkaTopics
from tests.streams.test_ingest_integration import applied_count, make_events, pump, running_ingest, stored_totals

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
#: Deadline of any single client operation (a send, a flush, a poll loop, a close).
CLIENT_TIMEOUT_S = 30.0
#: librdkafka settings every producer here uses: acks from all in-sync replicas, Java's key hashing.
LIBRDKAFKA_PRODUCER = {"acks": "all", "partitioner": "murmur2_random", "message.timeout.ms": 20_000,
                       "socket.timeout.ms": 10_000}
#: One wire record: (key, value).
Record = tuple[bytes, bytes]
#: Who produced: (records, bootstrap, topic) -> partition each record landed on.
Producer = Callable[[Sequence[Record], str, str], list[int]]
#: Who consumes: (bootstrap, topic, group, expected count) -> the records read, in arrival order.
Consumer = Callable[[str, str, str, int], list[Record]]


def wire_record(key: bytes | None, value: bytes | None) -> Record:
    """A consumed record as (key, value); every record these tests write has both."""
    assert key is not None and value is not None, f"record without key or value: {key!r}: {value!r}"
    return key, value


def client_events(client: str, count: int) -> list[Record]:
    """``count`` contract-valid events unique to ``client`` (ids, users and items carry its name)."""
    kinds = list(EventType)
    records: list[Record] = []
    for n in range(count):
        user = f"{client}-u{n % 7}"
        value = encode_event(user, f"{client}-i{n % 11}", kinds[n % len(kinds)], T0 + n,
                             event_id=f"{client}-e{n}", weight=0.25 * (1 + n % 8))
        records.append((event_key(user), value))
    return records


# --- producers: each sends with acks=all and returns the partition of every record once acked ---


def produce_librdkafka(records: Sequence[Record], bootstrap: str, topic: str) -> list[int]:
    """confluent-kafka (librdkafka) producer; raises if any record was not acknowledged."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, **LIBRDKAFKA_PRODUCER})
    partitions: list[int | None] = [None] * len(records)
    errors: list[str] = []

    def delivered(index: int) -> Callable[[confluent_kafka.KafkaError | None, confluent_kafka.Message], None]:
        def report(err: confluent_kafka.KafkaError | None, msg: confluent_kafka.Message) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                partitions[index] = msg.partition()
        return report

    for index, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, on_delivery=delivered(index))
        producer.poll(0)
    remaining = producer.flush(CLIENT_TIMEOUT_S)
    assert remaining == 0, f"librdkafka: {remaining} records not delivered within {CLIENT_TIMEOUT_S} s"
    assert not errors, f"librdkafka delivery errors: {errors[:5]}"
    assert all(p is not None for p in partitions)
    return [p for p in partitions if p is not None]


def produce_kafka_python(records: Sequence[Record], bootstrap: str, topic: str) -> list[int]:
    """kafka-python producer; each send's future is awaited with a deadline."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", request_timeout_ms=10_000,
                             max_block_ms=int(CLIENT_TIMEOUT_S * 1000))
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush(timeout=CLIENT_TIMEOUT_S)
        return [future.get(timeout=CLIENT_TIMEOUT_S).partition for future in futures]
    finally:
        producer.close(timeout=CLIENT_TIMEOUT_S)


def produce_aiokafka(records: Sequence[Record], bootstrap: str, topic: str) -> list[int]:
    """aiokafka producer in its own event loop; start, sends and stop each under a deadline."""

    async def run() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000)
        await asyncio.wait_for(producer.start(), CLIENT_TIMEOUT_S)
        try:
            sent = [await producer.send(topic, key=key, value=value) for key, value in records]
            metadata = await asyncio.wait_for(asyncio.gather(*sent), CLIENT_TIMEOUT_S)
            return [meta.partition for meta in metadata]
        finally:
            await asyncio.wait_for(producer.stop(), CLIENT_TIMEOUT_S)

    return asyncio.run(run())


# --- consumers: each joins ``group``, reads from the earliest offset until ``expected`` records ---


def consume_librdkafka(bootstrap: str, topic: str, group: str, expected: int) -> list[Record]:
    """confluent-kafka (librdkafka) consumer group member, polled until ``expected`` records."""
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "session.timeout.ms": 6000, "socket.timeout.ms": 10_000,
    })
    records: list[Record] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(records) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                error = msg.error()
                assert error is None or error.code() == confluent_kafka.KafkaError._PARTITION_EOF, str(error)
                if error is None:
                    records.append(wire_record(msg.key(), msg.value()))
        # Anything beyond ``expected`` would be a duplicate or a stray: give it a moment to show.
        records.extend(wire_record(m.key(), m.value()) for m in consumer.consume(num_messages=500, timeout=0.5)
                       if m.error() is None)
    finally:
        consumer.close()  # takes no timeout: bounded by socket.timeout.ms (leaving the group)
    return records


def consume_kafka_python(bootstrap: str, topic: str, group: str, expected: int) -> list[Record]:
    """kafka-python consumer group member, polled until ``expected`` records."""
    consumer = KafkaConsumer(topic, bootstrap_servers=[bootstrap], group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                             request_timeout_ms=10_000)
    records: list[Record] = []
    try:
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(wire_record(m.key, m.value) for m in batch)
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(wire_record(m.key, m.value) for m in batch)
    finally:
        consumer.close(autocommit=False, timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
    return records


def consume_aiokafka(bootstrap: str, topic: str, group: str, expected: int) -> list[Record]:
    """aiokafka consumer group member in its own event loop, fetched until ``expected`` records."""

    async def run() -> list[Record]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                    request_timeout_ms=10_000)
        await asyncio.wait_for(consumer.start(), CLIENT_TIMEOUT_S)
        records: list[Record] = []
        try:
            deadline = time.monotonic() + CLIENT_TIMEOUT_S
            while len(records) < expected and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(wire_record(m.key, m.value) for m in batch)
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(wire_record(m.key, m.value) for m in batch)
        finally:
            await asyncio.wait_for(consumer.stop(), CLIENT_TIMEOUT_S)
        return records

    return asyncio.run(run())


PRODUCERS: dict[str, Producer] = {
    "librdkafka": produce_librdkafka,
    "kafka-python": produce_kafka_python,
    "aiokafka": produce_aiokafka,
}
CONSUMERS: dict[str, Consumer] = {
    "librdkafka": consume_librdkafka,
    "kafka-python": consume_kafka_python,
    "aiokafka": consume_aiokafka,
}


def test_every_client_reads_what_every_client_wrote(kafka_topics: KafkaTopics) -> None:
    """Each client produces its own events (acks=all) into one 3-partition topic; then each client,
    in a consumer group of its own, reads every record of every producer exactly once, key and
    value byte for byte, and nothing else."""
    bootstrap, topic = kafka_topics.broker.bootstrap, kafka_topics.events
    written: list[Record] = []
    for name, produce in PRODUCERS.items():
        records = client_events(name, 120)
        partitions = produce(records, bootstrap, topic)
        assert len(partitions) == len(records)
        written.extend(records)
    assert len(set(written)) == len(written) == 360
    for name, consume in CONSUMERS.items():
        read = consume(bootstrap, topic, f"{kafka_topics.group}-{name}", len(written))
        assert len(read) == len(written), f"{name} read {len(read)} of {len(written)} records"
        assert Counter(read) == Counter(written), f"{name} read other records than were written"


def test_librdkafka_murmur2_partitioner_places_keys_as_the_python_clients_do(kafka_topics: KafkaTopics) -> None:
    """With ``partitioner=murmur2_random`` librdkafka puts every key on the partition kafka-python
    and aiokafka pick, so a user's events stay on one partition (in order) whoever produced them."""
    bootstrap, topic = kafka_topics.broker.bootstrap, kafka_topics.events
    records = client_events("placement", 60)
    placements = {name: dict(zip(records, produce(records, bootstrap, topic), strict=True))
                  for name, produce in PRODUCERS.items()}
    by_key = {name: {key: p for (key, _), p in placed.items()} for name, placed in placements.items()}
    assert len(set(by_key["librdkafka"].values())) > 1, "all keys on one partition: the test proves nothing"
    assert by_key["librdkafka"] == by_key["kafka-python"] == by_key["aiokafka"]


def test_ingest_stores_exact_totals_of_librdkafka_produced_events(kafka_topics: KafkaTopics,
                                                                  ladybug_store: LadybugStore,
                                                                  tmp_path: Path) -> None:
    """The real ingest worker (Faust on aiokafka) accepts events a librdkafka producer wrote: every
    event is applied once, stored weights and counts equal the event sums, none dead-lettered."""
    events, expected = make_events(1500, users=15, items=12, seed=11)
    settings = kafka_topics.settings(batch_max_events=97)
    with running_ingest(settings, ladybug_store, tmp_path / "faust") as ingest:
        produce_librdkafka([(e.key, e.value) for e in events], kafka_topics.broker.bootstrap, kafka_topics.events)
        pump(ingest, lambda: ingest.stats.snapshot().events_accepted >= len(events), 60,
             "the librdkafka-produced events")
        pump(ingest, lambda: applied_count(ladybug_store, kafka_topics.offsets_group) == len(events), 10,
             "offsets of every event")
        stats = ingest.stats.snapshot()
    assert stored_totals(ladybug_store) == expected
    assert stats.events_accepted == len(events)
    assert stats.dead_lettered_total == 0


def _kcat_librdkafka_version() -> tuple[int, int] | None:
    """(major, minor) of the librdkafka ``kcat -V`` reports, or ``None`` without a kcat."""
    kcat = shutil.which("kcat")
    if kcat is None:
        return None
    out = subprocess.run([kcat, "-V"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"librdkafka (\d+)\.(\d+)", out)
    assert match, f"unexpected `kcat -V` output: {out!r}"
    return int(match[1]), int(match[2])


def _end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    """Records in ``topic`` (sum of end offsets), read with kafka-python."""
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], request_timeout_ms=10_000)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        consumer.close(timeout_ms=int(CLIENT_TIMEOUT_S * 1000))


@pytest.mark.parametrize("config", [
    pytest.param([], id="defaults"),
    # librdkafka still sends ApiVersions when the fallback is >= 0.10: the same failure.
    pytest.param(["api.version.request=false", "broker.version.fallback=2.0.0"], id="fallback-2.0"),
    # A fallback below 0.10 skips ApiVersions; Tansu then drops the connection on Produce v1.
    pytest.param(["api.version.request=false", "broker.version.fallback=0.9.0"], id="fallback-0.9"),
])
def test_kcat_below_librdkafka_2_2_cannot_talk_to_tansu(kafka_topics: KafkaTopics, config: list[str]) -> None:
    """A kcat on librdkafka < 2.2 (Debian 12: kcat 1.7.1 on 2.0.2) gets no record into Tansu 0.6: it
    misreads the ApiVersions v3 reply ("Read underflow"), and turning the version request off does
    not help. Skipped where no such kcat is installed."""
    version = _kcat_librdkafka_version()
    if version is None:
        pytest.skip("kcat is not installed")
    if version >= (2, 2):
        pytest.skip(f"kcat uses librdkafka {version[0]}.{version[1]}, which reads Tansu's reply")
    settings = [arg for setting in [*config, "message.timeout.ms=10000"] for arg in ("-X", setting)]
    result = subprocess.run(["kcat", "-b", kafka_topics.broker.bootstrap, "-P", "-t", kafka_topics.events,
                             "-K:", *settings], input=b"u1:" + encode_event("u1", "i1", "click", T0) + b"\n",
                            capture_output=True, timeout=60)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, stderr
    if config[-1:] != ["broker.version.fallback=0.9.0"]:
        assert "ApiVersionRequest failed: Local: Read underflow" in stderr, stderr
    assert _end_offsets(kafka_topics.broker.bootstrap, kafka_topics.events, kafka_topics.partitions) == 0
