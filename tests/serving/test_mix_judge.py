"""MixJudge: the blend until enough is judged, the paired margin, decay, segments, the mixes judged."""

from __future__ import annotations

import pytest

from serving.mix_judge import BLEND, LADDER, MIXES, SHARES, Mix, MixJudge


def judged(judge: MixJudge, interactions: int, wins: Mix | None, times: int, hit_blend: bool = False) -> None:
    """``times`` events where only ``wins`` (and the blend when ``hit_blend``) listed the item first."""
    for _ in range(times):
        judge.judge(interactions, [0 if m == wins or (hit_blend and m.is_blend) else None for m in judge.mixes])


def test_the_mixes_are_every_share_with_every_weight_the_blend_first() -> None:
    assert MIXES[0] == BLEND and BLEND.is_blend and len(MIXES) == len(SHARES) * len(LADDER)
    assert Mix(0.5, 0.0).personal_weight(0.8) == pytest.approx(0.4) and not Mix(0.0, 0.0).is_blend
    with pytest.raises(ValueError):
        MixJudge(mixes=[Mix(1.0, 2.0)])


def test_a_segment_serves_the_blend_until_it_has_judged_enough_events() -> None:
    judge = MixJudge(min_events=10)
    nexts = Mix(1.0, 2.0)
    judged(judge, 2, nexts, 9)
    assert judge.mix(2) == BLEND and judge.mix(60) == BLEND  # 9 judged in all
    judged(judge, 4, nexts, 1)
    assert judge.mix(2) == nexts
    assert judge.mix(60) == nexts  # a segment short of events goes by all segments' hits
    judged(judge, 60, None, 10)  # nothing hit: no evidence for any mix there
    assert judge.mix(60) == BLEND and judge.mix(2) == nexts
    with pytest.raises(ValueError):
        judge.judge(2, [0])


def test_a_mix_needs_a_clear_paired_margin_over_the_blend_alone() -> None:
    """McNemar's test: wins minus losses against the blend alone, over sqrt(wins + losses)."""
    judge = MixJudge(min_events=0)
    trending = Mix(0.0, 0.0)
    judged(judge, 80, trending, 30)  # 30 won by trending alone...
    for _ in range(22):  # ...22 lost by it: 8 < 2 sqrt(52)
        judge.judge(80, [0 if m != trending else None for m in judge.mixes])
    assert judge.mix(80) == BLEND
    judged(judge, 80, trending, 20)  # 28 >= 2 sqrt(72)
    assert judge.mix(80) == trending
    assert judge.served()["> 50"] == trending and judge.served()["<= 5"] == trending  # by all segments


def test_older_judgements_count_less_and_ties_go_to_the_earlier_mix() -> None:
    judge = MixJudge(min_events=0, half_life_events=4.0)
    judged(judge, 80, None, 20, hit_blend=True)
    assert judge.mix(80) == BLEND
    for _ in range(40):  # then every mix but the blend hit: the first of them is served
        judge.judge(80, [None] + [0] * (len(judge.mixes) - 1))
    assert judge.mix(80) == MIXES[1]
    assert MixJudge.segment(5) == 0 and MixJudge.segment(6) == 1 and MixJudge.segment(51) == 2
