"""Serving's side of erasure and pseudonyms: forgotten users leave the index and the row cache, the
Admin service publishes real erasure requests, and client ids are mapped as ingest maps them."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from kafka import KafkaConsumer

from core.domain import EmbeddingRows, Erasure, NodeId, NodeKind, OffsetRange, TopicPartition, UpsertBatch
from core.privacy import ForgetKey, Pseudonyms
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from proto import recommender_pb2 as pb
from serving.client import RecommenderClient, RecommenderError
from serving.config import ServingConfig
from serving.server import ServingHandle, start_serving
from streams.erasure_publisher import ErasurePublisher
from streams.validation import encode_erasure_request, event_key
from tests.fixtures.broker import KafkaTopics
from tests.fixtures.stack import eventually
from tests.graph_store.builders import delta
from tests.serving.conftest import EmbeddingWriter

ERASURE_KEY = "serving-erasure-test-key-0123"
TOKEN = "admin-test-token"


def erase(store: LadybugStore, user: str, offset: int = 0) -> None:
    """What the ingest agent does for an erasure request (streams.aggregate.plan_batch)."""
    erasure = Erasure(NodeId(user), ForgetKey(ERASURE_KEY.encode()).digest(user), 2**50)
    store.apply_batch(UpsertBatch([], {TopicPartition("ev", 0): OffsetRange(offset, offset)}, group="g",
                                  erasures=[erasure]))


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    return settings.replace(erasure_key=ERASURE_KEY)


@pytest.fixture
def served(keyed: Settings, ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter,
           vectors: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> Iterator[ServingHandle]:
    ladybug_store.apply_batch(UpsertBatch([delta("u1", "i1"), delta("u2", "i1")],
                                          {TopicPartition("ev", 1): OffsetRange(0, 1)}, group="g"))
    write_embeddings(1, users=vectors[0], items=vectors[1], cursor=ladybug_store.counts()["seq"])
    handle = start_serving(ServingConfig.from_settings(keyed), ladybug_store)
    try:
        yield handle
    finally:
        handle.stop(0)


def test_a_forgotten_user_leaves_the_index_and_the_row_cache(served: ServingHandle, ladybug_store: LadybugStore
                                                             ) -> None:
    with RecommenderClient(f"127.0.0.1:{served.port}") as client:
        client.wait_until_serving()
        assert client.recommend("u1", exclude_seen=True).source == pb.RECOMMEND_SOURCE_PERSONAL
        assert "u1" in served.servicer.user_rows.held()
        erase(ladybug_store, "u1")
        eventually("serving to drop u1", lambda: served.index.snapshot().users.row(NodeId("u1")) is None, 10)
        assert "u1" not in served.servicer.user_rows.held()
        assert client.recommend("u1").source == pb.RECOMMEND_SOURCE_TRENDING
        assert client.recommend("u2").source == pb.RECOMMEND_SOURCE_PERSONAL
        for method in (lambda: client.friends("u1"), lambda: client.explain("u1", "i1")):
            with pytest.raises(RecommenderError) as caught:
                method()
            assert caught.value.code == grpc.StatusCode.NOT_FOUND
        assert "u1" not in str(client.friends("u2", k=10)) + str(client.explain("u2", "i1"))
        # A round computed before the erasure, handed over late, cannot bring the user back.
        late = EmbeddingRows(NodeKind.USER, [NodeId("u1"), NodeId("u3")], np.ones((2, 8), np.float32))
        assert served.forgotten is not None and served.forgotten.rows_without(late).ids == ["u3"]


def test_forget_validates_before_it_publishes(keyed: Settings, ladybug_store: LadybugStore) -> None:
    handle = start_serving(ServingConfig.from_settings(keyed), ladybug_store)  # no publisher: no broker
    try:
        with RecommenderClient(f"127.0.0.1:{handle.port}") as client:
            for ids, code in (([], grpc.StatusCode.INVALID_ARGUMENT), ([" "], grpc.StatusCode.INVALID_ARGUMENT),
                              (["x" * 100], grpc.StatusCode.INVALID_ARGUMENT),
                              (["u"] * 21, grpc.StatusCode.INVALID_ARGUMENT),
                              (["u1"], grpc.StatusCode.FAILED_PRECONDITION)):
                with pytest.raises(RecommenderError) as caught:
                    client.forget(ids)
                assert caught.value.code == code, ids
    finally:
        handle.stop(0)


@pytest.mark.integration
def test_forget_publishes_requests_keyed_like_the_users_events(
        keyed: Settings, ladybug_store: LadybugStore, kafka_topics: KafkaTopics) -> None:
    publisher = ErasurePublisher(kafka_topics.bootstrap, kafka_topics.events)
    handle = start_serving(ServingConfig.from_settings(keyed.replace(auth_token=TOKEN)), ladybug_store,
                           publish_erasures=publisher.forget, erasure_topic=kafka_topics.events)
    try:
        address = f"127.0.0.1:{handle.port}"
        with RecommenderClient(address, token=TOKEN) as admin, RecommenderClient(address) as anonymous:
            with pytest.raises(RecommenderError) as caught:
                anonymous.forget(["alice"])
            assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
            reply = admin.forget(["alice", "bob"])
        assert reply.topic == kafka_topics.events and len(reply.receipts) == 2
        consumer = KafkaConsumer(kafka_topics.events, bootstrap_servers=kafka_topics.bootstrap,
                                 auto_offset_reset="earliest", consumer_timeout_ms=3000)
        found = {(r.partition, r.offset): (r.key, r.value) for r in consumer}
        consumer.close()
        for user, receipt in zip(("alice", "bob"), reply.receipts, strict=True):
            key, value = found[(receipt.partition, receipt.offset)]
            assert key == event_key(user) and value is not None
            assert value.replace(value[value.index(b'"ts":'):], b"") == \
                encode_erasure_request(user, 0).replace(b'"ts":0}', b"")
    finally:
        handle.stop(0)
        publisher.close()


def test_the_admin_service_can_be_left_out(keyed: Settings, ladybug_store: LadybugStore) -> None:
    handle = start_serving(ServingConfig.from_settings(keyed.replace(admin_service=False)), ladybug_store)
    try:
        with RecommenderClient(f"127.0.0.1:{handle.port}") as client, pytest.raises(RecommenderError) as caught:
            client.forget(["u1"])
        assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
    finally:
        handle.stop(0)


def test_serving_maps_client_ids_to_pseudonyms(keyed: Settings, ladybug_store: LadybugStore,
                                               write_embeddings: EmbeddingWriter,
                                               vectors: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]) -> None:
    key = "serving-pseudonym-test-key-45"
    alias = Pseudonyms(key.encode())("alice")
    write_embeddings(1, users={alias: vectors[0]["u0"]}, items=vectors[1])
    handle = start_serving(ServingConfig.from_settings(keyed.replace(id_key=key, max_id_length=64)), ladybug_store)
    try:
        with RecommenderClient(f"127.0.0.1:{handle.port}") as client:
            client.wait_until_serving()
            reply = client.recommend("alice", k=3)
            assert reply.source == pb.RECOMMEND_SOURCE_PERSONAL and len(reply.items) == 3
            assert client.recommend(alias).source == pb.RECOMMEND_SOURCE_TRENDING  # a pseudonym is no raw id
    finally:
        handle.stop(0)
