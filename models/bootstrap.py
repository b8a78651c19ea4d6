"""The refresh worker's own checkpoints: fitted once the graph is big enough, refitted as it doubles.

Before ``interest-graph train`` has made a checkpoint, the worker fits one itself once the graph
holds ``bootstrap_min_edges`` edges (``model_method``: SpectralCF by default), marks it
``source="bootstrap"`` and refits it each time the graph has doubled since. A checkpoint from
``train`` is never replaced. Each fit reads the graph in a thread of its own and runs in a process
at background priority (:mod:`models.fit_process`; a SpectralCF fit of a growing graph takes
seconds to minutes of a core) while rounds go on with the current model; the round after it lands
loads it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from graph_store.base import GraphStore, GraphStoreError
from models.config import RefreshConfig
from models.fit_process import FitProcess, FitProcessError
from models.methods import Checkpoint

log = logging.getLogger(__name__)

class BootstrapFits:
    """Starts a fit of the worker's own checkpoint when one is due, one at a time.

    Args:
        store (GraphStore): The graph to fit on.
        config (RefreshConfig): ``bootstrap_min_edges`` (0 = never), ``bootstrap_epochs``, ``model``.
        checkpoint_dir (Path): Where the fitted checkpoint is saved.
        device (str, optional): Torch device.
        on_fitted (Callable[[], None]): Called on the fit's thread after a checkpoint was saved.
        on_failed (Callable[[BaseException], None]): Called on the fit's thread when a fit failed.
    """

    def __init__(self, store: GraphStore, config: RefreshConfig, checkpoint_dir: Path, device: str | None,
                 on_fitted: Callable[[], None], on_failed: Callable[[BaseException], None]) -> None:
        self.store = store
        self.config = config
        self.checkpoint_dir = checkpoint_dir
        self.device = device
        self.on_fitted = on_fitted
        self.on_failed = on_failed
        self._after_edges = 0
        self._thread: threading.Thread | None = None
        self._process = FitProcess()

    def maybe_start(self, checkpoint: Checkpoint | None) -> bool:
        """Start a fit if the graph has reached the size for one; ``True`` if one started."""
        min_edges = self.config.bootstrap_min_edges
        if min_edges <= 0 or (checkpoint is not None and checkpoint.meta.get("source") != "bootstrap"):
            return False
        if self.running:
            return False
        needed = min_edges if checkpoint is None else 2 * int(checkpoint.meta.get("edges", 0))
        edges = self.store.counts()["edges"]
        if edges < max(needed, min_edges, self._after_edges):
            return False
        # Not again for this graph size, whatever the fit's outcome (a failed one says so).
        self._after_edges = 2 * edges
        self._thread = threading.Thread(target=self._fit, name="bootstrap-fit", daemon=True)
        self._thread.start()
        return True

    def _fit(self) -> None:
        # The snapshot is read here (the store lives in this process); the fit itself runs in the
        # background process, where its low priority cannot hold up this process's threads.
        try:
            trained = self._process.fit(self.store.snapshot(), self.config.model, self.checkpoint_dir,
                                        source="bootstrap", epochs=self.config.bootstrap_epochs, device=self.device)
        except (OSError, ValueError, GraphStoreError, FitProcessError) as exc:
            # E.g. a read-only model dir: refreshing goes on; try again once the graph doubled.
            log.error("refresh worker could not train its own checkpoint: %s", exc)
            self.on_failed(exc)
            return
        log.info("refresh worker trained checkpoint v%d on %d edges in %.1f s", trained["version"],
                 trained["edges"], trained["train_seconds"])
        self.on_fitted()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for a running fit; ``True`` when none is left running."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.running

    def close(self) -> None:
        """Stop the fit process (a fit still running is killed and not saved); call after :meth:`join`."""
        self._process.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
