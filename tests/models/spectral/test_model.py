"""SpectralCF: ranking quality on clustered data, exact fold-in, and agreement with the dense filter."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.evaluation import evaluate, evaluate_scorer
from models.spectral.model import SpectralCF

CLUSTERS, USERS_PER_CLUSTER, ITEMS_PER_CLUSTER = 4, 40, 30


def clustered_split(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Users click 12 items of their own cluster plus one random item; 3 in-cluster clicks are held out.

    Item popularity is skewed *against* the clusters (item 0 of every cluster is clicked by a
    quarter of all users), so popularity alone cannot find the held-out items.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items = CLUSTERS * USERS_PER_CLUSTER, CLUSTERS * ITEMS_PER_CLUSTER
    train, test = np.zeros((n_users, n_items), np.float32), np.zeros((n_users, n_items), np.float32)
    for user in range(n_users):
        offset = (user // USERS_PER_CLUSTER) * ITEMS_PER_CLUSTER
        own = offset + rng.choice(ITEMS_PER_CLUSTER, 12, replace=False)
        train[user, own[3:]] = 1.0
        test[user, own[:3]] = 1.0
        train[user, rng.integers(n_items)] = 1.0
    train[: n_users // 4, [c * ITEMS_PER_CLUSTER for c in range(CLUSTERS)]] = 1.0
    test[train > 0] = 0.0
    return sp.csr_matrix(train), sp.csr_matrix(test)


def dense_filter_scores(train: np.ndarray, power: float) -> np.ndarray:
    """``R D_I^{-1/2} (R̃ᵀR̃)^{p/2} D_I^{1/2}`` by a full eigendecomposition: the filter's definition."""
    du, di = train.sum(1).clip(min=1), train.sum(0).clip(min=1)
    normalized = train / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    eigval, eigvec = np.linalg.eigh(normalized.T @ normalized)
    keep = eigval > 1e-9
    root = (eigvec[:, keep] * eigval[keep] ** (power / 2)) @ eigvec[:, keep].T
    return (train / np.sqrt(di)) @ root * np.sqrt(di)


def test_ranks_held_out_cluster_items_far_above_popularity() -> None:
    train, test = clustered_split()
    user_emb, item_emb = SpectralCF(rank=16, device="cpu").fit(train)
    spectral = evaluate(user_emb, item_emb, train, test, k=10, device="cpu")
    popularity = torch.from_numpy(np.asarray(train.sum(0), dtype=np.float32))
    baseline = evaluate_scorer(lambda u: popularity.expand(len(u), -1), train, test, k=10)
    # 3 held-out items among 17 unseen in-cluster ones: a perfect cluster detector gets recall@10 ~ 10/17.
    assert spectral["recall"] > 0.4  # random ranking: 10 / 110 ~ 0.09
    assert spectral["recall"] > 3 * baseline["recall"]


def test_in_cluster_items_outscore_other_clusters() -> None:
    train, _ = clustered_split()
    user_emb, item_emb = SpectralCF(rank=16, device="cpu").fit(train)
    scores = user_emb @ item_emb.T
    cluster_of_item = np.arange(scores.shape[1]) // ITEMS_PER_CLUSTER
    for user in range(scores.shape[0]):
        own = cluster_of_item == user // USERS_PER_CLUSTER
        assert np.median(scores[user, own]) > np.median(scores[user, ~own])


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_dot_product_equals_dense_filter_at_full_rank(power: float, device: torch.device) -> None:
    train, _ = clustered_split(seed=1)
    user_emb, item_emb = SpectralCF(rank=10_000, power=power, device=device).fit(train)
    expected = dense_filter_scores(train.toarray().astype(np.float64), power)
    np.testing.assert_allclose(user_emb @ item_emb.T, expected, atol=2e-4 * np.abs(expected).max())


def test_power_two_is_the_item_user_item_random_walk() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1], [1, 1, 1, 0]],
                                   dtype=np.float32))
    user_emb, item_emb = SpectralCF(rank=4, power=2.0, device="cpu").fit(train)
    r = train.toarray().astype(np.float64)
    walk = r @ np.diag(1 / r.sum(0)) @ r.T @ np.diag(1 / r.sum(1)) @ r  # r_u D_I^{-1} Rᵀ D_U^{-1} R
    np.testing.assert_allclose(user_emb @ item_emb.T, walk, atol=1e-5)


@pytest.mark.parametrize("svd_method", ["dense", "randomized"])
def test_user_fold_in_equals_fit_and_is_linear(svd_method: str) -> None:
    train, _ = clustered_split()
    model = SpectralCF(rank=12, svd_method=svd_method, device="cpu")
    user_emb, _ = model.fit(train)
    np.testing.assert_allclose(model.user_embedding(train[7:9]), user_emb[7:9], rtol=1e-5, atol=1e-6)
    a, b = train[3], sp.csr_matrix(([2.0], ([0], [5])), shape=(1, train.shape[1]))
    np.testing.assert_allclose(model.user_embedding(a + b), model.user_embedding(a) + model.user_embedding(b),
                               atol=1e-6)
    # One new click adds exactly one row of the projection: the incremental refresh of a user.
    np.testing.assert_allclose(model.user_embedding(b)[0], 2.0 * model.user_projection[5], atol=1e-6)


@pytest.mark.parametrize("svd_method", ["dense", "randomized"])
def test_item_fold_in_equals_fit(svd_method: str) -> None:
    train, _ = clustered_split()
    model = SpectralCF(rank=12, svd_method=svd_method, device="cpu")
    _, item_emb = model.fit(train)
    folded = model.item_embedding(sp.csr_matrix(train.T))
    np.testing.assert_allclose(folded, item_emb, atol=1e-4 * np.abs(item_emb).max())


def test_fit_is_deterministic_for_a_seed() -> None:
    train, _ = clustered_split()
    first = SpectralCF(rank=8, svd_method="randomized", seed=3, device="cpu").fit(train)
    second = SpectralCF(rank=8, svd_method="randomized", seed=3, device="cpu").fit(train)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[0].dtype == first[1].dtype == np.float32


def test_rank_deficient_graph_keeps_only_nonzero_directions() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
    model = SpectralCF(rank=3, device="cpu")
    user_emb, item_emb = model.fit(train)
    assert model.dim == 2
    assert np.isfinite(user_emb).all() and np.isfinite(item_emb).all()
    assert np.isfinite(model.item_projection).all()


def test_state_round_trip() -> None:
    """What a checkpoint saves (``state``) gives the same model back (``from_state``)."""
    train, _ = clustered_split()
    model = SpectralCF(rank=8, power=1.5, device="cpu")
    _, item_emb = model.fit(train)
    loaded = SpectralCF.from_state(model.state(), device="cpu")
    assert (loaded.rank, loaded.power) == (8, 1.5)
    np.testing.assert_array_equal(loaded.item_emb, item_emb)
    np.testing.assert_array_equal(loaded.user_embedding(train[:3]), model.user_embedding(train[:3]))


def test_bad_input_is_rejected_clearly() -> None:
    train, _ = clustered_split()
    model = SpectralCF(rank=4, device="cpu")
    with pytest.raises(RuntimeError, match="not fitted"):
        model.user_embedding(train)
    with pytest.raises(TypeError, match="scipy sparse"):
        model.fit(train.toarray())
    with pytest.raises(ValueError, match="non-negative"):
        model.fit(-train)
    model.fit(train)
    with pytest.raises(ValueError, match="columns"):
        model.user_embedding(sp.csr_matrix((1, train.shape[1] + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="rank"):
        SpectralCF(rank=0)
