"""Recommend for users serving knows nothing of: the trending list, its filters, its source and its
feeds (store snapshots in ``serve``, commits as ``up`` hands them over), and blended lists, against a
real server over a real LadybugDB store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from core.domain import EdgeDelta, ItemMeta, NodeId, OffsetRange, TopicPartition, UpsertBatch
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from proto import recommender_pb2 as pb
from serving.client import RecommenderClient, RecommenderError
from serving.config import ServingConfig
from serving.server import ServingHandle, start_serving
from tests.serving.conftest import EmbeddingWriter, categories_of, expected_top

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
#: Total edge weight per item in the store: the order a trending list seeded from it has.
TOTALS = {"i5": 6.0, "i7": 4.0, "i2": 3.0, "i9": 2.0, "i4": 1.0}


def add_edges(store: LadybugStore, edges: list[EdgeDelta], first_offset: int = 0) -> list[EdgeDelta]:
    store.apply_batch(UpsertBatch(edges, {TopicPartition("events", 0): OffsetRange(first_offset,
                                                                                   first_offset + len(edges) - 1)}))
    return edges


def popular_edges() -> list[EdgeDelta]:
    """Two users per item splitting its total; ``fan`` has i5 and i2 but no embedding."""
    edges = []
    for item, total in TOTALS.items():
        for user in ("fan", "other") if item in ("i5", "i2") else ("other", "third"):
            edges.append(EdgeDelta(NodeId(user), NodeId(item), weight=total / 2, count=1, last_ts_ms=1))
    return edges


@contextlib.contextmanager
def serving(settings: Settings, store: LadybugStore, **overrides: object) -> Iterator[tuple[ServingHandle,
                                                                                           RecommenderClient]]:
    handle = start_serving(ServingConfig.from_settings(settings.replace(**overrides)), store)
    try:
        with RecommenderClient(f"127.0.0.1:{handle.port}", timeout_s=5.0) as client:
            yield handle, client
    finally:
        handle.stop(0)


@pytest.fixture
def catalog(ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter, vectors) -> None:
    """Titles and categories for the first 30 items, embeddings (version 1) for users u0..u4 and i0..i59."""
    ladybug_store.upsert_items([ItemMeta(NodeId(i), title=f"Title of {i}", categories=categories_of(i))
                                for i in list(vectors[1])[:30]])
    write_embeddings(1, users=vectors[0], items=vectors[1])


def test_unknown_users_get_the_store_seeded_trending_list_filtered(settings: Settings, ladybug_store: LadybugStore,
                                                                   catalog: None) -> None:
    add_edges(ladybug_store, popular_edges())
    with serving(settings, ladybug_store) as (handle, client):  # serve alone: trending read from the store
        client.wait_until_serving(timeout_s=10)
        reply = client.recommend("nobody", k=3)
        assert reply.source == pb.RECOMMEND_SOURCE_TRENDING and reply.index_kind == "trending"
        assert [(s.item_id, s.score) for s in reply.items] == [("i5", 6.0), ("i7", 4.0), ("i2", 3.0)]
        assert reply.items[0].title == "Title of i5" and reply.embedding_age_ms == 0
        odd = client.recommend("nobody", k=10, include_categories=["odd"])
        assert [s.item_id for s in odd.items] == ["i5", "i7", "i9"]  # only items with interactions are listed
        # A user with edges but no embedding yet: exclude_seen leaves out their items.
        assert [s.item_id for s in client.recommend("fan", k=3, exclude_seen=True).items] == ["i7", "i9", "i4"]
        stream = client.watch("nobody", k=2)
        try:
            assert [s.item_id for s in next(iter(stream)).items] == ["i5", "i7"]
        finally:
            stream.cancel()

        # Later interactions reach serve's trending at its next read of the store.
        add_edges(ladybug_store, [EdgeDelta(NodeId("third"), NodeId("i4"), weight=10.0, count=1, last_ts_ms=2)],
                  first_offset=100)
        assert handle.trending_feed is not None and handle.trending_feed.read_once()
        assert client.recommend("nobody", k=1).items[0].item_id == "i4"


def test_commits_keep_trending_recent(settings: Settings, ladybug_store: LadybugStore, catalog: None) -> None:
    with serving(settings, ladybug_store, trending_half_life_s=3600.0) as (handle, client):
        client.wait_until_serving(timeout_s=10)
        assert client.recommend("nobody", k=3).items == []  # nothing has happened yet
        # What `up` does after each commit: an old heavy item against a light recent one.
        handle.servicer.trending.add_edges(add_edges(ladybug_store, [
            EdgeDelta(NodeId("a"), NodeId("i3"), weight=4.0, count=4, last_ts_ms=0),
            EdgeDelta(NodeId("b"), NodeId("i8"), weight=1.0, count=1, last_ts_ms=3 * HOUR_MS)]))
        reply = client.recommend("nobody", k=2)
        assert [s.item_id for s in reply.items] == ["i8", "i3"]
        np.testing.assert_allclose([s.score for s in reply.items], [1.0, 4.0 * 2**-3])


def test_known_users_get_personal_lists_and_trending_can_be_turned_off(
        settings: Settings, ladybug_store: LadybugStore, catalog: None, vectors) -> None:
    users, items = vectors
    with serving(settings, ladybug_store, trending=False) as (_, client):
        client.wait_until_serving(timeout_s=10)
        reply = client.recommend("u2", k=4)
        assert reply.source == pb.RECOMMEND_SOURCE_PERSONAL
        assert [s.item_id for s in reply.items] == expected_top(users["u2"], items, 4)[0]
        with pytest.raises(RecommenderError) as caught:
            client.recommend("nobody", k=3)
        assert caught.value.code == grpc.StatusCode.NOT_FOUND and "has no embedding yet" in caught.value.message


def test_users_with_few_items_get_a_blend_weighted_by_what_is_known(
        settings: Settings, ladybug_store: LadybugStore, catalog: None, vectors) -> None:
    users, items = vectors
    add_edges(ladybug_store, [*popular_edges(), EdgeDelta(NodeId("u2"), NodeId("i0"), weight=1.0, count=1,
                                                          last_ts_ms=1)])
    with serving(settings, ladybug_store, blend_prior_interactions=5.0) as (_, client):
        client.wait_until_serving(timeout_s=10)
        personal = expected_top(users["u2"], items, 3)[0]
        assert "i5" not in personal  # the most trending item is not among u2's own best
        reply = client.recommend("u2", k=3)
        assert reply.source == pb.RECOMMEND_SOURCE_BLENDED
        # One item known: personal weight 1 / (1 + 5); the trending leader outranks u2's own picks.
        assert reply.items[0].item_id == "i5"
        scores = [s.score for s in reply.items]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
        assert client.recommend("nobody", k=1).source == pb.RECOMMEND_SOURCE_TRENDING
        diverse = client.recommend("u2", k=3, diversity_lambda=0.3)
        assert diverse.source == pb.RECOMMEND_SOURCE_BLENDED and len(diverse.items) == 3
        assert diverse.items[0].item_id == "i5"  # MMR starts from the most relevant
        assert "i0" not in {s.item_id for s in client.recommend("u2", k=10, exclude_seen=True).items}
