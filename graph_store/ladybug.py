"""LadybugDB backend: the embedded, on-disk graph store (the default).

One :class:`ladybug.Database` per store object, one :class:`ladybug.Connection` per thread (a
connection runs one transaction at a time), and a lock that lets one write transaction run at a
time: in the embedded ``interest-graph up`` process the ingest agent, the refresh worker and the
gRPC threads share one store. Read transactions run beside the writer (LadybugDB keeps snapshots).

Only one process may open a database read-write; others may open it ``read_only``, but such a
store sees the database as it was when opened (LadybugDB replays the write-ahead log once, at
open): it suits one-off readers (inspection, a training snapshot), not a server that must follow
the writer. Processes that need live data share the writer's store object instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import ladybug
import numpy as np
import pyarrow as pa

from graph_store import cypher, encode
from graph_store.base import GraphStoreError, StoreUnavailableError
from graph_store.checkpoint_gate import CheckpointGate
from graph_store.cypher import Backend, Dialect
from graph_store.cypher_store import CypherGraphStore
from graph_store.subgraph import Runner

T = TypeVar("T")

#: Statements with an Arrow table parameter a connection runs before it is replaced. The binding
#: caches a prepared statement per table object and never evicts it (about 0.3 MB each, so a
#: long-running ingest grew by 300 MB per 1,000 batches); closing the connection frees them, and
#: opening one takes under 0.1 ms.
TABLE_STATEMENTS_PER_CONNECTION = 64

#: Largest k-hop frontier read node by node through the primary key: Explain's and RecommendFriends'
#: neighbourhoods, not a refresh round's frontier of thousands. ``bench/evidence_read.py`` compares
#: limits side by side: at 20,000 items 16 reads Explain's neighbourhood fastest (64: 25 % slower),
#: at 200,000 items 64 does (3x faster than whole-frontier queries), at 1,000,000 items 64 reads it in
#: 7.5 ms (p50) against 58 ms.
FRONTIER_SEEK_MAX = 64

#: Fragments of LadybugDB error messages that mean "another process holds the database".
_LOCKED = ("could not set lock", "lock is held")
#: A writer died mid-checkpoint: a read-only open must wait until a writer reopens the database.
_RECOVERY_PENDING = "checkpoint recovery is pending"


class _LadybugRunner:
    """Runs statements on one connection inside its open transaction."""

    def __init__(self, conn: ladybug.Connection) -> None:
        self.conn = conn
        #: Statements run with an Arrow table parameter (each leaves a prepared statement behind).
        self.table_statements = 0

    def run(self, stmt: Dialect, **params: Any) -> list[Sequence[Any]]:
        bound = stmt.bind(params)
        for name in stmt.tables:
            if not bound[name]:
                return []  # LOAD FROM no rows: the statement would match, change and return nothing
            bound[name] = _arrow_table(bound[name])
        if stmt.tables:
            self.table_statements += 1
        try:
            result = self.conn.execute(stmt.ladybug, bound)
        except RuntimeError as exc:
            raise _store_error(f"{stmt.name} failed", exc) from exc
        try:
            return result.get_all()  # type: ignore[union-attr,return-value]  # one statement, one result
        finally:
            result.close()  # type: ignore[union-attr]  # one statement, one result (not a list)


def _arrow_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts with the same keys) as one Arrow table, column by column.

    LadybugDB converts a list-of-structs parameter field by field under the GIL (about 3 µs a
    field: 33 ms for 1,000 edge rows); an Arrow table it scans natively (under 1 ms).
    """
    return pa.table({column: [row[column] for row in rows] for column in rows[0]})


def _store_error(context: str, exc: Exception) -> GraphStoreError:
    message = str(exc)
    lowered = message.lower()
    if any(fragment in lowered for fragment in _LOCKED):
        return StoreUnavailableError(f"{context}: database is locked by another process ({message})")
    if "io exception" in lowered or "buffer manager exception" in lowered:
        return StoreUnavailableError(f"{context}: I/O error ({message})")
    if _RECOVERY_PENDING in lowered:
        return StoreUnavailableError(f"{context}: the writer must open it first to finish crash recovery ({message})")
    return GraphStoreError(f"{context}: {message}")


#: Write-ahead log size at which a write checkpoints it (see ``IG_STORE_CHECKPOINT_MB``).
DEFAULT_CHECKPOINT_BYTES = 16 * 1024 * 1024


