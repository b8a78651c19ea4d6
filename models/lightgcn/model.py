"""LightGCN on the bipartite user-item graph, normalised with externally supplied degrees.

The bipartite graph is handled as one homogeneous graph: users are nodes ``0..U-1`` and items are
nodes ``U..U+I-1``; each distinct user-item edge appears once in each direction.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.nn import LGConv


@dataclass(frozen=True, slots=True)
class BipartiteAdjacency:
    """The symmetric normalised adjacency ``D^{-1/2} A D^{-1/2}`` of a bipartite graph.

    Args:
        adj (Tensor): ``[U+I, U+I]`` sparse CSR tensor, users first, items after.
        num_users (int): ``U``.
        num_items (int): ``I``.
    """

    adj: Tensor
    num_users: int
    num_items: int


def distinct_edges(edge_user: np.ndarray, edge_item: np.ndarray,
                   num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated ``(user, item)`` pairs: LightGCN's adjacency is binary.

    Args:
        edge_user (np.ndarray): ``[E]`` user indices.
        edge_item (np.ndarray): ``[E]`` item indices.
        num_items (int): Number of items (to form one integer key per pair).
    """
    width = max(num_items, 1)
    key = np.unique(np.asarray(edge_user, dtype=np.int64) * width + np.asarray(edge_item, dtype=np.int64))
    return key // width, key % width


def bipartite_degrees(edge_user: np.ndarray, edge_item: np.ndarray, num_users: int,
                      num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Number of distinct neighbours of every user and item (edges must be distinct already)."""
    return (np.bincount(edge_user, minlength=num_users).astype(np.int64),
            np.bincount(edge_item, minlength=num_items).astype(np.int64))


def normalized_adjacency(edge_user: np.ndarray, edge_item: np.ndarray, user_degree: np.ndarray,
                         item_degree: np.ndarray, device: torch.device | str = "cpu") -> BipartiteAdjacency:
    """Build ``D^{-1/2} A D^{-1/2}`` from distinct edges and the given degrees.

    The degrees are taken as given rather than counted from the edges, so a subgraph can be
    normalised with its nodes' *full-graph* degrees: then every edge carries the same value as in
    the full graph and propagation over the subgraph reproduces the full-graph result near the
    seeds (see :func:`models.lightgcn.propagation.propagate_subgraph`). The adjacency is binary: edge
    weights from the store only decide which neighbours a capped fan-out keeps.

    Args:
        edge_user (np.ndarray): ``[E]`` user index of each distinct edge.
        edge_item (np.ndarray): ``[E]`` item index of each distinct edge.
        user_degree (np.ndarray): ``[U]`` degree of each user (``>= 1`` for users with edges).
        item_degree (np.ndarray): ``[I]`` degree of each item.
        device (torch.device or str): Where the tensor lives. (default: ``"cpu"``)
    """
    num_users, num_items = len(user_degree), len(item_degree)
    u = np.asarray(edge_user, dtype=np.int64)
    i = np.asarray(edge_item, dtype=np.int64)
    du = np.maximum(np.asarray(user_degree, dtype=np.float64), 1.0)
    di = np.maximum(np.asarray(item_degree, dtype=np.float64), 1.0)
    value = (1.0 / np.sqrt(du[u] * di[i])).astype(np.float32)
    row = np.concatenate([u, i + num_users])
    col = np.concatenate([i + num_users, u])
    adj = _csr(row, col, np.concatenate([value, value]), num_users + num_items)
    return BipartiteAdjacency(adj.to(device), num_users, num_items)


def _csr(row: np.ndarray, col: np.ndarray, value: np.ndarray, n: int) -> Tensor:
    """A CSR tensor from COO triplets whose pairs are distinct.

    The index work is done in numpy: it is single-threaded and fast, where torch's sort would
    contend for cores with the rest of the process.
    """
    order = np.argsort(row * n + col, kind="stable")
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n), out=crow[1:])
    with warnings.catch_warnings():
        # "Sparse CSR support is in beta": the CSR kernels are the fast CPU path we want.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(col[order]),
                                       torch.from_numpy(value[order]), (n, n), check_invariants=False)


def propagate(x: Tensor, graph: BipartiteAdjacency, num_layers: int, conv: LGConv | None = None) -> Tensor:
    """LightGCN layer combination: ``mean_{k=0..K} (D^{-1/2} A D^{-1/2})^k x``.

    Args:
        x (Tensor): ``[U+I, d]`` base (layer-0) embeddings, users first.
        graph (BipartiteAdjacency): The normalised adjacency.
        num_layers (int): ``K``.
        conv (LGConv, optional): The convolution (``normalize=False``). (default: a new one)
    """
    conv = conv or LGConv(normalize=False)
    out = x
    h = x
    for _ in range(num_layers):
        h = _SymmetricConv.apply(h, graph.adj, conv) if h.requires_grad else conv(h, graph.adj)
        out = out + h
    return out / (num_layers + 1)


class _SymmetricConv(torch.autograd.Function):
    """``conv(x, adj)`` whose backward reuses ``adj``: the normalised adjacency is symmetric.

    Autograd of a CSR product would otherwise transpose (re-sort) the matrix on every backward,
    which costs ten times the product itself on CPU.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, adj: Tensor, conv: LGConv) -> Tensor:
        ctx.adj, ctx.conv = adj, conv
        return conv(x, adj)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return ctx.conv(grad, ctx.adj), None, None


class LightGCN(torch.nn.Module):
    r"""LightGCN from `"LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation" <https://arxiv.org/abs/2002.02126>`_ (He et al., SIGIR 2020).

    .. math::
        \mathbf{E}^{(k+1)} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2} \mathbf{E}^{(k)},
        \qquad \mathbf{E} = \sum_{k=0}^{K} \alpha_k \mathbf{E}^{(k)},
        \quad \alpha_k = \frac{1}{K+1}

    on the bipartite graph as one homogeneous graph (users ``0..U-1``, items ``U..U+I-1``), with
    binary ``A`` and a user-item score ``e_u \cdot e_i``. Unlike
    :class:`torch_geometric.nn.models.LightGCN`, the degrees in ``D`` come from outside
    (:func:`normalized_adjacency`), so the same module propagates exactly over k-hop subgraphs.

    Args:
        num_users (int): Number of users ``U``.
        num_items (int): Number of items ``I``.
        embedding_dim (int): Embedding width ``d``. (default: ``64``)
        num_layers (int): Propagation layers ``K``. (default: ``2``)
        init_std (float): Standard deviation of the normal initialisation. (default: ``0.1``)
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 2,
                 init_std: float = 0.1) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.num_layers = num_layers
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(num_items, embedding_dim)
        self.conv = LGConv(normalize=False)
        torch.nn.init.normal_(self.user_embedding.weight, std=init_std)
        torch.nn.init.normal_(self.item_embedding.weight, std=init_std)

    def base(self) -> Tensor:
        """``[U+I, d]`` layer-0 embeddings, users first."""
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight])

    def forward(self, graph: BipartiteAdjacency) -> tuple[Tensor, Tensor]:
        """Propagated ``(user_out [U, d], item_out [I, d])``."""
        out = propagate(self.base(), graph, self.num_layers, self.conv)
        return out[: self.num_users], out[self.num_users:]

    @staticmethod
    def bpr_loss(user: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """Bayesian personalised ranking: ``-mean log sigmoid(e_u.e_pos - e_u.e_neg)``."""
        return torch.nn.functional.softplus(-((user * pos).sum(-1) - (user * neg).sum(-1))).mean()
