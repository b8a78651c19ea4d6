"""Schema and ingest: tables/constraints, offsets, the change-log sequence, edge upserts, catalog."""

from __future__ import annotations

from core.domain import NodeKind
from graph_store.cypher.dialect import Dialect, per_label, statement, type_columns

# --- schema ------------------------------------------------------------------------------------
# Vectors are float32 bytes in a BLOB: LadybugDB rewrites a list column row by row (about 1 ms per
# 64-float vector), a BLOB of 5,000 vectors in about 0.1 s. Neo4j keeps plain float lists.
_EMBEDDING_COLUMNS = "emb BLOB, emb_version INT64 DEFAULT 0, base_emb BLOB, base_version INT64 DEFAULT 0"

LADYBUG_SCHEMA: tuple[str, ...] = (
    f"CREATE NODE TABLE IF NOT EXISTS User(id STRING, changed_seq INT64 DEFAULT 0, {_EMBEDDING_COLUMNS},"
    " PRIMARY KEY(id))",
    "CREATE NODE TABLE IF NOT EXISTS Item(id STRING, changed_seq INT64 DEFAULT 0, title STRING,"
    f" categories STRING[], text STRING, {_EMBEDDING_COLUMNS}, PRIMARY KEY(id))",
    # The traversal needs only the weight on the relationship; the edge's tallies live in an
    # Interaction node keyed by (user, item). LadybugDB updates a relationship property in both
    # adjacency directions after a join over the relationship table (about 260 µs per edge for
    # nine properties); a node row is found and updated by its primary key.
    "CREATE REL TABLE IF NOT EXISTS INTERACTED(FROM User TO Item, weight DOUBLE)",
    "CREATE NODE TABLE IF NOT EXISTS Interaction(key STRING, user_id STRING, item_id STRING, weight DOUBLE,"
    " cnt INT64, last_ts INT64, " + type_columns("{c} INT64 DEFAULT 0") + ", PRIMARY KEY(key))",
    "CREATE NODE TABLE IF NOT EXISTS Offset(key STRING, grp STRING, topic STRING, part INT64,"
    " applied INT64, PRIMARY KEY(key))",
    "CREATE NODE TABLE IF NOT EXISTS Meta(key STRING, seq INT64 DEFAULT 0, emb_version INT64 DEFAULT 0,"
    " refresh_cursor INT64 DEFAULT 0, written_ms INT64 DEFAULT 0, PRIMARY KEY(key))",
    # The deny-list of forgotten users: keyed hashes only (graph_store.cypher.erasure).
    "CREATE NODE TABLE IF NOT EXISTS Forgotten(key STRING, seq INT64, expires_ms INT64, PRIMARY KEY(key))",
    # The edge half-life and reference time the weights are in (graph_store.cypher.decay).
    "CREATE NODE TABLE IF NOT EXISTS Decay(key STRING, half_life_ms DOUBLE, ref_ms INT64, PRIMARY KEY(key))",
)
#: Tables the schema defines; a read-only store checks they exist instead of creating them.
LADYBUG_TABLES = ("User", "Item", "INTERACTED", "Interaction", "Offset", "Meta", "Forgotten", "Decay")
LADYBUG_SHOW_TABLES = "CALL show_tables() RETURN name"
#: Properties of ``INTERACTED`` (a database written before the tallies moved out has more).
LADYBUG_INTERACTED_INFO = "CALL table_info('INTERACTED') RETURN name"
LADYBUG_INTERACTED_PROPERTIES = ("weight",)

NEO4J_SCHEMA: tuple[str, ...] = (
    "CREATE CONSTRAINT ig_user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE",
    "CREATE CONSTRAINT ig_item_id IF NOT EXISTS FOR (i:Item) REQUIRE i.id IS UNIQUE",
    "CREATE CONSTRAINT ig_offset_key IF NOT EXISTS FOR (o:Offset) REQUIRE o.key IS UNIQUE",
    "CREATE CONSTRAINT ig_meta_key IF NOT EXISTS FOR (m:Meta) REQUIRE m.key IS UNIQUE",
    "CREATE INDEX ig_user_changed IF NOT EXISTS FOR (u:User) ON (u.changed_seq)",
    "CREATE INDEX ig_item_changed IF NOT EXISTS FOR (i:Item) ON (i.changed_seq)",
    "CREATE INDEX ig_user_emb_version IF NOT EXISTS FOR (u:User) ON (u.emb_version)",
    "CREATE INDEX ig_item_emb_version IF NOT EXISTS FOR (i:Item) ON (i.emb_version)",
    "CREATE INDEX ig_offset_group IF NOT EXISTS FOR (o:Offset) ON (o.grp)",
    "CREATE CONSTRAINT ig_forgotten_key IF NOT EXISTS FOR (f:Forgotten) REQUIRE f.key IS UNIQUE",
    "CREATE INDEX ig_forgotten_seq IF NOT EXISTS FOR (f:Forgotten) ON (f.seq)",
    "CREATE CONSTRAINT ig_decay_key IF NOT EXISTS FOR (d:Decay) REQUIRE d.key IS UNIQUE",
)

