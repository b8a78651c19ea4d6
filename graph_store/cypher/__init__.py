"""Every Cypher statement the stores send, LadybugDB and Neo4j versions side by side.

The statements live in one module per concern (:mod:`.ingest`, :mod:`.reads`, :mod:`.traversal`,
:mod:`.embeddings`, :mod:`.erasure`, :mod:`.decay`) and are all importable from here as ``cypher.NAME``.

A :class:`Dialect` holds one statement in both dialects plus the parameter names both take, so a
reader sees exactly where the dialects differ and a test (``tests/graph_store/test_cypher_lint.py``)
checks each Neo4j text with Neo4j's own parser and that the declared parameters are the ones used.
Ids and values only ever travel as ``$parameters``; labels are fixed words of this package.

Where the dialects differ, and why:

* **Schema.** LadybugDB (Kùzu lineage) has typed node/rel tables with a primary key; Neo4j is
  schema-free and gets uniqueness constraints and range indexes instead.
* **Finding many nodes by id.** ``UNWIND $ids AS x MATCH (n:T) WHERE n.id = x`` is a primary-key
  lookup in LadybugDB; the map-pattern form ``(n:T {id: e.id})`` next to a second pattern makes its
  planner build a cross product, so the LadybugDB texts spell lookups with ``WHERE``.
* **Upserting edges.** LadybugDB 0.22 loses relationships when one ``UNWIND … MERGE`` creates the
  endpoints and the relationship together, and a relationship ``MERGE`` joins against the whole
  relationship table. Both dialects therefore touch the nodes first, then add deltas to existing
  edges (returning which existed), then create the rest. In Neo4j the last step is a ``MERGE`` that
  also accumulates, which stays correct if a concurrent transaction created the edge meanwhile.
* **Where an edge's tallies live.** Neo4j keeps weight, counts and last timestamp on the
  ``INTERACTED`` relationship. LadybugDB updates a relationship property in both adjacency
  directions (about 15 µs per edge and property), so its ``INTERACTED`` carries only the
  ``weight`` the traversal ranks by, and the tallies live in an ``Interaction`` node found by
  primary key (:func:`graph_store.encode.interaction_key`); the weight is kept in both, in the
  same transaction. ``EDGE_TALLIES`` reads them by (user, item) pair in either dialect.
* **Batches as parameters.** Neo4j unwinds a list of maps (``UNWIND $edges AS e``). LadybugDB's
  Python binding converts such a list field by field under the GIL (about 33 ms for 1,000 edge
  rows), so its batch statements scan an Arrow table instead (``LOAD FROM $edges``, under 1 ms);
  callers pass the same rows and the LadybugDB runner builds the table (``Dialect.tables``).
* **Node handles for traversal.** LadybugDB filters a frontier fastest by internal offset
  (``offset(id(n)) IN $handles`` compares integers; ``n.id IN $ids`` compares strings), so its
  k-hop and snapshot statements return offsets as handles. Neo4j uses the indexed ``id`` itself.
* **Planner hints.** LadybugDB gets ``HINT (n JOIN r) JOIN m`` where scanning from the grouped side
  halves the cost; Neo4j plans these itself.
* **Integer parameters.** LadybugDB's Python binding narrows int parameters (``5`` is INT8), so a
  ``CASE`` that could return one is widened with ``to_int64``.
* **Vectors.** LadybugDB stores embeddings as float32 BLOBs (list columns update ~40x slower);
  Neo4j stores float lists. The backends encode them (:meth:`CypherGraphStore._encode_vector`).
"""

from __future__ import annotations

