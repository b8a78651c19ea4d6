"""LadybugStore specifics: one store shared by threads, file locks between processes, lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.domain import NodeId, NodeKind, NodeRef
from graph_store import GraphStoreError, StoreUnavailableError
from graph_store.ladybug import LadybugStore
from tests.graph_store.builders import TOPIC, OffsetClock, batch, delta

EDGES_PER_BATCH = 10


def _writer(store: LadybugStore, batches: int, errors: list[BaseException]) -> None:
    clock = OffsetClock()
    try:
        for b in range(batches):
            # Every batch adds exactly EDGES_PER_BATCH new edges, so a reader can check that what
            # it sees is exactly the state after some whole number of batches.
            edges = [delta(f"u{b}-{k}", f"i{(b + k) % 7}", 1.0) for k in range(EDGES_PER_BATCH)]
            store.apply_batch(batch(edges, clock, "writer"))
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def _reader(store: LadybugStore, stop: threading.Event, errors: list[BaseException], seen: list[int]) -> None:
    try:
        last = 0
        while not stop.is_set():
            snap = store.snapshot()
            assert len(snap.weight) == EDGES_PER_BATCH * snap.seq, "snapshot saw part of a batch"
            counts = store.counts()
            assert counts["seq"] >= last, "sequence went backwards"
            last = counts["seq"]
            store.k_hop_subgraph([NodeRef(NodeKind.ITEM, NodeId("i3"))], hops=2, fanout=5)
            store.changes_since(max(0, last - 2), limit=5)
            seen.append(snap.seq)
    except BaseException as exc:
        errors.append(exc)


def test_one_store_shared_by_a_writer_and_readers(ladybug_store: LadybugStore) -> None:
    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()
    readers = [threading.Thread(target=_reader, args=(ladybug_store, stop, errors, seen)) for _ in range(3)]
    writers = [threading.Thread(target=_writer, args=(ladybug_store, 40, errors))]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors
    assert ladybug_store.counts() == {"users": 400, "items": 7, "edges": 400, "seq": 40}
    assert seen, "readers never completed a round"


def test_two_writers_in_one_process_are_serialised(ladybug_store: LadybugStore) -> None:
    errors: list[BaseException] = []

    def write(group: str) -> None:
        clock = OffsetClock()
        try:
            for b in range(15):
                ladybug_store.apply_batch(batch([delta(f"{group}{b}", "shared", 1.0)], clock, group))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(g,)) for g in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert ladybug_store.counts()["seq"] == 30
    assert ladybug_store.k_hop_subgraph([NodeRef(NodeKind.ITEM, NodeId("shared"))], 1).user_degree.size == 30


_PROBE = """
import json, sys
from graph_store import GraphStoreError
from graph_store.ladybug import LadybugStore
out = {}
try:
    LadybugStore(sys.argv[1])
    out["rw"] = "opened"
except GraphStoreError as exc:
    out["rw"] = [type(exc).__name__, exc.retryable, str(exc)]
try:
    ro = LadybugStore(sys.argv[1], read_only=True)
    ro.ensure_schema()
    out["ro_counts"] = ro.counts()
    try:
        from core.domain import UpsertBatch
        ro.apply_batch(UpsertBatch([], {}))
        out["ro_write"] = "allowed"
    except GraphStoreError as exc:
        out["ro_write"] = [type(exc).__name__, exc.retryable]
    ro.close()
