"""Faust's aiokafka transport with a configurable fetch wait and a cheaper hand-off per record.

**Fetch wait.** Faust creates its consumer with ``fetch_max_wait_ms=1500`` and no setting to change
it. Apache Kafka answers a waiting fetch as soon as records arrive, so the value only bounds idle
polling; Tansu (the broker used locally and in CI) answers it when the wait runs out, so every
record waited up to 1.5 s before the agent saw it: measured with plain aiokafka on Tansu, a record
produced every 100 ms reached the consumer after 397 ms (p50) with a 1,500 ms wait and after 2 ms
with a 100 ms one. A short wait costs a few idle fetch requests a second on either broker.

**Hand-off per record.** Faust's fetch loop passes every record to the streams with
``await self.wait_first(on_message(record), self.suspend_flow.wait())`` so that a hand-off blocked
on a full stream buffer is abandoned when a rebalance suspends the flow. ``wait_first`` wraps each
of those, plus the consumer's ``stopped`` and ``crashed`` events, in a task and runs ``asyncio.wait``:
four tasks per record, about a third of the event loop's time at full ingest (py-spy). Almost
always ``on_message`` finishes without suspending (the buffer has room), so :class:`FastHandoff`
first runs it eagerly up to its first suspension; only a record that does suspend goes through
Faust's ``wait_first``, with the same semantics as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from faust.transport.drivers import aiokafka as driver
from mode.services import WaitResults


class _Resumed:
    """Awaitable finishing a coroutine that was stepped once by hand and yielded ``pending``.

    Awaiting it waits for ``pending`` (what the coroutine was waiting on) and then drives the
    coroutine on, forwarding values and exceptions (cancellation included) as ``await`` would.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        steps = self.coro.__await__()
        pending = self.pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # forwarded into the coroutine, as await does
                try:
                    pending = steps.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = steps.send(sent)
                except StopIteration as stop:
                    return stop.value


def step_eagerly(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run ``coro`` up to its first suspension: ``(True, result)`` if it finished, else
    ``(False, awaitable)`` where awaiting the awaitable finishes it. Exceptions propagate."""
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, _Resumed(coro, pending)


class FastHandoff(driver.Consumer):
    """Faust's aiokafka consumer whose per-record ``wait_first`` skips the tasks when not needed."""

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        first = coros[0] if coros else None
        if not (asyncio.iscoroutine(first) and self._may_hand_off_eagerly()):
            return await super().wait_first(*coros, timeout=timeout)
        done, outcome = step_eagerly(first)
        if not done:
            return await super().wait_first(outcome, *coros[1:], timeout=timeout)
        for other in coros[1:]:
            if asyncio.iscoroutine(other):
                other.close()  # never started: closing it avoids "coroutine was never awaited"
        # Let the streams take the record now, as Faust's round trip through the loop did: a fetch
        # loop that ran ahead would fill their buffers, and a full buffer pauses the partition.
        await asyncio.sleep(0)
        return WaitResults([first], [outcome], False)

    def _may_hand_off_eagerly(self) -> bool:
        # When any of these is set, Faust's wait_first may answer differently (stopped, or the
        # flow suspended for a rebalance): keep its exact behaviour then.
        return not (self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set())


def kafka_transport(fetch_max_wait_s: float) -> type[driver.Transport]:
    """Faust's ``kafka://`` transport whose consumer waits at most ``fetch_max_wait_s`` per fetch
    and hands records to the streams without a task per record (see the module docstring)."""
    if fetch_max_wait_s <= 0:
        raise ValueError(f"fetch_max_wait_s must be > 0, got {fetch_max_wait_s}")
    wait_ms = max(1, round(fetch_max_wait_s * 1000))

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka hands this to its fetcher in start(), which has not run yet; Faust passes
            # no way to set it (see the module docstring), so this is the one place to change it.
            consumer._fetch_max_wait_ms = wait_ms
            return consumer

    class WaitingConsumer(FastHandoff):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = WaitingConsumer

    return Transport