from graph_store.cypher import decay, embeddings, erasure, ingest, reads, traversal
from graph_store.cypher.decay import READ_DECAY, SCALE_EDGES, SCALE_TALLIES, STAMP_ALL, WRITE_DECAY
from graph_store.cypher.dialect import (
    LABELS,
    META_KEY,
    TYPE_COUNT_COLUMNS,
    Backend,
    Dialect,
    statement,
    type_columns,
)
from graph_store.cypher.embeddings import (
    ENSURE_NODES,
    READ_BASE_EMBEDDINGS,
    READ_EMBEDDINGS,
    WRITE_BASE_EMBEDDINGS,
    WRITE_EMBEDDINGS,
    WRITE_REFRESH_STATE,
)
from graph_store.cypher.erasure import (
    DELETE_TALLIES,
    DELETE_USERS,
    DENY,
    ERASED_AFTER,
    FORGOTTEN_SINCE,
    ITEMS_OF_USERS,
    PURGE_FORGOTTEN,
    STAMP_ITEMS,
)
from graph_store.cypher.ingest import (
    ADD_TO_EDGES,
    APPLIED_OFFSETS,
    BUMP_SEQ,
    CREATE_EDGES,
    INIT_META,
    LADYBUG_INTERACTED_INFO,
    LADYBUG_INTERACTED_PROPERTIES,
    LADYBUG_SCHEMA,
    LADYBUG_SHOW_TABLES,
    LADYBUG_TABLES,
    NEO4J_SCHEMA,
    READ_OFFSETS,
    TOUCH_NODES,
    UPSERT_ITEMS,
    WRITE_OFFSETS,
)
from graph_store.cypher.reads import (
    CHANGED_NODES,
    COLD_CATALOG_ITEMS,
    COUNT_EDGES,
    COUNT_NODES,
    EDGE_TALLIES,
    ITEM_META,
    META,
    SEEN_ITEMS,
    SNAPSHOT_EDGES,
    SNAPSHOT_ITEMS,
    USER_ROW,
)
from graph_store.cypher.traversal import (
    DEGREES,
    EDGES_BETWEEN,
    NEIGHBOURS,
    NEIGHBOURS_OF_ONE,
    RESOLVE_NODES,
)

__all__ = [
    "ADD_TO_EDGES",
    "APPLIED_OFFSETS",
    "BUMP_SEQ",
    "CHANGED_NODES",
    "COLD_CATALOG_ITEMS",
    "COUNT_EDGES",
    "COUNT_NODES",
    "CREATE_EDGES",
    "DEGREES",
    "DELETE_TALLIES",
    "DELETE_USERS",
    "DENY",
    "EDGES_BETWEEN",
    "EDGE_TALLIES",
    "ENSURE_NODES",
    "ERASED_AFTER",
    "FORGOTTEN_SINCE",
    "INIT_META",
    "ITEMS_OF_USERS",
    "ITEM_META",
    "LABELS",
    "LADYBUG_INTERACTED_INFO",
    "LADYBUG_INTERACTED_PROPERTIES",
    "LADYBUG_SCHEMA",
    "LADYBUG_SHOW_TABLES",
    "LADYBUG_TABLES",
    "META",
    "META_KEY",
    "NEIGHBOURS",
    "NEIGHBOURS_OF_ONE",
    "NEO4J_SCHEMA",
    "PURGE_FORGOTTEN",
    "READ_BASE_EMBEDDINGS",
    "READ_DECAY",
    "READ_EMBEDDINGS",
    "READ_OFFSETS",
    "RESOLVE_NODES",
    "SCALE_EDGES",
    "SCALE_TALLIES",
    "SEEN_ITEMS",
    "SNAPSHOT_EDGES",
    "SNAPSHOT_ITEMS",
    "STAMP_ALL",
    "STAMP_ITEMS",
    "TOUCH_NODES",
    "TYPE_COUNT_COLUMNS",
    "UPSERT_ITEMS",
    "USER_ROW",
    "WRITE_BASE_EMBEDDINGS",
    "WRITE_DECAY",
    "WRITE_EMBEDDINGS",
    "WRITE_OFFSETS",
    "WRITE_REFRESH_STATE",
    "Backend",
    "Dialect",
    "all_statements",
    "statement",
    "type_columns",
]


def all_statements() -> dict[str, Dialect]:
    """Every declared statement by name, from every statement module (the lint test walks this)."""
    found: dict[str, Dialect] = {}
    for module in (ingest, reads, traversal, embeddings, erasure, decay):
        for value in vars(module).values():
            candidates = value.values() if isinstance(value, dict) else (value,)
            for candidate in candidates:
                if isinstance(candidate, Dialect):
                    found[candidate.name] = candidate
    return found
