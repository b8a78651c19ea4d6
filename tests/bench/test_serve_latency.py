"""bench/serve_latency.py end to end on a tiny catalog: the served rows beside the empty-handler ceiling,
with each generator it has; and the pieces it is built from (the gRPC frame, tiled fitted vectors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import h2load_driver  # noqa: E402 -- a bench script, importable once bench/ is on the path
import serve_vectors  # noqa: E402 -- same


def test_a_grpc_frame_is_a_flag_byte_a_big_endian_length_and_the_message() -> None:
    assert h2load_driver.grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"


def test_tiled_vectors_keep_the_base_and_place_copies_a_neighbour_away() -> None:
    base = np.random.default_rng(0).standard_normal((400, 64)).astype(np.float32)
    out = serve_vectors.tiled(base, 1000)
    assert out.shape == (1000, 64) and out.dtype == np.float32
    assert np.array_equal(out[:400], base)
    moved = np.linalg.norm(out[400:800] - base, axis=1)
    nearest = serve_vectors.neighbour_distance(base)
    assert np.all(moved > 0)  # new items, not duplicates...
    assert abs(float(np.median(moved)) - nearest) < 0.15 * nearest  # ...as far off as real neighbours are
    explicit = serve_vectors.tiled(base, 1000, distance=0.5)
    assert abs(float(np.median(np.linalg.norm(explicit[400:800] - base, axis=1))) - 0.5) < 0.1


def test_neighbour_distance_is_the_median_nearest_other_row() -> None:
    base = np.asarray([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.0, 2.5]], dtype=np.float32)
    # nearest others: 1, 1, 2, 2.5 -> median 1.5
    assert serve_vectors.neighbour_distance(base, sample=4) == 1.5


def test_served_rows_are_measured_beside_the_empty_handler() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "serve_latency.py"), "--sizes", "3000", "--dims", "16",
                          "--indexes", "exact", "hnsw", "--methods", "Recommend", "SimilarItems", "--seconds", "1",
                          "--users", "200", "--edges", "1000", "--client-procs", "1", "--concurrency", "2"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| 3,000 ")]
    generators = ["h2load", "python"] if h2load_driver.available() else ["python"]
    empty = {r[5]: r for r in rows if r[2] == "empty Recommend handler"}
    served = {(r[4], r[5]): r for r in rows if r[2] == "exact, int8"}
    assert sorted(empty) == generators
    for generator in generators:
        recommend = served[("Recommend", generator)]
        assert float(recommend[7].replace(",", "")) > 0
        assert recommend[8].endswith("%")  # its share of the ceiling, measured in the same run
        assert ("SimilarItems", generator) in served
    assert "errors 0" in out and "errors 1" not in out
    recall = next(line for line in out.splitlines() if line.startswith("hnsw, int8 recall@10 of the served search"))
    assert 0.0 <= float(recall.rsplit(": ", 1)[1]) <= 1.0  # measured on the server's own graph


@pytest.mark.skipif(not h2load_driver.available(), reason="h2load is not installed (Debian: nghttp2-client)")
def test_h2load_counts_every_answer_it_got() -> None:
    # Against nothing listening h2load fails loudly rather than reporting 0 QPS.
    with pytest.raises(RuntimeError):
        h2load_driver.run(1, "/interestgraph.v1.Recommender/Recommend", b"", seconds=0.5, streams=1)
