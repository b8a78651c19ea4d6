"""bench/serving_width.py fits once, serves every width and codec, and prints quality and cost per row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

PATH = Path(__file__).resolve().parents[2] / "bench" / "serving_width.py"


def write_split(folder: Path, users: int = 120, items: int = 80) -> None:
    """A small split in the LightGCN format, with the structure of two taste groups."""
    rng = np.random.default_rng(0)
    train, test = [], []
    for u in range(users):
        group = np.arange(items // 2) + (items // 2) * (u % 2)
        chosen = rng.choice(group, 12, replace=False)
        train.append(f"{u} " + " ".join(map(str, chosen[:9])))
        test.append(f"{u} " + " ".join(map(str, chosen[9:])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")


def test_prints_a_row_per_width_and_codec_with_int8_as_good_as_float32(tmp_path: Path) -> None:
    write_split(tmp_path)
    out_json = tmp_path / "rows.json"
    cache = tmp_path / "fit.npz"
    command = [sys.executable, str(PATH), "--data-dir", str(tmp_path), "--rank", "16", "--widths", "8,16",
               "--codecs", "f32,int8,sq8", "--scan-items", "5000", "--json", str(out_json), "--cache", str(cache)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout
    assert sum(line.startswith("| 8 |") or line.startswith("| 16 |") for line in out.splitlines()) == 6
    rows = {(r["width"], r["codec"]): r for r in json.loads(out_json.read_text())["rows"]}
    for width in (8, 16):
        f32, int8 = rows[(width, "f32")], rows[(width, "int8")]
        assert f32["recall"] > 0.2  # the groups are learnable
        assert abs(int8["recall"] - f32["recall"]) < 0.02
        assert f32["item_bytes"] == 4 * width + 4 and int8["item_bytes"] == width + 4
        assert rows[(width, "sq8")]["item_bytes"] == width + 4
        assert all(r["scan_ms"] > 0 for r in (f32, int8))
    assert cache.is_file()  # a second run reads the fit from it
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "fitted in" in again
