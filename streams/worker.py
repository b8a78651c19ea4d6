"""Blocking entry point of the ingest worker: the Faust app run by a Faust ``Worker``.

``interest-graph ingest`` and ``interest-graph up`` (:mod:`interest_graph.launch`, the one way to
start it) call :func:`run_ingest_worker`. The Worker owns the calling (main) thread and its event
loop until SIGINT/SIGTERM, then stops the agents, waits for a store write in flight, flushes the
producer and returns the exit code.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faust
import mode

from graph_store.base import GraphStore
from streams.app import IngestApp
from streams.config import IngestConfig
from streams.ingest import IngestStats

log = logging.getLogger(__name__)

#: A blocking callable run (in a thread) when the worker has started or is about to stop.
Hook = Callable[[], None]


class RebalanceSensorStateFilter(logging.Filter):
    """Drops Faust's WARNING "Missing sensor state for rebalance #N", which every start logs.

    It is harmless: Faust keeps a sensor state from ``on_rebalance_start`` (partitions revoked) to
    ``on_rebalance_end`` (recovery done). This app keeps no Faust tables, so recovery ends the
    rebalance, clearing that state, before the consumer's assignment callback reaches
    ``on_rebalance_return``, which then finds no state and warns. Only Faust's own sensors lose the
    timing of that rebalance, and nothing here reads them (lag and stalls are measured from the
    broker, see :mod:`streams.lag`). Every other record passes, "rebalance end" warnings included.
    """

    _MESSAGE = re.compile(r"Missing sensor state for rebalance #\d+$")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and self._MESSAGE.search(record.getMessage()))


#: One instance, so installing it again (a process may run the worker more than once) adds nothing.
_REBALANCE_SENSOR_STATE_FILTER = RebalanceSensorStateFilter()


def quiet_rebalance_sensor_warning(app: faust.App) -> None:
    """Install :class:`RebalanceSensorStateFilter` on the logger ``app`` warns through."""
    # mode gives every service class one logger, named after its module (faust.app.base for faust.App).
    app.log.logger.addFilter(_REBALANCE_SENSOR_STATE_FILTER)


def _install_hooks(ingest: IngestApp, on_started: Hook | None, on_stopping: Hook | None) -> None:
    app = ingest.app
    if on_started is not None:
        @app.task
        async def run_on_started() -> None:
            await asyncio.get_running_loop().run_in_executor(None, on_started)

    if on_stopping is not None:
        @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode's handler alias defeats mypy
        async def run_on_stopping(sender: Any, *args: Any, **kwargs: Any) -> None:
            await asyncio.get_running_loop().run_in_executor(None, on_stopping)


def run_ingest_worker(config: IngestConfig, store: GraphStore, datadir: str, *,
                      stats: IngestStats | None = None, on_started: Hook | None = None,
                      on_stopping: Hook | None = None, services: Sequence[mode.ServiceT] = (),
                      loglevel: str = "warning") -> int:
    """Run the ingest agents until SIGINT/SIGTERM; returns the process exit code.

    Args:
        config (IngestConfig): broker, topics, group, batching and validation settings.
        store (GraphStore): where batches are applied (schema already ensured; the caller closes it).
        datadir (str): Faust's data directory (created if missing).
        stats (IngestStats, optional): counters for the caller's metrics (default: ``None``).
        on_started (Hook, optional): run once the app has started, e.g. start the refresh thread
            (default: ``None``).
        on_stopping (Hook, optional): run when the worker begins to stop (default: ``None``).
        services (Sequence[mode.ServiceT]): extra mode services started and stopped with the
            worker (default: ``()``).
        loglevel (str): log level the Worker configures (default: ``"warning"``).
    """
    Path(datadir).mkdir(parents=True, exist_ok=True)
    # The Worker closes its loop on exit; a fresh one lets a process run the worker more than once.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ingest = IngestApp(config, store, datadir=datadir, stats=stats)
    quiet_rebalance_sensor_warning(ingest.app)
    _install_hooks(ingest, on_started, on_stopping)
    worker = faust.Worker(ingest.app, *services, loop=loop, loglevel=loglevel, quiet=True,
                          redirect_stdouts=False)
    worker.spinner = None  # the startup spinner writes terminal escapes into `up`'s and Docker's logs
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover - execute_from_commandline always raises SystemExit
        code = 0
    finally:
        ingest.close()
    return code
