"""Edge decay: the half-life and reference time the stored weights are in, and the rebase.

Weights are stored in reference-time units (:class:`core.domain.EdgeDecay`). When the writers move
the reference up, every stored weight is multiplied by one factor and every node is stamped
changed: the refresh then recomputes what a rescaled weight feeds (items folded in from their
users), and nothing outside the store needs to hear of it but the caches of rows (``up``'s user
rows are told by the commit). Neo4j keeps the weight on the relationship only; LadybugDB in its
``Interaction`` tally too (Neo4j has no such nodes: that statement finds nothing there).
"""

from __future__ import annotations

from core.domain import NodeKind
from graph_store.cypher.dialect import Dialect, per_label, statement

_READ_DECAY = "MATCH (d:Decay {key: $key}) RETURN d.half_life_ms AS half_life_ms, d.ref_ms AS ref_ms"
#: The store's half-life (ms, 0 = no decay) and reference (epoch ms, 0 = none yet); no row = never declared.
READ_DECAY = statement("READ_DECAY", ladybug=_READ_DECAY, neo4j=_READ_DECAY, params=("key",))

_WRITE_DECAY = """
MERGE (d:Decay {key: $key})
SET d.half_life_ms = $half_life_ms, d.ref_ms = $ref_ms
"""
WRITE_DECAY = statement("WRITE_DECAY", ladybug=_WRITE_DECAY, neo4j=_WRITE_DECAY,
                        params=("key", "half_life_ms", "ref_ms"))

_SCALE_EDGES = "MATCH (:User)-[r:INTERACTED]->(:Item) SET r.weight = r.weight * $factor"
#: Every edge's weight times ``$factor`` (the rebase; Neo4j's tallies are these weights).
SCALE_EDGES = statement("SCALE_EDGES", ladybug=_SCALE_EDGES, neo4j=_SCALE_EDGES, params=("factor",))

_SCALE_TALLIES = "MATCH (p:Interaction) SET p.weight = p.weight * $factor"
#: LadybugDB's per-edge tallies, by the same factor.
SCALE_TALLIES = statement("SCALE_TALLIES", ladybug=_SCALE_TALLIES, neo4j=_SCALE_TALLIES, params=("factor",))


#: Every node of a kind stamped changed (their weights were rescaled).
STAMP_ALL: dict[NodeKind, Dialect] = per_label("STAMP_ALL_{LABEL}S", "MATCH (n:{label}) SET n.changed_seq = $seq",
                                               ("seq",))

__all__ = ["READ_DECAY", "SCALE_EDGES", "SCALE_TALLIES", "STAMP_ALL", "WRITE_DECAY"]
