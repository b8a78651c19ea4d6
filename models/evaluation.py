"""All-ranking top-k evaluation with LightGCN's exact metric definitions.

Every item is ranked for every user that has test items; the user's training items are masked
out first. Per user, with ``hits`` the test items among the top ``k``:

* ``recall = hits / |test items|`` and ``precision = hits / k``;
* ``ndcg = DCG / IDCG`` with ``DCG = sum over hit positions p (0-based) of 1 / log2(p + 2)`` and
  IDCG the DCG of ``min(|test items|, k)`` hits at the top;
* ``hit = 1`` if any test item is in the top ``k``.

Metrics are averaged over users with at least one test item (He et al., "LightGCN: Simplifying and
Powering Graph Convolution Network for Recommendation", SIGIR 2020, and its reference code).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

#: Scores ``[len(users), num_items]`` of a batch of user rows.
Scorer = Callable[[torch.Tensor], torch.Tensor]


def _csr_rows_to_mask(matrix: sp.csr_matrix, users: np.ndarray, device: torch.device) -> torch.Tensor:
    """Dense boolean ``[len(users), num_items]`` mask of the given rows' nonzeros."""
    rows = matrix[users]
    mask = torch.zeros((users.shape[0], matrix.shape[1]), dtype=torch.bool, device=device)
    row_index = np.repeat(np.arange(users.shape[0]), np.diff(rows.indptr))
    mask[torch.from_numpy(row_index).to(device), torch.from_numpy(rows.indices.astype(np.int64)).to(device)] = True
    return mask


def _discounts(k: int, device: torch.device) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=device))


def _batch_metrics(
    scores: torch.Tensor, train_mask: torch.Tensor, test_mask: torch.Tensor, k: int
) -> dict[str, torch.Tensor]:
    """Metric sums over the users of one batch (float64)."""
    scores = scores.masked_fill(train_mask, float("-inf"))
    top = torch.topk(scores, k, dim=1).indices
    hits = torch.gather(test_mask, 1, top).to(torch.float64)  # [b, k]
    n_test = test_mask.sum(dim=1).to(torch.float64)
    discounts = _discounts(k, scores.device)
    dcg = (hits * discounts).sum(dim=1)
    ideal_len = n_test.clamp(max=k).to(torch.int64)
    ideal = torch.cumsum(discounts, 0)[ideal_len - 1]
    n_hits = hits.sum(dim=1)
    return {
        "recall": (n_hits / n_test).sum(),
        "precision": (n_hits / k).sum(),
        "ndcg": (dcg / ideal).sum(),
        "hit": (n_hits > 0).to(torch.float64).sum(),
    }


def evaluate_scorer(
    scorer: Scorer,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int = 20,
    batch: int = 1024,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Evaluate any scorer (a function from user indices to item scores) under the LightGCN protocol.

    Args:
        scorer (Callable): maps an int64 tensor of user indices to ``[len(users), num_items]`` scores.
        train (scipy.sparse.csr_matrix): training interactions ``[num_users, num_items]``; masked.
        test (scipy.sparse.csr_matrix): held-out interactions, same shape.
        k (int, optional): cut-off of the ranking. (default: :obj:`20`)
        batch (int, optional): users scored per matrix product; bounds memory to
            ``batch * num_items`` floats. (default: :obj:`1024`)
        device (torch.device or str, optional): where scores and masks live. (default: :obj:`"cpu"`)

    Returns:
        ``dict(recall, ndcg, precision, hit, n_users)`` averaged over users with test items.
    """
    if train.shape != test.shape:
        raise ValueError(f"train {train.shape} and test {test.shape} must have the same shape")
    if not 0 < k <= train.shape[1]:
        raise ValueError(f"k must be in [1, num_items={train.shape[1]}], got {k}")
    device = torch.device(device)
    train, test = sp.csr_matrix(train), sp.csr_matrix(test)
    users = np.flatnonzero(test.getnnz(axis=1) > 0)
    totals = dict.fromkeys(("recall", "precision", "ndcg", "hit"), 0.0)
    for start in range(0, users.shape[0], batch):
        chunk = users[start : start + batch]
        scores = scorer(torch.from_numpy(chunk).to(device)).to(device)
        sums = _batch_metrics(
            scores, _csr_rows_to_mask(train, chunk, device), _csr_rows_to_mask(test, chunk, device), k
        )
        for name, value in sums.items():
            totals[name] += float(value)
    n_users = int(users.shape[0])
    result: dict[str, float] = {name: value / max(n_users, 1) for name, value in totals.items()}
    result["n_users"] = n_users
    return result


def evaluate(
    user_emb: np.ndarray | torch.Tensor,
    item_emb: np.ndarray | torch.Tensor,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int = 20,
    batch: int = 1024,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Evaluate dot-product embeddings: the score of (u, i) is ``user_emb[u] @ item_emb[i]``.

    Args:
        user_emb (numpy.ndarray or torch.Tensor): ``[num_users, d]`` user vectors.
        item_emb (numpy.ndarray or torch.Tensor): ``[num_items, d]`` item vectors.
        train (scipy.sparse.csr_matrix): training interactions; masked from the ranking.
        test (scipy.sparse.csr_matrix): held-out interactions.
        k (int, optional): cut-off of the ranking. (default: :obj:`20`)
        batch (int, optional): users per matrix product. (default: :obj:`1024`)
        device (torch.device or str, optional): where to compute; CUDA when available.
            (default: :obj:`None`)

    Returns:
        ``dict(recall, ndcg, precision, hit, n_users)`` as :func:`evaluate_scorer`.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    users_t = torch.as_tensor(user_emb, dtype=torch.float32, device=device)
    items_t = torch.as_tensor(item_emb, dtype=torch.float32, device=device)
    if users_t.shape[0] != train.shape[0] or items_t.shape[0] != train.shape[1]:
        raise ValueError(
            f"embeddings {tuple(users_t.shape)} x {tuple(items_t.shape)} do not match "
            f"the interaction matrix {train.shape}"
        )
    if users_t.shape[1] != items_t.shape[1]:
        raise ValueError(f"user width {users_t.shape[1]} != item width {items_t.shape[1]}")

    def scorer(users: torch.Tensor) -> torch.Tensor:
        return users_t[users] @ items_t.T

    return evaluate_scorer(scorer, train, test, k=k, batch=batch, device=device)
