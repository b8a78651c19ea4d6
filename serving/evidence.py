"""Graph evidence for Explain and RecommendFriends, computed from one k-hop subgraph of the store.

Every edge gets the coefficient :math:`c_{xy} = w_{xy} / \\sqrt{d_x d_y}`: the store's edge weight
over the geometric mean of both ends' degrees (distinct neighbours), LightGCN's symmetric
normalisation (He et al., SIGIR 2020) with the edge weights kept, so popular items and busy users
count less. From it:

* an item :math:`j` of user :math:`u` contributes :math:`c_{uj} \\, (e_j^\\top e_i)` to item :math:`i`:
  its weight among :math:`u`'s items times its similarity to :math:`i`;
* a neighbour :math:`v` contributes the summed weight of the paths :math:`u \\to j \\to v \\to i`,
  :math:`\\sum_j c_{uj} c_{jv} c_{vi}`;
* a candidate friend :math:`v` has co-interaction :math:`\\sum_j c_{uj} c_{jv}`.

This ranks evidence; it does not decompose the score. Explain's score and rank are exact (the dot
product of the served embeddings), but the contributions do not sum to it, and neither model builds
a user's vector with these coefficients: ``SpectralCF`` (the default ``IG_MODEL_METHOD``) makes
:math:`e_u = \\sum_j (r_{uj} / d_j) \\, e_j` with the weighted item degrees of its fit, and
``LightGCN`` averages several layers of propagation over binary edges,
:math:`1 / \\sqrt{d_u d_j}`.

Degrees are the store's full-graph degrees (the subgraph carries them), so the coefficients equal
those of the whole graph even when ``fanout`` trims the neighbours read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.domain import NodeId, Subgraph
from serving.index import IndexSnapshot


@dataclass(frozen=True, slots=True)
class ItemContribution:
    item_id: NodeId
    contribution: float
    edge_weight: float
    similarity: float


@dataclass(frozen=True, slots=True)
class NeighbourContribution:
    user_id: NodeId
    contribution: float
    shared_items: int


@dataclass(frozen=True, slots=True)
class Friend:
    user_id: NodeId
    score: float
    embedding_similarity: float
    co_interaction: float
    shared_items: int


class NormalisedGraph:
    """A subgraph's edges with their coefficients :math:`w / \\sqrt{d_u d_i}`, indexed by producer ids.

    Args:
        subgraph (Subgraph): As returned by :meth:`GraphStore.k_hop_subgraph`.
    """

    def __init__(self, subgraph: Subgraph) -> None:
        self.items_of: dict[NodeId, dict[NodeId, float]] = defaultdict(dict)
        self.users_of: dict[NodeId, dict[NodeId, float]] = defaultdict(dict)
        self.weight: dict[tuple[NodeId, NodeId], float] = {}
        degree_u = np.maximum(subgraph.user_degree, 1).astype(np.float64)
        degree_i = np.maximum(subgraph.item_degree, 1).astype(np.float64)
        for u, i, w in zip(subgraph.edge_user.tolist(), subgraph.edge_item.tolist(),
                           subgraph.edge_weight.tolist(), strict=True):
            user, item = subgraph.user_ids[u], subgraph.item_ids[i]
            coefficient = w / float(np.sqrt(degree_u[u] * degree_i[i]))
            self.items_of[user][item] = coefficient
            self.users_of[item][user] = coefficient
            self.weight[(user, item)] = float(w)


def explain_items(
    graph: NormalisedGraph, snapshot: IndexSnapshot, user_id: NodeId, item_id: NodeId, limit: int
) -> list[ItemContribution]:
    """The user's items that pull ``item_id`` up (or down) the most, strongest ``|contribution|`` first."""
    target_row = snapshot.items.row(item_id)
    assert target_row is not None  # the servicer answered NOT_FOUND for an item the index lacks
    target = snapshot.items.gather(target_row)
    found = []
    for item, coefficient in graph.items_of.get(user_id, {}).items():
        row = snapshot.items.row(item)
        if row is None:
            continue
        similarity = float(snapshot.items.gather(row) @ target)
        found.append(ItemContribution(item, coefficient * similarity, graph.weight[(user_id, item)], similarity))
    found.sort(key=lambda c: (-abs(c.contribution), c.item_id))
    return found[:limit]


