"""The refresh worker: changed nodes -> k-hop subgraph -> embeddings of the checkpoint's method.

Each round takes the nodes changed since the refresh cursor, reads the smallest subgraph that
determines the embeddings the new edges changed, and hands it to the method's rounds
(:class:`~models.protocol.RefreshMethod`, pure computation): for a SpectralCF checkpoint (the
default of ``interest-graph train``) the seeds themselves from their 1-hop rows
(:mod:`models.spectral.refresh`); for a LightGCN one the nodes within ``K`` hops of the seeds,
propagated over their ``2K``-hop subgraph (:mod:`models.lightgcn.refresh`). The worker does all
the I/O: the embeddings, the derived base rows and the new cursor go to the store in one write,
stamped with a version one above the last; ``refresh_state()`` at start therefore resumes after a
restart.

The model comes from the checkpoint in ``checkpoint_dir``. A new checkpoint (or the model this
process starts with) makes the next round a *full* round: one computation over a snapshot of the
whole graph, so serving holds embeddings of one model for every node, with bases derived afresh
for nodes the checkpoint never saw. (Stored derived rows cannot be tied to the model that made
them, so the worker persists them for inspection but never reads them back.) A restart thus
costs one full round, then continues with the stored version and cursor. When more changes are
pending than one round takes, a LightGCN worker runs a full round (cheaper than many overlapping
K-hop subgraphs); a SpectralCF one works the backlog off in rounds of ``refresh_max_seeds`` nodes,
whose cost grows with the changes, not with the graph.

With ``live_users`` (``up``) and a method whose user vectors are linear in the user's row
(SpectralCF), users are left to serving: each full round carries the method's
:class:`~core.domain.UserFoldIn` instead of user rows, incremental rounds refresh only the items
the model does not know, and serving computes a user's vector from the committed row per request.
A click is then served as soon as its edge is committed, and no user vector is ever written.

Before any checkpoint exists, every node gets an id-hashed base propagated by LightGCN
(:mod:`models.lightgcn.base_embeddings`), so embeddings, and popularity-like recommendations, exist
from the first click on; the worker fits checkpoints of its own as the graph grows
(:mod:`models.bootstrap`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from core.domain import ChangeSet, EmbeddingRows, EmbeddingUpdate, NodeKind, UserFoldIn, epoch_ms
from core.retry import BACKOFF, RetryPolicy
from graph_store.base import GraphStore, GraphStoreError, StoreUnavailableError
from models.bootstrap import BootstrapFits
from models.cold_start.catalog import ColdItems
from models.config import RefreshConfig
from models.methods import Checkpoint, load_checkpoint, refresh_method
from models.model_dir import CheckpointError, manifest_version
from models.persister import EmbeddingPersister
from models.protocol import RefreshMethod, RoundOutput

log = logging.getLogger(__name__)

#: How long stopping waits for the cold-start thread to finish the batch it is encoding, in seconds.
COLD_JOIN_S = 60.0


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What one round did. ``kind`` is ``"incremental"``, ``"full"`` or ``"idle"``."""

    kind: str
    seeds: int = 0
    nodes_refreshed: int = 0
    subgraph_nodes: int = 0
    subgraph_edges: int = 0
    version: int = 0
    cursor: int = 0
    ms: float = 0.0


@dataclass(frozen=True, slots=True)
class WrittenRound:
    """Embeddings the worker has just written to the store, with the moments the round passed.

    Args:
        update (EmbeddingUpdate): what was written (version, cursor, rows).
        started_ms (int): when the round read the changes (epoch ms).
        computed_ms (int): when the method had computed the embeddings (epoch ms).
        written_ms (int): when the round was handed over: its store write committed, or, with
            write-behind, it was queued for the store (epoch ms).
    """

    update: EmbeddingUpdate
    started_ms: int
    computed_ms: int
    written_ms: int


#: Told of each round's embeddings on the worker's thread, right after its store write committed
#: (with write-behind: right after it was queued for the store).
WriteListener = Callable[[WrittenRound], None]


@dataclass(frozen=True, slots=True)
class RefreshStats:
    """Counters for metrics and ``status``; a copy, safe to read from any thread."""

    rounds: int = 0
    full_rounds: int = 0
    nodes_refreshed: int = 0
    last_round_ms: float = 0.0
    errors: int = 0
    last_error: str = ""
    version: int = 0
    cursor: int = 0
    model_version: int = -1
    bootstraps: int = 0
    #: Catalog items embedded from their text (cold start), re-embeddings after a new model included.
    cold_items: int = 0


