"""bench/box_budget.py runs end to end (real broker, no-op Faust, real store) and prints one row per rate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "bench" / "box_budget.py"


def test_prints_each_part_per_offered_rate() -> None:
    out = subprocess.run([sys.executable, str(PATH), "--rates", "300,600", "--seconds", "3", "--grow-events", "2000",
                          "--no-serving"], capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| offered")]
    assert len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        broker, generator, faust, plan, apply = (float(c.split()[0]) for c in cells[1:6])
        assert broker > 0 and generator > 0 and faust > 0 and plan > 0 and apply > 0
        assert cells[3].endswith("%)")  # how much of the offered load the no-op agent kept up with
        assert cells[6] == "-"  # serving left out
        assert float(cells[7]) > 0 and int(cells[8]) >= 1
