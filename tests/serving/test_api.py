"""The v1 API against a real server over a real LadybugDB store: filters, diversity, friends,
explanations, the recommendation stream, and every error code each method can answer."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import grpc
import numpy as np
import pytest

from core.domain import (
    EdgeDelta,
    EmbeddingUpdate,
    NodeId,
    NodeKind,
    OffsetRange,
    TopicPartition,
    UpsertBatch,
    UserFoldIn,
)
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from proto import recommender_pb2 as pb
from serving.client import RecommenderClient, RecommenderError
from serving.codec import Int8Codec
from serving.config import ServingConfig
from serving.server import ServingHandle, start_serving
from tests.serving.conftest import DIM, MAX_K, EmbeddingWriter, categories_of, embedding_rows, expected_top

pytestmark = pytest.mark.integration

#: Who interacted with what: u0 and u1 share i0 and i1, u1 also has i5, u2 shares i2 with u0.
EDGES = {"u0": ["i0", "i1", "i2"], "u1": ["i0", "i1", "i5"], "u2": ["i2", "i9"], "u3": ["i7"]}


@pytest.fixture
def graph(loaded: RecommenderClient, ladybug_store: LadybugStore) -> RecommenderClient:
    edges = [EdgeDelta(NodeId(u), NodeId(i), weight=1.0, count=1, last_ts_ms=1)
             for u, items in EDGES.items() for i in items]
    ladybug_store.apply_batch(UpsertBatch(edges, {TopicPartition("events", 0): OffsetRange(0, len(edges) - 1)}))
    return loaded


def expect_error(code: grpc.StatusCode, fragment: str, call: Callable[[], object]) -> RecommenderError:
    with pytest.raises(RecommenderError) as caught:
        call()
    assert caught.value.code == code, caught.value
    assert fragment in caught.value.message
    return caught.value


# --- int8 item vectors (the default codec) ----------------------------------------------------------
class TestInt8Items:
    """The default ``IG_ITEM_CODEC``: replies rank and score by the decoded codes, consistently."""

    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(grpc_addr="127.0.0.1:0", index_poll_s=0.01, max_k=MAX_K, grace_s=2.0,
                        blend_prior_interactions=0.0)

    @staticmethod
    def decoded(items: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        codec = Int8Codec.fitted(np.stack(list(items.values())))  # what the index fits on its first update
        return {i: codec.decode(codec.encode(v[None, :]))[0] for i, v in items.items()}

    def test_recommend_similar_and_explain_agree_with_the_decoded_vectors(self, server: ServingHandle,
                                                                         graph: RecommenderClient, vectors) -> None:
        users, items = vectors
        assert server.index.snapshot().items.vectors.dtype == np.int8
        decoded = self.decoded(items)
        reply = graph.recommend("u0", k=10)
        want, scores = expected_top(users["u0"], decoded, 10)
        assert [s.item_id for s in reply.items] == want
        np.testing.assert_allclose([s.score for s in reply.items], scores, rtol=1e-4, atol=1e-5)
        similar = graph.similar_items("i3", k=5)
        assert [s.item_id for s in similar.items] == expected_top(decoded["i3"], decoded, 5, leave_out=["i3"])[0]
        third = reply.items[2]
        explained = graph.explain("u0", third.item_id)
        assert explained.rank == 3
        assert explained.score == pytest.approx(third.score, rel=1e-5)


# --- Recommend: filters and diversity --------------------------------------------------------------
def test_include_and_exclude_categories(loaded: RecommenderClient, vectors) -> None:
    users, items = vectors
    even = loaded.recommend("u2", k=5, include_categories=["even"])
    assert even.items and all(categories_of(s.item_id)[0] == "even" for s in even.items)
    assert all(tuple(s.categories) == categories_of(s.item_id) for s in even.items)
    titled_even = {i: v for i, v in items.items() if int(i[1:]) < 30 and int(i[1:]) % 2 == 0}
    assert [s.item_id for s in even.items] == expected_top(users["u2"], titled_even, 5)[0]
    no_three = loaded.recommend("u2", k=MAX_K, exclude_categories=["three"])
    assert len(no_three.items) == MAX_K
    assert all("three" not in s.categories for s in no_three.items)
    both = loaded.recommend("u2", k=MAX_K, include_categories=["even", "odd"], exclude_categories=["three"])
    assert {s.item_id for s in both.items} <= {f"i{n}" for n in range(30) if n % 3}


def test_unknown_categories_give_an_empty_list_not_an_error(loaded: RecommenderClient) -> None:
    assert loaded.recommend("u1", k=5, include_categories=["no-such-category"]).items == []


def test_diversity_lambda_one_is_pure_relevance_and_lower_spreads(loaded: RecommenderClient) -> None:
    plain = loaded.recommend("u4", k=8)
    assert loaded.recommend("u4", k=8, diversity_lambda=1.0).items == plain.items
    diverse = loaded.recommend("u4", k=8, diversity_lambda=0.0)
    assert len(diverse.items) == 8
    assert diverse.items[0] == plain.items[0]  # the most relevant item always leads
    assert [s.item_id for s in diverse.items] != [s.item_id for s in plain.items]
    assert plain.index_kind == diverse.index_kind == "exact"


# --- RecommendFriends and Explain --------------------------------------------------------------------
def test_friends_rank_shared_interests_and_never_the_user(graph: RecommenderClient, vectors) -> None:
    users, _ = vectors
    reply = graph.friends("u0", k=4)
    ids = [f.user_id for f in reply.users]
    assert "u0" not in ids and len(ids) == 4
    by_id = {f.user_id: f for f in reply.users}
    assert by_id["u1"].shared_items == 2 and by_id["u1"].co_interaction == pytest.approx(1.0)
    assert by_id["u2"].shared_items == 1 and 0 < by_id["u2"].co_interaction < 1
    assert by_id["u3"].shared_items == 0 and by_id["u3"].co_interaction == 0
    me = users["u0"]
    for friend in reply.users:
        other = users[friend.user_id]
        cosine = float(me @ other / (np.linalg.norm(me) * np.linalg.norm(other)))
        assert friend.embedding_similarity == pytest.approx(cosine, abs=1e-5)
        assert friend.score == pytest.approx((friend.embedding_similarity + friend.co_interaction) / 2, abs=1e-5)
    assert [f.score for f in reply.users] == sorted((f.score for f in reply.users), reverse=True)
    assert reply.embedding_version == 1


def test_explain_returns_the_users_items_and_neighbours(graph: RecommenderClient, vectors) -> None:
    users, items = vectors
    reply = graph.explain("u0", "i5")
    assert reply.score == pytest.approx(float(users["u0"] @ items["i5"]), rel=1e-5)
    all_scores = np.asarray(list(items.values())) @ users["u0"]
    assert reply.rank == 1 + int(np.sum(all_scores > reply.score))
    assert reply.seen is False and reply.title == "Title of i5"
    assert {e.item_id for e in reply.items} == {"i0", "i1", "i2"}
    degree = {"i0": 2, "i1": 2, "i2": 2}  # u0 has 3 items; each of them has 2 users
    for e in reply.items:
        assert e.title == f"Title of {e.item_id}" and e.edge_weight == 1.0
        assert e.similarity == pytest.approx(float(items[e.item_id] @ items["i5"]), rel=1e-5)
        assert e.contribution == pytest.approx(e.similarity / math.sqrt(3 * degree[e.item_id]), rel=1e-5)
    assert [abs(e.contribution) for e in reply.items] == sorted((abs(e.contribution) for e in reply.items),
                                                                reverse=True)
    # u1 reaches i5 through i0 and i1: two paths u0-j-u1-i5 with weights 1/sqrt(3*2) * 1/sqrt(2*3) * 1/sqrt(3*1).
    assert [(n.user_id, n.shared_items) for n in reply.neighbours] == [("u1", 2)]
    assert reply.neighbours[0].contribution == pytest.approx(2 * (1 / 6) / math.sqrt(3), rel=1e-5)
    assert graph.explain("u0", "i0", limit=1).seen is True
    assert len(graph.explain("u0", "i0", limit=1).items) == 1


# --- WatchRecommendations ----------------------------------------------------------------------------
class Watcher:
    """Reads a stream in a thread, so the test can write embeddings while it waits."""

    def __init__(self, client: RecommenderClient, user_id: str, k: int, timeout_s: float | None = 30) -> None:
        self.replies: list[pb.RecommendReply] = []
        self.error: RecommenderError | None = None
        self.stream = client.watch(user_id, k=k, timeout_s=timeout_s)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for reply in self.stream:
                self.replies.append(reply)
        except RecommenderError as exc:
            self.error = exc

    def wait_for(self, count: int, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.replies) < count and self.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.replies) >= count, (self.replies, self.error)


def test_watch_pushes_a_new_list_when_a_refresh_changes_it(
    loaded: RecommenderClient, write_embeddings: EmbeddingWriter, vectors, server: ServingHandle
) -> None:
    users, items = vectors
    watcher = Watcher(loaded, "u1", k=3)
    watcher.wait_for(1)
    assert watcher.replies[0].embedding_version == 1
    assert [s.item_id for s in watcher.replies[0].items] == expected_top(users["u1"], items, 3)[0]
    write_embeddings(2, users={"u3": -users["u3"]})  # another user's refresh: u1's list is unchanged
    # Served before the next write: a poll that reads version 2's state and then the rows would
    # otherwise catch version 3's row of u1 too, and push u1's new list labelled version 2.
    deadline = time.monotonic() + 10
    while server.index.version < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    write_embeddings(3, users={"u1": -users["u1"]})  # u1's taste turns upside down
    watcher.wait_for(2)
    assert [r.embedding_version for r in watcher.replies] == [1, 3]
    assert [s.item_id for s in watcher.replies[1].items] == expected_top(-users["u1"], items, 3)[0]
    assert loaded.status().open_streams == 1
    watcher.stream.cancel()  # the client cancels
    deadline = time.monotonic() + 10
    while server.servicer.open_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.servicer.open_streams == 0


def test_stream_limit_is_resource_exhausted(
    settings: Settings, ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter
) -> None:
    handle = start_serving(ServingConfig.from_settings(settings.replace(max_streams=2)), ladybug_store)
    write_embeddings(1, users={"u1": np.ones(DIM)}, items={"i1": np.ones(DIM), "i2": -np.ones(DIM)})
    try:
        with RecommenderClient(f"127.0.0.1:{handle.port}") as client:
            client.wait_until_serving(timeout_s=10)
            watchers = [Watcher(client, "u1", k=1) for _ in range(2)]
            for watcher in watchers:
                watcher.wait_for(1)
            error = expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "max_streams=2",
                                 lambda: next(client.watch("u1", k=1)))
            assert error.retryable
            for watcher in watchers:
                watcher.stream.cancel()
    finally:
        handle.stop(0)


def test_server_stop_ends_streams_with_unavailable(
    settings: Settings, ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter
) -> None:
    handle = start_serving(ServingConfig.from_settings(settings), ladybug_store)
    write_embeddings(1, users={"u1": np.ones(DIM)}, items={"i1": np.ones(DIM)})
    with RecommenderClient(f"127.0.0.1:{handle.port}") as client:
        client.wait_until_serving(timeout_s=10)
        watcher = Watcher(client, "u1", k=1)
        watcher.wait_for(1)
        handle.stop(2.0)
        watcher.thread.join(timeout=10)
        assert not watcher.thread.is_alive()
        assert watcher.error is not None and watcher.error.code == grpc.StatusCode.UNAVAILABLE


def test_a_stream_deadline_ends_it_with_deadline_exceeded(loaded: RecommenderClient) -> None:
    watcher = Watcher(loaded, "u1", k=2, timeout_s=0.5)
    watcher.thread.join(timeout=10)
    assert len(watcher.replies) == 1
    assert watcher.error is not None and watcher.error.code == grpc.StatusCode.DEADLINE_EXCEEDED


# --- errors --------------------------------------------------------------------------------------------
TOO_MANY = [f"c{n}" for n in range(65)]  # max_filter_values defaults to 64


@pytest.mark.parametrize(
    ("call", "code", "fragment"),
    [
        (lambda c: c.recommend("u1", k=3, include_categories=TOO_MANY), grpc.StatusCode.INVALID_ARGUMENT,
         "max_filter_values=64"),
        (lambda c: c.similar_items("i1", k=3, exclude_categories=[""]), grpc.StatusCode.INVALID_ARGUMENT,
         "filter.exclude_categories[0] is empty"),
        (lambda c: c.recommend("u1", k=3, exclude_categories=["x" * 17]), grpc.StatusCode.INVALID_ARGUMENT,
         "at most 16"),
        (lambda c: c.recommend("u1", k=3, diversity_lambda=1.5), grpc.StatusCode.INVALID_ARGUMENT, "[0, 1]"),
        (lambda c: c.recommend("u1", k=3, diversity_lambda=-0.1), grpc.StatusCode.INVALID_ARGUMENT, "[0, 1]"),
        (lambda c: c.recommend("u1", k=3, diversity_lambda=float("nan")), grpc.StatusCode.INVALID_ARGUMENT,
         "got nan"),
        (lambda c: c.friends("u1", k=0), grpc.StatusCode.INVALID_ARGUMENT, f"max_k={MAX_K}"),
        (lambda c: c.friends("", k=3), grpc.StatusCode.INVALID_ARGUMENT, "user_id is empty or blank"),
        (lambda c: c.friends("   ", k=3), grpc.StatusCode.INVALID_ARGUMENT, "user_id is empty or blank"),
        (lambda c: c.friends("nobody", k=3), grpc.StatusCode.NOT_FOUND, "'nobody' has no embedding"),
        (lambda c: c.explain("u1", ""), grpc.StatusCode.INVALID_ARGUMENT, "item_id is empty or blank"),
        (lambda c: c.explain("   ", "i1"), grpc.StatusCode.INVALID_ARGUMENT, "user_id is empty or blank"),
        (lambda c: c.explain("u" * 17, "i1"), grpc.StatusCode.INVALID_ARGUMENT, "at most 16"),
        (lambda c: c.explain("u1", "i1", limit=-1), grpc.StatusCode.INVALID_ARGUMENT,
         f"limit must be 0 (the default, 10) or between 1 and max_k={MAX_K}, got -1"),
        (lambda c: c.explain("u1", "i1", limit=MAX_K + 1), grpc.StatusCode.INVALID_ARGUMENT,
         f"limit must be 0 (the default, 10) or between 1 and max_k={MAX_K}, got {MAX_K + 1}"),
        (lambda c: c.explain("nobody", "i1"), grpc.StatusCode.NOT_FOUND, "user 'nobody'"),
        (lambda c: c.explain("u1", "no-item"), grpc.StatusCode.NOT_FOUND, "item 'no-item'"),
        (lambda c: next(c.watch("u1", k=0)), grpc.StatusCode.INVALID_ARGUMENT, f"max_k={MAX_K}"),
        (lambda c: next(c.watch("", k=1)), grpc.StatusCode.INVALID_ARGUMENT, "user_id is empty or blank"),
        (lambda c: next(c.watch(" ", k=1)), grpc.StatusCode.INVALID_ARGUMENT, "user_id is empty or blank"),
    ],
)
def test_each_method_answers_bad_input_with_a_clear_code(loaded: RecommenderClient, call, code, fragment) -> None:
    error = expect_error(code, fragment, lambda: call(loaded))
    assert not error.retryable
    assert loaded.recommend("u1", k=1).items  # the server is unharmed


def test_every_method_is_unavailable_before_embeddings(client: RecommenderClient) -> None:
    for call in (lambda: client.friends("u1", k=3), lambda: client.explain("u1", "i1"),
                 lambda: next(client.watch("u1", k=1)), lambda: client.similar_items("i1", k=1)):
        assert expect_error(grpc.StatusCode.UNAVAILABLE, "no item embeddings loaded yet", call).retryable


# --- users folded in at request time (`up` with SpectralCF) ------------------------------------------
def test_users_folded_in_at_request_time_are_served_from_their_committed_rows(
        server: ServingHandle, client: RecommenderClient, ladybug_store: LadybugStore, vectors) -> None:
    _, items = vectors
    fitted = [i for i in items if int(i[1:]) < 40]  # i40..i59 came after the fit: they add nothing
    scale = {i: 0.25 + int(i[1:]) / 100 for i in fitted}
    server.loader.take(EmbeddingUpdate(  # a full round as the refresh worker hands it over: items, no users
        version=1, cursor=0, rows=[embedding_rows(NodeKind.ITEM, items)],
        fold_in=UserFoldIn(tuple(NodeId(i) for i in fitted), np.asarray([scale[i] for i in fitted], np.float32),
                           "weight", model_version=1)))
    client.wait_until_serving(timeout_s=10)
    assert client.recommend("newbie", k=3).source == pb.RECOMMEND_SOURCE_TRENDING  # nothing known of them yet

    clicks = {"i3": 2.0, "i4": 1.0, "i41": 5.0}
    edges = [EdgeDelta(NodeId("newbie"), NodeId(i), weight=w, count=1, last_ts_ms=1) for i, w in clicks.items()]
    edges += [EdgeDelta(NodeId("pal"), NodeId(i), weight=1.0, count=1, last_ts_ms=1) for i in ("i3", "i7")]
    seq = ladybug_store.apply_batch(UpsertBatch(edges, {TopicPartition("events", 0): OffsetRange(0, 4)}))
    server.servicer.user_rows.committed(seq, edges)  # what `up` does after each commit

    # No refresh round, no user embedding written: the committed row is the vector.
    me = sum(w * scale[i] * items[i] for i, w in clicks.items() if i in scale)
    reply = client.recommend("newbie", k=5, exclude_seen=True)
    expected, scores = expected_top(me, items, 5, leave_out=clicks)
    assert [s.item_id for s in reply.items] == expected
    np.testing.assert_allclose([s.score for s in reply.items], scores, rtol=1e-5)
    why = client.explain("newbie", "i9")
    assert math.isclose(why.score, float(me @ items["i9"]), rel_tol=1e-5) and why.seen is False
    pal = 1.0 * scale["i3"] * items["i3"] + 1.0 * scale["i7"] * items["i7"]
    friends = client.friends("newbie", k=3)
    assert [f.user_id for f in friends.users] == ["pal"]
    cosine = float(me @ pal / (np.linalg.norm(me) * np.linalg.norm(pal)))
    assert math.isclose(friends.users[0].embedding_similarity, cosine, rel_tol=1e-5)

    # The next commit reaches the cached rows as deltas: served at once, with no store read.
    rows = server.servicer.user_rows
    misses = rows.misses
    more = [EdgeDelta(NodeId("newbie"), NodeId("i3"), weight=1.5, count=1, last_ts_ms=2),
            EdgeDelta(NodeId("newbie"), NodeId("i8"), weight=1.0, count=1, last_ts_ms=2)]
    rows.committed(ladybug_store.apply_batch(UpsertBatch(more, {TopicPartition("events", 0): OffsetRange(5, 6)})),
                   more)
    me = me + 1.5 * scale["i3"] * items["i3"] + 1.0 * scale["i8"] * items["i8"]
    reply = client.recommend("newbie", k=5, exclude_seen=True)
    assert [s.item_id for s in reply.items] == expected_top(me, items, 5, leave_out={*clicks, "i8"})[0]
    assert rows.misses == misses
    cached, stored = rows.get(NodeId("newbie")), ladybug_store.user_row(NodeId("newbie"))
    assert cached.items == stored.items and cached.seq == stored.seq
    np.testing.assert_allclose(cached.weights, stored.weights)
