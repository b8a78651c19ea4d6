"""Truncated SVD: both paths agree with numpy's exact SVD and are deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.spectral.low_rank import truncated_svd


def low_rank_matrix(seed: int = 0) -> sp.csr_matrix:
    """A 300 x 200 sparse matrix with a clear spectral gap after 10 directions."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(300, 10)) @ rng.normal(size=(10, 200)) * 3.0 + rng.normal(size=(300, 200)) * 0.1
    dense[rng.random(dense.shape) < 0.3] = 0.0
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("method", ["dense", "randomized"])
def test_top_singular_values_match_numpy(method: str, device: torch.device) -> None:
    matrix = low_rank_matrix()
    expected = np.linalg.svd(matrix.toarray().astype(np.float64), compute_uv=False)[:10]
    svd = truncated_svd(matrix, rank=10, oversample=10, power_iters=3, device=device, method=method)
    np.testing.assert_allclose(svd.S.cpu().numpy(), expected, rtol=1e-3)
    # The triplets reconstruct the matrix as well as the exact rank-10 truncation.
    approx = (svd.U * svd.S) @ svd.V.T
    residual = np.linalg.norm(matrix.toarray() - approx.cpu().numpy())
    exact_residual = np.sqrt((np.linalg.svd(matrix.toarray().astype(np.float64), compute_uv=False)[10:] ** 2).sum())
    assert residual <= exact_residual * 1.01


def test_singular_vectors_are_orthonormal_and_consistent() -> None:
    matrix = low_rank_matrix(1)
    svd = truncated_svd(matrix, rank=8, method="randomized")
    eye = torch.eye(8)
    torch.testing.assert_close(svd.U.T @ svd.U, eye, atol=1e-4, rtol=0)
    torch.testing.assert_close(svd.V.T @ svd.V, eye, atol=1e-4, rtol=0)
    # Aᵀ U = V Σ holds exactly for the randomized factorisation: item fold-in relies on it.
    at_u = torch.from_numpy(matrix.T.toarray()) @ svd.U
    torch.testing.assert_close(at_u, svd.V * svd.S, atol=1e-3, rtol=1e-3)


def test_rank_is_clipped_and_seed_makes_it_deterministic() -> None:
    matrix = low_rank_matrix(2)
    assert truncated_svd(matrix, rank=10_000).S.shape == (200,)
    first = truncated_svd(matrix, rank=5, method="randomized", seed=4)
    second = truncated_svd(matrix, rank=5, method="randomized", seed=4)
    assert torch.equal(first.U, second.U) and torch.equal(first.S, second.S)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="rank"):
        truncated_svd(low_rank_matrix(), rank=0)
    with pytest.raises(ValueError, match="method"):
        truncated_svd(low_rank_matrix(), rank=3, method="arpack")
