"""LadybugDB write stalls against the checkpoint threshold: the store alone, no Kafka, no Faust.

The same Zipf events as ``bench/ingest.py`` are planned (``plan_batch``) into batches of
``--batch`` events, then applied one by one to a fresh store per threshold, in one run, side by
side; each ``apply_batch`` is timed. A write that crosses the threshold checkpoints the
write-ahead log into the database file before it returns: that stall is what ingest freshness
waits behind.

``--readers N`` runs N threads beside the writer that read the whole graph back to back (as the
refresh worker, the metrics sampler and a bootstrap snapshot do in ``up``), and compares the
store's checkpoint (:mod:`graph_store.checkpoint_gate`) with LadybugDB's own automatic one at the
same threshold. Usage::

    .venv/bin/python bench/store_checkpoint.py --events 150000 --thresholds-mb 16 8 4 2 1
    .venv/bin/python bench/store_checkpoint.py --batch 2500 --thresholds-mb 16 4 --readers 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import ladybug
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import planned_batches, zipf_events  # noqa: E402

from core.domain import UpsertBatch  # noqa: E402
from graph_store.ladybug import LadybugStore  # noqa: E402
from streams.config import EventContract  # noqa: E402


class LadybugCheckpointStore(LadybugStore):
    """The reference: the same store, but LadybugDB checkpoints by itself inside the COMMIT that
    crosses the threshold (how the store ran before the gate). Opened as leniently as the store."""

    def _open_database(self) -> ladybug.Database:
        return ladybug.Database(self.path, checkpoint_threshold=self.checkpoint_bytes,
                                throw_on_wal_replay_failure=False)

    def _checkpoint_if_due(self) -> None:
        pass


def read_back_to_back(store: LadybugStore, stop: threading.Event) -> None:
    while not stop.is_set():
        store.snapshot()


def apply_all(batches: list[UpsertBatch], checkpoint_bytes: int, readers: int = 0,
              store_class: type[LadybugStore] = LadybugStore) -> np.ndarray:
    """Milliseconds per ``apply_batch`` on a fresh store checkpointing at ``checkpoint_bytes``,
    with ``readers`` threads reading the graph beside it."""
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp, \
            store_class(f"{tmp}/graph.lbdb", checkpoint_bytes=checkpoint_bytes) as store:
        store.ensure_schema()
        threads = [threading.Thread(target=read_back_to_back, args=(store, stop), daemon=True) for _ in range(readers)]
        for thread in threads:
            thread.start()
        took = []
        try:
            for batch in batches:
                started = time.perf_counter()
                store.apply_batch(batch)
                took.append((time.perf_counter() - started) * 1000)
        finally:
            stop.set()
            for thread in threads:  # before the store closes under them
                thread.join()
    return np.asarray(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=150_000, help="events (default: 150,000)")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch (default: 1,000)")
    parser.add_argument("--thresholds-mb", type=float, nargs="+", default=[16, 8, 4, 2, 1],
                        help="checkpoint thresholds to compare, MiB (default: 16 8 4 2 1; 16 is LadybugDB's)")
    parser.add_argument("--stall-ms", type=float, default=150.0, help="a batch slower than this counts as "
                        "a stall (default: 150 ms)")
    parser.add_argument("--readers", type=int, default=0, help="threads reading the graph beside the writer; "
                        "with any, LadybugDB's own checkpoint runs beside the store's (default: 0)")
    args = parser.parse_args()
    batches = planned_batches(list(zipf_events(args.events, 100_000, 20_000, seed=1)), args.batch, EventContract())
    print(f"{args.events:,} Zipf events in {len(batches)} batches of {args.batch:,}")
    kinds: list[tuple[str, type[LadybugStore]]] = [("store", LadybugStore)]
    if args.readers:
        kinds.append(("ladybug", LadybugCheckpointStore))
        print(f"{args.readers} reader thread(s) beside the writer")
    for mb in args.thresholds_mb:
        for name, store_class in kinds:
            ms = apply_all(batches, round(mb * 1024 * 1024), args.readers, store_class)
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"{name:>7} checkpoint at {mb:5g} MiB: batch p50 {p50:5.0f} ms  p99 {p99:5.0f} ms  slowest "
                  f"{ms.max():5.0f} ms  > {args.stall_ms:.0f} ms: {int((ms > args.stall_ms).sum()):3d} batches  "
                  f"total {ms.sum() / 1000:5.1f} s", flush=True)


if __name__ == "__main__":
    main()
