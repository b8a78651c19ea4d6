"""Helpers shared by the serving tests: writing embeddings into a real store, a real server on port 0."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping

import numpy as np
import pytest

from core.domain import EmbeddingRows, EmbeddingUpdate, ItemMeta, NodeId, NodeKind
from core.settings import Settings
from graph_store.base import GraphStore
from graph_store.ladybug import LadybugStore
from serving.client import RecommenderClient
from serving.config import ServingConfig
from serving.server import ServingHandle, start_serving

#: ``write(version, users={id: vector}, items={id: vector})`` into the test's store.
EmbeddingWriter = Callable[..., None]


def numbered_rows(kind: NodeKind, prefix: str, vectors: np.ndarray) -> EmbeddingRows:
    """Rows ``{prefix}0``, ``{prefix}1``... of ``vectors`` (as float32)."""
    ids = [NodeId(f"{prefix}{i}") for i in range(len(vectors))]
    return EmbeddingRows(kind, ids, np.asarray(vectors, dtype=np.float32))


def user_rows(vectors: np.ndarray) -> EmbeddingRows:
    return numbered_rows(NodeKind.USER, "u", vectors)


def item_rows(vectors: np.ndarray) -> EmbeddingRows:
    return numbered_rows(NodeKind.ITEM, "i", vectors)


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


MAX_K = 20
MAX_ID = 16
DIM = 8
N_USERS, N_ITEMS = 5, 60


@pytest.fixture
def settings() -> Settings:
    # Personal lists only: these tests check the personal search; tests/serving/test_trending_api.py blends.
    # Float32 item vectors, so scores equal the products of the written vectors; test_api.py's
    # TestInt8Items serves the default int8 codes.
    return Settings(
        grpc_addr="127.0.0.1:0", index_poll_s=0.01, max_k=MAX_K, max_id_length=MAX_ID, grace_s=2.0,
        blend_prior_interactions=0.0, item_codec="f32",
    )


@pytest.fixture
def server(settings: Settings, ladybug_store: LadybugStore) -> Iterator[ServingHandle]:
    handle = start_serving(ServingConfig.from_settings(settings), ladybug_store)
    try:
        yield handle
    finally:
        handle.stop(0)


@pytest.fixture
def client(server: ServingHandle) -> Iterator[RecommenderClient]:
    with RecommenderClient(f"127.0.0.1:{server.port}", timeout_s=5.0) as client:
        yield client


@pytest.fixture
def vectors() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    users = {f"u{n}": rng.standard_normal(DIM).astype(np.float32) for n in range(N_USERS)}
    items = {f"i{n}": rng.standard_normal(DIM).astype(np.float32) for n in range(N_ITEMS)}
    return users, items


def categories_of(item_id: str) -> tuple[str, ...]:
    """Catalog categories of the titled items: ``even`` / ``odd`` and ``three`` for multiples of 3."""
    n = int(item_id[1:])
    return ("even" if n % 2 == 0 else "odd",) + (("three",) if n % 3 == 0 else ())


@pytest.fixture
def loaded(
    client: RecommenderClient,
    ladybug_store: LadybugStore,
    write_embeddings: EmbeddingWriter,
    vectors: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
) -> RecommenderClient:
    """A server whose store holds catalog titles, embeddings (version 1) and loads them."""
    ladybug_store.upsert_items([ItemMeta(NodeId(i), title=f"Title of {i}", categories=categories_of(i))
                                for i in list(vectors[1])[:30]])
    write_embeddings(1, users=vectors[0], items=vectors[1])
    client.wait_until_serving(timeout_s=10)
    return client


def expected_top(
    query: np.ndarray, items: dict[str, np.ndarray], k: int, leave_out: Collection[str] = ()
) -> tuple[list[str], np.ndarray]:
    ids = [i for i in items if i not in leave_out]
    scores = np.asarray([items[i] for i in ids]) @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [ids[j] for j in order], scores[order]
