"""Bootstrap fits in their own process: the checkpoint lands in the model dir, the process runs at
background priority and is kept for the next fit, a dead process is an error the next fit recovers
from, and closing kills a fit still running."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.domain import EdgeSnapshot, NodeId
from core.settings import Settings
from models.config import ModelConfig
from models.fit_process import FitProcess, FitProcessError
from models.methods import load_checkpoint
from models.runtime import BACKGROUND_NICENESS
from models.spectral.checkpoint import SpectralCheckpoint


def snapshot(users: int = 30, items: int = 20, seed: int = 0) -> EdgeSnapshot:
    rng = np.random.default_rng(seed)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, users, 200), rng.integers(0, items, 200),
                                                     strict=True)})
    return EdgeSnapshot([NodeId(f"u{u}") for u in range(users)], [NodeId(f"i{i}") for i in range(items)],
                        np.asarray([u for u, _ in pairs], np.int64), np.asarray([i for _, i in pairs], np.int64),
                        np.ones(len(pairs), np.float32), seq=7)


def config(**overrides: object) -> ModelConfig:
    return ModelConfig.from_settings(Settings(spectral_rank=8, **overrides))  # type: ignore[arg-type]  # test overrides


@pytest.fixture()
def process() -> Iterator[FitProcess]:
    fits = FitProcess()
    yield fits
    fits.close()


def wait_for_pid(fits: FitProcess, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid = fits.pid
        if pid:
            return pid
        time.sleep(0.05)
    raise AssertionError("the fit process did not start")


def test_a_fit_saves_its_checkpoint_from_a_background_process_kept_for_the_next(
        process: FitProcess, tmp_path: Path) -> None:
    meta = process.fit(snapshot(), config(), tmp_path, source="bootstrap")
    checkpoint = load_checkpoint(tmp_path)
    assert isinstance(checkpoint, SpectralCheckpoint)
    assert checkpoint.meta["source"] == "bootstrap" and meta["version"] == checkpoint.version == 1
    assert meta["edges"] == snapshot().weight.size
    pid = process.pid
    assert pid and pid != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, pid) == BACKGROUND_NICENESS
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != BACKGROUND_NICENESS  # ours untouched
    process.fit(snapshot(seed=1), config(), tmp_path, source="bootstrap")
    assert process.pid == pid and load_checkpoint(tmp_path).version == 2


def test_a_process_that_dies_fails_its_fit_and_the_next_fit_starts_a_new_one(
        process: FitProcess, tmp_path: Path) -> None:
    failed: list[BaseException] = []

    def doomed() -> None:
        try:  # LightGCN for many epochs: still running when the process is killed
            process.fit(snapshot(), config(model_method="lightgcn"), tmp_path, source="bootstrap", epochs=100_000)
        except FitProcessError as exc:
            failed.append(exc)

    fitting = threading.Thread(target=doomed)
    fitting.start()
    os.kill(wait_for_pid(process), signal.SIGKILL)
    fitting.join(120)
    assert not fitting.is_alive() and failed and "died" in str(failed[0])
    process.fit(snapshot(), config(), tmp_path, source="bootstrap")
    assert load_checkpoint(tmp_path).meta["source"] == "bootstrap"


def test_closing_kills_a_fit_still_running(tmp_path: Path) -> None:
    process = FitProcess()
    failed: list[BaseException] = []

    def long_fit() -> None:
        try:
            process.fit(snapshot(), config(model_method="lightgcn"), tmp_path, source="bootstrap", epochs=100_000)
        except FitProcessError as exc:
            failed.append(exc)

    fitting = threading.Thread(target=long_fit)
    fitting.start()
    pid = wait_for_pid(process)
    process.close()
    fitting.join(60)
    assert not fitting.is_alive() and failed
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not list(tmp_path.glob("checkpoint.json"))  # nothing half-saved
