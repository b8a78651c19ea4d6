"""Graph store: the bipartite user-item interest graph, its offsets, change log and embeddings.

:func:`open_store` picks the backend its :class:`~graph_store.config.StoreConfig` names and returns it with
its schema in place.
"""

from __future__ import annotations

import os

from core.settings import SettingsError
from graph_store.base import DecayMismatchError, GraphStore, GraphStoreError, StaleBatchError, StoreUnavailableError
from graph_store.config import StoreConfig

__all__ = [
    "DecayMismatchError",
    "GraphStore",
    "GraphStoreError",
    "StaleBatchError",
    "StoreConfig",
    "StoreUnavailableError",
    "open_store",
]

BACKENDS = ("ladybug", "neo4j")


def open_store(config: StoreConfig, read_only: bool = False) -> GraphStore:
    """Open the store ``config.backend`` names and make sure its schema exists.

    Args:
        config (StoreConfig): ``backend`` picks ``ladybug`` (``path``, whose parent
            directory is created) or ``neo4j`` (``neo4j_uri``, ``neo4j_user``, ...).
        read_only (bool): Open a LadybugDB file beside the process that writes it
            (default: :obj:`False`). Neo4j ignores it (access is the server's business).

    Raises:
        SettingsError: Unknown backend, or ``neo4j`` without ``NEO4J_URI`` (not retryable).
        StoreUnavailableError: The store is locked or unreachable (retryable).
    """
    backend = config.backend.strip().lower()
    if backend == "ladybug":
        from graph_store.ladybug import LadybugStore

        parent = os.path.dirname(os.path.abspath(config.path))
        if not read_only:
            os.makedirs(parent, exist_ok=True)
        checkpoint_bytes = round(config.checkpoint_mb * 1024 * 1024)
        if checkpoint_bytes <= 0:  # said in the setting's terms here; LadybugStore would say it in bytes
            raise SettingsError(f"IG_STORE_CHECKPOINT_MB must be > 0, got {config.checkpoint_mb}")
        store: GraphStore = LadybugStore(config.path, read_only=read_only, checkpoint_bytes=checkpoint_bytes)
    elif backend == "neo4j":
        if not config.neo4j_uri:
            raise SettingsError("IG_STORE=neo4j needs NEO4J_URI (e.g. neo4j://localhost:7687)")
        from graph_store.neo4j import Neo4jStore

        store = Neo4jStore(config.neo4j_uri, config.neo4j_user, config.neo4j_password, config.neo4j_database)
    else:
        raise SettingsError(f"IG_STORE={config.backend!r}: expected one of {', '.join(BACKENDS)}")
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store
