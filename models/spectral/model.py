"""Training-free spectral graph filter for collaborative filtering, served as a dot product."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp
import torch

from models.runtime import require_fitted, resolve_device
from models.spectral.low_rank import TruncatedSVD, to_torch_csr, truncated_svd

#: Singular values below this fraction of the largest are treated as zero.
_RELATIVE_TOL = 1e-5


class SpectralCF:
    r"""Low-rank spectral graph filter on the normalised user-item graph, from
    `"How Powerful is Graph Convolution for Recommendation?" (GF-CF)
    <https://arxiv.org/abs/2108.07567>`_ (Shen et al., CIKM 2021), with a soft spectral weight
    instead of GF-CF's ideal low-pass plus full-rank linear filter, so that every score is a dot
    product of a user vector and an item vector.

    With the normalised interaction matrix and its truncated SVD

    .. math::
        \tilde{\mathbf{R}} = \mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}
        \approx \mathbf{U}_K \mathbf{\Sigma}_K \mathbf{V}_K^{\top},

    the score of user :math:`u` (interaction row :math:`\mathbf{r}_u`) for all items is

    .. math::
        \mathbf{s}_u = \mathbf{r}_u \mathbf{D}_I^{-1/2} \mathbf{V}_K \mathbf{\Sigma}_K^{p}
        \mathbf{V}_K^{\top} \mathbf{D}_I^{1/2}
        = \mathbf{e}_u \mathbf{E}_I^{\top},
        \quad \mathbf{e}_u = \mathbf{r}_u \mathbf{D}_I^{-1/2} \mathbf{V}_K \mathbf{\Sigma}_K^{p/2},
        \quad \mathbf{E}_I = \mathbf{D}_I^{1/2} \mathbf{V}_K \mathbf{\Sigma}_K^{p/2}.

    :math:`\mathbf{D}_I^{-1/2} \mathbf{V} g(\mathbf{\Sigma}) \mathbf{V}^{\top} \mathbf{D}_I^{1/2}` is a
    filter of the item-to-user-to-item random walk
    :math:`\mathbf{D}_I^{-1}\mathbf{R}^{\top}\mathbf{D}_U^{-1}\mathbf{R}`, whose eigenvalues are
    :math:`\sigma^2`: :math:`p = 0` is GF-CF's ideal low-pass term, :math:`p = 2` (full rank) its
    linear term, and the default :math:`p = 1` (the walk's square root) weights the spectrum softly,
    which keeps the result stable across ranks :math:`K`.

    User vectors are *linear* in the interaction row: a new interaction ``(u, i, w)`` adds
    ``w * user_projection[i]`` to :math:`\mathbf{e}_u`, and unseen users are embedded by
    :meth:`user_embedding`. New items are embedded from the users who interacted with them by
    :meth:`item_embedding` (:math:`\mathbf{E}_I = \mathbf{R}^{\top}\mathbf{D}_U^{-1/2}\mathbf{U}_K
    \mathbf{\Sigma}_K^{p/2-1}` holds exactly for fitted items).

    Args:
        rank (int, optional): number of singular triplets :math:`K`, i.e. the embedding width;
            clipped to the matrix size. (default: :obj:`992`, ``IG_SPECTRAL_RANK``'s)
        power (float, optional): spectral exponent :math:`p`. (default: :obj:`1.0`)
        oversample (int, optional): extra directions of the randomized SVD. (default: :obj:`64`)
        power_iters (int, optional): power iterations of the randomized SVD. (default: :obj:`4`)
        seed (int, optional): seed of the randomized SVD; fits are deterministic. (default: :obj:`0`)
        svd_method (str, optional): ``"auto"``, ``"dense"`` or ``"randomized"``, see
            :func:`~models.spectral.low_rank.truncated_svd`. (default: :obj:`"auto"`)
        device (torch.device or str, optional): where to compute; CUDA when available.
            (default: :obj:`None`)
    """

    def __init__(
        self,
        rank: int = 992,
        power: float = 1.0,
        oversample: int = 64,
        power_iters: int = 4,
        seed: int = 0,
        svd_method: str = "auto",
        device: torch.device | str | None = None,
    ) -> None:
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if oversample < 0 or power_iters < 0:
            raise ValueError("oversample and power_iters must be >= 0")
        self.rank = rank
        self.power = power
        self.oversample = oversample
        self.power_iters = power_iters
        self.seed = seed
        self.svd_method = svd_method
        self.device = resolve_device(device)
        self.singular_values: np.ndarray | None = None
        #: ``[num_items, d]``: row ``i`` is what one unit of interaction with item ``i`` adds to a user.
        self.user_projection: np.ndarray | None = None
        #: ``[num_users, d]``: row ``u`` is what one unit of interaction by user ``u`` adds to an item.
        self.item_projection: np.ndarray | None = None
        self.item_emb: np.ndarray | None = None

    # --- fitting ----------------------------------------------------------------------------

    def fit(self, train: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
        """Fit on ``train`` (``[num_users, num_items]``, values are edge weights) and embed everyone.

        Returns:
            ``(user_emb [num_users, d], item_emb [num_items, d])``, both ``float32``.
        """
        train = _checked_csr(train)
        user_degree, item_degree = _degrees(train)
        normalized = sp.diags(user_degree**-0.5) @ train @ sp.diags(item_degree**-0.5)
        svd = _positive(truncated_svd(
            normalized, self.rank, self.oversample, self.power_iters, seed=self.seed, device=self.device,
            method=self.svd_method,
        ))
        half = svd.S ** (self.power / 2)
        item_scale = torch.as_tensor(item_degree, dtype=torch.float32, device=self.device)
        user_scale = torch.as_tensor(user_degree, dtype=torch.float32, device=self.device)
        self.singular_values = svd.S.cpu().numpy()
        self.user_projection = _numpy((svd.V * half) * item_scale.rsqrt()[:, None])
        self.item_emb = _numpy((svd.V * half) * item_scale.sqrt()[:, None])
        # Sigma^(p/2-1) is finite because _positive() keeps only directions with a nonzero singular value.
        self.item_projection = _numpy(svd.U * (half / svd.S) * user_scale.rsqrt()[:, None])
        return self.user_embedding(train), self.item_emb

    # --- fold-in ----------------------------------------------------------------------------

    def user_embedding(self, rows: sp.spmatrix) -> np.ndarray:
        """Embed users from their interaction rows ``[n, num_items]`` (linear; exact for fitted users)."""
        projection = self._require(self.user_projection)
        rows = _checked_csr(rows, num_cols=projection.shape[0], what="user rows")
        return self._project(rows, projection)

    def item_embedding(self, columns: sp.spmatrix) -> np.ndarray:
        """Embed items from the fitted users who interacted with them, given item-major rows
        ``[n, num_users]`` (linear; exact for fitted items)."""
        projection = self._require(self.item_projection)
        columns = _checked_csr(columns, num_cols=projection.shape[0], what="item columns")
        return self._project(columns, projection)

    @property
    def dim(self) -> int:
        return int(self._require(self.user_projection).shape[1])

    def _project(self, rows: sp.csr_matrix, projection: np.ndarray) -> np.ndarray:
        dense = torch.as_tensor(projection, device=self.device)
        return _numpy(to_torch_csr(rows, self.device) @ dense)

    @staticmethod
    def _require(value: np.ndarray | None) -> np.ndarray:
        return require_fitted(value, "SpectralCF")

    # --- persistence ------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """The fitted arrays and the settings (a JSON string under ``config``), for ``np.savez``
        (:class:`~models.spectral.checkpoint.SpectralCheckpoint` saves them with the ids)."""
        config = {"rank": self.rank, "power": self.power, "oversample": self.oversample,
                  "power_iters": self.power_iters, "seed": self.seed, "svd_method": self.svd_method}
        return {"user_projection": self._require(self.user_projection),
                "item_projection": self._require(self.item_projection),
                "item_emb": self._require(self.item_emb),
                "singular_values": self._require(self.singular_values),
                "config": np.asarray(json.dumps(config))}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], device: torch.device | str | None = None) -> SpectralCF:
        """The model :meth:`state` described (``KeyError``/``ValueError`` if arrays are missing)."""
        model = cls(**json.loads(str(state["config"])), device=device)
        model.user_projection = np.asarray(state["user_projection"], dtype=np.float32)
        model.item_projection = np.asarray(state["item_projection"], dtype=np.float32)
        model.item_emb = np.asarray(state["item_emb"], dtype=np.float32)
        model.singular_values = np.asarray(state["singular_values"], dtype=np.float32)
        if model.user_projection.shape[1:] != model.item_emb.shape[1:] or \
                model.item_projection.shape[1:] != model.item_emb.shape[1:]:
            raise ValueError("SpectralCF arrays differ in width")
        return model


def _checked_csr(matrix: sp.spmatrix, num_cols: int | None = None, what: str = "train") -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise TypeError(f"{what} must be a scipy sparse matrix, got {type(matrix).__name__}")
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    if num_cols is not None and csr.shape[1] != num_cols:
        raise ValueError(f"{what} have {csr.shape[1]} columns, the fitted model expects {num_cols}")
    if csr.nnz and (not np.isfinite(csr.data).all() or (csr.data < 0).any()):
        raise ValueError(f"{what} must hold finite, non-negative interaction weights")
    return csr


def _positive(svd: TruncatedSVD) -> TruncatedSVD:
    """Drop numerically-zero directions: they carry no signal and Σ^{p/2-1} would blow up on them."""
    threshold = _RELATIVE_TOL * svd.S.max().clamp(min=torch.finfo(svd.S.dtype).tiny)
    keep = torch.gt(svd.S, threshold)
    return TruncatedSVD(U=svd.U[:, keep], S=svd.S[keep], V=svd.V[:, keep])


def _degrees(train: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Weighted degrees; isolated nodes get 1 so their (all-zero) rows stay finite."""
    user_degree = np.asarray(train.sum(axis=1), dtype=np.float64).ravel()
    item_degree = np.asarray(train.sum(axis=0), dtype=np.float64).ravel()
    user_degree[user_degree <= 0] = 1.0
    item_degree[item_degree <= 0] = 1.0
    return user_degree, item_degree


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()
