"""The refresh worker with a round-latency histogram, for ``ig_refresh_round_seconds``.

:class:`models.refresh.RefreshWorker` keeps counters (rounds, nodes, last round time); a histogram
needs every round, so this subclass observes each non-idle round's duration as it returns. It
changes nothing else: the worker loop, its retries and its stats are the model room's.
"""

from __future__ import annotations

from typing import Any

from core.histogram import Histogram
from models.refresh import RefreshReport, RefreshWorker


class MeasuredRefreshWorker(RefreshWorker):
    """A :class:`RefreshWorker` whose rounds are timed into :attr:`round_seconds` (idle polls excluded)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.round_seconds = Histogram()

    def run_once(self) -> RefreshReport:
        report = super().run_once()
        if report.kind != "idle":
            self.round_seconds.observe(report.ms / 1000.0)
        return report
