"""ScoreBatcher: concurrent exact scans share one product, each gets its own exact scores."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import serving.scoring
from serving.scoring import ScoreBatcher


def test_a_lone_caller_scores_at_once() -> None:
    batcher = ScoreBatcher()
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(batcher(matrix, np.ones(3, np.float32)), matrix.sum(axis=1))
    assert (batcher.products, batcher.queries) == (1, 1)


def test_callers_queued_behind_a_product_share_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    matrix, other = rng.random((50, 8), np.float32), rng.random((30, 8), np.float32)
    release = threading.Event()
    alone = serving.scoring.score_alone

    def slow_first(m: np.ndarray, v: np.ndarray) -> np.ndarray:
        release.wait(10)  # the leader's batch of one holds until every follower is queued
        return alone(m, v)

    monkeypatch.setattr(serving.scoring, "score_alone", slow_first)
    batcher = ScoreBatcher(max_batch=8)
    queries = rng.random((13, 8), np.float32)
    results: dict[int, np.ndarray] = {}

    def call(n: int) -> None:
        results[n] = batcher(other if n == 12 else matrix, queries[n])

    leader = threading.Thread(target=call, args=(0,))
    leader.start()
    while not batcher._leading:  # the test waits for the state it sets up
        time.sleep(0.001)
    followers = [threading.Thread(target=call, args=(n,)) for n in range(1, 13)]
    for thread in followers:
        thread.start()
    while len(batcher._queue) < 12:
        time.sleep(0.001)
    release.set()
    for thread in (leader, *followers):
        thread.join(10)
    for n in range(13):
        np.testing.assert_allclose(results[n], (other if n == 12 else matrix) @ queries[n], rtol=1e-5)
    # 1 (the leader alone) + 8 + 3 over the first matrix (max_batch 8) + 1 over the other one.
    assert batcher.queries == 13 and batcher.products == 4
    assert not batcher._leading and not batcher._queue


def test_a_failed_product_lets_each_caller_see_its_own_error() -> None:
    batcher = ScoreBatcher()
    with pytest.raises(ValueError):
        batcher(np.ones((4, 3), np.float32), np.ones(5, np.float32))
    np.testing.assert_array_equal(batcher(np.ones((2, 3), np.float32), np.ones(3, np.float32)), [3, 3])
