"""One way to wait and try again: capped exponential backoff with jitter.

Every loop that retries (opening the store, store writes, the Kafka cluster id, dead-letter sends,
the refresh rounds, the index loader) waits according to a :class:`RetryPolicy`: the first delay,
multiplied per failed attempt up to a cap, each delay drawn at random from its upper part (jitter)
so that components restarted together, by a broker or store outage, do not retry in step.

:meth:`RetryPolicy.call` and :meth:`RetryPolicy.call_async` run a call until it succeeds, retrying
the errors that say they are retryable (:func:`core.errors.is_retryable`) and raising every other
one at once; :meth:`RetryPolicy.delay` and :meth:`RetryPolicy.delays` give the waits to loops that
decide for themselves what to do between attempts. They retry for as long as it takes: each
caller's docstring says why waiting beats crashing there.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from core.errors import is_retryable

T = TypeVar("T")

#: Told of each failed attempt before the wait: the error and the seconds about to be waited.
OnRetry = Callable[[Exception, float], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Waits between attempts: ``first_s * multiplier ** n`` before retry ``n + 1``, at most ``max_s``.

    Args:
        first_s (float): the first wait, in seconds (default: ``0.1``).
        max_s (float): the longest wait, in seconds (default: ``5.0``); it caps ``first_s`` too.
        multiplier (float): growth per failed attempt, ``>= 1`` (default: ``2.0``).
        jitter (float): share of each wait drawn at random, in ``[0, 1]``: a wait is uniform in
            ``[(1 - jitter) * w, w]`` for its nominal ``w`` (default: ``0.5``; ``0`` = none).

    Raises:
        ValueError: a negative wait, a multiplier below 1 or a jitter outside ``[0, 1]``.
    """

    first_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (self.first_s >= 0 and self.max_s >= 0 and self.multiplier >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(f"need first_s >= 0, max_s >= 0, multiplier >= 1 and 0 <= jitter <= 1, got {self}")

    def nominal(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (0 = the first failure), before jitter."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        try:
            wait = self.first_s * self.multiplier**attempt
        except OverflowError:  # hours of failures: long since at the cap
            return self.max_s
        return min(wait, self.max_s)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt number ``attempt``, jittered (``rng``: default the module's)."""
        draw = (rng or random).uniform(1.0 - self.jitter, 1.0)
        return self.nominal(attempt) * draw

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The successive jittered waits, without end: one per failed attempt."""
        attempt = 0
        while True:
            yield self.delay(attempt, rng)
            attempt += 1

    def call(self, fn: Callable[[], T], *, retry_if: Callable[[Exception], bool] = is_retryable,
             on_retry: OnRetry | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
        """``fn()`` until it returns, waiting between attempts; an error ``retry_if`` refuses is raised.

        Args:
            fn (Callable[[], T]): the call.
            retry_if (Callable[[Exception], bool]): which errors to retry (default: those whose
                class says they are retryable, :func:`core.errors.is_retryable`).
            on_retry (OnRetry, optional): told of each retried error and the wait (default: ``None``).
            sleep (Callable[[float], None]): how to wait (default: :func:`time.sleep`).
        """
        for wait in self.delays():
            try:
                return fn()
            except Exception as exc:
                if not retry_if(exc):
                    raise
                if on_retry is not None:
                    on_retry(exc, wait)
            sleep(wait)
        raise AssertionError("unreachable: delays() has no end")

    async def call_async(self, fn: Callable[[], Awaitable[T]], *,
                         retry_if: Callable[[Exception], bool] = is_retryable, on_retry: OnRetry | None = None) -> T:
        """``await fn()`` until it returns, as :meth:`call`; cancelling the task ends the waiting at once."""
        for wait in self.delays():
            try:
                return await fn()
            except Exception as exc:  # CancelledError is no Exception: cancellation is never retried
                if not retry_if(exc):
                    raise
                if on_retry is not None:
                    on_retry(exc, wait)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: delays() has no end")


#: The policy of every retry loop unless it states otherwise: 0.1 s, doubling, at most 5 s, half jittered.
BACKOFF = RetryPolicy()
