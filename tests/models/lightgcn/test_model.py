"""LightGCN propagation against an explicit dense D^-1/2 A D^-1/2 computation."""

from __future__ import annotations

import numpy as np
import torch

from models.lightgcn.model import LightGCN, bipartite_degrees, distinct_edges, normalized_adjacency, propagate
from tests.models.graphs import dense_lightgcn

# A small graph with a repeated edge, an isolated user (3) and an item nobody touched (4).
EDGES = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 2), (2, 3), (0, 1)]
NUM_USERS, NUM_ITEMS = 4, 5


def _graph(device: torch.device):
    user = np.array([e[0] for e in EDGES])
    item = np.array([e[1] for e in EDGES])
    user, item = distinct_edges(user, item, NUM_ITEMS)
    return normalized_adjacency(user, item, *bipartite_degrees(user, item, NUM_USERS, NUM_ITEMS), device)


def test_distinct_edges_merges_repeats() -> None:
    user, item = distinct_edges(np.array([0, 0, 1, 0]), np.array([1, 1, 0, 1]), 2)
    assert sorted(zip(user.tolist(), item.tolist(), strict=True)) == [(0, 1), (1, 0)]


def test_propagation_matches_dense_reference(device: torch.device) -> None:
    base = np.random.default_rng(0).standard_normal((NUM_USERS + NUM_ITEMS, 8)).astype(np.float32)
    for layers in (0, 1, 2, 3):
        out = propagate(torch.from_numpy(base).to(device), _graph(device), layers).cpu().numpy()
        expected = dense_lightgcn(EDGES, NUM_USERS, NUM_ITEMS, base, layers)
        np.testing.assert_allclose(out, expected, atol=1e-5)
    # Isolated nodes keep a 1/(K+1) share of their own base row and nothing else.
    np.testing.assert_allclose(out[3], base[3] / 4, atol=1e-6)


def test_module_forward_splits_users_and_items(device: torch.device) -> None:
    torch.manual_seed(0)
    model = LightGCN(NUM_USERS, NUM_ITEMS, embedding_dim=6, num_layers=2).to(device)
    user_out, item_out = model(_graph(device))
    base = model.base().detach().cpu().numpy()
    expected = dense_lightgcn(EDGES, NUM_USERS, NUM_ITEMS, base, 2)
    np.testing.assert_allclose(user_out.detach().cpu().numpy(), expected[:NUM_USERS], atol=1e-5)
    np.testing.assert_allclose(item_out.detach().cpu().numpy(), expected[NUM_USERS:], atol=1e-5)


def test_gradient_through_symmetric_product_matches_dense(device: torch.device) -> None:
    """The hand-written backward (reusing the symmetric adjacency) equals dense autograd."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((NUM_USERS + NUM_ITEMS, 4))
    weight = torch.from_numpy(rng.standard_normal((NUM_USERS + NUM_ITEMS, 4)))
    x = torch.tensor(base, dtype=torch.float32, device=device, requires_grad=True)
    (propagate(x, _graph(device), 2) * weight.float().to(device)).sum().backward()

    dense = torch.zeros(NUM_USERS + NUM_ITEMS, NUM_USERS + NUM_ITEMS, dtype=torch.float64)
    for u, i in set(EDGES):
        dense[u, NUM_USERS + i] = dense[NUM_USERS + i, u] = 1.0
    inv_sqrt = dense.sum(1).clamp(min=1).rsqrt()
    norm = inv_sqrt[:, None] * dense * inv_sqrt[None, :]
    xd = torch.tensor(base, requires_grad=True)
    ((xd + norm @ xd + norm @ (norm @ xd)) / 3 * weight).sum().backward()
    assert xd.grad is not None and x.grad is not None
    np.testing.assert_allclose(x.grad.cpu().numpy(), xd.grad.numpy(), atol=1e-5)


def test_external_degrees_set_edge_values(device: torch.device) -> None:
    """Degrees from outside (full graph) are used as given, not recounted from the edges."""
    graph = normalized_adjacency(np.array([0]), np.array([0]), np.array([4]), np.array([9]), device)
    dense = graph.adj.to_dense().cpu().numpy()
    np.testing.assert_allclose(dense[0, 1], 1 / 6, rtol=1e-6)
    np.testing.assert_allclose(dense[1, 0], 1 / 6, rtol=1e-6)


def test_bpr_loss_prefers_positive_above_negative() -> None:
    user = torch.tensor([[1.0, 0.0]])
    good = LightGCN.bpr_loss(user, torch.tensor([[2.0, 0.0]]), torch.tensor([[-2.0, 0.0]]))
    bad = LightGCN.bpr_loss(user, torch.tensor([[-2.0, 0.0]]), torch.tensor([[2.0, 0.0]]))
    assert float(good) < 0.02 < 4.0 < float(bad)
