"""Truncated SVD of a sparse matrix in torch (CPU or CUDA), deterministic for a given seed.

Randomized range finder with power iterations (Halko, Martinsson and Tropp, "Finding Structure with
Randomness", SIAM Review 2011, Algorithms 4.4 and 5.1). Small matrices take an exact dense SVD.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

#: Below this many entries a dense SVD is both exact and fast enough.
_DENSE_LIMIT = 20_000_000


@dataclass(frozen=True, slots=True)
class TruncatedSVD:
    """``A ≈ U diag(S) Vᵀ`` with the ``rank`` largest singular values in descending order."""

    U: torch.Tensor  # [m, rank]
    S: torch.Tensor  # [rank]
    V: torch.Tensor  # [n, rank]


def to_torch_csr(matrix: sp.spmatrix, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A scipy sparse matrix as a torch sparse CSR tensor on ``device``."""
    csr = sp.csr_matrix(matrix)
    with warnings.catch_warnings():
        # torch flags CSR support as beta on every construction; the ops used here are stable.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr.astype(np.int64)),
            torch.from_numpy(csr.indices.astype(np.int64)),
            torch.from_numpy(csr.data.astype(np.float32)),
            size=csr.shape,
            dtype=dtype,
            device=device,
            check_invariants=False,
        )


def _orthonormal(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(x, mode="reduced").Q


def truncated_svd(
    matrix: sp.spmatrix,
    rank: int,
    oversample: int = 64,
    power_iters: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    method: str = "auto",
) -> TruncatedSVD:
    """Top-``rank`` singular triplets of a sparse ``[m, n]`` matrix.

    Args:
        matrix (scipy.sparse.spmatrix): the matrix to factor.
        rank (int): number of singular triplets; clipped to ``min(m, n)``.
        oversample (int, optional): extra random directions; they make the trailing kept triplets
            accurate. (default: :obj:`64`)
        power_iters (int, optional): subspace iterations; each sharpens the separation between
            kept and dropped directions. (default: :obj:`4`)
        seed (int, optional): seed of the random test matrix. (default: :obj:`0`)
        device (torch.device or str, optional): where to compute. (default: :obj:`"cpu"`)
        method (str, optional): ``"dense"`` (exact), ``"randomized"``, or ``"auto"``: dense up to
            20 million entries. (default: :obj:`"auto"`)
    """
    m, n = matrix.shape
    rank = min(rank, m, n)
    if rank < 1:
        raise ValueError(f"rank must be >= 1 for a {m}x{n} matrix")
    device = torch.device(device)
    if method not in {"auto", "dense", "randomized"}:
        raise ValueError(f"method must be 'auto', 'dense' or 'randomized', got {method!r}")
    width = min(rank + oversample, m, n)
    if method == "dense" or (method == "auto" and m * n <= _DENSE_LIMIT):
        return _dense_svd(matrix, rank, device)
    a = to_torch_csr(matrix, device)
    a_t = to_torch_csr(sp.csr_matrix(matrix).T, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    omega = torch.randn(n, width, generator=generator, device=device)
    q = _orthonormal(a @ omega)
    for _ in range(power_iters):
        q = _orthonormal(a @ _orthonormal(a_t @ q))
    # B = Qᵀ A is small ([width, n]); its SVD gives A's: A ≈ Q B = (Q U_B) S V_Bᵀ.
    b = (a_t @ q).T
    u_b, s, v_bt = torch.linalg.svd(b, full_matrices=False)
    return TruncatedSVD(U=(q @ u_b)[:, :rank], S=s[:rank], V=v_bt[:rank].T.contiguous())


def _dense_svd(matrix: sp.spmatrix, rank: int, device: torch.device) -> TruncatedSVD:
    dense = torch.as_tensor(sp.csr_matrix(matrix).toarray(), dtype=torch.float32, device=device)
    u, s, vt = torch.linalg.svd(dense, full_matrices=False)
    return TruncatedSVD(U=u[:, :rank].contiguous(), S=s[:rank].contiguous(), V=vt[:rank].T.contiguous())
