"""Schema and ingest: tables/constraints, offsets, the change-log sequence, edge upserts, catalog."""

from __future__ import annotations

from graph_store.cypher.dialect import LABELS, Dialect, statement, type_columns
from interest_graph.domain import NodeKind

# --- schema ------------------------------------------------------------------------------------
# Vectors are float32 bytes in a BLOB: LadybugDB rewrites a list column row by row (about 1 ms per
# 64-float vector), a BLOB of 5,000 vectors in about 0.1 s. Neo4j keeps plain float lists.
_EMBEDDING_COLUMNS = "emb BLOB, emb_version INT64 DEFAULT 0, base_emb BLOB, base_version INT64 DEFAULT 0"

LADYBUG_SCHEMA: tuple[str, ...] = (
    f"CREATE NODE TABLE IF NOT EXISTS User(id STRING, changed_seq INT64 DEFAULT 0, {_EMBEDDING_COLUMNS},"
    " PRIMARY KEY(id))",
    "CREATE NODE TABLE IF NOT EXISTS Item(id STRING, changed_seq INT64 DEFAULT 0, title STRING,"
    f" categories STRING[], text STRING, {_EMBEDDING_COLUMNS}, PRIMARY KEY(id))",
    "CREATE REL TABLE IF NOT EXISTS INTERACTED(FROM User TO Item, weight DOUBLE, cnt INT64, last_ts INT64, "
    + type_columns("{c} INT64 DEFAULT 0")
    + ")",
    "CREATE NODE TABLE IF NOT EXISTS Offset(key STRING, grp STRING, topic STRING, part INT64,"
    " applied INT64, PRIMARY KEY(key))",
    "CREATE NODE TABLE IF NOT EXISTS Meta(key STRING, seq INT64 DEFAULT 0, emb_version INT64 DEFAULT 0,"
    " refresh_cursor INT64 DEFAULT 0, written_ms INT64 DEFAULT 0, PRIMARY KEY(key))",
)
#: Tables the schema defines; a read-only store checks they exist instead of creating them.
LADYBUG_TABLES = ("User", "Item", "INTERACTED", "Offset", "Meta")
LADYBUG_SHOW_TABLES = "CALL show_tables() RETURN name"

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


def _touch(label: str) -> Dialect:
    text = f"UNWIND $ids AS node_id MERGE (n:{label} {{id: node_id}}) SET n.changed_seq = $seq"
    return statement(f"TOUCH_{label.upper()}S", ladybug=text, neo4j=text, params=("ids", "seq"))


#: Create missing nodes and stamp them with the batch's change-log sequence.
TOUCH_NODES: dict[NodeKind, Dialect] = {kind: _touch(label) for kind, label in LABELS.items()}


def _add_deltas(latest_ts: str) -> str:
    return (
        f"r.weight = r.weight + e.weight, r.cnt = r.cnt + e.cnt, "
        f"r.last_ts = CASE WHEN e.last_ts > r.last_ts THEN {latest_ts} ELSE r.last_ts END, "
        + type_columns("r.{c} = r.{c} + e.{c}")
    )


# LadybugDB's Python binding sends each int parameter in the narrowest type that holds it (INT8
# for 5) and a CASE takes the type of its first branch, so the stored INT64 would be cast down.
_LADYBUG_ADD_DELTAS = _add_deltas("to_int64(e.last_ts)")
_ADD_DELTAS = _add_deltas("e.last_ts")
_INIT_DELTAS = "r.weight = e.weight, r.cnt = e.cnt, r.last_ts = e.last_ts, " + type_columns("r.{c} = e.{c}")

#: Add deltas to edges that exist; returns the positions (``e.k``) of those it found.
ADD_TO_EDGES = statement(
    "ADD_TO_EDGES",
    ladybug=f"""
UNWIND $edges AS e
MATCH (u:User) WHERE u.id = e.user_id
MATCH (u)-[r:INTERACTED]->(i:Item) WHERE i.id = e.item_id
HINT (u JOIN r) JOIN i
SET {_LADYBUG_ADD_DELTAS}
RETURN e.k AS k
""",
    neo4j=f"""
UNWIND $edges AS e
MATCH (:User {{id: e.user_id}})-[r:INTERACTED]->(:Item {{id: e.item_id}})
SET {_ADD_DELTAS}
RETURN DISTINCT e.k AS k
""",
    params=("edges",),
)

#: Create the edges ADD_TO_EDGES did not find (their endpoints exist: TOUCH_NODES ran first).
CREATE_EDGES = statement(
    "CREATE_EDGES",
    ladybug="""
UNWIND $edges AS e
MATCH (u:User) WHERE u.id = e.user_id
MATCH (i:Item) WHERE i.id = e.item_id
CREATE (u)-[:INTERACTED {weight: e.weight, cnt: e.cnt, last_ts: e.last_ts, """
    + type_columns("{c}: e.{c}")
    + "}]->(i)",
    neo4j=f"""
UNWIND $edges AS e
MATCH (u:User {{id: e.user_id}})
MATCH (i:Item {{id: e.item_id}})
MERGE (u)-[r:INTERACTED]->(i)
ON CREATE SET {_INIT_DELTAS}
ON MATCH SET {_ADD_DELTAS}
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
