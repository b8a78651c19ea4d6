"""The id rule shared by ingest and serving: non-blank, at most ``max_id_length`` characters, verbatim."""

from __future__ import annotations

import pytest

from core.domain import IdProblem, InvalidIdError, check_id


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
