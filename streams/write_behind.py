"""Write-behind batching: collect records while the previous batch is being written.

Faust's per-event work (fetching, decoding, events, acks) runs on the event loop; the store write
runs in an executor. Writing a batch and then collecting the next one leaves each side idle half
the time. :class:`WriteBehind` keeps one write in flight and lets the agent keep collecting; when
the write ends, the next one takes everything collected meanwhile (up to ``max_batch``). Batches
thus grow with the store's latency on their own: small and fresh when the store keeps up, large
(and cheaper per record) under a backlog. Records are applied in arrival order, one batch at a
time, so the store sees the same sequence as without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class WriteBehind(Generic[T]):
    """One write in flight; records added meanwhile wait for the next.

    Args:
        apply (Callable[[list[T]], Awaitable[None]]): writes one batch (and acks it).
        max_batch (int): most records one write takes.
        max_pending (int): :meth:`add` waits while this many records wait for a write
            (backpressure: Faust stops fetching when the agent stops taking).
        on_failure (Callable[[BaseException], None]): told at once when a write fails; the failed
            batch and everything after it stay unwritten (and unacked).
    """

    def __init__(self, apply: Callable[[list[T]], Awaitable[None]], max_batch: int, max_pending: int,
                 on_failure: Callable[[BaseException], None]) -> None:
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError(f"need 1 <= max_batch <= max_pending, got {max_batch}, {max_pending}")
        self._apply = apply
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._on_failure = on_failure
        self._pending: list[T] = []
        self._writer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._room = asyncio.Event()
        self._room.set()

    @property
    def pending(self) -> int:
        """Records waiting for a write (not counting the one in flight)."""
        return len(self._pending)

    async def add(self, records: Sequence[T]) -> None:
        """Queue ``records``; starts a write if none is running. Raises the error of a failed write."""
        await self._room.wait()
        self._raise_failure()
        self._pending.extend(records)
        if len(self._pending) >= self._max_pending:
            self._room.clear()
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._drain())

    async def flush(self) -> None:
        """Wait until everything added so far is written (or a write failed: then raise its error)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)
        self._raise_failure()

    def cancel(self) -> None:
        """Stop the write in flight (on shutdown); nothing unwritten was acked."""
        if self._writer is not None:
            self._writer.cancel()

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                if len(self._pending) < self._max_pending:
                    self._room.set()
                await self._apply(batch)
        except asyncio.CancelledError:
            raise  # shutting down: the unwritten records are unacked and come back after a restart
        except BaseException as exc:
            self._failure = exc
            self._room.set()  # let a waiting add() see the failure
            self._on_failure(exc)
        finally:
            self._writer = None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
