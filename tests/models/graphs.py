"""Reference computations for the GNN tests: dense LightGCN and a plain-Python k-hop subgraph."""

from __future__ import annotations

from collections import deque

import numpy as np

from core.domain import NodeId, Subgraph


def dense_lightgcn(edges: list[tuple[int, int]], num_users: int, num_items: int, base: np.ndarray,
                   layers: int) -> np.ndarray:
    """``mean_k (D^-1/2 A D^-1/2)^k base`` with an explicit dense matrix (float64), users first."""
    n = num_users + num_items
    adj = np.zeros((n, n))
    for u, i in set(edges):
        adj[u, num_users + i] = adj[num_users + i, u] = 1.0
    degree = adj.sum(1)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1)), 0.0)
    norm = inv_sqrt[:, None] * adj * inv_sqrt[None, :]
    out, h = base.astype(np.float64), base.astype(np.float64)
    for _ in range(layers):
        h = norm @ h
        out = out + h
    return out / (layers + 1)


def bfs_subgraph(edges: list[tuple[int, int]], num_users: int, num_items: int, seed_users: set[int],
                 seed_items: set[int], hops: int) -> tuple[Subgraph, np.ndarray, np.ndarray]:
    """The store's ``k_hop_subgraph`` contract without a fan-out cap: induced subgraph within ``hops``.

    Returns the subgraph and the global indices of its users and items.
    """
    distinct = sorted(set(edges))
    user_nbrs: list[list[int]] = [[] for _ in range(num_users)]
    item_nbrs: list[list[int]] = [[] for _ in range(num_items)]
    for u, i in distinct:
        user_nbrs[u].append(i)
        item_nbrs[i].append(u)
    dist = {("u", u): 0 for u in seed_users} | {("i", i): 0 for i in seed_items}
    queue = deque(dist)
    while queue:
        node = queue.popleft()
        if dist[node] == hops:
            continue
        kind, index = node
        nbrs = [("i", i) for i in user_nbrs[index]] if kind == "u" else [("u", u) for u in item_nbrs[index]]
        for nbr in nbrs:
            if nbr not in dist:
                dist[nbr] = dist[node] + 1
                queue.append(nbr)
    users = np.array(sorted(i for k, i in dist if k == "u"), dtype=np.int64)
    items = np.array(sorted(i for k, i in dist if k == "i"), dtype=np.int64)
    local_user = {g: n for n, g in enumerate(users)}
    local_item = {g: n for n, g in enumerate(items)}
    sub_edges = [(local_user[u], local_item[i]) for u, i in distinct if u in local_user and i in local_item]
    sub = Subgraph(
        user_ids=[NodeId(f"u{u}") for u in users], item_ids=[NodeId(f"i{i}") for i in items],
        edge_user=np.array([e[0] for e in sub_edges], dtype=np.int64),
        edge_item=np.array([e[1] for e in sub_edges], dtype=np.int64),
        edge_weight=np.ones(len(sub_edges), dtype=np.float32),
        user_degree=np.array([len(user_nbrs[u]) for u in users], dtype=np.int64),
        item_degree=np.array([len(item_nbrs[i]) for i in items], dtype=np.int64),
        user_hops=np.array([dist[("u", u)] for u in users], dtype=np.int64),
        item_hops=np.array([dist[("i", i)] for i in items], dtype=np.int64),
    )
    return sub, users, items


def weighted_one_hop(weights: dict[tuple[str, str], float], seed_users: set[str],
                     seed_items: set[str]) -> Subgraph:
    """The store's ``k_hop_subgraph(seeds, hops=1, fanout=None)`` over a ``{(user, item): weight}`` graph:
    the seeds, their neighbours, every edge among them, full degrees, seeds at hop 0."""
    users = set(seed_users) | {u for u, i in weights if i in seed_items}
    items = set(seed_items) | {i for u, i in weights if u in seed_users}
    user_ids, item_ids = sorted(users), sorted(items)
    local_user = {u: n for n, u in enumerate(user_ids)}
    local_item = {i: n for n, i in enumerate(item_ids)}
    edges = [(local_user[u], local_item[i], w) for (u, i), w in weights.items() if u in users and i in items]
    return Subgraph(
        user_ids=[NodeId(u) for u in user_ids], item_ids=[NodeId(i) for i in item_ids],
        edge_user=np.array([e[0] for e in edges], dtype=np.int64),
        edge_item=np.array([e[1] for e in edges], dtype=np.int64),
        edge_weight=np.array([e[2] for e in edges], dtype=np.float32),
        user_degree=np.array([sum(u == x for x, _ in weights) for u in user_ids], dtype=np.int64),
        item_degree=np.array([sum(i == x for _, x in weights) for i in item_ids], dtype=np.int64),
        user_hops=np.array([0 if u in seed_users else 1 for u in user_ids], dtype=np.int64),
        item_hops=np.array([0 if i in seed_items else 1 for i in item_ids], dtype=np.int64),
    )
