"""``interest-graph store-recover``: after it, a user's own plain LadybugDB open of a crashed store works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.domain import NodeId
from graph_store.ladybug import LadybugStore
from tests.faults.test_stack_faults import hold_store_lock
from tests.graph_store.test_ladybug import write_torn_store

REPO = Path(__file__).resolve().parents[2]


def store_recover(*args: str) -> subprocess.CompletedProcess[str]:
    """``interest-graph store-recover`` as a real process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "IG_STORE": "ladybug"}
    return subprocess.run([sys.executable, "-m", "interest_graph.cli", "store-recover", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def plain_open(path: str) -> None:
    """What a user's own tool does: LadybugDB with its defaults (strict log replay), read-write.

    Deliberately raw (allow-listed in tests/graph_store/test_open_rules.py): the open that
    ``store-recover`` must make work again.
    """
    import ladybug

    ladybug.Database(path).close()


def test_store_recover_makes_a_crashed_store_open_plainly(tmp_path: Path) -> None:
    path = str(tmp_path / "g.lbdb")
    write_torn_store(path)
    with pytest.raises(RuntimeError, match="corrupted"):
        plain_open(path)  # the torn tail: LadybugDB's defaults refuse it

    done = store_recover("--store-path", path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "checkpointed" in done.stdout
    assert "seq 1, 1 edges" in done.stdout
    assert not os.path.exists(path + ".wal") or os.path.getsize(path + ".wal") == 0

    plain_open(path)
    with LadybugStore(path, read_only=True) as reader:  # the committed batch is kept, the torn one dropped
        assert reader.counts()["seq"] == 1
        kept = reader.edge(NodeId("kept"), NodeId("i"))
        assert kept is not None and kept.weight == 2.0
        assert reader.edge(NodeId("torn0"), NodeId("i")) is None


def test_store_recover_reads_ig_store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "g.lbdb")
    write_torn_store(path)
    monkeypatch.setenv("IG_STORE_PATH", path)
    done = store_recover()
    assert done.returncode == 0, done.stderr
    plain_open(path)


def test_store_recover_on_a_locked_store_says_so_in_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "g.lbdb")
    with LadybugStore(path) as store:
        store.ensure_schema()
    holder = hold_store_lock(path, 60.0)  # as a running `interest-graph up` would
    try:
        refused = store_recover("--store-path", path)
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr and refused.stderr.count("\n") == 1, refused.stderr
    assert "locked by another process" in refused.stderr and "stop `interest-graph up`" in refused.stderr
    assert refused.stdout == ""


def test_store_recover_without_a_store_creates_none(tmp_path: Path) -> None:
    path = tmp_path / "missing.lbdb"
    refused = store_recover("--store-path", str(path))
    assert refused.returncode == 1 and "no LadybugDB" in refused.stderr, refused.stderr
    assert not path.exists()
