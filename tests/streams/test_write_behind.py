"""WriteBehind: one write in flight, later records wait and go together, in order, with backpressure."""

from __future__ import annotations

import asyncio

import pytest

from streams.write_behind import WriteBehind


class SlowStore:
    """Records every batch it is given; each write waits until the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail_on: int | None = None

    async def apply(self, batch: list[int]) -> None:
        self.started.set()
        await self.release.wait()
        if self.fail_on is not None and self.fail_on in batch:
            raise RuntimeError(f"write of {batch} failed")
        self.batches.append(batch)


def _run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]  # each test is one coroutine


def test_records_added_during_a_write_go_together_in_order() -> None:
    async def scenario() -> None:
        store, failures = SlowStore(), []
        behind = WriteBehind(store.apply, max_batch=100, max_pending=400, on_failure=failures.append)
        await behind.add([1, 2])
        await store.started.wait()  # [1, 2] is in flight
        for k in range(3, 9):
            await behind.add([k])
        assert behind.pending == 6
        store.release.set()
        await behind.flush()
        assert store.batches == [[1, 2], [3, 4, 5, 6, 7, 8]] and failures == []

    _run(scenario())


def test_one_write_takes_at_most_max_batch_records() -> None:
    async def scenario() -> None:
        store = SlowStore()
        behind = WriteBehind(store.apply, max_batch=3, max_pending=10, on_failure=lambda exc: None)
        await behind.add([0])
        await store.started.wait()
        await behind.add(list(range(1, 8)))
        store.release.set()
        await behind.flush()
        assert store.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]

    _run(scenario())


def test_add_waits_while_too_many_records_are_pending() -> None:
    async def scenario() -> None:
        store = SlowStore()
        behind = WriteBehind(store.apply, max_batch=2, max_pending=4, on_failure=lambda exc: None)
        await behind.add([0, 1])
        await store.started.wait()
        await behind.add([2, 3, 4, 5])  # reaches max_pending: the next add must wait
        blocked = asyncio.ensure_future(behind.add([6]))
        await asyncio.sleep(0.01)
        assert not blocked.done() and behind.pending == 4
        store.release.set()
        await blocked
        await behind.flush()
        assert [r for batch in store.batches for r in batch] == list(range(7))

    _run(scenario())


def test_a_failed_write_is_reported_at_once_and_stops_later_writes() -> None:
    async def scenario() -> None:
        store, failures = SlowStore(), []
        store.fail_on = 2
        behind = WriteBehind(store.apply, max_batch=1, max_pending=10, on_failure=failures.append)
        await behind.add([1, 2, 3])
        store.release.set()
        with pytest.raises(RuntimeError, match="failed"):
            await behind.flush()
        assert store.batches == [[1]]  # 2 failed, 3 was never attempted (both stay unacked)
        assert len(failures) == 1 and "failed" in str(failures[0])
        with pytest.raises(RuntimeError, match="failed"):
            await behind.add([4])

    _run(scenario())


def test_cancel_stops_the_write_in_flight_without_reporting_a_failure() -> None:
    async def scenario() -> None:
        store, failures = SlowStore(), []
        behind = WriteBehind(store.apply, max_batch=10, max_pending=10, on_failure=failures.append)
        await behind.add([1])
        await store.started.wait()
        behind.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert store.batches == [] and failures == [] and behind.pending == 0

    _run(scenario())


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        WriteBehind(SlowStore().apply, max_batch=5, max_pending=4, on_failure=lambda exc: None)
