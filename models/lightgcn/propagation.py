"""LightGCN propagation over a k-hop subgraph or over the whole snapshot (inference only).

Exactness of incremental refresh
--------------------------------
With ``K`` layers, the output of node ``v`` depends on the base rows of nodes within ``K`` hops of
``v`` and on the normalised values ``1/sqrt(d_a d_b)`` of edges within ``K - 1`` hops. Take a
subgraph around some seeds that holds **every** node within ``2K`` hops of the seeds and every edge
touching a node within ``2K - 1`` hops (``k_hop_subgraph(seeds, hops=2K, fanout=None)``), and
normalise it with **full-graph** degrees. Then for every node within ``K`` hops of a seed, each
node its output depends on lies within ``2K - 1`` hops and sees all of its neighbours, so its
subgraph output equals its full-graph output exactly (up to float rounding).

Edges are only ever added, so an insert of ``(u, i)`` changes degrees of ``u`` and ``i`` and hence
outputs of nodes within ``K`` hops of them only: refreshing the nodes within ``K`` hops of the
changed nodes keeps every published embedding equal to a full propagation. A fan-out cap trades
this exactness for bounded work around hubs; edge weights decide which neighbours the cap keeps,
while propagation itself uses the binary adjacency.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from core.domain import EdgeSnapshot, Subgraph
from models.lightgcn.model import bipartite_degrees, distinct_edges, normalized_adjacency, propagate
from models.runtime import resolve_device


def propagate_subgraph(sub: Subgraph, user_base: Tensor | np.ndarray, item_base: Tensor | np.ndarray,
                       layers: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """LightGCN outputs of every node of ``sub``, normalised with its full-graph degrees.

    Only nodes within ``layers`` hops of the seeds are exact (see the module docs); the others
    are returned for completeness and must not be published.

    Args:
        sub (Subgraph): Nodes, distinct edges (repeats are merged) and full-graph degrees.
        user_base (Tensor or np.ndarray): ``[U, d]`` base rows aligned with ``sub.user_ids``.
        item_base (Tensor or np.ndarray): ``[I, d]`` base rows aligned with ``sub.item_ids``.
        layers (int): ``K``.
        device (torch.device or str, optional): (default: CUDA if present, else CPU)

    Returns:
        ``(user_out [U, d], item_out [I, d])`` float32 on CPU.
    """
    num_users, num_items = len(sub.user_ids), len(sub.item_ids)
    _check_rows(user_base, num_users, "user_base")
    _check_rows(item_base, num_items, "item_base")
    dev = resolve_device(device)
    edge_user, edge_item = distinct_edges(sub.edge_user, sub.edge_item, num_items)
    # Subgraph degrees can only be lower than full degrees; clamping keeps a stale store read
    # (degree counted before an edge landed) from producing a value above the full-graph one.
    user_degree = np.maximum(sub.user_degree, np.bincount(edge_user, minlength=num_users))
    item_degree = np.maximum(sub.item_degree, np.bincount(edge_item, minlength=num_items))
    graph = normalized_adjacency(edge_user, edge_item, user_degree, item_degree, dev)
    x = torch.cat([_as_tensor(user_base), _as_tensor(item_base)]).to(dev)
    with torch.no_grad():
        out = propagate(x, graph, layers).cpu()
    return out[:num_users], out[num_users:]


def propagate_full(snapshot: EdgeSnapshot, user_base: Tensor | np.ndarray, item_base: Tensor | np.ndarray,
                   layers: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """LightGCN outputs of every node of the snapshot (all exact).

    Args:
        snapshot (EdgeSnapshot): The whole graph.
        user_base (Tensor or np.ndarray): ``[U, d]`` aligned with ``snapshot.user_ids``.
        item_base (Tensor or np.ndarray): ``[I, d]`` aligned with ``snapshot.item_ids``.
        layers (int): ``K``.
        device (torch.device or str, optional): (default: CUDA if present, else CPU)
    """
    return propagate_subgraph(snapshot_as_subgraph(snapshot), user_base, item_base, layers, device)


def snapshot_as_subgraph(snapshot: EdgeSnapshot) -> Subgraph:
    """The whole graph as a :class:`Subgraph`: distinct edges, own degrees, every node at hop 0."""
    num_users, num_items = len(snapshot.user_ids), len(snapshot.item_ids)
    edge_user, edge_item = distinct_edges(snapshot.user_index, snapshot.item_index, num_items)
    user_degree, item_degree = bipartite_degrees(edge_user, edge_item, num_users, num_items)
    return Subgraph(user_ids=list(snapshot.user_ids), item_ids=list(snapshot.item_ids),
                    edge_user=edge_user, edge_item=edge_item,
                    edge_weight=np.ones(len(edge_user), dtype=np.float32),
                    user_degree=user_degree, item_degree=item_degree,
                    user_hops=np.zeros(num_users, dtype=np.int64),
                    item_hops=np.zeros(num_items, dtype=np.int64))


def _as_tensor(rows: Tensor | np.ndarray) -> Tensor:
    if isinstance(rows, Tensor):
        return rows.detach().float()
    return torch.from_numpy(np.asarray(rows, dtype=np.float32))


def _check_rows(rows: Tensor | np.ndarray, expected: int, name: str) -> None:
    if rows.shape[0] != expected or len(rows.shape) != 2:
        raise ValueError(f"{name} has shape {tuple(rows.shape)}, expected [{expected}, d]")
