"""Graph store: the bipartite user-item interest graph, its offsets, change log and embeddings.

:func:`open_store` picks the backend named by the settings and returns it with its schema in place.
"""

from __future__ import annotations

import os

from core.settings import Settings, SettingsError
from graph_store.base import GraphStore, GraphStoreError, StaleBatchError, StoreUnavailableError

__all__ = [
    "GraphStore",
    "GraphStoreError",
    "StaleBatchError",
    "StoreUnavailableError",
    "open_store",
]

BACKENDS = ("ladybug", "neo4j")


def open_store(settings: Settings, read_only: bool = False) -> GraphStore:
    """Open the store ``settings.store_backend`` names and make sure its schema exists.

    Args:
        settings (Settings): ``store_backend`` picks ``ladybug`` (``store_path``, whose parent
            directory is created) or ``neo4j`` (``neo4j_uri``, ``neo4j_user``, ...).
        read_only (bool): Open a LadybugDB file beside the process that writes it
            (default: :obj:`False`). Neo4j ignores it (access is the server's business).

    Raises:
        SettingsError: Unknown backend, or ``neo4j`` without ``NEO4J_URI`` (not retryable).
        StoreUnavailableError: The store is locked or unreachable (retryable).
    """
    backend = settings.store_backend.strip().lower()
    if backend == "ladybug":
        from graph_store.ladybug import LadybugStore

        parent = os.path.dirname(os.path.abspath(settings.store_path))
        if not read_only:
            os.makedirs(parent, exist_ok=True)
        checkpoint_bytes = round(settings.store_checkpoint_mb * 1024 * 1024)
        if checkpoint_bytes <= 0:  # said in the setting's terms here; LadybugStore would say it in bytes
            raise SettingsError(f"IG_STORE_CHECKPOINT_MB must be > 0, got {settings.store_checkpoint_mb}")
        store: GraphStore = LadybugStore(settings.store_path, read_only=read_only, checkpoint_bytes=checkpoint_bytes)
    elif backend == "neo4j":
        if not settings.neo4j_uri:
            raise SettingsError("IG_STORE=neo4j needs NEO4J_URI (e.g. neo4j://localhost:7687)")
        from graph_store.neo4j import Neo4jStore

        store = Neo4jStore(settings.neo4j_uri, settings.neo4j_user, settings.neo4j_password, settings.neo4j_database)
    else:
        raise SettingsError(f"IG_STORE={settings.store_backend!r}: expected one of {', '.join(BACKENDS)}")
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store
