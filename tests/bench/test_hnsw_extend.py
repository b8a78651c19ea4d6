"""bench/hnsw_extend.py runs end to end on a small catalog and prints one row per round."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "bench" / "hnsw_extend.py"


def test_each_round_prints_both_graphs_times_and_recalls() -> None:
    out = subprocess.run([sys.executable, str(PATH), "--items", "600", "--dim", "16", "--rounds", "3",
                          "--changed", "60", "--fresh", "5", "--queries", "20"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rounds = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rounds) == 3
    for n, line in enumerate(rounds, start=1):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == str(n) and cells[1] == f"{600 + 5 * n:,}"
        assert all(0.0 <= float(c) <= 1.0 for c in cells[4:6])
        assert int(cells[6].replace(",", "")) == 60 * n  # every rewritten row left one replaced entry
