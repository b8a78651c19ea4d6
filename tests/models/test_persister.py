"""EmbeddingPersister on a real LadybugDB store: coalesced writes, widths kept apart, failures kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.domain import EmbeddingRows, EmbeddingUpdate, NodeId, NodeKind
from graph_store.base import StoreUnavailableError
from graph_store.ladybug import LadybugStore
from models.persister import EmbeddingPersister

pytestmark = pytest.mark.integration


def _update(version: int, cursor: int, users: dict[str, list[float]], items: dict[str, list[float]] | None = None,
            ) -> EmbeddingUpdate:
    def rows(kind: NodeKind, vectors: dict[str, list[float]]) -> EmbeddingRows:
        return EmbeddingRows(kind, [NodeId(i) for i in vectors], np.asarray(list(vectors.values()), np.float32))

    return EmbeddingUpdate(version=version, cursor=cursor, created_ms=version * 10,
                           rows=[rows(NodeKind.USER, users), *([rows(NodeKind.ITEM, items)] if items else [])])


def _stored(store: LadybugStore, kind: NodeKind) -> dict[str, list[float]]:
    rows = store.read_embeddings(kind)
    return {i: v.tolist() for i, v in zip(rows.ids, rows.vectors, strict=True)}


class FailingOnce(LadybugStore):
    """A real store whose next embedding write fails as an unreachable store would."""

    fail_next = False

    def write_embeddings(self, update: EmbeddingUpdate) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StoreUnavailableError("injected: store unreachable")
        super().write_embeddings(update)


@pytest.fixture
def store(tmp_path: Path) -> FailingOnce:
    opened = FailingOnce(str(tmp_path / "graph.lbdb"))
    opened.ensure_schema()
    return opened


def test_offers_are_coalesced_into_one_write_with_the_newest_vectors(store: FailingOnce) -> None:
    persister = EmbeddingPersister(store)
    persister.offer(_update(1, 10, {"u1": [1, 0], "u2": [0, 1]}, {"i1": [1, 1]}))
    persister.offer(_update(2, 15, {"u1": [5, 5]}))
    assert store.refresh_state().version == 0  # nothing written until the persister writes
    assert persister.pending_nodes == 3
    assert persister.flush() and persister.writes == 1
    assert _stored(store, NodeKind.USER) == {"u1": [5, 5], "u2": [0, 1]}
    assert _stored(store, NodeKind.ITEM) == {"i1": [1, 1]}
    state = store.refresh_state()
    assert (state.version, state.cursor) == (2, 15) == (persister.persisted_version, persister.persisted_cursor)


def test_a_new_width_is_written_after_the_old_one_never_mixed(store: FailingOnce) -> None:
    persister = EmbeddingPersister(store)
    persister.offer(_update(1, 1, {"u1": [1, 0]}))
    persister.offer(_update(2, 2, {"u1": [1, 2, 3], "u2": [3, 2, 1]}))  # a new model's full round
    assert persister.flush() and persister.writes == 2
    assert _stored(store, NodeKind.USER) == {"u1": [1, 2, 3], "u2": [3, 2, 1]}


def test_a_failed_write_is_kept_and_newer_offers_merge_behind_it(store: FailingOnce) -> None:
    persister = EmbeddingPersister(store)
    persister.offer(_update(1, 4, {"u1": [1, 1]}))
    store.fail_next = True
    assert not persister.flush() and persister.failures == 1 and "unreachable" in persister.last_error
    persister.offer(_update(2, 6, {"u2": [2, 2]}))
    persister.close(timeout_s=5)  # close writes what is left
    assert _stored(store, NodeKind.USER) == {"u1": [1, 1], "u2": [2, 2]}
    assert store.refresh_state().cursor == 6 and persister.pending_nodes == 0


def test_merged_updates_carry_the_oldest_cursor_their_rows_were_computed_at(store: FailingOnce) -> None:
    """So the store can tell a write that may hold a user erased since (graph_store.cypher.erasure)."""
    persister = EmbeddingPersister(store)
    persister.offer(_update(1, 10, {"u1": [1, 0]}))
    persister.offer(_update(2, 15, {"u2": [0, 1]}))
    pending = persister._queue[0].as_update()  # what the next write sends
    assert (pending.cursor, pending.oldest_cursor) == (15, 10)
