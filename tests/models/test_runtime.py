"""run_in_background lowers the priority of the calling thread only."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from models.runtime import BACKGROUND_NICENESS, run_in_background


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is a Linux feature")
def test_only_the_calling_thread_runs_at_background_priority() -> None:
    seen: dict[str, int | bool] = {}

    def fit() -> None:
        seen["took"] = run_in_background()
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=fit)
    thread.start()
    thread.join()
    assert seen == {"took": True, "nice": BACKGROUND_NICENESS}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