def explain_neighbours(
    graph: NormalisedGraph, user_id: NodeId, item_id: NodeId, limit: int
) -> list[NeighbourContribution]:
    """Users of ``item_id`` who share items with the user, by path weight ``u -> j -> v -> item``."""
    mine = graph.items_of.get(user_id, {})
    found = []
    for neighbour, to_item in graph.users_of.get(item_id, {}).items():
        if neighbour == user_id:
            continue
        theirs = graph.items_of.get(neighbour, {})
        shared = [j for j in mine if j in theirs and j != item_id]
        if shared:
            paths = sum(mine[j] * theirs[j] for j in shared) * to_item
            found.append(NeighbourContribution(neighbour, paths, len(shared)))
    found.sort(key=lambda c: (-c.contribution, c.user_id))
    return found[:limit]


def co_interactions(graph: NormalisedGraph, user_id: NodeId) -> dict[NodeId, tuple[float, int]]:
    """For every other user sharing an item: (path weight ``u -> j -> v`` summed, shared items)."""
    found: dict[NodeId, tuple[float, int]] = {}
    for item, to_item in graph.items_of.get(user_id, {}).items():
        for neighbour, from_item in graph.users_of.get(item, {}).items():
            if neighbour != user_id:
                weight, shared = found.get(neighbour, (0.0, 0))
                found[neighbour] = (weight + to_item * from_item, shared + 1)
    return found


#: Embeds another user on demand (request-time fold-in): their vector, or None if they have none.
VectorOf = Callable[[NodeId], np.ndarray | None]


def rank_friends(
    snapshot: IndexSnapshot, user_id: NodeId, me: np.ndarray, graph: NormalisedGraph, k: int, candidates: int,
    vector_of: VectorOf | None = None,
) -> list[Friend]:
    """Users ranked by ``(cosine of embeddings + co-interaction scaled to [0, 1]) / 2``; ``me`` is the
    user's embedding.

    Candidates are every user sharing an item in ``graph`` plus, from the stored user table, the
    ``candidates`` users with the most similar embeddings. When users are folded in at request time
    (``vector_of`` given) there is no table to search: the candidates are the ``candidates`` users
    of the most co-interaction, each embedded by ``vector_of``. The user never appears.
    """
    co = co_interactions(graph, user_id)
    best_co = max((w for w, _ in co.values()), default=0.0)
    cosine_of: Callable[[NodeId], float]
    if vector_of is None:
        nearest, cosine_of = _table_candidates(snapshot, user_id, me, candidates)
        pool = nearest | set(co)
    else:
        pool = set(sorted(co, key=lambda other: (-co[other][0], other))[:candidates])
        def cosine_of(other: NodeId) -> float:
            return _cosine(me, vector_of(other))
    friends = []
    for other in pool:
        weight, shared = co.get(other, (0.0, 0))
        scaled = weight / best_co if best_co > 0 else 0.0
        similarity = cosine_of(other)
        friends.append(Friend(other, (similarity + scaled) / 2.0, similarity, scaled, shared))
    friends.sort(key=lambda f: (-f.score, f.user_id))
    return friends[:k]


def _table_candidates(snapshot: IndexSnapshot, user_id: NodeId, me: np.ndarray,
                      candidates: int) -> tuple[set[NodeId], Callable[[NodeId], float]]:
    """The stored user table's ``candidates`` users nearest to ``me``, and the cosine of any user it holds."""
    users = snapshot.users
    cosine = users.scan(me) / np.maximum(users.norms() * float(np.linalg.norm(me)), 1e-12)
    cosine[~users.live_mask()] = -np.inf  # rows rewritten since, kept for older snapshots' readers
    own = users.row(user_id)
    if own is not None:
        cosine[own] = -np.inf
    take = min(candidates, int(np.isfinite(cosine).sum()))
    nearest = np.argpartition(-cosine, take - 1)[:take] if take > 0 else np.zeros(0, np.int64)

    def cosine_of(other: NodeId) -> float:
        row = users.row(other)
        return float(cosine[row]) if row is not None else 0.0

    return {users.ids[r] for r in nearest.tolist()}, cosine_of


def _cosine(a: np.ndarray, b: np.ndarray | None) -> float:
    if b is None:
        return 0.0
    return float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
