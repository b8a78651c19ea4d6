"""Embeddings: vectors with their versions, derived base vectors, and the refresh state."""

from __future__ import annotations

from core.domain import NodeKind
from graph_store.cypher.dialect import LABELS, Dialect, statement


def _ensure(label: str) -> Dialect:
    text = f"UNWIND $ids AS node_id MERGE (n:{label} {{id: node_id}}) ON CREATE SET n.changed_seq = 0"
    return statement(f"ENSURE_{label.upper()}S", ladybug=text, neo4j=text, params=("ids",))


#: Create nodes an embedding update names but the graph lacks (without stamping a change).
ENSURE_NODES: dict[NodeKind, Dialect] = {kind: _ensure(label) for kind, label in LABELS.items()}


def _write_vectors(label: str, column: str, version: str) -> Dialect:
    # MATCH, not MERGE: in LadybugDB a MERGE followed by a BLOB SET costs ~0.4 ms a row, a MATCH
    # ~0.03 ms (ENSURE_NODES creates missing nodes first). Rows written by a newer update are left
    # alone, so replaying an old update cannot roll embeddings back.
    text = f"""
UNWIND $rows AS row
MATCH (n:{label}) WHERE n.id = row.id AND coalesce(n.{version}, 0) <= $version
SET n.{column} = row.vector, n.{version} = $version
"""
    return statement(f"WRITE_{label.upper()}_{column.upper()}", ladybug=text, neo4j=text, params=("rows", "version"))


WRITE_EMBEDDINGS: dict[NodeKind, Dialect] = {
    kind: _write_vectors(label, "emb", "emb_version") for kind, label in LABELS.items()
}
WRITE_BASE_EMBEDDINGS: dict[NodeKind, Dialect] = {
    kind: _write_vectors(label, "base_emb", "base_version") for kind, label in LABELS.items()
}

_WRITE_REFRESH_STATE = """
MATCH (m:Meta {key: $key}) WHERE m.emb_version <= $version
SET m.emb_version = $version, m.refresh_cursor = $cursor, m.written_ms = $written_ms
"""
WRITE_REFRESH_STATE = statement(
    "WRITE_REFRESH_STATE",
    ladybug=_WRITE_REFRESH_STATE,
    neo4j=_WRITE_REFRESH_STATE,
    params=("key", "version", "cursor", "written_ms"),
)


def _read_vectors(label: str, column: str, where: str) -> Dialect:
    text = f"MATCH (n:{label}) WHERE {where} RETURN n.id AS id, n.{column} AS vector ORDER BY id"
    params = ("since_version",) if "$since_version" in where else ()
    return statement(f"READ_{label.upper()}_{column.upper()}", ladybug=text, neo4j=text, params=params)


READ_EMBEDDINGS: dict[NodeKind, Dialect] = {
    kind: _read_vectors(label, "emb", "n.emb_version > $since_version") for kind, label in LABELS.items()
}
READ_BASE_EMBEDDINGS: dict[NodeKind, Dialect] = {
    kind: _read_vectors(label, "base_emb", "n.base_emb IS NOT NULL") for kind, label in LABELS.items()
}
