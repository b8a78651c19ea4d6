"""bench/ann_sweep.py on a tiny catalog: recall and time per efSearch beside exact search, a cached graph
read back on the second run, and serve_latency serving that same cached graph, calibrated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def sweep(cache: Path) -> str:
    return subprocess.run([sys.executable, str(BENCH / "ann_sweep.py"), "--size", "3000", "--dim", "16",
                           "--queries", "50", "--ef", "16", "64", "--cache", str(cache)],
                          capture_output=True, text=True, timeout=300, check=True).stdout


def test_sweep_prints_recall_per_breadth_and_reuses_its_graph(tmp_path: Path) -> None:
    first = sweep(tmp_path)
    rows = {r[0]: r[1:] for r in ([c.strip() for c in line.strip("|").split("|")] for line in first.splitlines()
                                  if line.startswith("| exact") or line.startswith("| HNSW"))}
    assert set(rows) == {"exact scan", "HNSW efSearch 16", "HNSW efSearch 64"}
    assert float(rows["exact scan"][0]) == 1.0
    assert 0.5 < float(rows["HNSW efSearch 16"][0]) <= float(rows["HNSW efSearch 64"][0]) <= 1.0
    assert "s on 2 threads" in first and list(tmp_path.glob("hnsw-3000-16-nn-m16-efc64.faiss"))
    assert "graph build cached" in sweep(tmp_path)


def test_serve_latency_serves_the_cached_graph_calibrated(tmp_path: Path) -> None:
    sweep(tmp_path)
    out = subprocess.run([sys.executable, str(BENCH / "serve_latency.py"), "--sizes", "3000", "--dims", "16",
                          "--indexes", "hnsw", "--methods", "Recommend", "Explain", "--seconds", "1", "--users", "200",
                          "--edges", "1000", "--client-procs", "1", "--concurrency", "2", "--store-max", "1000",
                          "--no-ceiling", "--generators", "python", "--cache", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, check=True)
    assert "cached in" in out.stdout and "calibrated efSearch" in out.stderr
    assert "at efSearch" in out.stdout and "errors 0" in out.stdout
    # The server read the sweep's graph rather than building one of its own.
    assert [p.name for p in tmp_path.glob("hnsw-*")] == ["hnsw-3000-16-nn-m16-efc64.faiss"]
