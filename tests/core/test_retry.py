"""One retry policy: waits grow and are capped, jitter stays in its bounds, only retryable errors are retried."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

import pytest

from core.errors import InterestGraphError, is_retryable
from core.retry import BACKOFF, RetryPolicy
from core.settings import SettingsError
from graph_store.base import GraphStoreError, StaleBatchError, StoreUnavailableError
from interest_graph.embedded_broker import BrokerStartError
from streams.kafka_admin import BrokerUnavailableError


class Down(InterestGraphError):
    retryable = True


class Broken(InterestGraphError):
    pass


def failing(errors: list[Exception], result: str = "done") -> tuple[list[int], Callable[[], str]]:
    """A call raising ``errors`` one by one, then returning ``result``; and the count of its calls."""
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return calls, call


def test_waits_double_from_the_first_up_to_the_cap() -> None:
    policy = RetryPolicy(first_s=0.1, max_s=1.0, multiplier=2.0, jitter=0.0)
    assert [policy.nominal(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert list(itertools.islice(policy.delays(), 6)) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.nominal(100_000) == 1.0  # hours of failures overflow no float
    assert RetryPolicy(first_s=8.0, max_s=5.0).nominal(0) == 5.0  # the cap bounds the first wait too


def test_jitter_draws_each_wait_from_its_upper_part() -> None:
    policy = RetryPolicy(first_s=1.0, max_s=4.0, jitter=0.5)
    rng = random.Random(7)
    for attempt in range(5):
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        nominal = policy.nominal(attempt)
        assert all(0.5 * nominal <= w <= nominal for w in waits)
        assert max(waits) - min(waits) > 0.3 * nominal  # really spread, not one value
    assert RetryPolicy(first_s=0.1, max_s=5.0, multiplier=2.0, jitter=0.5) == BACKOFF


@pytest.mark.parametrize("bad", [dict(first_s=-1.0), dict(max_s=-1.0), dict(multiplier=0.5), dict(jitter=1.5)])
def test_a_policy_that_cannot_wait_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


def test_call_retries_retryable_errors_with_the_policy_waits() -> None:
    calls, call = failing([Down("starting"), StoreUnavailableError("locked"), Down("still starting")])
    slept: list[float] = []
    told: list[tuple[str, float]] = []
    policy = RetryPolicy(first_s=0.5, max_s=10.0, jitter=0.0)
    result = policy.call(call, sleep=slept.append, on_retry=lambda exc, wait: told.append((str(exc), wait)))
    assert result == "done" and calls[0] == 4
    assert slept == [0.5, 1.0, 2.0]
    assert told == [("starting", 0.5), ("locked", 1.0), ("still starting", 2.0)]


@pytest.mark.parametrize("error", [Broken("bug"), StaleBatchError("applied"), ValueError("not ours"),
                                   GraphStoreError("schema broken")])
def test_call_raises_other_errors_at_once(error: Exception) -> None:
    calls, call = failing([error])
    slept: list[float] = []
    with pytest.raises(type(error)):
        BACKOFF.call(call, sleep=slept.append)
    assert calls[0] == 1 and slept == []


def test_retry_if_chooses_what_is_retried() -> None:
    calls, call = failing([TimeoutError(), TimeoutError()])
    assert BACKOFF.call(call, retry_if=lambda exc: isinstance(exc, TimeoutError), sleep=lambda _: None) == "done"
    assert calls[0] == 3


def test_call_async_retries_then_returns() -> None:
    errors: list[Exception] = [Down("restarting"), Down("restarting")]
    calls = 0

    async def call() -> int:
        nonlocal calls
        calls += 1
        if errors:
            raise errors.pop(0)
        return 42

    assert asyncio.run(RetryPolicy(first_s=0.001).call_async(call)) == 42
    assert calls == 3


def test_call_async_raises_a_non_retryable_error_at_once() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise Broken("bug")

    with pytest.raises(Broken):
        asyncio.run(BACKOFF.call_async(call))
    assert calls == 1


def test_call_async_is_cancelled_while_it_waits() -> None:
    attempts = 0

    async def never_up() -> None:
        nonlocal attempts
        attempts += 1
        raise Down("down for good")

    async def run() -> None:
        task = asyncio.create_task(RetryPolicy(first_s=60.0, max_s=60.0).call_async(never_up))
        await asyncio.sleep(0.01)  # the first attempt failed; the task waits its 30-60 s
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=1.0)

    asyncio.run(run())
    assert attempts == 1


def test_every_error_says_through_its_class_whether_it_is_retryable() -> None:
    retryable = [StoreUnavailableError("locked"), BrokerUnavailableError("restarting")]
    not_retryable = [GraphStoreError("broken"), StaleBatchError("applied"), BrokerStartError("port taken"),
                     SettingsError("bad"), RuntimeError("not ours")]
    assert all(is_retryable(exc) for exc in retryable)
    assert not any(is_retryable(exc) for exc in not_retryable)
    # Raised where a RuntimeError was raised before: callers catching that still catch them.
    assert isinstance(BrokerUnavailableError("x"), RuntimeError) and isinstance(BrokerStartError("x"), RuntimeError)
