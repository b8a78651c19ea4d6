"""IndexLoader against a real LadybugDB store: full load, deltas, width changes, store failures."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from core.domain import EmbeddingUpdate, ItemMeta, NodeId, NodeKind
from graph_store.ladybug import LadybugStore
from serving.index import EmbeddingIndex
from serving.loader import IndexLoader
from tests.serving.conftest import EmbeddingWriter, embedding_rows

pytestmark = pytest.mark.integration


def vec(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_loads_everything_then_only_deltas(
    ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter
) -> None:
    index = EmbeddingIndex()
    loader = IndexLoader(ladybug_store, index)
    assert loader.poll_once() is False
    assert not index.ready

    write_embeddings(1, users={"u1": vec(1, 0), "u2": vec(0, 1)}, items={"i1": vec(1, 1), "i2": vec(2, 0)})
    assert loader.poll_once() is True
    first = index.snapshot()
    assert first.version == 1 and index.ready
    assert set(first.users.ids) == {"u1", "u2"} and set(first.items.ids) == {"i1", "i2"}
    assert loader.poll_once() is False  # nothing newer

    time.sleep(0.005)  # a later write gets a later store timestamp
    write_embeddings(2, users={"u2": vec(5, 5), "u3": vec(3, 3)})
    assert loader.poll_once() is True
    second = index.snapshot()
    assert second.version == 2 and second.written_ms > first.written_ms
    np.testing.assert_array_equal(second.users.vectors[second.users.row("u2")], [5, 5])
    np.testing.assert_array_equal(second.users.vectors[second.users.row("u1")], [1, 0])
    assert second.users.refreshed_ms[second.users.row("u1")] == first.written_ms
    assert second.users.refreshed_ms[second.users.row("u3")] == second.written_ms
    # The earlier snapshot is untouched: a request holding it finishes on version 1.
    np.testing.assert_array_equal(first.users.vectors[first.users.row("u2")], [0, 1])


def test_a_width_change_reloads_the_whole_index(
    ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter
) -> None:
    index = EmbeddingIndex()
    loader = IndexLoader(ladybug_store, index)
    write_embeddings(1, users={"u1": vec(1, 0)}, items={"i1": vec(1, 1), "i2": vec(0, 1)})
    loader.poll_once()
    # A retrain with a wider model republishes every embedding under a new version.
    write_embeddings(2, users={"u1": vec(1, 0, 0)}, items={"i1": vec(1, 1, 1), "i2": vec(0, 1, 0)})
    assert loader.poll_once() is True
    snapshot = index.snapshot()
    assert snapshot.version == 2 and snapshot.users.dim == snapshot.items.dim == 3


def test_a_retrain_at_a_new_width_logs_info_and_mixed_widths_log_an_error(
    ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter, caplog: pytest.LogCaptureFixture
) -> None:
    index = EmbeddingIndex()
    loader = IndexLoader(ladybug_store, index)
    write_embeddings(1, users={"u1": vec(1, 0)}, items={"i1": vec(1, 1)})
    loader.poll_once()
    write_embeddings(2, users={"u1": vec(1, 0, 0)}, items={"i1": vec(1, 1, 1)})
    with caplog.at_level(logging.INFO, logger="serving.loader"):
        assert loader.poll_once() is True
    reload = [r for r in caplog.records if "cannot join an index of width 2" in r.getMessage()]
    assert [r.levelno for r in reload] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # an ops person reads those as trouble

    caplog.clear()
    write_embeddings(3, users={"u1": vec(1, 0, 0, 0)})  # users at width 4, items still at 3: a broken publish
    loader.start()  # polls once in this thread, logging what fails instead of raising
    loader.stop()
    failed = [r for r in caplog.records if "differs from item width" in r.getMessage()]
    assert failed and all(r.levelno == logging.ERROR for r in failed)
    assert index.version == 2  # the last good version keeps serving


def test_background_thread_makes_the_index_ready(
    ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter
) -> None:
    index = EmbeddingIndex()
    heard: list[bool] = []
    index.subscribe(heard.append)
    loader = IndexLoader(ladybug_store, index, poll_s=0.01)
    loader.start()
    try:
        assert loader.running
        write_embeddings(3, users={"u1": vec(1)}, items={"i1": vec(2)})
        deadline = time.monotonic() + 10
        while index.version != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert index.version == 3
        assert heard == [False, True]
    finally:
        loader.stop()
    assert not loader.running


def test_store_failures_keep_the_last_good_version(
    ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter
) -> None:
    index = EmbeddingIndex()
    loader = IndexLoader(ladybug_store, index, poll_s=0.01)
    write_embeddings(1, users={"u1": vec(1)}, items={"i1": vec(2)})
    loader.start()
    try:
        assert index.version == 1  # start() polls once before it returns
        ladybug_store.close()
        deadline = time.monotonic() + 10
        while loader.failures < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert loader.failures >= 2
        assert "closed" in loader.last_error
        assert loader.running and index.version == 1 and index.ready
    finally:
        loader.stop()


def test_a_handed_over_write_is_served_without_reading_it_back(
    ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter
) -> None:
    index = EmbeddingIndex()
    loader = IndexLoader(ladybug_store, index)
    ladybug_store.upsert_items([ItemMeta(NodeId("i1"), "First item", ("a",))])
    update = EmbeddingUpdate(version=1, cursor=0, created_ms=1234, rows=[
        embedding_rows(NodeKind.USER, {"u1": vec(1, 0)}), embedding_rows(NodeKind.ITEM, {"i1": vec(1, 1)})])
    ladybug_store.write_embeddings(update)  # the worker writes first, then hands the same update over
    assert loader.take(update) is True
    snap = index.snapshot()
    assert snap.version == 1 and snap.items.refreshed_ms[0] == 1234 and snap.catalog.title("i1") == "First item"
    assert loader.poll_once() is False  # the store holds nothing newer than what was handed over
    assert loader.take(update) is False  # a version the index holds already is skipped
    write_embeddings(2, users={"u1": vec(0, 1)})
    assert loader.poll_once() is True and index.version == 2
    assert loader.take(update) is False  # an older hand-off never moves the index back
    np.testing.assert_array_equal(index.snapshot().users.vectors[index.snapshot().users.row("u1")], [0, 1])
