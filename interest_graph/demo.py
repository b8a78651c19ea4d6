"""``make demo``: the whole path on this machine, as a user would run it, in a few minutes.

Starts ``interest-graph up`` as a child process on free ports, replays movielens-small (or the
synthetic generator), waits for the consumer lag to reach zero, runs ``interest-graph train`` on a
snapshot of the store (the method ``IG_MODEL_METHOD`` names: SpectralCF by default), waits until
the refresh worker has published the new embeddings, then prints recommendations for a few users,
how many catalog items without interactions are served from their text, and the status table, and
stops the stack with SIGINT.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.settings import Settings
from interest_graph.embedded_broker import free_port


def _wait(what: str, condition: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the stack exited (code {proc.returncode}) while waiting for {what}")
        try:
            if condition():
                return
        except Exception:  # not up yet: any client error means "ask again"
            pass
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _demo_settings(workdir: Path) -> Settings:
    return Settings.from_env(
        store_path=str(workdir / "graph.lbdb"),
        model_dir=str(workdir / "model"),
        broker_url=f"kafka://127.0.0.1:{free_port()}",
        grpc_addr=f"127.0.0.1:{free_port()}",
        metrics_port=free_port(),
    )


def _demo_users(settings: Settings, how_many: int = 3) -> list[str]:
    """The most active users: their recommendations are easy to eyeball against their history."""
    from graph_store import StoreConfig, open_store

    with open_store(StoreConfig.from_settings(settings), read_only=True) as store:
        snap = store.snapshot()
    import numpy as np

    counts = np.bincount(snap.user_index, minlength=len(snap.user_ids))
    return [snap.user_ids[i] for i in np.argsort(-counts)[:how_many]]


def _report_cold_start(client: Any, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Wait until catalog items nobody rated are served too (embedded from their text), and say so."""
    from models.cold_start.text import text_extra_installed

    if not text_extra_installed():
        print("[demo] cold start from text is off: the 'text' extra is not installed", flush=True)
        return
    t0 = time.monotonic()
    status = client.status()
    missing = status.store_items - status.items_indexed
    while status.items_indexed < status.store_items and time.monotonic() - t0 < timeout_s and proc.poll() is None:
        time.sleep(0.5)
        status = client.status()
    left = status.store_items - status.items_indexed
    print(f"[demo] cold start: {missing - left} of {missing} catalog items without interactions embedded "
          f"from their text and served, {time.monotonic() - t0:.1f} s after the new model", flush=True)


def run_demo(data_dir: Path, workdir: Path) -> int:
    from interest_graph.console import print_recommendations, print_status
    from interest_graph.replaying import replay_dataset
    from interest_graph.training import train_command
    from serving.client import RecommenderClient
    from streams.lag import LagProbe

    started = time.monotonic()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    settings = _demo_settings(workdir)
    log = (workdir / "up.log").open("wb")
    print(f"[demo] starting the embedded stack (log: {workdir / 'up.log'})", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "interest_graph.cli", "up"],
                            env={**os.environ, **settings.as_environ()}, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = RecommenderClient(settings.grpc_addr, timeout_s=2.0)
        probe = LagProbe(settings.bootstrap_servers, timeout_s=2.0)
        _wait("the gRPC server", lambda: client.status() is not None, 120, proc)
        t0 = time.monotonic()
        sent = replay_dataset(settings, source="auto", data_dir=data_dir, rate=None, limit=None, progress=True)
        _wait("consumer lag to reach zero",
              lambda: sum(p.lag for p in probe.topic_lag(settings.events_topic, settings.consumer_group)) == 0,
              300, proc)
        print(f"[demo] {sent} events ingested in {time.monotonic() - t0:.1f} s", flush=True)
        _wait("the refresh backlog to drain", lambda: client.status().changed_node_backlog == 0, 120, proc)
        before = client.status().embedding_version
        t0 = time.monotonic()
        train_command(settings, data_dir=None, out=None, epochs=None)
        print(f"[demo] trained in {time.monotonic() - t0:.1f} s; waiting for the refresh worker", flush=True)
        # The worker reloads the new checkpoint and republishes every embedding under a new version.
        _wait("embeddings from the new checkpoint", lambda: client.status().embedding_version > before, 120, proc)
        for user in _demo_users(settings):
            print_recommendations(settings, user, k=5, exclude_seen=True)
        _report_cold_start(client, proc)
        print_status(settings, watch=False, interval_s=1.0)
        print(f"[demo] done in {time.monotonic() - started:.0f} s", flush=True)
        return 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
