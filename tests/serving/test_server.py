"""The gRPC server end to end: a real server on a free port over a real LadybugDB store."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from core.domain import EdgeDelta, NodeId, OffsetRange, TopicPartition, UpsertBatch
from core.settings import Settings
from graph_store.base import GraphStoreError
from graph_store.ladybug import LadybugStore
from serving import SERVICE_NAME
from serving.client import RecommenderClient, RecommenderError
from serving.config import ServingConfig
from serving.index import EmbeddingIndex
from serving.server import ServingHandle, ServingStartError, create_server, start_serving
from tests.serving.conftest import DIM, MAX_ID, MAX_K, N_ITEMS, N_USERS, EmbeddingWriter, expected_top

pytestmark = pytest.mark.integration

def health_status(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_not_serving_until_embeddings_are_loaded(server: ServingHandle, client: RecommenderClient,
                                                  write_embeddings: EmbeddingWriter) -> None:
    for service in ("", SERVICE_NAME):
        assert health_status(server.port, service) == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(RecommenderError) as caught:
        client.recommend("u1", k=3)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and caught.value.retryable
    with pytest.raises(RecommenderError) as waited:
        client.wait_until_serving(timeout_s=0.3)
    assert waited.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and "NOT_SERVING" in waited.value.message

    write_embeddings(1, users={"u1": np.ones(DIM)}, items={"i1": np.ones(DIM)})
    client.wait_until_serving(timeout_s=10)
    for service in ("", SERVICE_NAME):
        assert health_status(server.port, service) == health_pb2.HealthCheckResponse.SERVING


def test_recommend_returns_exact_top_k_with_titles_and_freshness(loaded: RecommenderClient, vectors) -> None:
    users, items = vectors
    reply = loaded.recommend("u3", k=10)
    want_ids, want_scores = expected_top(users["u3"], items, 10)
    assert [s.item_id for s in reply.items] == want_ids
    np.testing.assert_allclose([s.score for s in reply.items], want_scores, rtol=1e-5)
    titled = {i for i in list(items)[:30]}
    assert all(s.title == (f"Title of {s.item_id}" if s.item_id in titled else "") for s in reply.items)
    assert reply.embedding_version == 1
    assert reply.embedding_age_ms >= 0


def test_exclude_seen_leaves_out_the_users_items(loaded: RecommenderClient, ladybug_store: LadybugStore,
                                                 vectors) -> None:
    users, items = vectors
    top = [s.item_id for s in loaded.recommend("u0", k=5).items]
    seen = {top[0], top[2], "i59"}
    ladybug_store.apply_batch(UpsertBatch(
        edges=[EdgeDelta(NodeId("u0"), NodeId(i), weight=1.0, count=1, last_ts_ms=1) for i in sorted(seen)],
        offsets={TopicPartition("events", 0): OffsetRange(0, 2)},
    ))
    reply = loaded.recommend("u0", k=5, exclude_seen=True)
    assert [s.item_id for s in reply.items] == expected_top(users["u0"], items, 5, leave_out=seen)[0]
    assert [s.item_id for s in loaded.recommend("u0", k=5).items] == top


def test_similar_items_never_returns_the_item_itself(loaded: RecommenderClient, vectors) -> None:
    _, items = vectors
    reply = loaded.similar_items("i4", k=MAX_K)
    assert [s.item_id for s in reply.items] == expected_top(items["i4"], items, MAX_K, leave_out={"i4"})[0]
    assert reply.embedding_version == 1


@pytest.mark.parametrize(
    ("call", "code", "fragment"),
    [
        (lambda c: c.similar_items("no-item", k=3), grpc.StatusCode.NOT_FOUND, "'no-item' has no embedding"),
        (lambda c: c.recommend("u1", k=0), grpc.StatusCode.INVALID_ARGUMENT, f"max_k={MAX_K}"),
        (lambda c: c.recommend("u1", k=-4), grpc.StatusCode.INVALID_ARGUMENT, "got -4"),
        (lambda c: c.recommend("u1", k=MAX_K + 1), grpc.StatusCode.INVALID_ARGUMENT, f"max_k={MAX_K}"),
        (lambda c: c.similar_items("i1", k=MAX_K + 1), grpc.StatusCode.INVALID_ARGUMENT, f"max_k={MAX_K}"),
        (lambda c: c.recommend("", k=3), grpc.StatusCode.INVALID_ARGUMENT, "user_id is empty or blank"),
        (lambda c: c.similar_items("", k=3), grpc.StatusCode.INVALID_ARGUMENT, "item_id is empty or blank"),
        # Blank ids break the same rule ingest dead-letters them for, so they are no unknown id (NOT_FOUND).
        (lambda c: c.recommend("   ", k=3), grpc.StatusCode.INVALID_ARGUMENT, "user_id is empty or blank"),
        (lambda c: c.similar_items(" \t", k=3), grpc.StatusCode.INVALID_ARGUMENT, "item_id is empty or blank"),
        (lambda c: c.recommend("u" * (MAX_ID + 1), k=3), grpc.StatusCode.INVALID_ARGUMENT,
         f"at most {MAX_ID}"),
    ],
    ids=["unknown-item", "k=0", "k<0", "k>max_k", "similar-k>max_k", "empty-user",
         "empty-item", "blank-user", "blank-item", "oversized-id"],
)
def test_bad_requests_get_clear_status_codes(loaded: RecommenderClient, call, code, fragment) -> None:
    with pytest.raises(RecommenderError) as caught:
        call(loaded)
    assert caught.value.code == code
    assert fragment in caught.value.message
    assert not caught.value.retryable
    assert loaded.recommend("u1", k=1).items  # the server is unharmed


def test_id_limit_counts_characters_not_bytes(
    loaded: RecommenderClient, write_embeddings: EmbeddingWriter
) -> None:
    user = "ü" * MAX_ID  # 2 bytes per character in UTF-8
    write_embeddings(2, users={user: np.ones(DIM)})
    deadline = time.monotonic() + 10
    while loaded.status().embedding_version != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(loaded.recommend(user, k=2).items) == 2


def test_new_embeddings_are_served_without_a_restart(
    loaded: RecommenderClient, write_embeddings: EmbeddingWriter, vectors
) -> None:
    users, items = vectors
    before = loaded.recommend("u1", k=3)
    write_embeddings(2, users={"u1": -users["u1"]})  # u1's taste turns upside down
    deadline = time.monotonic() + 10
    while (after := loaded.recommend("u1", k=3)).embedding_version != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert before.embedding_version == 1 and after.embedding_version == 2
    assert [s.item_id for s in after.items] == expected_top(-users["u1"], items, 3)[0]
    assert {s.item_id for s in after.items}.isdisjoint(s.item_id for s in before.items)


def test_status_reports_index_store_and_backlog(
    loaded: RecommenderClient, ladybug_store: LadybugStore
) -> None:
    ladybug_store.apply_batch(UpsertBatch(
        edges=[EdgeDelta(NodeId(u), NodeId("i1"), 1.0, 1, 1) for u in ("u1", "u2")],
        offsets={TopicPartition("events", 0): OffsetRange(0, 1)},
    ))
    status = loaded.status()
    assert (status.embedding_version, status.users_indexed, status.items_indexed) == (1, N_USERS, N_ITEMS)
    assert status.store_seq == 1 and status.refresh_cursor == 0
    assert status.changed_node_backlog == 3  # u1, u2, i1 changed after the refresh cursor
    assert status.store_edges == 2
    assert status.store_users >= 2 and status.store_items >= N_ITEMS
    assert status.embedding_age_ms >= 0


def test_store_errors_become_status_codes(loaded: RecommenderClient, ladybug_store: LadybugStore) -> None:
    ladybug_store.close()
    with pytest.raises(GraphStoreError) as direct:
        ladybug_store.counts()
    expected = grpc.StatusCode.UNAVAILABLE if direct.value.retryable else grpc.StatusCode.INTERNAL
    for call in (loaded.status, lambda: loaded.recommend("u1", k=3, exclude_seen=True)):
        with pytest.raises(RecommenderError) as caught:
            call()
        assert caught.value.code == expected
        assert caught.value.message.startswith("graph store:")


def test_reflection_lists_the_service(server: ServingHandle) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert SERVICE_NAME in services
        assert "grpc.health.v1.Health" in services
        methods = {m.name for m in database.FindFileContainingSymbol(SERVICE_NAME).service[0].method}
    assert methods == {"Recommend", "SimilarItems", "RecommendFriends", "Explain", "WatchRecommendations", "GetStatus"}


def test_a_taken_port_is_a_clear_error(server: ServingHandle, ladybug_store: LadybugStore,
                                       settings: Settings) -> None:
    with pytest.raises(ServingStartError, match="cannot bind"):
        create_server(f"127.0.0.1:{server.port}", EmbeddingIndex(), ladybug_store,
                      ServingConfig.from_settings(settings))


def test_servers_that_share_a_port_both_bind_it_and_answer(ladybug_store: LadybugStore, settings: Settings) -> None:
    sharing = ServingConfig.from_settings(settings.replace(grpc_share_port=True))
    first, port, _ = create_server("127.0.0.1:0", EmbeddingIndex(), ladybug_store, sharing)
    second, same_port, _ = create_server(f"127.0.0.1:{port}", EmbeddingIndex(), ladybug_store, sharing)
    assert same_port == port
    first.start()
    second.start()
    try:
        assert health_status(port, "") == health_pb2.HealthCheckResponse.NOT_SERVING  # whichever answers
        first.stop(None).wait()
        assert health_status(port, "") == health_pb2.HealthCheckResponse.NOT_SERVING  # the second, alone
    finally:
        first.stop(None)  # a no-op once stopped
        second.stop(None).wait()


def test_graceful_stop_reports_not_serving_then_refuses_calls(
    settings: Settings, ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter
) -> None:
    write_embeddings(1, users={"u1": np.ones(DIM)}, items={"i1": np.ones(DIM)})
    # As `interest-graph serve` runs it (interest_graph.launch): start, and on a signal stop within grace_s.
    handle = start_serving(ServingConfig.from_settings(settings), ladybug_store)
    stopping = threading.Thread(target=handle.stop, args=(settings.grace_s,))
    try:
        address = f"127.0.0.1:{handle.port}"
        with RecommenderClient(address, timeout_s=5) as client, grpc.insecure_channel(address) as channel:
            client.wait_until_serving(timeout_s=10)
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stopping.start()
            # Watchers hear NOT_SERVING before the server goes away.
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()  # an open stream would hold the server for the whole grace period
            stopping.join(timeout=10)
            assert not stopping.is_alive()
            assert not handle.loader.running
            with pytest.raises(RecommenderError) as caught:
                client.recommend("u1", k=1)
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        if stopping.ident is None:
            stopping.start()
        stopping.join(timeout=10)
