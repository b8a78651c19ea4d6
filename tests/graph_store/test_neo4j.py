"""Neo4jStore without a server: connection failures are retryable store errors.

Behaviour against a real server runs through the ``store`` fixture in the other tests whenever
``NEO4J_URI`` is set.
"""

from __future__ import annotations

import socket

import pytest

from graph_store import StoreUnavailableError
from graph_store.neo4j import Neo4jStore


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_a_retryable_error() -> None:
    uri = f"bolt://127.0.0.1:{_closed_port()}"
    with pytest.raises(StoreUnavailableError, match="connect") as info:
        Neo4jStore(uri, "neo4j", "secret")
    assert info.value.retryable
    assert "secret" not in str(info.value)
