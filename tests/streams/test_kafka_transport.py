"""The Kafka transport: a fetch wait is a positive duration; the per-record hand-off runs eagerly
when it can and keeps Faust's semantics (finish, errors, cancellation, suspended flow) otherwise."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.transport.drivers import aiokafka as driver

from streams.kafka_transport import FastHandoff, kafka_transport, step_eagerly


def test_transport_is_fausts_kafka_transport_with_our_consumer() -> None:
    transport = kafka_transport(0.1)
    assert issubclass(transport, driver.Transport)
    assert issubclass(transport.Consumer, driver.Consumer) and transport.Consumer is not driver.Consumer


@pytest.mark.parametrize("wait_s", [0.0, -1.0])
def test_fetch_wait_must_be_positive(wait_s: float) -> None:
    with pytest.raises(ValueError, match="fetch_max_wait_s"):
        kafka_transport(wait_s)


# --- the per-record hand-off (FastHandoff) ---------------------------------------------------

def _consumer() -> FastHandoff:
    """Our transport's consumer object (not started: it never connects in these tests)."""
    app = faust.App(f"handoff-{id(object())}", broker="kafka://127.0.0.1:9", web_enabled=False,
                    autodiscover=False)
    app.transport = kafka_transport(0.1)(app.conf.broker_consumer, app)
    consumer = app.consumer
    assert isinstance(consumer, FastHandoff)
    return consumer


async def _sleep_then(value: int, log: list[str]) -> int:
    log.append("started")
    try:
        await asyncio.sleep(0.01)
        log.append("resumed")
        return value
    finally:
        log.append("finally")


async def _raise_after_sleep() -> None:
    await asyncio.sleep(0)
    raise LookupError("raised after resuming")


def test_step_eagerly_finishes_a_coroutine_that_never_suspends() -> None:
    async def ready() -> int:
        return 7

    assert step_eagerly(ready()) == (True, 7)


def test_step_eagerly_hands_back_the_rest_of_a_suspending_coroutine() -> None:
    async def run() -> tuple[list[str], int]:
        log: list[str] = []
        done, rest = step_eagerly(_sleep_then(3, log))
        assert not done and log == ["started"]  # ran up to its first suspension, not further
        return log, await rest

    log, value = asyncio.run(run())
    assert value == 3 and log == ["started", "resumed", "finally"]


def test_exceptions_after_resuming_propagate() -> None:
    async def run() -> None:
        done, rest = step_eagerly(_raise_after_sleep())
        assert not done
        await rest

    with pytest.raises(LookupError, match="after resuming"):
        asyncio.run(run())


def test_cancelling_the_waiter_cancels_the_resumed_coroutine() -> None:
    async def run() -> list[str]:
        log: list[str] = []
        _, rest = step_eagerly(_sleep_then(3, log))
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return log

    assert asyncio.run(run()) == ["started", "finally"]  # cancelled inside its sleep, cleaned up


def test_wait_first_takes_the_eager_path_when_the_flow_runs() -> None:
    async def run() -> None:
        consumer = _consumer()
        never = asyncio.Event()

        async def ready() -> int:
            return 5

        results = await consumer.wait_first(ready(), never.wait())
        assert results.results == [5] and not results.stopped

    asyncio.run(run())


def test_wait_first_waits_for_a_suspending_hand_off() -> None:
    async def run() -> list[str]:
        consumer, log = _consumer(), []
        results = await consumer.wait_first(_sleep_then(9, log), consumer.suspend_flow.wait())
        assert results.results == [9] and not results.stopped
        return log

    assert asyncio.run(run()) == ["started", "resumed", "finally"]


def test_wait_first_is_fausts_own_while_the_flow_is_suspended() -> None:
    """A rebalance suspends the flow: Faust's wait_first then reports the suspension as a winner
    beside the hand-off, exactly as without our transport."""
    async def run() -> None:
        consumer = _consumer()
        consumer.suspend_flow.set()

        async def ready() -> int:
            return 5

        results = await consumer.wait_first(ready(), consumer.suspend_flow.wait())
        assert results.results == [5, True]

    asyncio.run(run())
