"""k_hop_subgraph against a pure-Python BFS (capped) and networkx (uncapped) on random graphs."""

from __future__ import annotations

import random
from collections import defaultdict

import networkx as nx
import numpy as np
import pytest

from core.domain import NodeId, NodeKind, NodeRef, Subgraph
from graph_store.cypher_store import CypherGraphStore
from graph_store.subgraph import top_neighbours
from tests.fixtures.store import IdFactory
from tests.graph_store.builders import OffsetClock, batch, delta

Node = tuple[NodeKind, str]


def _random_graph(store: CypherGraphStore, ids: IdFactory, group: str, seed: int) -> dict[tuple[str, str], float]:
    """~150 edges over 40 users and 30 items; few distinct weights so fan-out ties are common."""
    rng = random.Random(seed)
    weights: dict[tuple[str, str], float] = defaultdict(float)
    clock = OffsetClock()
    for _ in range(3):
        pairs = {(ids(f"u{rng.randrange(40)}"), ids(f"i{rng.randrange(30)}")) for _ in range(60)}
        deltas = [delta(u, i, rng.choice([0.5, 1.0, 2.0])) for u, i in pairs]
        store.apply_batch(batch(deltas, clock, group))
        for d in deltas:
            weights[(d.user_id, d.item_id)] += d.weight
    # A hub item gives fan-out caps something to cut.
    hub = [delta(ids(f"u{k}"), ids("hub"), 1.0 + (k % 3)) for k in range(40)]
    store.apply_batch(batch(hub, clock, group))
    for d in hub:
        weights[(d.user_id, d.item_id)] += d.weight
    return dict(weights)


def _adjacency(weights: dict[tuple[str, str], float]) -> dict[Node, list[tuple[Node, float]]]:
    adj: dict[Node, list[tuple[Node, float]]] = defaultdict(list)
    for (u, i), w in weights.items():
        adj[(NodeKind.USER, u)].append(((NodeKind.ITEM, i), w))
        adj[(NodeKind.ITEM, i)].append(((NodeKind.USER, u), w))
    return adj


def _reference_capped(
    weights: dict[tuple[str, str], float], seeds: list[Node], hops: int, fanout: int
) -> tuple[dict[Node, int], set[tuple[str, str]]]:
    """Plain BFS: each expanded node keeps its ``fanout`` heaviest edges, ties by neighbour id."""
    adj = _adjacency(weights)
    hop = {s: 0 for s in seeds if s in adj}
    edges: set[tuple[str, str]] = set()
    for h in range(hops):
        for node in [n for n, d in hop.items() if d == h]:
            for nbr, _ in sorted(adj[node], key=lambda x: (-x[1], x[0][1]))[:fanout]:
                hop.setdefault(nbr, h + 1)
                edges.add((node[1], nbr[1]) if node[0] == NodeKind.USER else (nbr[1], node[1]))
    return hop, edges


def _reference_uncapped(
    weights: dict[tuple[str, str], float], seeds: list[Node], hops: int
) -> tuple[dict[Node, int], set[tuple[str, str]]]:
    graph = nx.Graph()
    graph.add_edges_from(((NodeKind.USER, u), (NodeKind.ITEM, i)) for u, i in weights)
    present = [s for s in seeds if s in graph]
    hop = dict(nx.multi_source_dijkstra_path_length(graph, present, cutoff=hops)) if present else {}
    induced = graph.subgraph(hop)
    edges = {(a[1], b[1]) if a[0] == NodeKind.USER else (b[1], a[1]) for a, b in induced.edges}
    return hop, edges


def _as_python(sub: Subgraph) -> tuple[dict[Node, int], dict[tuple[str, str], float], dict[Node, int]]:
    hops: dict[Node, int] = {(NodeKind.USER, u): int(h) for u, h in zip(sub.user_ids, sub.user_hops, strict=True)}
    hops |= {(NodeKind.ITEM, i): int(h) for i, h in zip(sub.item_ids, sub.item_hops, strict=True)}
    degrees: dict[Node, int] = {(NodeKind.USER, u): int(d) for u, d in zip(sub.user_ids, sub.user_degree, strict=True)}
    degrees |= {(NodeKind.ITEM, i): int(d) for i, d in zip(sub.item_ids, sub.item_degree, strict=True)}
    edges: dict[tuple[str, str], float] = {
        (sub.user_ids[u], sub.item_ids[i]): float(w)
        for u, i, w in zip(sub.edge_user, sub.edge_item, sub.edge_weight, strict=True)
    }
    assert len(edges) == sub.num_edges, "an edge appears twice"
    return hops, edges, degrees


