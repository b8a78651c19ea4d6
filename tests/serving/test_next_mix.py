"""Lists at a judged mix: sparse next items, the blend's mix equal to the blend's own list, ranks under
each mix, judging an event, and Recommend through a real server learning a transition from commits."""

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
from serving.mix_judge import BLEND, MIXES, Mix, MixJudge
from serving.next_mix import NextRows, candidates, judge_event, mixed_search, ranks_by_mix, served_search
from serving.search import ItemQuery, search
from serving.server import start_serving
from serving.trending import TrendingItems
from tests.serving.conftest import EmbeddingWriter
from tests.serving.test_search import snapshot_of

NOTHING = np.zeros(0, np.int64)


def test_next_rows_are_read_sparse_on_the_snapshots_rows() -> None:
    snap = snapshot_of(np.zeros((0, 2)), np.eye(2).repeat(3, axis=0))  # items i0..i5
    nexts = NextRows.of(snap, ([NodeId("i4"), NodeId("gone"), NodeId("i1")], np.asarray([2.0, 9.0, 1.0])))
    assert nexts.rows.tolist() == [4, 1]
    assert nexts.at(np.asarray([0, 1, 4, 5])).tolist() == [0.0, 1.0, 2.0, 0.0]
    assert NextRows.of(snap, None).at(np.asarray([3])).tolist() == [0.0]


def scene() -> tuple:
    rng = np.random.default_rng(9)
    snap = snapshot_of(rng.normal(size=(3, 8)), rng.normal(size=(120, 8)))
    trending = TrendingItems(0.0)
    trending.add([NodeId(f"i{n}") for n in range(0, 120, 3)], list(rng.random(40) + 0.1), None)
    return snap, trending, NextRows(np.asarray([77, 5, 50], np.int64), np.asarray([1.0, 3.0, 2.0]))


@pytest.mark.parametrize("interactions", [0, 3, 40, 10_000])
def test_the_blends_mix_is_the_blends_own_list(interactions: int) -> None:
    snap, trending, nexts = scene()
    policy = BlendPolicy(10.0)
    vector = snap.users.vectors[0]
    query = ItemQuery(vector, 10, np.asarray([1, 2], np.int64))
    found, source = served_search(snap, trending, policy, BLEND, vector, interactions, query, nexts, use_ann=False)
    if policy.source(True, interactions) == BLENDED:
        want = blended_search(snap, trending, query, policy.personal_weight(interactions), use_ann=False)
    else:
        want = search(snap, query, use_ann=False)
    assert source == policy.source(True, interactions) and found.rows.tolist() == want.rows.tolist()
    # The blend's mix from the candidates: the same order (the signals are scaled as the blend scales them).
    weight = policy.personal_weight(interactions) if source == BLENDED else 1.0
    mixed = mixed_search(snap, candidates(snap, trending, query, vector, weight, nexts, use_ann=False), query, BLEND)
    assert mixed.rows.tolist() == want.rows.tolist()
    none, source = served_search(snap, trending, policy, BLEND, None, interactions, query, None, use_ann=False)
    assert source == TRENDING and none.rows.tolist() == trending_search(snap, trending, 10, query.exclude).rows.tolist()
    alone, source = served_search(snap, trending, policy, Mix(0.0, 0.0), vector, interactions, query, None,
                                  use_ann=False)  # trending alone, as a mix
    assert source == BLENDED and alone.rows.tolist() == none.rows.tolist()


def test_ranks_by_mix_match_a_sort() -> None:
    snap, trending, nexts = scene()
    vector = snap.users.vectors[2]
    query = ItemQuery(vector, 10, np.zeros(0, np.int64))
    found = candidates(snap, trending, query, vector, 0.7, nexts, use_ann=False)
    n = found.rows.size
    for target in (0, 3, n - 1):
        for mix, rank in zip(MIXES, ranks_by_mix(found, target, MIXES, n), strict=True):
            order = np.lexsort((np.arange(n), -found.relevance(mix))).tolist()
            assert rank == order.index(target)
    assert ranks_by_mix(found, -1, MIXES, 10) == [None] * len(MIXES)
    assert ranks_by_mix(found, 0, (BLEND,), 0) == [None]


def test_next_items_at_a_large_weight_lead_past_the_filter_and_exclusions() -> None:
    snap, trending, nexts = scene()
    vector = snap.users.vectors[1]
    allowed = np.ones(120, dtype=bool)
    allowed[50] = False
    query = ItemQuery(vector, 5, np.asarray([5], np.int64), allowed)
    found, source = served_search(snap, trending, BlendPolicy(10.0), Mix(1.0, 16.0), vector, 3, query, nexts,
                                  use_ann=False)
    assert source == BLENDED and found.rows[0] == 77  # 5 excluded, 50 filtered out
    assert 5 not in found.rows.tolist() and 50 not in found.rows.tolist()
    assert served_search(snap, trending, BlendPolicy(0.0), BLEND, vector, 3, query, None, use_ann=False)[1] == PERSONAL
    scores = [s for s in found.scores.tolist()]
    assert scores == sorted(scores, reverse=True)


def test_judging_an_event_counts_where_its_item_stood_under_each_mix() -> None:
    snap, trending, nexts = scene()
    judge = MixJudge(min_events=1)
    vector = snap.users.vectors[0]
    assert not judge_event(snap, trending, BlendPolicy(10.0), judge, vector, 3, np.asarray([77]), nexts, 77,
                           use_ann=False)  # the user has it already
    assert not judge_event(snap, trending, BlendPolicy(10.0), judge, vector, 3, NOTHING, nexts, -1, use_ann=False)
    for _ in range(10):
        assert judge_event(snap, trending, BlendPolicy(10.0), judge, vector, 3, NOTHING, nexts, 77, use_ann=False)
    assert judge.mix(3).beta > 0.0  # 77 leads only where next items weigh


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
        assert (servicer.mix_judge.mix(1).beta > 0.0) is on
        assert servicer.judging.judged == (320 if on else 0)  # 16 a batch
        servicer.take_committed([EdgeDelta(NodeId("z"), NodeId("i3"), 1.0, 1, ts + 1)])
        reply = client.recommend("z", k=10)
        listed = [s.item_id for s in reply.items]
        assert ("i40" in listed) is on
        assert reply.source == (pb.RECOMMEND_SOURCE_BLENDED if on else pb.RECOMMEND_SOURCE_TRENDING)
    finally:
        client.close()
        handle.stop(0)
