"""The ingest worker's logging: Faust's harmless rebalance sensor warning is dropped, nothing else."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import faust
import pytest

from streams.worker import RebalanceSensorStateFilter, quiet_rebalance_sensor_warning


@pytest.fixture
def app() -> Iterator[faust.App]:
    app = faust.App("test-worker-logging", broker="kafka://127.0.0.1:9")  # never connects
    yield app
    logger = app.log.logger  # shared by every faust.App: leave it as other tests expect it
    for installed in [f for f in logger.filters if isinstance(f, RebalanceSensorStateFilter)]:
        logger.removeFilter(installed)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_the_missing_sensor_state_warning_is_dropped_and_other_warnings_pass(
    app: faust.App, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        app.on_rebalance_return()  # Faust's own code path: no sensor state recorded for this rebalance
    assert warnings_of(caplog) == ["[^App]: Missing sensor state for rebalance #0"]  # what every start logs
    caplog.clear()

    quiet_rebalance_sensor_warning(app)
    quiet_rebalance_sensor_warning(app)  # a process running the worker twice installs it once
    assert sum(isinstance(f, RebalanceSensorStateFilter) for f in app.log.logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        app.on_rebalance_return()
        app.on_rebalance_end()  # a different message: kept
        app.log.warning("Missing sensor state for rebalance #1 and the consumer is gone")  # not the message
    assert warnings_of(caplog) == [
        "[^App]: Missing sensor state for rebalance end #0",
        "[^App]: Missing sensor state for rebalance #1 and the consumer is gone",
    ]
