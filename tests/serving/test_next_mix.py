"""The next-items mix: the judge's choice of weight, ranks under each weight, the served list at weight
0 equal to the blend's own, and Recommend through a real server learning a transition from commits."""

from __future__ import annotations

import numpy as np
import pytest

from core.domain import EdgeDelta, NodeId
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from proto import recommender_pb2 as pb
from serving.blending import BLENDED, PERSONAL, TRENDING, BlendPolicy, blended_search, trending_search
from serving.client import RecommenderClient
from serving.config import ServingConfig
from serving.next_mix import (
    LADDER,
    NextItemsJudge,
    NextRows,
    candidates,
    next_search,
    ranks_by_weight,
    sampled,
    served_search,
)
from serving.search import ItemQuery, search
from serving.server import start_serving
from serving.trending import TrendingItems
from tests.serving.conftest import EmbeddingWriter
from tests.serving.test_search import snapshot_of

NOTHING = np.zeros(0, np.int64)


def judged(judge: NextItemsJudge, interactions: int, hit_from: float, times: int) -> None:
    """``times`` events where every weight from ``hit_from`` up listed the item first, the others not at all."""
    for _ in range(times):
        judge.judge(interactions, [0 if b >= hit_from else None for b in LADDER])


def test_a_segment_serves_the_blend_until_it_has_judged_enough_events() -> None:
    judge = NextItemsJudge(min_events=10)
    judged(judge, 2, 1.0, 9)
    assert judge.weight(2) == 0.0 and judge.weight(60) == 0.0  # 9 judged in all
    judged(judge, 4, 1.0, 1)
    assert judge.weight(2) == 1.0  # the smallest of the weights with the most hits
    assert judge.weight(60) == 1.0  # a segment short of events goes by all segments' hits
    judged(judge, 60, 0.0, 10)  # every weight hit alike: nothing beats the blend alone
    assert judge.weight(60) == 0.0 and judge.weight(2) == 1.0
    with pytest.raises(ValueError):
        judge.judge(2, [0])


def test_a_weight_needs_a_clear_margin_over_the_blend_alone() -> None:
    """McNemar's paired test: wins minus losses against the blend alone, over sqrt(wins + losses)."""
    judge = NextItemsJudge(min_events=0)
    judged(judge, 80, 0.0, 30)  # events every weight hit: no evidence either way
    judged(judge, 80, 2.0, 30)  # 30 won by the weights from 2 up...
    for _ in range(22):  # ...and 22 lost by them: 8 < 2 sqrt(52)
        judge.judge(80, [0 if b < 2.0 else None for b in LADDER])
    assert judge.weight(80) == 0.0
    judged(judge, 80, 2.0, 20)  # 28 >= 2 sqrt(72)
    assert judge.weight(80) == 2.0


def test_older_judgements_count_less() -> None:
    judge = NextItemsJudge(min_events=0, half_life_events=4.0)
    for _ in range(20):
        judge.judge(80, [0] + [None] * (len(LADDER) - 1))  # the blend alone hit
    assert judge.weight(80) == 0.0
    judged(judge, 80, LADDER[1], 40)  # then only the others
    assert judge.weight(80) == LADDER[1]
    assert NextItemsJudge.segment(5) == 0 and NextItemsJudge.segment(6) == 1 and NextItemsJudge.segment(51) == 2


def test_ranks_by_weight_match_a_sort() -> None:
    rng = np.random.default_rng(4)
    base, nexts = rng.random(40), rng.random(40)
    base[7] = base[3]  # a tie: the earlier candidate first
    for target in (3, 7, 20):
        got = ranks_by_weight(base, nexts, target, LADDER, 40)
        for beta, rank in zip(LADDER, got, strict=True):
            mixed = base + beta * nexts
            order = np.lexsort((np.arange(40), -mixed)).tolist()
            assert rank == order.index(target)
    assert ranks_by_weight(base, nexts, -1, LADDER, 10) == [None] * len(LADDER)
    assert ranks_by_weight(base, nexts, 5, (0.0,), 0) == [None]


def test_sampled_spreads_over_the_batch() -> None:
    assert sampled(3, 16) == [0, 1, 2]
    assert sampled(100, 4) == [0, 25, 50, 75]


def test_next_rows_are_read_sparse_on_the_snapshots_rows() -> None:
    snap = snapshot_of(np.zeros((0, 2)), np.eye(2).repeat(3, axis=0))  # items i0..i5
    nexts = NextRows.of(snap, ([NodeId("i4"), NodeId("gone"), NodeId("i1")], np.asarray([2.0, 9.0, 1.0])))
    assert nexts is not None and nexts.rows.tolist() == [4, 1]
    assert nexts.at(np.asarray([0, 1, 4, 5])).tolist() == [0.0, 1.0, 2.0, 0.0]
    assert NextRows.of(snap, ([NodeId("gone")], np.asarray([1.0]))) is None and NextRows.of(snap, None) is None