except GraphStoreError as exc:
    out["ro"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


def run_script(script: str, *args: str) -> str:
    """Run ``script`` in a fresh Python process that imports this repository; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.integration
def test_second_process_gets_lock_error_or_read_only_access(ladybug_store: LadybugStore) -> None:
    ladybug_store.apply_batch(batch([delta("u", "i")], OffsetClock(), "g"))
    out = json.loads(run_script(_PROBE, ladybug_store.path))
    name, retryable, message = out["rw"]
    assert (name, retryable) == ("StoreUnavailableError", True)
    assert "locked by another process" in message
    assert out["ro_counts"]["edges"] == 1
    assert out["ro_write"] == ["GraphStoreError", False]


def test_data_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "g.lbdb")
    with LadybugStore(path) as store:
        store.ensure_schema()
        store.apply_batch(batch([delta("u", "i", 2.5)], OffsetClock(), "g"))
    with LadybugStore(path) as again:
        again.ensure_schema()  # idempotent on an existing database
        edge = again.edge(NodeId("u"), NodeId("i"))
        assert edge is not None and edge.weight == 2.5
        assert again.counts()["seq"] == 1


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = LadybugStore(str(tmp_path / "g.lbdb"))
    store.ensure_schema()
    store.close()
    store.close()  # idempotent
    with pytest.raises(GraphStoreError, match="closed"):
        store.counts()


def test_open_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(GraphStoreError, match="does not exist") as missing_dir:
        LadybugStore(str(tmp_path / "no-such-dir" / "g.lbdb"))
    assert not missing_dir.value.retryable
    with pytest.raises(StoreUnavailableError, match="start the writer"):
        LadybugStore(str(tmp_path / "not-yet.lbdb"), read_only=True)


def test_read_only_store_without_schema_is_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "bare.lbdb")
    LadybugStore(path).close()  # a database file with no tables yet
    with (
        LadybugStore(path, read_only=True) as reader,
        pytest.raises(StoreUnavailableError, match="no tables"),
    ):
        reader.ensure_schema()


def test_database_with_tallies_on_the_relationship_is_refused(tmp_path: Path) -> None:
    """A database from before the tallies moved into Interaction nodes: a clear error, not silent zeros."""
    import ladybug

    path = str(tmp_path / "old.lbdb")
    # Deliberately raw (allow-listed in tests/graph_store/test_open_rules.py): LadybugStore would
    # create today's schema, and this database must have the old layout. A fresh file, no crash.
    db = ladybug.Database(path)
    conn = ladybug.Connection(db)
    for ddl in ("CREATE NODE TABLE User(id STRING, PRIMARY KEY(id))",
                "CREATE NODE TABLE Item(id STRING, PRIMARY KEY(id))",
                "CREATE REL TABLE INTERACTED(FROM User TO Item, weight DOUBLE, cnt INT64, last_ts INT64)"):
        conn.execute(ddl)
    conn.close()
    db.close()
    with LadybugStore(path) as store, pytest.raises(GraphStoreError, match="older interest-graph") as refused:
        store.ensure_schema()
    assert not refused.value.retryable


#: Commits one batch, then a bigger one, and dies without closing (no checkpoint on close): the log
#: keeps both transactions. Prints the log size after each commit.
_KILLED_WRITER = """
import os, sys
from graph_store.ladybug import LadybugStore
from tests.graph_store.builders import TOPIC, OffsetClock, batch, delta
store = LadybugStore(sys.argv[1])
store.ensure_schema()
clock = OffsetClock()
store.apply_batch(batch([delta("kept", "i", 2.0)], clock, "g"))
print(os.path.getsize(sys.argv[1] + ".wal"))
store.apply_batch(batch([delta(f"torn{k}", "i") for k in range(300)], clock, "g"))
print(os.path.getsize(sys.argv[1] + ".wal"), flush=True)
os._exit(0)
"""


def write_torn_store(path: str) -> None:
    """A store at ``path`` as a writer SIGKILLed mid-commit leaves it: one committed batch (edge
    kept -> i, weight 2.0, seq 1), then the next batch's records half written at the log's tail."""
    first_commit, second_commit = map(int, run_script(_KILLED_WRITER, path).split())
    os.truncate(path + ".wal", (first_commit + second_commit) // 2)  # the second commit, half written


def test_a_writer_killed_mid_commit_leaves_a_store_that_opens(tmp_path: Path) -> None:
    """A torn last transaction in the log (SIGKILL mid-write) is dropped; every committed one is kept."""
    import ladybug

    path = str(tmp_path / "g.lbdb")
    write_torn_store(path)
    # Why the store opens leniently: with its defaults LadybugDB refuses this database outright.
    # Deliberately raw (allow-listed in tests/graph_store/test_open_rules.py): it proves that refusal.
    with pytest.raises(RuntimeError, match="corrupted"):
        ladybug.Database(path, read_only=True)

    for read_only in (True, False):
        with LadybugStore(path, read_only=read_only) as store:
            assert store.counts()["seq"] == 1
            kept = store.edge(NodeId("kept"), NodeId("i"))
            assert kept is not None and kept.weight == 2.0
            assert store.edge(NodeId("torn0"), NodeId("i")) is None
    with LadybugStore(path) as store:  # the torn batch's offsets were never applied: Kafka redelivers it
        assert store.applied_offsets("g") == {TOPIC: 0}
        redelivery = OffsetClock()
        redelivery.next = 1
        store.apply_batch(batch([delta(f"torn{k}", "i") for k in range(300)], redelivery, "g"))
        assert store.counts()["seq"] == 2 and store.applied_offsets("g") == {TOPIC: 300}


def test_checkpoint_folds_the_log_into_the_database_file(tmp_path: Path) -> None:
    path = str(tmp_path / "g.lbdb")
    with LadybugStore(path) as store:
        store.ensure_schema()
        store.apply_batch(batch([delta("u", "i", 2.0)], OffsetClock(), "g"))
        assert os.path.getsize(path + ".wal") > 0
        store.checkpoint()
        assert not os.path.exists(path + ".wal") or os.path.getsize(path + ".wal") == 0
        assert store.counts()["edges"] == 1
    with LadybugStore(path, read_only=True) as reader, pytest.raises(GraphStoreError, match="read-only") as refused:
        reader.checkpoint()
    assert not refused.value.retryable


def test_read_only_open_waits_for_recovery_of_a_killed_checkpoint(tmp_path: Path) -> None:
    """A checkpoint's shadow file left by a killed writer: readers get a retryable error until a writer opens."""
    path = str(tmp_path / "g.lbdb")
    with LadybugStore(path) as store:
        store.ensure_schema()
    Path(path + ".shadow").touch()  # what a writer killed mid-checkpoint leaves behind
    with pytest.raises(StoreUnavailableError, match="finish crash recovery") as pending:
        LadybugStore(path, read_only=True)
    assert pending.value.retryable
    LadybugStore(path).close()
    with LadybugStore(path, read_only=True) as reader:
        reader.ensure_schema()


def test_many_edge_rows_go_through_arrow_tables(ladybug_store: LadybugStore) -> None:
    """Batches travel as Arrow tables (LOAD FROM): wide ints, floats and odd strings keep their values."""
    users = [f"u{k}" for k in range(300)] + ["ü'\"; DETACH DELETE (n) //", ""]
    edges = [delta(u, f"i{k % 13}", 0.25 * (k + 1), count=k + 1, ts=1_700_000_000_000 + k, click=k + 1)
             for k, u in enumerate(users) if u]
    clock = OffsetClock()
    ladybug_store.apply_batch(batch(edges, clock, "g"))
    ladybug_store.apply_batch(batch(edges, clock, "g"))  # every edge exists now: the update path
    for d in (edges[0], edges[-1]):
        stored = ladybug_store.edge(NodeId(d.user_id), NodeId(d.item_id))
        assert stored is not None
        assert stored.weight == pytest.approx(2 * d.weight)
        assert stored.count == 2 * d.count and stored.type_counts["click"] == 2 * d.count
        assert stored.last_ts_ms == d.last_ts_ms
    assert ladybug_store.counts()["edges"] == len(edges)


def test_pairs_whose_ids_concatenate_alike_stay_apart(ladybug_store: LadybugStore) -> None:
    """(ab, c) and (a, bc) glue into one string; their Interaction keys must still differ."""
    ladybug_store.apply_batch(batch([delta("ab", "c", 1.0), delta("a", "bc", 2.0), delta("1:a", "bc", 4.0)],
                                    OffsetClock(), "g"))
    weights = {(u, i): ladybug_store.edge(NodeId(u), NodeId(i)) for u, i in (("ab", "c"), ("a", "bc"), ("1:a", "bc"))}
    assert {pair: e.weight for pair, e in weights.items() if e is not None} == {
        ("ab", "c"): 1.0, ("a", "bc"): 2.0, ("1:a", "bc"): 4.0}
    assert ladybug_store.edge(NodeId("a"), NodeId("c")) is None


def test_connections_are_replaced_before_table_statements_pile_up(ladybug_store: LadybugStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The binding keeps a prepared statement per Arrow table for the connection's lifetime
    (a leak of ~0.3 MB a batch): the store replaces a connection after a bounded number."""
    import graph_store.ladybug as ladybug_module

    monkeypatch.setattr(ladybug_module, "TABLE_STATEMENTS_PER_CONNECTION", 4)
    clock = OffsetClock()
    first = ladybug_store._connection()
    seen = {id(first)}
    for k in range(12):  # two table statements a batch once edges exist (add, then create)
        ladybug_store.apply_batch(batch([delta("u", "i", 1.0), delta(f"u{k}", "i", 1.0)], clock, "g"))
        conn = ladybug_store._connection()
        seen.add(id(conn))
        cached = len(conn._pybind_implicit_prepared_cache)  # the binding's cache (private): bounded
        assert cached <= 4 + 10, cached
    assert len(seen) >= 4 and first.is_closed
    edge = ladybug_store.edge(NodeId("u"), NodeId("i"))
    assert edge is not None and edge.weight == 12.0 and ladybug_store.counts()["edges"] == 13


def test_writes_go_on_beside_a_long_read_and_the_log_is_folded_in_after_it(tmp_path: Path) -> None:
    """LadybugDB's own checkpoint cannot run beside a read and made every COMMIT retry it; the
    store's waits for the read to end, then folds the log in once."""
    path = str(tmp_path / "g.lbdb")
    inside, leave = threading.Event(), threading.Event()
    with LadybugStore(path, checkpoint_bytes=20_000) as store:
        store.ensure_schema()

        def long_read(tx: object) -> None:
            inside.set()
            leave.wait(30)

        reader = threading.Thread(target=store._read, args=(long_read,), daemon=True)
        reader.start()
        assert inside.wait(5)
        store._gate.wait_s = 0.05  # each write's checkpoint attempt gives up quickly while the read lasts
        clock = OffsetClock()
        for n in range(20):
            store.apply_batch(batch([delta(f"u{n}-{k}", f"i{k}") for k in range(20)], clock, "g"))
        assert os.path.getsize(path + ".wal") > 20_000  # nothing could be folded in yet, nothing was lost
        leave.set()
        reader.join(5)
        store.apply_batch(batch([delta("last", "i0")], clock, "g"))
        assert not os.path.exists(path + ".wal") or os.path.getsize(path + ".wal") < 20_000
        assert store.counts()["edges"] == 401
