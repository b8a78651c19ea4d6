"""Explain's rank: exact over an exact catalog, the served place in the top 100 over a graph, and below
that an estimate within its stated error of the exact rank."""

from __future__ import annotations

import numpy as np
import pytest

from serving.ann import HnswIndex
from serving.index import EmbeddingIndex, IndexSnapshot
from serving.item_rank import RANK_DEPTH, RANK_SAMPLE, item_rank
from tests.serving.conftest import item_rows, user_rows

DIM = 16
N_ITEMS = 30_000


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.standard_normal((N_ITEMS, DIM)).astype(np.float32), rng.standard_normal((20, DIM)).astype(np.float32)


def snapshot(items: np.ndarray, users: np.ndarray, graph: bool) -> IndexSnapshot:
    index = EmbeddingIndex()
    built_from = index.apply(user_rows(users), item_rows(items), version=1, written_ms=1)
    if graph:
        assert index.attach_ann(HnswIndex.build(items, version=1, ef_search=256), built_from)
    return index.snapshot()


def exact_rank(items: np.ndarray, user: np.ndarray, row: int) -> int:
    scores = items @ user
    return 1 + int(np.count_nonzero(scores > scores[row]))


def test_exact_catalog_ranks_exactly(vectors) -> None:
    items, users = vectors
    snap = snapshot(items, users, graph=False)
    for user in users[:5]:
        scores = items @ user
        for row in (int(np.argmax(scores)), int(np.argsort(scores)[N_ITEMS // 2]), int(np.argmin(scores))):
            rank = item_rank(snap, user, float(scores[row]))
            assert not rank.estimated and rank.rank == exact_rank(items, user, row)


def test_graph_catalog_gives_the_served_place_in_the_top_depth(vectors) -> None:
    items, users = vectors
    snap = snapshot(items, users, graph=True)
    for user in users:
        scores = items @ user
        order = np.argsort(-scores, kind="stable")
        for place in (0, 9, RANK_DEPTH // 2):
            rank = item_rank(snap, user, float(scores[order[place]]))
            assert not rank.estimated
            # The graph finds nearly all of the top 100 here: the served place is the exact one or a
            # place or two higher (an item it missed).
            assert place + 1 - 2 <= rank.rank <= place + 1


def test_deep_ranks_are_estimated_within_their_error(vectors) -> None:
    items, users = vectors
    snap = snapshot(items, users, graph=True)
    assert N_ITEMS > RANK_SAMPLE
    for user in users:
        scores = items @ user
        order = np.argsort(-scores, kind="stable")
        for place in (RANK_DEPTH * 3, N_ITEMS // 10, N_ITEMS // 2, N_ITEMS - 1):
            rank = item_rank(snap, user, float(scores[order[place]]))
            truth = exact_rank(items, user, int(order[place]))
            share = truth / N_ITEMS
            error = N_ITEMS * np.sqrt(share * (1 - share) / RANK_SAMPLE)
            assert rank.estimated and rank.rank > RANK_DEPTH
            assert abs(rank.rank - truth) <= 5 * error + N_ITEMS / RANK_SAMPLE  # + the sample's resolution
