"""bench/mix_cost.py on a small catalog: every arm timed on the same users, side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_every_arm_is_timed_beside_the_blend() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "mix_cost.py"), "--items", "3000", "--dim", "16",
                          "--calls", "20", "--history", "8"], capture_output=True, text=True, timeout=300,
                         check=True).stdout
    table = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| ")]
    rows = {cells[0]: cells[1:] for cells in table if cells[0] != "arm"}
    assert set(rows) == {"blend alone (BLENDED, n0 = 10)", "next items, weight 4", "trending alone, as a mix"}
    for p50, p99, mean, _ in rows.values():
        assert 0 < float(p50) <= float(p99) and float(mean) > 0
    assert rows["blend alone (BLENDED, n0 = 10)"][3] == "+0.00"
