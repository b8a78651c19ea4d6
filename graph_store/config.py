"""The graph store's own configuration: the few settings :func:`graph_store.open_store` reads.

Every setting is declared once, in :mod:`core.settings`; :meth:`StoreConfig.from_settings` picks
this room's fields at the top (``interest_graph``), and only this value travels down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.settings import Settings


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Which backend :func:`~graph_store.open_store` opens, and how.

    Attributes:
        backend (str): ``ladybug`` or ``neo4j`` (``IG_STORE``).
        path (str): LadybugDB database path (``IG_STORE_PATH``).
        checkpoint_mb (float): LadybugDB write-ahead log checkpoint threshold (``IG_STORE_CHECKPOINT_MB``), MiB.
        neo4j_uri (str): Bolt URI; empty means no Neo4j (``NEO4J_URI``).
        neo4j_user (str): (``NEO4J_USER``)
        neo4j_password (str): A secret (``NEO4J_PASSWORD``): kept out of ``repr``.
        neo4j_database (str): (``NEO4J_DATABASE``)
    """

    backend: str
    path: str
    checkpoint_mb: float
    neo4j_uri: str
    neo4j_user: str
    neo4j_password: str = field(repr=False)
    neo4j_database: str

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreConfig:
        return settings.section(cls, backend=settings.store_backend, path=settings.store_path,
                                checkpoint_mb=settings.store_checkpoint_mb)
