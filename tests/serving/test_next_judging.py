"""The judging thread: its token bucket, a bad case that does not end it, stopping, and the batch sample."""

from __future__ import annotations

import numpy as np

from core.domain import EmbeddingRows, NodeId, NodeKind
from serving.blending import BlendPolicy
from serving.index import EmbeddingIndex
from serving.mix_judge import MixJudge
from serving.next_judging import JudgedCase, NextItemsJudging, sampled
from serving.trending import TrendingItems


def judging(per_s: float = 20.0) -> NextItemsJudging:
    rng = np.random.default_rng(2)
    index = EmbeddingIndex()
    index.apply(EmbeddingRows(NodeKind.USER, [], np.zeros((0, 4), np.float32)),
                EmbeddingRows(NodeKind.ITEM, [NodeId(f"i{n}") for n in range(30)],
                              rng.normal(size=(30, 4)).astype(np.float32)), version=1, written_ms=0)
    return NextItemsJudging(index, TrendingItems(0.0), BlendPolicy(10.0), MixJudge(min_events=1), per_s,
                            use_ann=False)


def case(vector: np.ndarray | None) -> JudgedCase:
    return JudgedCase(NodeId("i7"), 2, [NodeId("i1")], vector, ([NodeId("i7"), NodeId("i9")], np.asarray([2.0, 1.0])))


def test_the_bucket_grants_at_most_a_seconds_worth() -> None:
    bucket = judging(per_s=10.0)
    assert bucket.allowance(100) == 10
    assert bucket.allowance(100) == 0  # refilled at 10 a second: nothing yet
    assert judging(per_s=0.0).allowance(5) == 0


def test_a_bad_case_is_logged_and_judging_goes_on() -> None:
    thread = judging()
    try:
        thread.take(case(np.ones(3, np.float32)))  # the wrong width: its search fails
        thread.take(case(np.ones(4, np.float32)))
        thread.take(case(None))
        assert thread.drain()
        assert thread.captured == 3 and thread.judged == 2
    finally:
        thread.stop()
    assert thread.drain(0.1)


def test_sampled_spreads_over_the_batch() -> None:
    assert sampled(3, 16) == [0, 1, 2]
    assert sampled(100, 4) == [0, 25, 50, 75]