class LadybugStore(CypherGraphStore):
    """The interest graph in an embedded LadybugDB database file.

    Args:
        path (str): Database path; its parent directory must exist.
        read_only (bool): Open without write access, beside a writer in another process
            (default: :obj:`False`).
        checkpoint_bytes (int): write-ahead log size at which a write checkpoints it into the
            database file, through a :class:`~graph_store.checkpoint_gate.CheckpointGate`
            (default: :data:`DEFAULT_CHECKPOINT_BYTES`, 16 MiB).

    Raises:
        GraphStoreError: ``checkpoint_bytes`` is not positive (not retryable).
    """

    backend = Backend.LADYBUG
    #: Its ``offset(id(n)) IN $handles`` frontier filter scans the node table (~1 ms at 20,000 nodes,
    #: 2-3 ms at 200,000); a primary-key seek per node costs about 0.1 ms at either size.
    frontier_seek_max = FRONTIER_SEEK_MAX

    def __init__(self, path: str, read_only: bool = False,
                 checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES) -> None:
        if checkpoint_bytes <= 0:
            raise GraphStoreError(f"checkpoint_bytes must be > 0, got {checkpoint_bytes}")
        self.path = str(path)
        self.read_only = read_only
        self.checkpoint_bytes = checkpoint_bytes
        self._db = self._open_database()
        self._local = threading.local()
        self._connections: list[ladybug.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._gate = CheckpointGate()
        self._closed = False

    def _open_database(self) -> ladybug.Database:
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise GraphStoreError(f"cannot open LadybugDB at {self.path!r}: directory {parent!r} does not exist")
        if self.read_only and not os.path.exists(self.path):
            raise StoreUnavailableError(f"no LadybugDB at {self.path!r} yet: start the writer first")
        try:
            # A writer killed mid-transaction leaves that transaction's records half-written at the
            # log's tail. By default LadybugDB then refuses to open at all ("the WAL file is
            # corrupted"), so a crashed ``up`` could never restart. Lenient replay keeps every
            # committed transaction and drops the torn one, which never committed: its events'
            # offsets were not applied either, so Kafka redelivers them.
            # No automatic checkpoint: the store checkpoints when no transaction is inside (see
            # graph_store.checkpoint_gate).
            return ladybug.Database(self.path, read_only=self.read_only, auto_checkpoint=False,
                                    throw_on_wal_replay_failure=False)
        except RuntimeError as exc:
            raise _store_error(f"cannot open LadybugDB at {self.path!r}", exc) from exc

    def _encode_vector(self, vector: np.ndarray) -> Any:
        return encode.float32_bytes(vector)

    def _decode_vectors(self, stored: Sequence[Any]) -> np.ndarray:
        return encode.from_float32_bytes(stored)

    # --- lifecycle ---------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        if self.read_only:
            self._check_schema()
            return
        with self._write_lock, self._gate.transaction():
            conn = self._connection()
            for ddl in cypher.LADYBUG_SCHEMA:
                # Each DDL statement commits on its own (``IF NOT EXISTS`` makes reruns no-ops).
                try:
                    conn.execute(ddl).close()  # type: ignore[union-attr]  # one statement, one result
                except RuntimeError as exc:
                    raise _store_error("creating the schema failed", exc) from exc
        self._check_edge_layout()
        self._write(lambda tx: tx.run(cypher.INIT_META, key=self.meta_key))

    def _check_schema(self) -> None:
        names = {row[0] for row in self._query(cypher.LADYBUG_SHOW_TABLES)}
        missing = [t for t in cypher.LADYBUG_TABLES if t not in names]
        if missing:
            raise StoreUnavailableError(f"LadybugDB at {self.path!r} has no tables {missing} yet: start the writer")
        self._check_edge_layout()

    def _check_edge_layout(self) -> None:
        """Refuse a database whose edges keep their tallies on the relationship (written by an
        older version): ``IF NOT EXISTS`` would keep that table and reads would miss its counts."""
        found = tuple(row[0] for row in self._query(cypher.LADYBUG_INTERACTED_INFO))
        if found != cypher.LADYBUG_INTERACTED_PROPERTIES:
            raise GraphStoreError(
                f"LadybugDB at {self.path!r} was written by an older interest-graph (INTERACTED has "
                f"properties {list(found)}, expected {list(cypher.LADYBUG_INTERACTED_PROPERTIES)}): "
                "move it aside and replay the events topic into a new database")

    def _query(self, text: str) -> list[Sequence[Any]]:
        """Rows of a parameterless catalog query, outside any explicit transaction."""
        with self._gate.transaction():
            try:
                result = self._connection().execute(text)
            except RuntimeError as exc:
                raise _store_error("reading the catalog failed", exc) from exc
            try:
                return result.get_all()  # type: ignore[union-attr,return-value]  # one statement, one result
            finally:
                result.close()  # type: ignore[union-attr]  # one statement, one result (not a list)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file and empty it (LadybugDB's ``CHECKPOINT``).

        After it the database file alone holds every committed transaction, so even an open with
        LadybugDB's strict defaults succeeds (``interest-graph store-recover`` relies on this).

        Raises:
            GraphStoreError: The store was opened read-only or is closed (not retryable).
            StoreUnavailableError: An I/O error (retryable).
        """
        if self.read_only:
            raise GraphStoreError(f"LadybugStore at {self.path!r} was opened read-only: cannot checkpoint")
        with self._write_lock:
            if not self._gate.checkpoint(self._run_checkpoint):
                raise StoreUnavailableError(f"LadybugStore at {self.path!r}: transactions still running after "
                                            f"{self._gate.wait_s:g} s, no checkpoint")

    def _run_checkpoint(self) -> None:
        try:
            # Outside any explicit transaction: CHECKPOINT is a statement of its own.
            self._connection().execute("CHECKPOINT").close()  # type: ignore[union-attr]  # one statement, one result
        except RuntimeError as exc:
            raise _store_error("checkpoint failed", exc) from exc

    def _checkpoint_if_due(self) -> None:
        """After a write (holding the write lock): checkpoint once the log has reached ``checkpoint_bytes``.

        A checkpoint that found transactions still running is tried again after the next write.
        """
        try:
            logged = os.path.getsize(self.path + ".wal")
        except OSError:  # no log: nothing written since the last checkpoint
            return
        if logged >= self.checkpoint_bytes:
            self._gate.checkpoint(self._run_checkpoint)

    def close(self) -> None:
        with self._connections_lock:
            if self._closed:
                return
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._db.close()

    # --- transactions --------------------------------------------------------------------------
    def _connection(self) -> ladybug.Connection:
        conn: ladybug.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.is_closed:
            return conn
        with self._connections_lock:
            if self._closed:
                raise GraphStoreError(f"LadybugStore at {self.path!r} is closed")
            conn = ladybug.Connection(self._db)
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def _read(self, work: Callable[[Runner], T]) -> T:
        return self._transaction(work, "BEGIN TRANSACTION READ ONLY")

    def _write(self, work: Callable[[Runner], T]) -> T:
        if self.read_only:
            raise GraphStoreError(f"LadybugStore at {self.path!r} was opened read-only")
        with self._write_lock:
            result = self._transaction(work, "BEGIN TRANSACTION")
            self._checkpoint_if_due()
            return result

    def _transaction(self, work: Callable[[Runner], T], begin: str) -> T:
        with self._gate.transaction():
            return self._run_transaction(work, begin)

    def _run_transaction(self, work: Callable[[Runner], T], begin: str) -> T:
        conn = self._connection()
        try:
            conn.execute(begin)
        except RuntimeError as exc:
            raise _store_error("starting a transaction failed", exc) from exc
        runner = _LadybugRunner(conn)
        try:
            result = work(runner)
        except BaseException:
            # The failed statement may already have ended the transaction; the first error is
            # the one worth reporting.
            with contextlib.suppress(RuntimeError):
                conn.execute("ROLLBACK")
            self._count_table_statements(conn, runner.table_statements)
            raise
        try:
            conn.execute("COMMIT")
        except RuntimeError as exc:
            raise _store_error("commit failed", exc) from exc
        finally:
            self._count_table_statements(conn, runner.table_statements)
        return result

    def _count_table_statements(self, conn: ladybug.Connection, count: int) -> None:
        """Replace this thread's connection once it has cached TABLE_STATEMENTS_PER_CONNECTION
        statements for Arrow tables (see that constant); called between transactions."""
        total = self._local.__dict__.get("table_statements", 0) + count
        if total < TABLE_STATEMENTS_PER_CONNECTION:
            self._local.table_statements = total
            return
        self._local.table_statements = 0
        self._local.conn = None
        with self._connections_lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()
