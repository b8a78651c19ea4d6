"""EmbeddingIndex: width checks, readiness, codecs, and searches that never see half an update."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from serving.embedding_table import EmbeddingDimensionError
from serving.index import EmbeddingIndex
from serving.search import ItemQuery, search
from tests.serving.conftest import item_rows, user_rows


def test_width_change_is_rejected_and_changes_nothing() -> None:
    index = EmbeddingIndex()
    index.apply(user_rows(np.ones((2, 4))), item_rows(np.ones((3, 4))), version=1, written_ms=0)
    with pytest.raises(EmbeddingDimensionError, match="width 8"):
        index.apply(user_rows(np.ones((1, 8))), item_rows(np.ones((0, 8))), version=2, written_ms=0)
    assert index.version == 1 and index.snapshot().users.dim == 4
    index.apply(user_rows(np.ones((1, 8))), item_rows(np.ones((3, 8))), version=2, written_ms=0, replace=True)
    assert index.snapshot().users.dim == 8 and len(index.snapshot().users) == 1


def test_ready_listeners_hear_each_change_once() -> None:
    index = EmbeddingIndex()
    heard: list[bool] = []
    index.subscribe(heard.append)
    index.apply(user_rows(np.ones((1, 2))), item_rows(np.ones((0, 2))), version=1, written_ms=0)
    index.apply(user_rows(np.ones((1, 2))), item_rows(np.ones((2, 2))), version=2, written_ms=0)
    index.apply(user_rows(np.ones((1, 2))), item_rows(np.ones((2, 2))), version=3, written_ms=0)
    late: list[bool] = []
    index.subscribe(late.append)
    assert heard == [False, True]
    assert late == [True]


def test_readers_never_see_a_half_applied_update() -> None:
    # Version v writes every user and item vector as all-v, so a consistent snapshot has
    # users == items == version everywhere and every score equals dim * v * v.
    index, dim, versions = EmbeddingIndex(), 8, 300
    index.apply(user_rows(np.ones((40, dim))), item_rows(np.ones((500, dim))), version=1, written_ms=1)
    done = threading.Event()
    problems: list[str] = []
    reads = [0]

    def read() -> None:
        while not done.is_set():
            snap = index.snapshot()
            v = snap.version
            if not (np.all(snap.users.vectors == v) and np.all(snap.items.vectors == v)):
                problems.append(f"mixed vectors in version {v}")
            best = [search(snap, ItemQuery(snap.users.vectors[u], 5, np.zeros(0, np.int64))) for u in range(3)]
            if any(np.any(found.scores != dim * v * v) for found in best):
                problems.append(f"score from another version than {v}")
            reads[0] += 1

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for v in range(2, versions + 1):
        index.apply(user_rows(np.full((40, dim), v)), item_rows(np.full((500, dim), v)), version=v, written_ms=v)
    done.set()
    for thread in readers:
        thread.join()
    assert problems == []
    assert reads[0] > 0
    assert index.version == versions


def test_an_int8_index_refits_its_codec_on_a_reload_and_searches_like_its_decoded_vectors() -> None:
    rng = np.random.default_rng(6)
    index = EmbeddingIndex(item_codec="int8")
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    first = index.apply(user_rows(vectors[:5]), item_rows(vectors), version=1, written_ms=1)
    assert first.users.vectors.dtype == np.float32 and first.items.vectors.dtype == np.int8
    reloaded = index.apply(user_rows(vectors[:5]), item_rows(vectors * 10), version=2, written_ms=2, replace=True)
    assert reloaded.items.codec is not first.items.codec
    assert reloaded.items.codec is not None and first.items.codec is not None
    np.testing.assert_allclose(reloaded.items.codec.scale, first.items.codec.scale * 10, rtol=1e-5)
    decoded = reloaded.items.gather(np.arange(300))
    for query in vectors[:5]:
        found = search(reloaded, ItemQuery(query, 10, np.zeros(0, np.int64)), use_ann=False)
        assert found.rows.tolist() == np.argsort(-(decoded @ query), kind="stable")[:10].tolist()
    with pytest.raises(ValueError, match="item_codec"):
        EmbeddingIndex(item_codec="int4")