class RefreshWorker:
    """Keeps the store's embeddings equal to a full recompute of the current graph under the
    checkpoint's method (SpectralCF fold-in or LightGCN propagation).

    Args:
        store (GraphStore): The graph; embeddings are written back to it.
        config (RefreshConfig): ``refresh_interval_s``, ``refresh_max_seeds``, ``refresh_fanout``
            (LightGCN only), ``model.num_layers`` and ``model.embedding_dim`` (the last two only while
            there is no checkpoint), ``bootstrap_*`` and ``model``, what
            :func:`~models.methods.train_from_store` reads.
        checkpoint_dir (str or Path): A model dir (:mod:`models.model_dir`), watched for new versions.
        device (str, optional): Torch device. (default: CUDA if present, else CPU)
        cold (ColdItems, optional): embeds catalog items without interactions from their text,
            every ``cold_start_interval_s``; ``None`` = no cold start. (default: :obj:`None`)
        write_behind (bool, optional): hand each round to the listeners first and write the store
            behind them, coalesced every ``persist_interval_s`` (:mod:`models.persister`); for ``up``,
            whose serving index is a listener. Otherwise every round is written before anyone hears
            of it, as serving processes that read the store need. (default: :obj:`False`)
        live_users (bool, optional): where the method's user vectors are linear in the user's row
            (:meth:`~models.protocol.RefreshMethod.fold_in`: SpectralCF), leave users to the
            listeners: rounds refresh items only and each full round carries the fold-in, which the
            serving index of ``up`` computes user vectors from at request time. (default: :obj:`False`)
    """

    def __init__(self, store: GraphStore, config: RefreshConfig, checkpoint_dir: str | Path,
                 device: str | None = None, cold: ColdItems | None = None, write_behind: bool = False,
                 live_users: bool = False) -> None:
        self.store = store
        self.config = config
        self.checkpoint_dir = Path(checkpoint_dir)
        self.device = device
        self._method: RefreshMethod | None = None
        self._checkpoint: Checkpoint | None = None
        self._model_version: int | None = None
        self._broken_version: int | None = None
        self._needs_full = True
        self._version = 0
        self._cursor = 0
        self._state_loaded = False
        self._stats = RefreshStats()
        self._lock = threading.Lock()
        self._cold = cold
        #: Item embeddings of the last full round (what a cold-start projection is fitted on).
        self._full_items: EmbeddingRows | None = None
        self._listeners: list[WriteListener] = []
        self._bootstrap = BootstrapFits(store, config, self.checkpoint_dir, device, self._bootstrapped, self._fail)
        self.persister = (EmbeddingPersister(store, config.persist_interval_s)
                          if write_behind and config.persist_interval_s > 0 else None)
        self.live_users = live_users
        #: The fold-in of the loaded model while users are left to serving (``live_users``), else None.
        self._fold_in: UserFoldIn | None = None
        self._wake = threading.Event()
        self._round_started_ms = 0
        self._computed_ms = 0

    def subscribe(self, listener: WriteListener) -> None:
        """Call ``listener`` after every embedding write (in ``up``: the serving index and freshness)."""
        self._listeners.append(listener)

    def wake(self) -> None:
        """Start the next round now instead of after ``refresh_interval_s`` (a batch was just committed
        by an agent in this process, so there are changes to refresh)."""
        self._wake.set()

    @property
    def stats(self) -> RefreshStats:
        with self._lock:
            return self._stats

    @property
    def layers(self) -> int:
        """Hops a change reaches: ``K`` for LightGCN, 1 for SpectralCF."""
        return self._method.layers if self._method is not None else self.config.model.num_layers

    @property
    def method(self) -> str:
        """``"spectral"`` or ``"lightgcn"``: what the served embeddings are."""
        return self._method.method if self._method is not None else "lightgcn"

    # --- one round --------------------------------------------------------------------------
    def run_once(self) -> RefreshReport:
        """Load state and model if needed, then run one full or incremental round."""
        started = time.perf_counter()
        self._load_state()
        self._load_model()
        self._round_started_ms = epoch_ms()
        changes: ChangeSet | None = None
        if not self._needs_full:
            # Users folded in by serving never need a round: neither read them (a scan of every user).
            kinds = (NodeKind.ITEM,) if self._fold_in is not None else (NodeKind.USER, NodeKind.ITEM)
            changes = self.store.changes_since(self._cursor, limit=self.config.refresh_max_seeds, kinds=kinds)
            # A cut change set means a backlog. Where a change reaches past its own node (LightGCN's
            # K hops) one full pass beats many overlapping subgraphs; where each node depends on its
            # own edges only (SpectralCF) the backlog is worked off a prefix at a time, so a round
            # costs what its changes cost, never what the graph costs.
            self._needs_full = len(changes.nodes) >= self.config.refresh_max_seeds and self.layers > 1
        if self._needs_full:
            report = self._full_round()
        elif changes:
            report = self._incremental_round(changes)
        elif changes is not None and changes.upto > self._cursor:
            # Batches that changed no node (dead letters only, events of forgotten users): the
            # cursor moves past them, so the backlog reads zero.
            self._computed_ms = epoch_ms()
            self._write([], [], changes.upto)
            report = RefreshReport("incremental", version=self._version, cursor=changes.upto)
        else:
            report = RefreshReport("idle", version=self._version, cursor=self._cursor)
        report = replace(report, ms=(time.perf_counter() - started) * 1000)
        self._count(report)
        if report.kind != "idle":
            self._bootstrap.maybe_start(self._checkpoint)
        self._cold_start()
        return report

    def _cold_start(self) -> None:
        """Hand cold start a refit after a new model's full round; write a batch it has finished."""
        cold = self._cold
        if cold is None or self._model_version is None or self._model_version < 0:
            return  # hashed bases (no checkpoint) have no space worth projecting text into
        if self._full_items is not None and cold.fitted_for != self._model_version:
            cold.request_refit(self._full_items, self._model_version, written_up_to=self._version)
        self._full_items = None
        ready = cold.take_ready()
        if ready is None:
            return
        try:
            if ready.model_version == self._model_version and ready.rows.ids:
                self._round_started_ms = self._computed_ms = epoch_ms()
                # Durable at once: the next cold batch is looked up in the store, which must know this one.
                self._write([ready.rows], [], self._cursor, durable=True)
                with self._lock:
                    self._stats = replace(self._stats, cold_items=self._stats.cold_items + len(ready.rows.ids),
                                          version=self._version)
        finally:
            cold.mark_written()  # written, stale or failed: either way the store says what is still cold

    def _load_state(self) -> None:
        if not self._state_loaded:
            state = self.store.refresh_state()
            self._version, self._cursor = state.version, state.cursor
            self._state_loaded = True
            log.info("refresh resumes at version %d, cursor %d", self._version, self._cursor)

    def _load_model(self) -> None:
        """(Re)load the checkpoint when its manifest version changed; no checkpoint = hashed bases."""
        version = manifest_version(self.checkpoint_dir)
        if version in (self._model_version, self._broken_version):
            return
        checkpoint: Checkpoint | None = None
        if version >= 0:
            try:
                checkpoint = load_checkpoint(self.checkpoint_dir, device=self.device)
            except CheckpointError as exc:
                # Saves are atomic, so this version stays broken: say so once, keep refreshing
                # with the current model, and try again when a newer version appears.
                self._broken_version = version
                self._fail(exc)
                log.error("checkpoint v%d is unreadable, keeping the current model: %s", version, exc)
                if self._method is not None:
                    return
        self._checkpoint = checkpoint
        self._method = refresh_method(checkpoint, self.config, self.device)
        self._model_version = version if checkpoint is not None else -1
        self._fold_in = self._method.fold_in(self._model_version) if self.live_users else None
        # Stored embeddings may come from another model (or none): publish this one everywhere.
        self._needs_full = True
        log.info("refresh model: %s", f"{self._method.method} checkpoint v{version}" if checkpoint
                 else "hashed bases")

    def _bootstrapped(self) -> None:
        with self._lock:
            self._stats = replace(self._stats, bootstraps=self._stats.bootstraps + 1)
        self.wake()  # load it now

    def join_bootstrap(self, timeout_s: float | None = None) -> bool:
        """Wait for a running bootstrap fit; ``True`` when none is left running."""
        return self._bootstrap.join(timeout_s)

    def close_bootstrap(self) -> None:
        """Stop the bootstrap fit process (:meth:`run_forever` does on stop; callers of
        :meth:`run_once` do when done)."""
        self._bootstrap.close()

    def _full_round(self) -> RefreshReport:
        assert self._method is not None
        snapshot = self.store.snapshot()
        out = self._method.full(snapshot, users=self._fold_in is None)
        self._computed_ms = epoch_ms()
        cursor = max(self._cursor, snapshot.seq)
        self._write(out.rows, out.derived, cursor, fold_in=self._fold_in)
        self._needs_full = False
        self._full_items = next((r for r in out.rows if r.kind == NodeKind.ITEM), None)
        return self._report("full", out, 0, cursor)

    def _incremental_round(self, changes: ChangeSet) -> RefreshReport:
        method = self._method
        assert method is not None
        seeds = method.seeds(changes.nodes)
        if not seeds:  # only fitted items (and live users) changed: nothing moves, the cursor does
            self._computed_ms = epoch_ms()
            self._write([], [], changes.upto)
            return RefreshReport("incremental", seeds=len(changes.nodes), version=self._version, cursor=changes.upto)
        sub = self.store.k_hop_subgraph(seeds, hops=method.read_hops, fanout=method.fanout)
        out = method.incremental(sub)
        self._computed_ms = epoch_ms()
        self._write(out.rows, out.derived, changes.upto)
        return self._report("incremental", out, len(changes.nodes), changes.upto)

    def _report(self, kind: str, out: RoundOutput, seeds: int, cursor: int) -> RefreshReport:
        return RefreshReport(kind, seeds=seeds, nodes_refreshed=out.nodes_refreshed,
                             subgraph_nodes=len(out.subgraph.user_ids) + len(out.subgraph.item_ids),
                             subgraph_edges=out.subgraph.num_edges, version=self._version, cursor=cursor)

    def _write(self, rows: list[EmbeddingRows], derived: list[EmbeddingRows], cursor: int,
               durable: bool = False, fold_in: UserFoldIn | None = None) -> None:
        """One store write (or, with write-behind, one offer to the persister; ``durable`` flushes it
        too); the in-memory version and cursor move only once it succeeded."""
        update = EmbeddingUpdate(version=self._version + 1, cursor=cursor, rows=rows, base=derived,
                                 created_ms=epoch_ms(), fold_in=fold_in)
        if self.persister is None:
            self.store.write_embeddings(update)
        else:
            self.persister.offer(update)
            if durable and not self.persister.flush():
                raise StoreUnavailableError(f"writing embeddings failed: {self.persister.last_error}")
        self._version, self._cursor = update.version, cursor
        written = WrittenRound(update, self._round_started_ms, self._computed_ms, epoch_ms())
        for listener in self._listeners:
            try:
                listener(written)
            except Exception:  # the write is durable; serving's loader still picks it up from the store
                log.exception("embedding write listener %r failed", listener)

    def _count(self, report: RefreshReport) -> None:
        with self._lock:
            s = self._stats
            self._stats = replace(
                s, rounds=s.rounds + (report.kind != "idle"),
                full_rounds=s.full_rounds + (report.kind == "full"),
                nodes_refreshed=s.nodes_refreshed + report.nodes_refreshed,
                last_round_ms=report.ms if report.kind != "idle" else s.last_round_ms,
                version=self._version, cursor=self._cursor,
                model_version=self._model_version if self._model_version is not None else -1)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._stats = replace(self._stats, errors=self._stats.errors + 1,
                                  last_error=f"{type(exc).__name__}: {exc}")

    # --- the loop ---------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        """Run rounds until ``stop`` is set; never dies on an error (it is logged, counted, retried)."""
        interval = self.config.refresh_interval_s
        retry = replace(BACKOFF, first_s=interval)
        if self.persister is not None:
            self.persister.start()
        cold = None
        if self._cold is not None:
            cold = threading.Thread(target=self._cold.run_forever, args=(stop,), name="cold-start", daemon=True)
            cold.start()
        try:
            self._rounds(stop, interval, retry)
        finally:
            # Joined before the store closes and the process exits: an encoder left running inside torch
            # while the interpreter finalises aborts the process ("terminate called without an active exception").
            if cold is not None:
                cold.join(COLD_JOIN_S)
                if cold.is_alive():
                    log.warning("cold start still encoding %.0f s after stop; leaving it", COLD_JOIN_S)
            # A fit still running is in its own process: stopping kills it (the model dir keeps the last
            # whole checkpoint, and the graph will have grown enough again after the restart).
            self.close_bootstrap()
            if self.persister is not None:
                self.persister.close()

    def _sleep(self, stop: threading.Event, delay: float, wakeable: bool) -> bool:
        """Wait ``delay`` seconds, or until :meth:`wake` when ``wakeable`` (a failing store backs off
        however often batches commit); ``False`` once ``stop`` is set."""
        deadline = time.monotonic() + delay
        while not stop.is_set():
            left = deadline - time.monotonic()
            # Short slices, so a stop is seen quickly even by a worker that nobody wakes.
            woken = self._wake.wait(min(max(left, 0.0), 0.1)) and wakeable
            if left <= 0 or woken:
                self._wake.clear()
                return not stop.is_set()
            if not wakeable:
                stop.wait(min(max(left, 0.0), 0.1))
        return False

    def _rounds(self, stop: threading.Event, interval: float, retry: RetryPolicy) -> None:
        failures, delay = 0, 0.0
        while self._sleep(stop, delay, wakeable=not failures):
            try:
                report = self.run_once()
            except GraphStoreError as exc:
                self._fail(exc)
                level = logging.WARNING if exc.retryable else logging.ERROR
                log.log(level, "refresh round failed (%s), retrying: %s", type(exc).__name__, exc)
                delay, failures = retry.delay(failures), failures + 1
                continue
            except Exception as exc:
                self._fail(exc)
                log.exception("refresh round failed unexpectedly; retrying")
                delay, failures = retry.delay(failures), failures + 1
                continue
            if report.kind != "idle":
                log.debug("refresh %s: %d seeds, %d nodes in %.1f ms", report.kind, report.seeds,
                          report.nodes_refreshed, report.ms)
            delay, failures = interval, 0
