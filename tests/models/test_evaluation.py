"""LightGCN-protocol metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.evaluation import evaluate, evaluate_scorer

#: Scores of 3 users for 5 items; user 2 has no test items and must not count.
SCORES = np.array(
    [
        [10.0, 5.0, 4.0, 3.0, 1.0],  # user 0: train {0}, test {1, 3}
        [0.0, 9.0, 1.0, 2.0, 8.0],  # user 1: train {1}, test {4, 2}
        [1.0, 2.0, 3.0, 4.0, 5.0],  # user 2: train {0}, no test
    ],
    dtype=np.float32,
)
TRAIN = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float32))
TEST = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [0, 0, 1, 0, 1], [0, 0, 0, 0, 0]], dtype=np.float32))


def as_embeddings(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-hot users and score-column items: their dot products are exactly ``scores``."""
    return np.eye(scores.shape[0], dtype=np.float32), scores.T.copy()


def test_hand_computed_metrics_at_2() -> None:
    # user 0: item 0 masked -> top-2 [1, 2]: one hit at rank 0 out of 2 test items.
    # user 1: item 1 masked -> top-2 [4, 3]: one hit at rank 0 out of 2 test items.
    result = evaluate(*as_embeddings(SCORES), TRAIN, TEST, k=2, device="cpu")
    idcg = 1.0 + 1.0 / math.log2(3)
    assert result["n_users"] == 2
    assert result["recall"] == pytest.approx(0.5)
    assert result["precision"] == pytest.approx(0.5)
    assert result["ndcg"] == pytest.approx(1.0 / idcg)
    assert result["hit"] == pytest.approx(1.0)


def test_hand_computed_metrics_at_3() -> None:
    # user 0: top-3 [1, 2, 3] -> hits at ranks 0 and 2; user 1: top-3 [4, 3, 2] -> hits at 0 and 2.
    result = evaluate(*as_embeddings(SCORES), TRAIN, TEST, k=3, device="cpu")
    dcg = 1.0 + 1.0 / math.log2(4)
    idcg = 1.0 + 1.0 / math.log2(3)  # min(|test|=2, k=3) = 2 ideal hits
    assert result["recall"] == pytest.approx(1.0)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["ndcg"] == pytest.approx(dcg / idcg)


def test_single_test_item_ideal_dcg_uses_min_of_test_and_k() -> None:
    scores = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    train = sp.csr_matrix((1, 3), dtype=np.float32)
    test = sp.csr_matrix(np.array([[0, 1, 0]], dtype=np.float32))
    result = evaluate(*as_embeddings(scores), train, test, k=3, device="cpu")
    assert result["recall"] == pytest.approx(1.0)
    assert result["ndcg"] == pytest.approx(1.0 / math.log2(3))  # hit at rank 1, IDCG = 1


def test_masked_train_item_never_counts_even_with_top_score() -> None:
    scores = np.array([[100.0, 1.0, 2.0]], dtype=np.float32)
    train = sp.csr_matrix(np.array([[1, 0, 0]], dtype=np.float32))
    test = sp.csr_matrix(np.array([[0, 1, 0]], dtype=np.float32))
    result = evaluate(*as_embeddings(scores), train, test, k=1, device="cpu")
    assert result["recall"] == 0.0 and result["hit"] == 0.0


def test_batching_does_not_change_results() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    train = sp.random(50, 30, density=0.2, random_state=1, format="csr", dtype=np.float32)
    test = sp.random(50, 30, density=0.1, random_state=2, format="csr", dtype=np.float32)
    test = test - test.multiply(train.astype(bool))
    whole = evaluate(users, items, train, test, k=5, batch=1000, device="cpu")
    one_by_one = evaluate(users, items, train, test, k=5, batch=1, device="cpu")
    assert whole == pytest.approx(one_by_one)


def test_evaluate_scorer_matches_dot_product_evaluation() -> None:
    dense = torch.from_numpy(SCORES)
    via_scorer = evaluate_scorer(lambda users: dense[users], TRAIN, TEST, k=2)
    assert via_scorer == pytest.approx(evaluate(*as_embeddings(SCORES), TRAIN, TEST, k=2, device="cpu"))


def test_shape_mismatches_are_rejected() -> None:
    users, items = as_embeddings(SCORES)
    with pytest.raises(ValueError, match="do not match"):
        evaluate(users[:2], items, TRAIN, TEST)
    with pytest.raises(ValueError, match="width"):
        evaluate(users, items[:, :2], TRAIN, TEST)
    with pytest.raises(ValueError, match="k must be"):
        evaluate(users, items, TRAIN, TEST, k=6)
