"""Cold start in the live system: catalog items nobody has touched get an embedding from their text.

:mod:`models.cold_start.text` holds the method (MiniLM text vectors, a ridge projection into the
embedding space); this module applies it to the store, for the refresh worker:

1. after a full round under a newly loaded model, :meth:`ColdItems.refit` fits the projection on
   a sample of *warm* items (items with catalog text and a fresh embedding of that model);
2. each pass, :meth:`ColdItems.pending` embeds up to ``batch`` catalog items that have no edge
   and no embedding written since the fit (``GraphStore.cold_catalog_items``).

Encoding text is slow on a CPU (MiniLM loads in ~5 s and encodes a few hundred titles a
second), so it runs in a thread of its own (:meth:`ColdItems.run_forever`) and never holds up a
refresh round. The refresh worker owns the embedding version counter, so it is the one that
writes: it hands over a refit request after a new model's full round, and each round takes a
finished batch (:meth:`ColdItems.take_ready`), writes it like any other embedding update and says
so (:meth:`ColdItems.mark_written`) before the next batch is looked up. Serving then scores a cold
item by the same dot product; once the item gets its first interaction the change log brings it
into an ordinary refresh round, which replaces its text embedding.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

import numpy as np

from core.domain import EmbeddingRows, NodeKind
from graph_store.base import GraphStore
from models.cold_start.text import TextEncoder, TextProjection, embed_items, text_extra_installed
from models.config import ColdStartConfig
from models.runtime import run_in_background

log = logging.getLogger(__name__)

#: Fewest warm items with text a projection is fitted on; fewer and cold items wait for more.
MIN_FIT_ITEMS = 20


@dataclass(frozen=True, slots=True)
class ColdBatch:
    """Text embeddings of cold items, computed under the projection fitted for ``model_version``."""

    model_version: int
    rows: EmbeddingRows


class ColdItems:
    """Embeds cold catalog items with a text projection fitted to the served model.

    Args:
        store (GraphStore): catalog text and the cold-item query.
        encoder (TextEncoder): the sentence encoder (loads its weights on first use).
        fit_items (int): warm items sampled to fit the projection (default: ``1000``).
        batch (int): most cold items embedded per :meth:`pending` call (default: ``512``).
        interval_s (float): pause between looks for cold items when none were left (default: ``5.0`` s).
        seed (int): seed of the warm-item sample (default: ``0``).
    """

    def __init__(self, store: GraphStore, encoder: TextEncoder, fit_items: int = 1000, batch: int = 512,
                 interval_s: float = 5.0, seed: int = 0) -> None:
        if fit_items < MIN_FIT_ITEMS or batch < 1:
            raise ValueError(f"fit_items must be >= {MIN_FIT_ITEMS} and batch >= 1, got {fit_items}, {batch}")
        self.store = store
        self.encoder = encoder
        self.fit_items = fit_items
        self.batch = batch
        self._rng = np.random.default_rng(seed)
        self._projection: TextProjection | None = None
        #: Model version the projection was fitted for (``None``: not fitted).
        self.fitted_for: int | None = None
        #: Embedding version written before the fit: cold items at or below it are re-embedded.
        self.written_up_to = 0
        self.interval_s = interval_s
        #: Failed steps (store or encoder errors) and the last error, for logs and tests.
        self.errors = 0
        self.last_error = ""
        self._refits: queue.Queue[tuple[EmbeddingRows, int, int]] = queue.Queue()
        self._ready: queue.Queue[ColdBatch] = queue.Queue(maxsize=1)
        self._written = threading.Event()
        self._written.set()

    @classmethod
    def from_config(cls, store: GraphStore, config: ColdStartConfig) -> ColdItems | None:
        """The cold-start pass ``config`` asks for, or ``None`` if disabled or the ``text`` extra is missing."""
        if config.cold_start_interval_s <= 0:
            return None
        if not text_extra_installed():
            log.warning("cold start from text is off: the 'text' extra is not installed "
                        "(pip install -e '.[text]'); catalog items without interactions get no embedding")
            return None
        return cls(store, TextEncoder(), fit_items=config.cold_start_fit_items, batch=config.cold_start_batch,
                   interval_s=config.cold_start_interval_s)

    @property
    def fitted(self) -> bool:
        return self._projection is not None

    def refit(self, items: EmbeddingRows, model_version: int, written_up_to: int) -> bool:
        """Fit the projection on a sample of ``items`` (the model's item embeddings) that have catalog
        text; returns whether enough of them had some. Either way the model version is remembered,
        so a catalog too small is not re-encoded every round."""
        self.fitted_for = model_version
        self.written_up_to = written_up_to
        self._projection = None
        order = self._rng.permutation(len(items.ids))[: 4 * self.fit_items]
        metas = self.store.item_meta(items.ids[k] for k in order.tolist())
        chosen = [k for k in order.tolist() if items.ids[k] in metas][: self.fit_items]
        if len(chosen) < MIN_FIT_ITEMS:
            log.info("cold start waits: %d warm items have catalog text, %d needed", len(chosen), MIN_FIT_ITEMS)
            return False
        text = self.encoder.encode_items([metas[items.ids[k]] for k in chosen])
        self._projection = TextProjection().fit(text, np.asarray(items.vectors)[chosen])
        log.info("cold start projection fitted on %d warm items (ridge alpha %g) for model v%d",
                 len(chosen), self._projection.alpha, model_version)
        return True

    def pending(self) -> EmbeddingRows:
        """Embeddings for up to ``batch`` cold catalog items (none when not fitted or none are left)."""
        if self._projection is None:
            return EmbeddingRows(NodeKind.ITEM, [], np.zeros((0, 0), dtype=np.float32))
        return embed_items(self.store.cold_catalog_items(self.written_up_to, self.batch), self.encoder,
                           self._projection)

    # --- the hand-over with the refresh worker ------------------------------------------------
    def request_refit(self, items: EmbeddingRows, model_version: int, written_up_to: int) -> None:
        """Called by the refresh worker after a new model's full round (only the latest request counts)."""
        self._refits.put((items, model_version, written_up_to))

    def take_ready(self) -> ColdBatch | None:
        """A finished batch for the refresh worker to write, if there is one (never blocks)."""
        try:
            return self._ready.get_nowait()
        except queue.Empty:
            return None

    def mark_written(self) -> None:
        """The batch taken last is in the store (or was dropped as stale): look for the next one."""
        self._written.set()

    def step(self) -> float:
        """One unit of work: a pending refit, else the next batch once the last one was written.
        Returns how long to wait before the next step, in seconds."""
        request = None
        while not self._refits.empty():
            request = self._refits.get_nowait()  # only the newest model matters
        if request is not None:
            self.refit(*request)
            self._written.set()  # a batch of the old model is dropped by the worker
        if not self.fitted or self.fitted_for is None:
            return self.interval_s
        if not self._written.is_set():
            return 0.05  # the worker has not written the last batch yet
        batch = self.pending()
        if not batch.ids:
            return self.interval_s
        self._written.clear()
        self._ready.put(ColdBatch(self.fitted_for, batch))
        return 0.0 if len(batch.ids) >= self.batch else self.interval_s

    def run_forever(self, stop: threading.Event) -> None:
        """Steps until ``stop`` is set; errors are logged and counted, and the step is retried.

        At background priority: items without interactions wait a little longer for their text
        vectors rather than ingest and serving waiting for the encoder."""
        run_in_background()
        delay = 0.0
        while not stop.wait(delay):
            try:
                delay = self.step()
            except Exception as exc:  # an extra: log it, retry later, never kill the process
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("cold start from text failed; retrying in %.0f s", max(self.interval_s, 1.0))
                delay = max(self.interval_s, 1.0)