def scene() -> tuple:
    rng = np.random.default_rng(9)
    snap = snapshot_of(rng.normal(size=(3, 8)), rng.normal(size=(120, 8)))
    trending = TrendingItems(0.0)
    trending.add([NodeId(f"i{n}") for n in range(0, 120, 3)], list(rng.random(40) + 0.1), None)
    return snap, trending, NextRows(np.asarray([77, 5, 50], np.int64), np.asarray([1.0, 3.0, 2.0]))


@pytest.mark.parametrize("interactions", [0, 3, 40, 10_000])
def test_at_weight_zero_the_list_is_the_blends_own(interactions: int) -> None:
    snap, trending, nexts = scene()
    policy, judge = BlendPolicy(10.0), NextItemsJudge()  # nothing judged: weight 0
    vector = snap.users.vectors[0]
    query = ItemQuery(vector, 10, np.asarray([1, 2], np.int64))
    found, source = served_search(snap, trending, policy, judge, vector, interactions, query, nexts, use_ann=False)
    if policy.source(True, interactions) == BLENDED:
        want = blended_search(snap, trending, query, policy.personal_weight(interactions), use_ann=False)
    else:
        want = search(snap, query, use_ann=False)
    assert source == policy.source(True, interactions) and found.rows.tolist() == want.rows.tolist()
    # Mixed at weight 0 from the candidates: the same order (the scale of b is the blend's own).
    weight = policy.personal_weight(interactions) if source == BLENDED else 1.0
    mixed = next_search(snap, candidates(snap, trending, query, vector, weight, nexts, use_ann=False), query, 0.0)
    assert mixed.rows.tolist() == want.rows.tolist()
    none, source = served_search(snap, trending, policy, judge, None, interactions, query, None, use_ann=False)
    assert source == TRENDING and none.rows.tolist() == trending_search(snap, trending, 10, query.exclude).rows.tolist()


def test_a_judged_weight_lifts_next_items_past_the_filter_and_exclusions() -> None:
    snap, trending, nexts = scene()
    judge = NextItemsJudge(min_events=1)
    judged(judge, 3, LADDER[-1], 10)  # only the largest weight hit
    vector = snap.users.vectors[1]
    allowed = np.ones(120, dtype=bool)
    allowed[50] = False
    query = ItemQuery(vector, 5, np.asarray([5], np.int64), allowed)
    found, source = served_search(snap, trending, BlendPolicy(10.0), judge, vector, 3, query, nexts, use_ann=False)
    assert source == BLENDED and found.rows[0] == 77  # 5 excluded, 50 filtered out
    assert 5 not in found.rows.tolist() and 50 not in found.rows.tolist()
    personal, source = served_search(snap, trending, BlendPolicy(0.0), judge, vector, 3, query, nexts, use_ann=False)
    assert source == BLENDED and personal.rows[0] == 77
    assert served_search(snap, trending, BlendPolicy(0.0), judge, vector, 3, query, None, use_ann=False)[1] == PERSONAL


@pytest.mark.integration
@pytest.mark.parametrize("on", [True, False])
def test_recommend_learns_what_follows_from_commits(settings: Settings, ladybug_store: LadybugStore,
                                                    write_embeddings: EmbeddingWriter, vectors, on: bool) -> None:
    """Commits handed to the servicer as ``up`` hands them: many users take up i3, then i40; once the
    judge has seen i40 follow, a new user whose latest item is i3 gets i40 (and only with next items on)."""
    write_embeddings(1, users=vectors[0], items=vectors[1])
    config = ServingConfig.from_settings(settings.replace(next_items=on, next_items_judged_per_s=1e6))
    handle = start_serving(config, ladybug_store)
    client = RecommenderClient(f"127.0.0.1:{handle.port}", timeout_s=5.0)
    try:
        client.wait_until_serving(timeout_s=10)
        servicer = handle.servicer
        servicer.trending.add([NodeId(f"i{n}") for n in range(10, 30)], [float(30 - n) for n in range(10, 30)], None)
        ts = 0
        for rnd in range(10):
            users = [NodeId(f"y{rnd}-{n}") for n in range(16)]
            for item in ("i3", "i40"):
                ts += 1
                servicer.take_committed([EdgeDelta(u, NodeId(item), 1.0, 1, ts) for u in users])
        assert servicer.judging.drain()
        assert (servicer.next_judge.weight(1) > 0.0) is on
        assert servicer.judging.judged == (144 if on else 0)  # 16 a batch once i3 -> i40 was learnt
        servicer.take_committed([EdgeDelta(NodeId("z"), NodeId("i3"), 1.0, 1, ts + 1)])
        reply = client.recommend("z", k=10)
        listed = [s.item_id for s in reply.items]
        assert ("i40" in listed) is on
        assert reply.source == (pb.RECOMMEND_SOURCE_BLENDED if on else pb.RECOMMEND_SOURCE_TRENDING)
    finally:
        client.close()
        handle.stop(0)
