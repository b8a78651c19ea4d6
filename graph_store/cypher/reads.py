"""Reads: single edges, a user's edges, catalog attributes, counts, the change log, snapshots."""

from __future__ import annotations

from core.domain import NodeKind
from graph_store.cypher.dialect import LABELS, Dialect, per_label, statement, type_columns


# --- reads -------------------------------------------------------------------------------------
def _tallies(var: str) -> str:
    return (f"{var}.weight AS weight, {var}.cnt AS cnt, {var}.last_ts AS last_ts, "
            + type_columns(f"{var}.{{c}} AS {{c}}"))


#: The stored tallies of given (user, item) pairs (rows with ``user_id``, ``item_id``, ``key``);
#: pairs without an edge return no row. LadybugDB keeps them in Interaction nodes found by key.
EDGE_TALLIES = statement(
    "EDGE_TALLIES",
    ladybug=f"""
LOAD FROM $pairs
MATCH (p:Interaction) WHERE p.key = key
RETURN p.user_id AS user_id, p.item_id AS item_id, {_tallies("p")}
""",
    neo4j=f"""
UNWIND $pairs AS pair
MATCH (u:User {{id: pair.user_id}})-[r:INTERACTED]->(i:Item {{id: pair.item_id}})
RETURN u.id AS user_id, i.id AS item_id, {_tallies("r")}
""",
    params=("pairs",),
)

_SEEN_ITEMS = "MATCH (u:User {id: $user_id})-[:INTERACTED]->(i:Item) RETURN i.id AS item_id ORDER BY item_id"
SEEN_ITEMS = statement("SEEN_ITEMS", ladybug=_SEEN_ITEMS, neo4j=_SEEN_ITEMS, params=("user_id",))

# The user's row as the models see it: every item with the accumulated edge weight.
_USER_ROW = """
MATCH (u:User {id: $user_id})-[r:INTERACTED]->(i:Item)
RETURN i.id AS item_id, r.weight AS weight ORDER BY item_id
"""
USER_ROW = statement("USER_ROW", ladybug=_USER_ROW, neo4j=_USER_ROW, params=("user_id",))

# ``title`` is only ever set by UPSERT_ITEMS: items known only from events have no catalog entry.
_ITEM_META = """
MATCH (i:Item) WHERE i.id IN $ids AND i.title IS NOT NULL
RETURN i.id AS id, i.title AS title, i.categories AS categories, i.text AS text
"""
ITEM_META = statement("ITEM_META", ladybug=_ITEM_META, neo4j=_ITEM_META, params=("ids",))

#: Catalog items nobody has interacted with whose embedding is missing or was written at or
#: before ``$written_up_to`` (cold start embeds them from text), in id order.
_COLD_CATALOG_ITEMS = """
MATCH (i:Item)
WHERE i.title IS NOT NULL AND coalesce(i.emb_version, 0) <= $written_up_to
  AND NOT EXISTS { MATCH (:User)-[:INTERACTED]->(i) }
RETURN i.id AS id, i.title AS title, i.categories AS categories, i.text AS text
ORDER BY id
LIMIT $limit
"""
COLD_CATALOG_ITEMS = statement("COLD_CATALOG_ITEMS", ladybug=_COLD_CATALOG_ITEMS, neo4j=_COLD_CATALOG_ITEMS,
                               params=("written_up_to", "limit"))

_META = """
MATCH (m:Meta {key: $key})
RETURN m.seq AS seq, m.emb_version AS emb_version, m.refresh_cursor AS refresh_cursor,
       m.written_ms AS written_ms
"""
META = statement("META", ladybug=_META, neo4j=_META, params=("key",))

COUNT_NODES: dict[NodeKind, Dialect] = per_label("COUNT_{LABEL}S", "MATCH (n:{label}) RETURN count(n) AS n")
_COUNT_EDGES = "MATCH (:User)-[r:INTERACTED]->(:Item) RETURN count(r) AS n"
COUNT_EDGES = statement("COUNT_EDGES", ladybug=_COUNT_EDGES, neo4j=_COUNT_EDGES)


# --- change log --------------------------------------------------------------------------------
def _changed(label: str) -> Dialect:
    text = f"""
MATCH (n:{label}) WHERE n.changed_seq > $since AND n.changed_seq <= $upto
RETURN n.id AS id, n.changed_seq AS seq
ORDER BY seq, id
LIMIT $limit
"""
    return statement(f"CHANGED_{label.upper()}S", ladybug=text, neo4j=text, params=("since", "upto", "limit"))


#: Nodes whose latest change has sequence in ``($since, $upto]``, oldest first.
CHANGED_NODES: dict[NodeKind, Dialect] = {kind: _changed(label) for kind, label in LABELS.items()}


# --- snapshot ----------------------------------------------------------------------------------
#: Items and their handles in one row (LadybugDB lists all, Neo4j only those with an edge); the
#: snapshot keeps the items that have edges.
SNAPSHOT_ITEMS = statement(
    "SNAPSHOT_ITEMS",
    ladybug="MATCH (i:Item) RETURN collect(offset(id(i))) AS handles, collect(i.id) AS ids",
    neo4j="MATCH (i:Item) WHERE EXISTS { (:User)-[:INTERACTED]->(i) } "
    "RETURN collect(i.id) AS handles, collect(i.id) AS ids",
)

#: Every edge, grouped by user: one row per user keeps the transfer compact.
SNAPSHOT_EDGES = statement(
    "SNAPSHOT_EDGES",
    ladybug="""
MATCH (u:User)-[r:INTERACTED]->(i:Item)
HINT (u JOIN r) JOIN i
RETURN u.id AS user_id, collect(offset(id(i))) AS item_handles, collect(r.weight) AS weights
""",
    neo4j="""
MATCH (u:User)-[r:INTERACTED]->(i:Item)
RETURN u.id AS user_id, collect(i.id) AS item_handles, collect(r.weight) AS weights
""",
)
