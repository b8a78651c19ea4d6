"""Neo4j backend: the production graph store, through the official ``neo4j`` driver.

Writes are transaction functions run by ``session.execute_write``, which retries them after
transient failures (deadlocks, leader switches); a unit of work therefore reads and writes only
through its transaction, so a rerun starts from a clean slate. Reads go through
``session.execute_read`` and may be served by any cluster member. The driver is thread-safe;
sessions are not, so every call opens its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import neo4j
import numpy as np
from neo4j import exceptions as neo4j_errors

from graph_store import cypher, encode
from graph_store.base import GraphStoreError, StoreUnavailableError
from graph_store.cypher import Backend, Dialect
from graph_store.cypher_store import CypherGraphStore
from graph_store.subgraph import Runner

T = TypeVar("T")

#: Driver errors that mean "not reachable right now": retry with backoff.
_UNAVAILABLE = (
    neo4j_errors.ServiceUnavailable,
    neo4j_errors.SessionExpired,
    neo4j_errors.TransientError,
    neo4j_errors.DatabaseUnavailable,
)


class _Neo4jRunner:
    """Runs statements in one managed transaction and materialises their rows."""

    def __init__(self, tx: neo4j.ManagedTransaction) -> None:
        self.tx = tx

    def run(self, stmt: Dialect, **params: Any) -> list[Sequence[Any]]:
        return [tuple(record.values()) for record in self.tx.run(stmt.neo4j, stmt.bind(params))]


class Neo4jStore(CypherGraphStore):
    """The interest graph in a Neo4j database.

    Args:
        uri (str): Bolt or neo4j URI, e.g. ``neo4j://host:7687``.
        user (str): User name.
        password (str): Password.
        database (str): Database name (default: ``"neo4j"``).
        meta_key (str): Key of this store's Meta node; tests give each store its own
            (default: :obj:`graph_store.cypher.META_KEY`).
    """

    backend = Backend.NEO4J

    def __init__(
        self,
        uri: str,
        user: str,
        password: str,
        database: str = "neo4j",
        *,
        meta_key: str = cypher.META_KEY,
    ) -> None:
        self.uri = uri
        self.database = database
        self.meta_key = meta_key
        self._driver = neo4j.GraphDatabase.driver(uri, auth=(user, password))
        try:
            with self._mapped_errors("connect"):
                self._driver.verify_connectivity()
        except BaseException:
            self._driver.close()
            raise

    def _encode_vector(self, vector: np.ndarray) -> Any:
        return encode.float_list(vector)

    def _decode_vectors(self, stored: Sequence[Any]) -> np.ndarray:
        return encode.from_float_lists(stored)

    # --- lifecycle ---------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        with (
            self._mapped_errors("creating the schema"),
            self._driver.session(database=self.database) as session,
        ):
            # Schema commands cannot share a transaction with data writes: one auto-commit each.
            for ddl in cypher.NEO4J_SCHEMA:
                session.run(ddl).consume()
        self._write(lambda tx: tx.run(cypher.INIT_META, key=self.meta_key))

    def close(self) -> None:
        self._driver.close()

    # --- transactions --------------------------------------------------------------------------
    def _read(self, work: Callable[[Runner], T]) -> T:
        with self._mapped_errors("read"), self._driver.session(database=self.database) as session:
            return session.execute_read(lambda tx: work(_Neo4jRunner(tx)))

    def _write(self, work: Callable[[Runner], T]) -> T:
        with self._mapped_errors("write"), self._driver.session(database=self.database) as session:
            return session.execute_write(lambda tx: work(_Neo4jRunner(tx)))

    @contextmanager
    def _mapped_errors(self, context: str) -> Iterator[None]:
        """Driver errors as the store's own: unreachable -> retryable, the rest -> not."""
        try:
            yield
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"Neo4j {context} at {self.uri} failed: {exc}") from exc
        except neo4j_errors.Neo4jError as exc:
            raise GraphStoreError(f"Neo4j {context} at {self.uri} failed: {exc}") from exc
        except neo4j_errors.DriverError as exc:
            raise GraphStoreError(f"Neo4j {context} at {self.uri} failed: {exc}") from exc
