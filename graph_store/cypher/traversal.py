"""k-hop subgraphs: frontiers travel as handles (LadybugDB: internal offsets, Neo4j: ids)."""

from __future__ import annotations

from core.domain import NodeKind
from graph_store.cypher.dialect import LABELS, Dialect, statement


def _resolve(label: str) -> Dialect:
    return statement(
        f"RESOLVE_{label.upper()}S",
        ladybug=f"UNWIND $ids AS x MATCH (n:{label}) WHERE n.id = x RETURN n.id AS id, offset(id(n)) AS handle",
        neo4j=f"MATCH (n:{label}) WHERE n.id IN $ids RETURN n.id AS id, n.id AS handle",
        params=("ids",),
    )


#: Handles of the seed nodes that exist.
RESOLVE_NODES: dict[NodeKind, Dialect] = {kind: _resolve(label) for kind, label in LABELS.items()}

_USER_SIDE = "MATCH (n:User)-[r:INTERACTED]->(m:Item)"
_ITEM_SIDE = "MATCH (m:User)-[r:INTERACTED]->(n:Item)"
_SIDES: dict[NodeKind, str] = {NodeKind.USER: _USER_SIDE, NodeKind.ITEM: _ITEM_SIDE}
# LadybugDB plans the scan from the smaller node table unless told otherwise; grouping by the
# frontier node is about twice as fast when the scan starts there (rows arrive grouped).
_FROM_N = "HINT (n JOIN r) JOIN m"


def _neighbours(kind: NodeKind) -> Dialect:
    # The two collect()s aggregate the same rows in the same order, so their lists stay aligned.
    return statement(
        f"{LABELS[kind].upper()}_NEIGHBOURS",
        ladybug=f"""
{_SIDES[kind]} WHERE offset(id(n)) IN $handles
{_FROM_N}
RETURN offset(id(n)) AS handle, collect(offset(id(m))) AS nbr_handles, collect(m.id) AS nbr_ids,
       collect(r.weight) AS weights
""",
        neo4j=f"""
{_SIDES[kind]} WHERE n.id IN $handles
RETURN n.id AS handle, collect(m.id) AS nbr_handles, collect(m.id) AS nbr_ids, collect(r.weight) AS weights
""",
        params=("handles",),
    )


#: Full neighbour lists (handles, ids, edge weights) of a frontier, one row per frontier node.
NEIGHBOURS: dict[NodeKind, Dialect] = {kind: _neighbours(kind) for kind in LABELS}


def _neighbours_of_one(kind: NodeKind) -> Dialect:
    # LadybugDB filters ``offset(id(n)) IN $handles`` by scanning the node table (about 1 ms at 20,000
    # nodes, 2-3 ms at 200,000), where ``n.id = $id`` seeks the primary key: 0.05-0.1 ms a node at
    # either size when the rows come back ungrouped (``collect`` adds 0.3-0.4 ms, the expansion groups
    # them). An ``UNWIND`` of ids in front of the pattern loses the seek (200 ms for 10 ids): one node a call.
    return statement(
        f"{LABELS[kind].upper()}_NEIGHBOURS_OF_ONE",
        ladybug=f"{_SIDES[kind]} WHERE n.id = $id "
        "RETURN offset(id(m)) AS nbr_handle, m.id AS nbr_id, r.weight AS weight, offset(id(n)) AS handle",
        neo4j=f"{_SIDES[kind]} WHERE n.id = $id RETURN m.id AS nbr_handle, m.id AS nbr_id, r.weight AS weight, "
        "n.id AS handle",
        params=("id",),
    )


#: One node's edges, found by id through the primary key, one row per edge: (neighbour handle,
#: neighbour id, weight, the node's handle). The small-frontier form of :data:`NEIGHBOURS`.
NEIGHBOURS_OF_ONE: dict[NodeKind, Dialect] = {kind: _neighbours_of_one(kind) for kind in LABELS}


def _degrees(kind: NodeKind) -> Dialect:
    # LadybugDB counts relationships (~40% faster than DISTINCT): its single serialised writer
    # never creates a second edge for a (user, item) pair. Neo4j writers may run concurrently.
    return statement(
        f"{LABELS[kind].upper()}_DEGREES",
        ladybug=f"{_SIDES[kind]} WHERE offset(id(n)) IN $handles {_FROM_N} "
        "RETURN offset(id(n)) AS handle, count(r) AS degree",
        neo4j=f"{_SIDES[kind]} WHERE n.id IN $handles RETURN n.id AS handle, count(DISTINCT m) AS degree",
        params=("handles",),
    )


#: Full-graph degrees (distinct neighbours) of nodes given by handle.
DEGREES: dict[NodeKind, Dialect] = {kind: _degrees(kind) for kind in LABELS}

#: Edges between two node sets given by handle (the induced edges of an uncapped subgraph).
EDGES_BETWEEN = statement(
    "EDGES_BETWEEN",
    ladybug="""
MATCH (u:User)-[r:INTERACTED]->(i:Item)
WHERE offset(id(u)) IN $user_handles AND offset(id(i)) IN $item_handles
RETURN offset(id(u)) AS user_handle, offset(id(i)) AS item_handle, r.weight AS weight
""",
    neo4j="""
MATCH (u:User)-[r:INTERACTED]->(i:Item)
WHERE u.id IN $user_handles AND i.id IN $item_handles
RETURN u.id AS user_handle, i.id AS item_handle, r.weight AS weight
""",
    params=("user_handles", "item_handles"),
)
