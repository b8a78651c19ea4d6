"""Shared domain rules: the id rule of ingest and serving (non-blank, at most ``max_id_length``
characters, verbatim) and the edge decay reference."""

from __future__ import annotations

import pytest

from core.domain import REBASE_AFTER_HALF_LIVES, EdgeDecay, IdProblem, InvalidIdError, check_id


@pytest.mark.parametrize(("value", "problem", "message"), [
    ("", IdProblem.BLANK, "user_id is empty or blank"),
    ("   ", IdProblem.BLANK, "user_id is empty or blank"),
    ("\t\n\u3000", IdProblem.BLANK, "user_id is empty or blank"),  # Unicode whitespace is blank too
    ("u" * 17, IdProblem.TOO_LONG, "user_id has 17 characters; at most 16 are allowed"),
])
def test_blank_and_overlong_ids_break_the_rule(value: str, problem: IdProblem, message: str) -> None:
    with pytest.raises(InvalidIdError) as caught:
        check_id(value, "user_id", 16)
    assert caught.value.problem is problem
    assert str(caught.value) == message


def test_valid_ids_come_back_verbatim_counted_in_characters() -> None:
    assert check_id(" u 1 ", "user_id", 16) == " u 1 "  # never stripped: ids are compared verbatim
    assert check_id("ü" * 16, "item_id", 16) == "ü" * 16  # 32 bytes in UTF-8, 16 characters


def test_edge_decay_moves_its_reference_only_past_the_rebase_distance() -> None:
    hour = 3_600_000.0
    none_yet = EdgeDecay(hour)
    first = none_yet.moved_to(5_000)
    assert first == EdgeDecay(hour, 5_000) and none_yet.rescale_to(first) == 1.0
    assert first.moved_to(5_000 + int(REBASE_AFTER_HALF_LIVES * hour)) is first
    later = first.moved_to(5_001 + int(REBASE_AFTER_HALF_LIVES * hour))
    assert later.ref_ms == 5_001 + int(REBASE_AFTER_HALF_LIVES * hour)
    assert first.rescale_to(later) == pytest.approx(2.0 ** -((later.ref_ms - 5_000) / hour))
    assert first.factor(5_000 + int(2 * hour)) == 4.0 and first.plain(4.0, 5_000 + int(2 * hour)) == 1.0
    assert first.factor(5_000 - int(2_000 * hour)) == 0.0 and first.plain(1.0, 5_000 - int(2_000 * hour)) == 0.0
    with pytest.raises(ValueError, match="half_life_ms"):
        EdgeDecay(0.0)
