"""``status --watch`` frames: redrawn in place on a terminal, plain one after another in a pipe or file."""

from __future__ import annotations

import os
import re
from pathlib import Path

from interest_graph.console import StatusScreen

CLEAR = "\x1b[2J\x1b[H"


def test_frames_written_to_a_file_carry_no_terminal_escapes(tmp_path: Path) -> None:
    log = tmp_path / "status.log"
    with log.open("w") as out:
        screen = StatusScreen(out)
        screen.show("total lag: 3")
        screen.show("total lag: 0")
    text = log.read_text()
    assert "\x1b" not in text
    lines = [re.sub(r"^\d\d:\d\d:\d\d  ", "HH:MM:SS  ", line) for line in text.splitlines()]
    header = "HH:MM:SS  interest-graph status"
    assert lines == [header, "", "total lag: 3", "", header, "", "total lag: 0"]  # a blank line between


def test_frames_on_a_terminal_clear_and_redraw() -> None:
    controller, terminal = os.openpty()
    try:
        with open(terminal, "w", closefd=False) as out:
            screen = StatusScreen(out)
            screen.show("total lag: 3")
            screen.show("total lag: 0")
        written = os.read(controller, 4096).decode()
    finally:
        os.close(terminal)
        os.close(controller)
    assert written.count(CLEAR) == 2
    assert written.rindex(CLEAR) < written.index("total lag: 0")
