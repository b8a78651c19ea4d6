"""BipartiteGNN: GraphSAGE's sparse and edge-index forms agree, users hold no parameters, both convs
train on CPU and on CUDA when present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.domain import EdgeSnapshot, NodeId
from models.inductive.checkpoint import InductiveCheckpoint
from models.inductive.model import CONVS, BipartiteEdges, BipartiteGNN
from models.inductive.refresh import InductiveRefresh
from models.inductive.train import InductiveTrainConfig, spectral_item_rows, train_inductive
from models.lightgcn.model import distinct_edges
from models.methods import METHODS, TRAINED_METHODS
from tests.models.test_refresh import CLUSTER_EDGES


def _random_graph(seed: int = 0) -> tuple[np.ndarray, np.ndarray, int, int]:
    rng = np.random.default_rng(seed)
    users, items = 30, 40
    user, item = distinct_edges(rng.integers(0, users, 200), rng.integers(0, items, 200), items)
    return user, item, users, items


def cluster_snapshot() -> EdgeSnapshot:
    users = sorted({u for u, _ in CLUSTER_EDGES})
    items = sorted({i for _, i in CLUSTER_EDGES})
    return EdgeSnapshot([NodeId(u) for u in users], [NodeId(i) for i in items],
                        np.array([users.index(u) for u, _ in CLUSTER_EDGES]),
                        np.array([items.index(i) for _, i in CLUSTER_EDGES]),
                        np.ones(len(CLUSTER_EDGES), np.float32))


def test_sage_on_the_sparse_adjacency_equals_message_scattering_with_the_same_gradients() -> None:
    user, item, users, items = _random_graph()
    torch.manual_seed(0)
    model = BipartiteGNN(items, dim=8, layers=2, conv="sage")
    outputs, grads = [], []
    for sparse in (False, True):
        model.zero_grad()
        edges = BipartiteEdges.build(user, item, users, items, sparse=sparse)
        z_user, z_item = model(edges, model.item_inputs(torch.arange(items)))
        (z_user.square().sum() + z_item.sum()).backward()
        outputs.append(torch.cat([z_user, z_item]).detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conv", ["sage", "gat"])
def test_a_user_is_its_items_and_an_unfitted_item_is_its_users(conv: str) -> None:
    torch.manual_seed(0)
    model = BipartiteGNN(3, dim=4, layers=2, conv=conv).eval()
    # Users 0 and 1 have the same items: the same vector, whatever their ids. Item 2 is unfitted (-1).
    edges = model.edges(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 2]), 3, 3)
    with torch.no_grad():
        z_user, z_item = model(edges, model.item_inputs(torch.tensor([0, 1, -1])))
    torch.testing.assert_close(z_user[0], z_user[1])
    assert not torch.allclose(z_user[0], z_user[2])
    assert torch.isfinite(z_item).all() and z_item[2].abs().sum() > 0  # from its user's (bias) messages


@pytest.mark.parametrize("conv", ["sage", "gat"])
def test_training_separates_the_clusters_and_a_saved_checkpoint_embeds_the_same(
        conv: str, device: torch.device, tmp_path) -> None:
    snapshot = cluster_snapshot()
    checkpoint = train_inductive(snapshot, InductiveTrainConfig(conv=conv, dim=16, epochs=60, lr=0.02,
                                                                batch_size=64), device=device)
    assert checkpoint.meta["loss"][-1] < checkpoint.meta["loss"][0]
    users, items = InductiveRefresh(checkpoint, device=str(device)).full(snapshot).rows
    user_vec = dict(zip(users.ids, users.vectors, strict=True))
    item_vec = dict(zip(items.ids, items.vectors, strict=True))
    # c0 users clicked a-items, c1 users b-items: each scores its own cluster's items higher.
    for user, own, other in (("c0-0", "a", "b"), ("c1-0", "b", "a")):
        mine = np.mean([user_vec[user] @ v for i, v in item_vec.items() if i.startswith(own)])
        theirs = np.mean([user_vec[user] @ v for i, v in item_vec.items() if i.startswith(other)])
        assert mine > theirs
    checkpoint.save(tmp_path)
    loaded = InductiveCheckpoint.load(tmp_path, conv)
    assert loaded.version == 1 and loaded.layers == 2 and loaded.dim == 16
    again = InductiveRefresh(loaded, device="cpu").full(snapshot).rows
    np.testing.assert_allclose(again[0].vectors, users.vectors, rtol=1e-4, atol=1e-5)


def test_spectral_init_starts_from_spectralcf_item_vectors_at_the_random_spread() -> None:
    snapshot = cluster_snapshot()
    user, item = distinct_edges(snapshot.user_index, snapshot.item_index, len(snapshot.item_ids))
    rows = spectral_item_rows(user, item, len(snapshot.user_ids), len(snapshot.item_ids), 16, torch.device("cpu"))
    assert rows.shape == (len(snapshot.item_ids), 16) and rows.std() == pytest.approx(0.1, rel=1e-3)
    # Items of one cluster lie together in the spectral space: a0 is closer to a1 than to b0.
    names = list(snapshot.item_ids)
    a0, a1, b0 = (rows[names.index(n)] for n in ("a0", "a1", "b0"))
    assert np.linalg.norm(a0 - a1) < np.linalg.norm(a0 - b0)
    checkpoint = train_inductive(snapshot, InductiveTrainConfig(dim=16, epochs=2, batch_size=64, init="spectral"))
    assert checkpoint.meta["init"] == "spectral"
    with pytest.raises(ValueError, match="init"):
        InductiveTrainConfig(init="warm")


def test_every_conv_is_a_method_a_model_dir_holds() -> None:
    assert set(CONVS) <= set(METHODS) and set(CONVS) <= set(TRAINED_METHODS)
