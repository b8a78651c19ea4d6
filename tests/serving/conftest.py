"""Helpers shared by the serving tests: writing embeddings into a real store."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest

from graph_store.base import GraphStore
from interest_graph.domain import EmbeddingRows, EmbeddingUpdate, NodeId, NodeKind

#: ``write(version, users={id: vector}, items={id: vector})`` into the test's store.
EmbeddingWriter = Callable[..., None]


def embedding_rows(kind: NodeKind, vectors: Mapping[str, np.ndarray]) -> EmbeddingRows:
    ids = [NodeId(i) for i in vectors]
    stacked = np.asarray([vectors[i] for i in ids], dtype=np.float32) if ids else np.zeros((0, 0), np.float32)
    return EmbeddingRows(kind, ids, stacked)


@pytest.fixture
def write_embeddings(ladybug_store: GraphStore) -> EmbeddingWriter:
    """Writes embeddings as the refresh worker does: one update per version."""

    def write(
        version: int,
        users: Mapping[str, np.ndarray] | None = None,
        items: Mapping[str, np.ndarray] | None = None,
        cursor: int = 0,
    ) -> None:
        ladybug_store.write_embeddings(EmbeddingUpdate(
            version=version,
            cursor=cursor,
            rows=[embedding_rows(NodeKind.USER, users or {}), embedding_rows(NodeKind.ITEM, items or {})],
        ))

    return write
