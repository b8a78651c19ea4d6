"""CheckpointGate: a checkpoint waits for the transactions inside, and keeps new ones out while it runs."""

from __future__ import annotations

import threading
import time

import pytest

from graph_store.checkpoint_gate import CheckpointGate


def _hold(gate: CheckpointGate, entered: threading.Event, leave: threading.Event) -> threading.Thread:
    def hold() -> None:
        with gate.transaction():
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert entered.wait(5)
    return thread


def test_a_checkpoint_runs_once_the_transaction_inside_has_left() -> None:
    gate, entered, leave = CheckpointGate(wait_s=10), threading.Event(), threading.Event()
    reader = _hold(gate, entered, leave)
    ran: list[bool] = []
    checkpointer = threading.Thread(target=lambda: ran.append(gate.checkpoint(lambda: ran.append(True))))
    checkpointer.start()
    checkpointer.join(0.2)
    assert ran == []  # still waiting for the reader
    leave.set()
    checkpointer.join(5)
    reader.join(5)
    assert ran == [True, True]


def test_new_transactions_wait_while_the_checkpoint_runs() -> None:
    gate = CheckpointGate()
    running, finish, order = threading.Event(), threading.Event(), []

    def checkpoint() -> None:
        running.set()
        finish.wait(10)
        order.append("checkpoint")

    checkpointer = threading.Thread(target=gate.checkpoint, args=(checkpoint,))
    checkpointer.start()
    assert running.wait(5)

    def transaction() -> None:
        with gate.transaction():
            order.append("transaction")

    late = threading.Thread(target=transaction)
    late.start()
    late.join(0.2)
    assert order == []  # held at the gate
    finish.set()
    for thread in (checkpointer, late):
        thread.join(5)
    assert order == ["checkpoint", "transaction"]


def test_a_checkpoint_gives_up_on_a_transaction_that_stays_and_reopens_the_gate() -> None:
    gate, entered, leave = CheckpointGate(wait_s=0.1), threading.Event(), threading.Event()
    reader = _hold(gate, entered, leave)
    assert gate.checkpoint(lambda: None) is False
    with gate.transaction():  # open again: a new transaction gets in at once
        pass
    leave.set()
    reader.join(5)
    assert gate.checkpoint(lambda: None) is True


def test_a_failing_checkpoint_reopens_the_gate() -> None:
    gate = CheckpointGate()

    def broken() -> None:
        raise OSError("disk gone")

    started = time.monotonic()
    with pytest.raises(OSError, match="disk gone"):
        gate.checkpoint(broken)
    with gate.transaction():
        pass
    assert time.monotonic() - started < 5
