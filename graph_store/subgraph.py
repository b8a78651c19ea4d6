"""Level-by-level k-hop expansion with a per-node fan-out cap, as one read transaction.

Each level sends one parameterised query per node kind over the whole frontier, or, for frontiers of
at most ``seek_max`` nodes, one per node through the primary key: a backend whose frontier filter scans
the node table (LadybugDB) reads a small neighbourhood faster that way at any size of graph.

A capped node keeps its ``fanout`` heaviest edges, ties broken by neighbour id, which is the neighbour
sampling of GraphSAGE (Hamilton et al., 2017) made deterministic. Degrees are full-graph distinct-
neighbour counts so that the symmetric normalisation of LightGCN (He et al., 2020),
``1 / sqrt(|N(u)| |N(i)|)``, computed on the subgraph equals the full-graph one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import numpy as np

from core.domain import NodeId, NodeKind, NodeRef, Subgraph
from graph_store import cypher
from graph_store.cypher import Dialect

_OTHER = {NodeKind.USER: NodeKind.ITEM, NodeKind.ITEM: NodeKind.USER}


class Runner(Protocol):
    """Runs one statement inside the current transaction and returns its rows."""

    def run(self, stmt: Dialect, **params: Any) -> list[Sequence[Any]]: ...


def top_neighbours(nbr_ids: Sequence[str], weights: Sequence[float], fanout: int | None) -> list[int]:
    """Positions of the ``fanout`` heaviest neighbours, ties by id (all of them if ``fanout`` is falsy)."""
    n = len(weights)
    if not fanout or n <= fanout:
        return list(range(n))
    w = np.asarray(weights, dtype=np.float64)
    # The fanout-th largest weight splits the list: everything heavier is in, ties go by id.
    kth = np.partition(w, n - fanout)[n - fanout]
    above = np.flatnonzero(w > kth).tolist()
    ties = sorted(np.flatnonzero(w == kth).tolist(), key=lambda j: nbr_ids[j])
    return above + ties[: fanout - len(above)]


class _Side:
    """The nodes of one kind found so far: handle -> local index, ids, hops, degrees."""

    def __init__(self) -> None:
        self.index: dict[Hashable, int] = {}
        self.ids: list[NodeId] = []
        self.hops: list[int] = []
        self.degree: dict[Hashable, int] = {}

    def add(self, handle: Hashable, node_id: NodeId, hop: int) -> int:
        """Local index of the node, adding it at ``hop`` if it is new."""
        local = self.index.get(handle)
        if local is None:
            local = self.index[handle] = len(self.ids)
            self.ids.append(node_id)
            self.hops.append(hop)
        return local

    def at_hop(self, hop: int) -> list[Hashable]:
        return [h for h, i in self.index.items() if self.hops[i] == hop]


class KHopExpansion:
    """Breadth-first expansion from ``seeds`` inside one read transaction.

    Args:
        tx (Runner): The open read transaction.
        hops (int): Number of levels to expand (``0`` = the seeds alone).
        fanout (int | None): Most neighbours each expanded node contributes, heaviest first
            (default: ``None``, all; ``0`` also means all).
        seek_max (int): Frontiers of at most this many nodes are read one node at a time, by id
            (default: ``0``, never).
    """

    def __init__(self, tx: Runner, hops: int, fanout: int | None = None, seek_max: int = 0) -> None:
        if hops < 0:
            raise ValueError(f"hops must be >= 0, got {hops}")
        if fanout is not None and fanout < 0:
            raise ValueError(f"fanout must be >= 0 or None, got {fanout}")
        self.tx = tx
        self.hops = hops
        self.fanout = fanout or None
        self.seek_max = seek_max
        self.sides = {NodeKind.USER: _Side(), NodeKind.ITEM: _Side()}
        # (local user, local item) -> weight; a dict so an edge seen from both ends counts once.
        self.edges: dict[tuple[int, int], float] = {}

    def run(self, seeds: Sequence[NodeRef]) -> Subgraph:
        self._add_seeds(seeds)
        for hop in range(self.hops):
            for kind, side in self.sides.items():
                frontier = side.at_hop(hop)
                if frontier:
                    self._expand(kind, frontier, hop)
        self._fill_degrees()
        if self.fanout is None:
            self._add_induced_edges()
        return self._result()

    def _add_seeds(self, seeds: Sequence[NodeRef]) -> None:
        for kind, side in self.sides.items():
            ids = sorted({ref.id for ref in seeds if ref.kind == kind})
            if not ids:
                continue
            rows = self.tx.run(cypher.RESOLVE_NODES[kind], ids=ids)
            handles: dict[str, Hashable] = {node_id: handle for node_id, handle in rows}
            # Seeds in producer order keep local indices stable for callers; unknown ids are skipped.
            for ref in seeds:
                if ref.kind == kind and ref.id in handles:
                    side.add(handles[ref.id], ref.id, 0)

    def _expand(self, kind: NodeKind, frontier: list[Hashable], hop: int) -> None:
        # The innermost loop of the whole refresh: names are bound locally on purpose.
        side, other = self.sides[kind], self.sides[_OTHER[kind]]
        edges, add, fanout, from_user = self.edges, other.add, self.fanout, kind == NodeKind.USER
        for handle, nbr_handles, nbr_ids, weights in self._neighbour_lists(kind, frontier):
            side.degree[handle] = len(set(nbr_handles))
            local = side.index[handle]
            picks = top_neighbours(nbr_ids, weights, fanout) if fanout and len(weights) > fanout else None
            for j in range(len(weights)) if picks is None else picks:
                nbr = add(nbr_handles[j], nbr_ids[j], hop + 1)
                edges[(local, nbr) if from_user else (nbr, local)] = weights[j]

    def _fill_degrees(self) -> None:
        """Degrees of nodes never expanded (the last level, or all nodes when ``hops`` is 0)."""
        for kind, side in self.sides.items():
            missing = [h for h in side.index if h not in side.degree]
            if missing:
                if len(missing) > self.seek_max:
                    rows = self.tx.run(cypher.DEGREES[kind], handles=missing)
                    side.degree.update((handle, int(degree)) for handle, degree in rows)
                else:
                    side.degree.update((handle, len(set(nbr_handles)))
                                       for handle, nbr_handles, _, _ in self._neighbour_lists(kind, missing))

    def _neighbour_lists(self, kind: NodeKind, handles: list[Hashable]) -> list[Sequence[Any]]:
        """(handle, neighbour handles, neighbour ids, weights) of each of ``handles`` that has edges:
        one query over all of them, or one primary-key seek per node for at most ``seek_max``."""
        if len(handles) > self.seek_max:
            return self.tx.run(cypher.NEIGHBOURS[kind], handles=handles)
        side = self.sides[kind]
        lists: list[Sequence[Any]] = []
        for handle in handles:
            rows = self.tx.run(cypher.NEIGHBOURS_OF_ONE[kind], id=side.ids[side.index[handle]])
            if rows:
                nbr_handles, nbr_ids, weights, _ = zip(*rows, strict=True)
                lists.append((rows[0][3], list(nbr_handles), list(nbr_ids), list(weights)))
        return lists

    def _add_induced_edges(self) -> None:
        """Without a cap every edge of an expanded node is in; only edges between two nodes of the
        last level are still missing."""
        users = self.sides[NodeKind.USER].at_hop(self.hops)
        items = self.sides[NodeKind.ITEM].at_hop(self.hops)
        if users and items:
            rows = self.tx.run(cypher.EDGES_BETWEEN, user_handles=users, item_handles=items)
            user_index, item_index = self.sides[NodeKind.USER].index, self.sides[NodeKind.ITEM].index
            for user_handle, item_handle, weight in rows:
                self.edges[(user_index[user_handle], item_index[item_handle])] = weight

    def _result(self) -> Subgraph:
        users, items = self.sides[NodeKind.USER], self.sides[NodeKind.ITEM]
        n = len(self.edges)
        pairs = np.fromiter(self.edges, dtype=np.dtype((np.int64, 2)), count=n).reshape(n, 2)
        return Subgraph(
            user_ids=users.ids,
            item_ids=items.ids,
            edge_user=pairs[:, 0].copy(),
            edge_item=pairs[:, 1].copy(),
            edge_weight=np.fromiter(self.edges.values(), dtype=np.float32, count=n),
            user_degree=_degrees(users),
            item_degree=_degrees(items),
            user_hops=np.asarray(users.hops, dtype=np.int64),
            item_hops=np.asarray(items.hops, dtype=np.int64),
        )


def _degrees(side: _Side) -> np.ndarray:
    out = np.zeros(len(side.ids), dtype=np.int64)
    for handle, i in side.index.items():
        out[i] = side.degree.get(handle, 0)
    return out
