"""TrendingItems' decayed weights against the formula, seeds, growth from totals, and blending's weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.domain import EdgeDecay, EdgeDelta, EdgeSnapshot, NodeId
from serving.blending import BLENDED, PERSONAL, TRENDING, BlendPolicy, blend, min_max
from serving.trending import TOP_CACHED, TrendingItems, top_rows

HOUR_MS = 3_600_000


def ids(*names: str) -> list[NodeId]:
    return [NodeId(n) for n in names]


def scores(trending: TrendingItems, items: list[str]) -> dict[str, float]:
    """Trend score of each of ``items``, read as a caller whose rows are ``items`` in order."""
    row_of = {NodeId(item): row for row, item in enumerate(items)}
    positions = np.asarray([row_of.get(held, -1) for held in trending.ids()], np.int64)
    return dict(zip(items, trending.scores_for(positions, len(items)).tolist(), strict=True))


def test_each_score_is_the_sum_of_decayed_weights_as_of_the_newest_event() -> None:
    rng = np.random.default_rng(3)
    trending = TrendingItems(half_life_s=3600.0)
    events = [(f"i{rng.integers(5)}", float(rng.uniform(0.5, 3.0)), int(rng.integers(0, 48 * HOUR_MS)))
              for _ in range(300)]
    for start in range(0, len(events), 37):  # several adds, out of time order within and between them
        chunk = events[start:start + 37]
        trending.add([NodeId(i) for i, _, _ in chunk], [w for _, w, _ in chunk], [t for _, _, t in chunk])
    newest = max(t for _, _, t in events)
    want = {f"i{n}": sum(w * 2 ** (-(newest - t) / HOUR_MS) for i, w, t in events if i == f"i{n}") for n in range(5)}
    got = scores(trending, list(want))
    for item, value in want.items():
        assert got[item] == pytest.approx(value, rel=1e-9)
    assert trending.newest_ms == newest


def test_scores_stay_exact_across_years_of_half_lives() -> None:
    trending = TrendingItems(half_life_s=60.0)  # a year is ~525,000 half-lives: the reference must move
    year_ms = 365 * 24 * HOUR_MS
    trending.add(ids("old"), [1e6], [0])
    trending.add(ids("a", "b"), [1.0, 2.0], [year_ms, year_ms + 60_000])
    got = scores(trending, ["old", "a", "b"])
    assert got["old"] == 0.0  # underflowed: 2^-525,000 of any weight
    assert got["a"] == pytest.approx(0.5) and got["b"] == pytest.approx(2.0)
    assert all(math.isfinite(v) for v in got.values())


def test_zero_half_life_is_all_time_popularity() -> None:
    trending = TrendingItems(half_life_s=0.0)
    trending.add(ids("a", "b", "a"), [1.0, 1.5, 1.0], [0, 10 * HOUR_MS, 20 * HOUR_MS])
    assert scores(trending, ["a", "b"]) == {"a": 2.0, "b": 1.5}


def test_a_seed_takes_the_time_of_the_first_timed_add_and_growth_counts_once() -> None:
    trending = TrendingItems(half_life_s=3600.0)
    snapshot = EdgeSnapshot(user_ids=ids("u0", "u1"), item_ids=ids("a", "b"), user_index=np.array([0, 1, 1]),
                            item_index=np.array([0, 0, 1]), weight=np.array([1.0, 2.0, 4.0], np.float32))
    assert trending.add_totals(snapshot) == 2
    assert scores(trending, ["a", "b"]) == {"a": 3.0, "b": 4.0}
    # A replayed stream from long ago: the seed is as old as its first event, not as new as the clock.
    trending.add(ids("b"), [1.0], [5 * HOUR_MS])
    trending.add(ids("a"), [1.0], [6 * HOUR_MS])
    got = scores(trending, ["a", "b"])
    assert got["a"] == pytest.approx(3.0 * 2**-1 + 1.0)
    assert got["b"] == pytest.approx(4.0 * 2**-1 + 1.0 * 2**-1)
    # The next read adds only what grew (a: +1.5), stamped with the newest event time.
    grown = EdgeSnapshot(user_ids=snapshot.user_ids, item_ids=snapshot.item_ids, user_index=snapshot.user_index,
                         item_index=snapshot.item_index, weight=np.array([2.5, 2.0, 4.0], np.float32))
    assert trending.add_totals(grown) == 1
    assert scores(trending, ["a"])["a"] == pytest.approx(got["a"] + 1.5)


def test_edges_add_their_weight_at_their_newest_event_time() -> None:
    trending = TrendingItems(half_life_s=3600.0)
    trending.add_edges([EdgeDelta(NodeId("u"), NodeId("a"), weight=2.0, count=2, last_ts_ms=HOUR_MS),
                        EdgeDelta(NodeId("v"), NodeId("b"), weight=1.0, count=1, last_ts_ms=3 * HOUR_MS)])
    assert scores(trending, ["a", "b"]) == pytest.approx({"a": 0.5, "b": 1.0})


def test_ranked_looks_rows_up_once_per_table_and_scores_once_per_change() -> None:
    trending = TrendingItems()
    trending.add(ids("a", "b", "c"), [1.0, 3.0, 2.0], [0, 0, 0])
    rows = {NodeId("a"): 2, NodeId("b"): 0, NodeId("c"): 1, NodeId("d"): 3}
    looked_up: list[list[NodeId]] = []

    def positions(held: list[NodeId]) -> np.ndarray:
        looked_up.append(list(held))
        return np.asarray([rows.get(i, -1) for i in held], np.int64)

    table, other = object(), object()
    first = trending.ranked(table, positions, 4)
    assert first[1].tolist() == [0, 1, 2] and first[0].tolist() == [3.0, 2.0, 1.0, 0.0]
    assert trending.ranked(table, positions, 4)[1].tolist() == [0, 1, 2] and len(looked_up) == 1
    trending.add(ids("a"), [5.0], [0])  # scores change, rows do not: no lookup
    assert trending.ranked(table, positions, 4)[1].tolist() == [2, 0, 1] and len(looked_up) == 1
    trending.add(ids("d"), [0.5], [0])  # a new item: only it is looked up
    assert trending.ranked(table, positions, 4)[1].tolist() == [2, 0, 1, 3] and looked_up[-1] == ids("d")
    assert trending.ranked(other, positions, 4)[1].tolist() == [2, 0, 1, 3] and len(looked_up[-1]) == 4


def test_top_rows_keeps_positive_scores_best_first_ties_by_row() -> None:
    values = np.array([0.0, 2.0, 1.0, 2.0, -1.0, 0.5])
    assert top_rows(values, 10).tolist() == [1, 3, 2, 5]
    assert top_rows(values, 2).tolist() == [1, 3]
    many = np.arange(TOP_CACHED * 3, dtype=np.float64)
    assert top_rows(many, TOP_CACHED).tolist() == list(range(TOP_CACHED * 3 - 1, TOP_CACHED * 2 - 1, -1))


def test_negative_half_life_is_refused() -> None:
    with pytest.raises(ValueError, match="half_life_s"):
        TrendingItems(half_life_s=-1.0)


# --- blending ------------------------------------------------------------------------------------
def test_personal_weight_is_shrinkage_toward_trending() -> None:
    policy = BlendPolicy(prior_interactions=5.0)
    assert [policy.personal_weight(n) for n in (0, 5, 15)] == [0.0, 0.5, 0.75]
    assert policy.source(False, 100) == TRENDING
    assert policy.source(True, 1) == BLENDED
    assert policy.source(True, 5 * 100) == PERSONAL  # trending weight under 1 %: no longer worth mixing
    off = BlendPolicy()
    assert off.personal_weight(0) == 1.0 and off.source(True, 0) == PERSONAL and off.source(False, 0) == TRENDING
    with pytest.raises(ValueError, match="prior_interactions"):
        BlendPolicy(-1.0)


def test_blend_mixes_min_max_scaled_scores() -> None:
    personal, trend = np.array([10.0, 0.0, 5.0]), np.array([0.0, 8.0, 2.0])
    np.testing.assert_allclose(min_max(personal), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(blend(personal, trend, 0.75), [0.75, 0.25, 0.75 * 0.5 + 0.25 * 0.25])
    np.testing.assert_allclose(min_max(np.array([3.0, 3.0])), [0.0, 0.0])


def test_edges_in_decayed_units_are_taken_back_to_their_own_weights() -> None:
    decay = EdgeDecay(half_life_ms=float(HOUR_MS), ref_ms=10 * HOUR_MS)
    trending = TrendingItems(half_life_s=3600.0)
    # Stored units: 2.0 at one half-life before the reference is 1.0; 1.0 at two after is 4.0.
    trending.add_edges([EdgeDelta(NodeId("u"), NodeId("a"), weight=1.0, count=2, last_ts_ms=9 * HOUR_MS),
                        EdgeDelta(NodeId("v"), NodeId("b"), weight=4.0, count=1, last_ts_ms=12 * HOUR_MS)], decay)
    assert scores(trending, ["a", "b"]) == pytest.approx({"a": 2.0 / 8, "b": 1.0})


def test_totals_of_a_decayed_store_are_stamped_with_its_reference_and_survive_a_rebase() -> None:
    trending = TrendingItems(half_life_s=3600.0)
    before = EdgeDecay(float(HOUR_MS), ref_ms=4 * HOUR_MS)
    snapshot = EdgeSnapshot(user_ids=ids("u0"), item_ids=ids("a", "b"), user_index=np.array([0, 0]),
                            item_index=np.array([0, 1]), weight=np.array([8.0, 2.0], np.float32), decay=before)
    assert trending.add_totals(snapshot, at_ms=100 * HOUR_MS) == 2  # the clock is not the totals' time
    trending.add(ids("b"), [1.0], [6 * HOUR_MS])  # two half-lives after the reference
    assert scores(trending, ["a", "b"]) == pytest.approx({"a": 2.0, "b": 0.5 + 1.0})
    # The store rebased to 6 h (every weight x 1/4) and b grew by 1.0 in the new units.
    rebased = EdgeSnapshot(user_ids=snapshot.user_ids, item_ids=snapshot.item_ids, user_index=snapshot.user_index,
                           item_index=snapshot.item_index, weight=np.array([2.0, 1.5], np.float32),
                           decay=EdgeDecay(float(HOUR_MS), ref_ms=6 * HOUR_MS))
    assert trending.add_totals(rebased) == 1
    assert scores(trending, ["a", "b"]) == pytest.approx({"a": 2.0, "b": 2.5})
