"""Stalled-consumer detection: events are waiting, yet the ingest agent has written nothing for a while.

Faust's known failure modes (a consumer that stops fetching after a rebalance, an agent stuck in
recovery, a hung store call) all look the same from outside: consumer lag stays above zero and no
store batch commits. Lag comes from the broker (:mod:`streams.lag`), the last write from
:class:`streams.ingest.IngestStats`; neither relies on Faust reporting its own health.

Lag that just appeared after an idle hour must not count as a stall, so the clock starts at the
later of the last store write and the moment lag was first seen above zero.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StallState:
    """Whether the agent is stalled, and for how long events have waited without a store write."""

    stalled: bool
    waiting_s: float


class StallDetector:
    """Decides "stalled" from successive (lag, last write) observations.

    Args:
        after_s (float): seconds of pending lag without a store write before the agent counts as
            stalled (``IG_STALL_AFTER``).
    """

    def __init__(self, after_s: float) -> None:
        if after_s <= 0:
            raise ValueError(f"after_s must be > 0 seconds, got {after_s}")
        self.after_s = after_s
        self._lag_since_ms: int | None = None

    def observe(self, total_lag: int, last_write_ms: int, now_ms: int) -> StallState:
        """One observation: ``total_lag`` events pending, last store write at ``last_write_ms`` (0 = never)."""
        if total_lag <= 0:
            self._lag_since_ms = None
            return StallState(False, 0.0)
        if self._lag_since_ms is None:
            self._lag_since_ms = now_ms
        waiting_s = max(0.0, (now_ms - max(self._lag_since_ms, last_write_ms)) / 1000.0)
        return StallState(waiting_s >= self.after_s, waiting_s)
