"""bench/gil_priority.py runs end to end and prints its four cases side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "bench" / "gil_priority.py"


def test_prints_the_stalls_of_each_case() -> None:
    out = subprocess.run([sys.executable, str(PATH), "--seconds", "1", "--hogs", "1"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| beside")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "nothing", "a thread, normal priority", "a thread at nice 19", "a process at nice 19"]
    for row in rows:
        iterations, *figures = (cell.strip().replace(",", "") for cell in row.strip("|").split("|")[1:])
        assert int(iterations) > 0 and all(float(f) >= 0 for f in figures)