_META_INIT = """
MERGE (m:Meta {key: $key})
ON CREATE SET m.seq = 0, m.emb_version = 0, m.refresh_cursor = 0, m.written_ms = 0
"""
INIT_META = statement("INIT_META", ladybug=_META_INIT, neo4j=_META_INIT, params=("key",))

# --- ingest ------------------------------------------------------------------------------------
_READ_OFFSETS = "MATCH (o:Offset) WHERE o.key IN $keys RETURN o.key AS key, o.applied AS applied"
READ_OFFSETS = statement("READ_OFFSETS", ladybug=_READ_OFFSETS, neo4j=_READ_OFFSETS, params=("keys",))

_BUMP_SEQ = "MATCH (m:Meta {key: $key}) SET m.seq = m.seq + 1 RETURN m.seq AS seq"
BUMP_SEQ = statement("BUMP_SEQ", ladybug=_BUMP_SEQ, neo4j=_BUMP_SEQ, params=("key",))


#: Create missing nodes and stamp them with the batch's change-log sequence.
TOUCH_NODES: dict[NodeKind, Dialect] = per_label(
    "TOUCH_{LABEL}S", "UNWIND $ids AS node_id MERGE (n:{label} {{id: node_id}}) SET n.changed_seq = $seq",
    ("ids", "seq"))


def _add_deltas(var: str, row: str) -> str:
    """SET items adding one delta row (fields ``{row}weight``, ``{row}cnt`` …) to the tallies of ``var``."""
    return (
        f"{var}.weight = {var}.weight + {row}weight, {var}.cnt = {var}.cnt + {row}cnt, "
        f"{var}.last_ts = CASE WHEN {row}last_ts > {var}.last_ts THEN {row}last_ts ELSE {var}.last_ts END, "
        + type_columns(f"{var}.{{c}} = {var}.{{c}} + {row}{{c}}")
    )


# LadybugDB reads a batch as an Arrow table (``LOAD FROM $edges``: its columns become variables,
# with their Arrow types, so INT64 stays INT64); Neo4j unwinds the same rows as maps.
_LADYBUG_ADD = _add_deltas("p", "")
_NEO4J_ADD = _add_deltas("r", "e.")
_NEO4J_INIT = "r.weight = e.weight, r.cnt = e.cnt, r.last_ts = e.last_ts, " + type_columns("r.{c} = e.{c}")

#: Add deltas to edges that exist; returns the positions (``k``) of those it found.
ADD_TO_EDGES = statement(
    "ADD_TO_EDGES",
    ladybug=f"""
LOAD FROM $edges
MATCH (p:Interaction) WHERE p.key = key
SET {_LADYBUG_ADD}
WITH k, user_id, item_id, weight
MATCH (u:User) WHERE u.id = user_id
MATCH (u)-[r:INTERACTED]->(i:Item) WHERE i.id = item_id
HINT (u JOIN r) JOIN i
SET r.weight = r.weight + weight
RETURN k
""",
    neo4j=f"""
UNWIND $edges AS e
MATCH (:User {{id: e.user_id}})-[r:INTERACTED]->(:Item {{id: e.item_id}})
SET {_NEO4J_ADD}
RETURN DISTINCT e.k AS k
""",
    params=("edges",),
)

#: Create the edges ADD_TO_EDGES did not find (their endpoints exist: TOUCH_NODES ran first).
CREATE_EDGES = statement(
    "CREATE_EDGES",
    ladybug="""
LOAD FROM $edges
MATCH (u:User) WHERE u.id = user_id
MATCH (i:Item) WHERE i.id = item_id
CREATE (u)-[:INTERACTED {weight: weight}]->(i)
CREATE (:Interaction {key: key, user_id: user_id, item_id: item_id, weight: weight, cnt: cnt,
                      last_ts: last_ts, """
    + type_columns("{c}: {c}")
    + "})",
    neo4j=f"""
UNWIND $edges AS e
MATCH (u:User {{id: e.user_id}})
MATCH (i:Item {{id: e.item_id}})
MERGE (u)-[r:INTERACTED]->(i)
ON CREATE SET {_NEO4J_INIT}
ON MATCH SET {_NEO4J_ADD}
""",
    params=("edges",),
)

_WRITE_OFFSETS = """
UNWIND $offsets AS o
MERGE (x:Offset {key: o.key})
SET x.grp = o.grp, x.topic = o.topic, x.part = o.part, x.applied = o.applied
"""
WRITE_OFFSETS = statement("WRITE_OFFSETS", ladybug=_WRITE_OFFSETS, neo4j=_WRITE_OFFSETS, params=("offsets",))

_APPLIED_OFFSETS = """
MATCH (o:Offset) WHERE o.grp = $consumer_group
RETURN o.topic AS topic, o.part AS part, o.applied AS applied
"""
APPLIED_OFFSETS = statement(
    "APPLIED_OFFSETS", ladybug=_APPLIED_OFFSETS, neo4j=_APPLIED_OFFSETS, params=("consumer_group",)
)

_UPSERT_ITEMS = """
UNWIND $items AS it
MERGE (i:Item {id: it.id})
ON CREATE SET i.changed_seq = 0
SET i.title = it.title, i.categories = it.categories, i.text = it.text
"""
UPSERT_ITEMS = statement("UPSERT_ITEMS", ladybug=_UPSERT_ITEMS, neo4j=_UPSERT_ITEMS, params=("items",))
