"""Erasure: forget users everywhere the store keeps them, and the deny-list of their digests.

A user's node carries their embedding and change-log stamp; ``DETACH DELETE`` takes it with every
``INTERACTED`` edge (Neo4j keeps the edge tallies on them). LadybugDB keeps tallies in
``Interaction`` nodes too, deleted by their keys (Neo4j has none: the statement finds nothing
there). The deny-list (``Forgotten``) holds only keyed hashes (:mod:`core.privacy`).
"""

from __future__ import annotations

from graph_store.cypher.dialect import Dialect, statement

_ITEMS_OF_USERS = """
UNWIND $ids AS user_id
MATCH (u:User)-[:INTERACTED]->(i:Item) WHERE u.id = user_id
RETURN DISTINCT u.id AS user_id, i.id AS item_id
"""
#: Every (user, item) edge of the users being forgotten: their items' aggregates must be refreshed.
ITEMS_OF_USERS = statement("ITEMS_OF_USERS", ladybug=_ITEMS_OF_USERS, neo4j=_ITEMS_OF_USERS, params=("ids",))

_DELETE_TALLIES = """
UNWIND $keys AS tally_key
MATCH (p:Interaction) WHERE p.key = tally_key
DELETE p
"""
#: LadybugDB's per-edge tallies of the forgotten users' edges, by their keys.
DELETE_TALLIES = statement("DELETE_TALLIES", ladybug=_DELETE_TALLIES, neo4j=_DELETE_TALLIES, params=("keys",))

_DELETE_USERS = """
UNWIND $ids AS user_id
MATCH (u:User) WHERE u.id = user_id
DETACH DELETE u
"""
#: The users' nodes (embedding, base embedding, change stamp) with every edge they have.
DELETE_USERS = statement("DELETE_USERS", ladybug=_DELETE_USERS, neo4j=_DELETE_USERS, params=("ids",))

_STAMP_ITEMS = """
UNWIND $ids AS item_id
MATCH (i:Item) WHERE i.id = item_id
SET i.changed_seq = $seq
"""
#: The items that lost an edge: the refresh recomputes them without the forgotten users.
STAMP_ITEMS = statement("STAMP_ITEMS", ladybug=_STAMP_ITEMS, neo4j=_STAMP_ITEMS, params=("ids", "seq"))

_DENY = """
UNWIND $rows AS row
MERGE (f:Forgotten {key: row.digest})
SET f.seq = $seq, f.expires_ms = row.expires_ms
"""
#: Deny-list entries: a digest, the sequence of its erasure and its expiry (epoch ms).
DENY = statement("DENY", ladybug=_DENY, neo4j=_DENY, params=("rows", "seq"))

_PURGE_FORGOTTEN = "MATCH (f:Forgotten) WHERE f.expires_ms <= $now_ms DELETE f"
#: Deny-list entries past their expiry (the events they denied have left Kafka's retention).
PURGE_FORGOTTEN = statement("PURGE_FORGOTTEN", ladybug=_PURGE_FORGOTTEN, neo4j=_PURGE_FORGOTTEN, params=("now_ms",))

_FORGOTTEN_SINCE = """
MATCH (f:Forgotten) WHERE f.seq > $since
RETURN f.key AS digest, f.seq AS seq, f.expires_ms AS expires_ms ORDER BY seq, digest
"""
#: Deny-list entries written after a sequence (refresh and serving drop those users).
FORGOTTEN_SINCE = statement("FORGOTTEN_SINCE", ladybug=_FORGOTTEN_SINCE, neo4j=_FORGOTTEN_SINCE, params=("since",))

_ERASED_AFTER = "MATCH (f:Forgotten) WHERE f.seq > $cursor RETURN count(f) AS erased"
#: How many erasures committed after a refresh cursor (an update computed before them must not
#: recreate a forgotten user's node).
ERASED_AFTER = statement("ERASED_AFTER", ladybug=_ERASED_AFTER, neo4j=_ERASED_AFTER, params=("cursor",))

__all__ = ["DELETE_TALLIES", "DELETE_USERS", "DENY", "ERASED_AFTER", "FORGOTTEN_SINCE", "ITEMS_OF_USERS",
           "PURGE_FORGOTTEN", "STAMP_ITEMS", "Dialect"]