@pytest.mark.parametrize("seek_max", [0, 1_000], ids=["frontier-queries", "node-seeks"])
@pytest.mark.parametrize("fanout", [None, 1, 3])
@pytest.mark.parametrize("hops", [0, 1, 2, 3])
def test_k_hop_matches_reference_bfs(
    store: CypherGraphStore, store_ids: IdFactory, store_prefix: str, hops: int, fanout: int | None, seek_max: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both reads of a frontier, whole (one query per kind) and node by node (primary-key seeks).
    monkeypatch.setattr(store, "frontier_seek_max", seek_max)
    weights = _random_graph(store, store_ids, store_prefix + "g", seed=hops * 10 + (fanout or 0))
    seeds: list[Node] = [(NodeKind.USER, store_ids("u1")), (NodeKind.ITEM, store_ids("i2"))]
    seeds.append((NodeKind.USER, store_ids("never-seen")))  # unknown seeds are skipped

    sub = store.k_hop_subgraph([NodeRef(k, NodeId(i)) for k, i in seeds], hops, fanout=fanout)
    got_hops, got_edges, got_degrees = _as_python(sub)

    if fanout is None:
        want_hops, want_edges = _reference_uncapped(weights, seeds, hops)
    else:
        want_hops, want_edges = _reference_capped(weights, seeds, hops, fanout)
    assert got_hops == want_hops
    assert set(got_edges) == want_edges
    assert all(got_edges[e] == pytest.approx(weights[e]) for e in got_edges)
    adj = _adjacency(weights)
    assert got_degrees == {node: len(adj[node]) for node in got_hops}  # full-graph, not in-subgraph
    assert sub.edge_user.dtype == sub.edge_item.dtype == sub.user_hops.dtype == np.int64
    assert sub.edge_weight.dtype == np.float32
    # Seeds come first, in the order given.
    assert sub.user_ids[0] == store_ids("u1")
    assert sub.item_ids[0] == store_ids("i2")


def test_degrees_count_distinct_neighbours_outside_the_subgraph(
    store: CypherGraphStore, store_ids: IdFactory, store_prefix: str
) -> None:
    u, hub = store_ids("u"), store_ids("hub")
    others = [delta(store_ids(f"o{k}"), hub) for k in range(5)]
    store.apply_batch(batch([delta(u, hub), *others], OffsetClock(), store_prefix + "g"))
    sub = store.k_hop_subgraph([NodeRef(NodeKind.USER, u)], hops=1, fanout=None)
    assert sub.user_ids == [u] and sub.item_ids == [hub]
    assert sub.item_degree.tolist() == [6]
    assert sub.user_degree.tolist() == [1]
    assert sub.item_hops.tolist() == [1]


def test_empty_and_invalid_requests(store: CypherGraphStore, store_ids: IdFactory) -> None:
    sub = store.k_hop_subgraph([NodeRef(NodeKind.USER, store_ids("ghost"))], hops=2)
    assert sub.user_ids == [] and sub.item_ids == [] and sub.num_edges == 0
    with pytest.raises(ValueError, match="hops"):
        store.k_hop_subgraph([], hops=-1)
    with pytest.raises(ValueError, match="fanout"):
        store.k_hop_subgraph([], hops=1, fanout=-2)


@pytest.mark.parametrize(
    ("weights", "fanout", "expected"),
    [
        ([1.0, 3.0, 2.0], None, [0, 1, 2]),
        ([1.0, 3.0, 2.0], 0, [0, 1, 2]),
        ([1.0, 3.0, 2.0], 5, [0, 1, 2]),
        ([1.0, 3.0, 2.0], 2, [1, 2]),
        ([2.0, 2.0, 2.0, 5.0], 2, [3, 2]),  # the tie at 2.0 goes to the smallest id ("a")
    ],
)
def test_top_neighbours(weights: list[float], fanout: int | None, expected: list[int]) -> None:
    ids = ["c", "b", "a", "d"][: len(weights)]
    assert sorted(top_neighbours(ids, weights, fanout)) == sorted(expected)
