"""bench/evidence_read.py on a small graph: both reads of Explain's and RecommendFriends' neighbourhoods
side by side, reading the same edges."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_both_reads_are_timed_side_by_side_and_read_the_same_edges() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "evidence_read.py"), "--items", "2000", "--requests", "30",
                          "--seek-max", "0", "64"], capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| 2,000")]
    assert [(r[3], r[4]) for r in rows] == [
        ("Explain (user, item)", "frontier queries"), ("Explain (user, item)", "seeks up to 64"),
        ("RecommendFriends (user)", "frontier queries"), ("RecommendFriends (user)", "seeks up to 64"),
    ]
    assert all(float(r[5]) > 0 and float(r[6]) >= float(r[5]) for r in rows)
    # The same requests each way: the same mean number of edges read.
    assert rows[0][7] == rows[1][7] and rows[2][7] == rows[3][7] and float(rows[0][7]) > 0
