"""Fuzzed gRPC requests against a real server: every bad request gets a clear status, never INTERNAL/UNKNOWN.

Ids are arbitrary text (unicode, control characters, Cypher injection attempts, strings far over
the id limit), counts span the whole int32 range. The server answers each call with OK or a
specific status (INVALID_ARGUMENT, NOT_FOUND, ...); the metrics interceptor, which records every
call's final status, must never have seen INTERNAL or UNKNOWN. Injection strings reach the store
through the seen-items and evidence reads, which take ids as parameters only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from core.domain import EdgeDelta, EmbeddingRows, EmbeddingUpdate, NodeId, NodeKind, UpsertBatch
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc
from serving.config import ServingConfig
from serving.interceptors import MetricsInterceptor
from serving.server import ServingHandle, start_serving

pytestmark = pytest.mark.integration

INJECTIONS = ["u0' OR 1=1 --", "x}) MATCH (n) DETACH DELETE n //", "$user_id", "`", "\\u0000", "i0\nRETURN 1"]
USERS = [f"u{n}" for n in range(6)] + INJECTIONS[:2]
ITEMS = [f"i{n}" for n in range(30)] + INJECTIONS[2:4]
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

ids = st.one_of(st.sampled_from(USERS + ITEMS + INJECTIONS), st.text(max_size=40),
                st.text(min_size=300, max_size=2000), st.just(""))
counts = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@pytest.fixture(scope="module")
def served(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServingHandle, MetricsInterceptor, LadybugStore]]:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "graph.lbdb"
    store = LadybugStore(str(path))
    store.ensure_schema()
    rng = np.random.default_rng(0)
    edges = [EdgeDelta(NodeId(u), NodeId(ITEMS[(k * 7 + j) % len(ITEMS)]), 1.0, 1, 1_700_000_000_000)
             for k, u in enumerate(USERS) for j in range(4)]
    store.apply_batch(UpsertBatch(edges=sorted(edges, key=lambda e: (e.user_id, e.item_id)), offsets={}, group="g"))
    store.write_embeddings(EmbeddingUpdate(version=1, cursor=store.counts()["seq"], rows=[
        EmbeddingRows(NodeKind.USER, [NodeId(u) for u in USERS], rng.normal(size=(len(USERS), 8)).astype(np.float32)),
        EmbeddingRows(NodeKind.ITEM, [NodeId(i) for i in ITEMS], rng.normal(size=(len(ITEMS), 8)).astype(np.float32)),
    ]))
    interceptor = MetricsInterceptor()
    config = ServingConfig.from_settings(Settings(grpc_addr="127.0.0.1:0", index_poll_s=0.01, max_k=50,
                                                  max_id_length=256))
    handle = start_serving(config, store, interceptors=[interceptor])
    try:
        assert handle.index.snapshot().ready  # start_serving loads once before returning
        yield handle, interceptor, store
    finally:
        handle.stop(0)
        store.close()


def _call(handle: ServingHandle, method: str, request: object) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
        stub = recommender_pb2_grpc.RecommenderStub(channel)
        try:
            getattr(stub, method)(request, timeout=10)
        except grpc.RpcError as exc:
            code = exc.code()
            assert code not in FORBIDDEN, f"{method}({request!r}) -> {code}: {exc.details()}"
            assert exc.details(), f"{method} answered {code} without a message"
            return code  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


requests = st.one_of(
    st.builds(lambda u, k, s: ("Recommend", pb.RecommendRequest(user_id=u, k=k, exclude_seen=s)), ids, counts,
              st.booleans()),
    st.builds(lambda i, k: ("SimilarItems", pb.SimilarItemsRequest(item_id=i, k=k)), ids, counts),
    st.builds(lambda u, k: ("RecommendFriends", pb.RecommendFriendsRequest(user_id=u, k=k)), ids, counts),
    st.builds(lambda u, i, n: ("Explain", pb.ExplainRequest(user_id=u, item_id=i, limit=n)), ids, ids, counts),
)


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=requests)
def test_fuzzed_requests_get_clear_statuses(served: tuple[ServingHandle, MetricsInterceptor, LadybugStore],
                                            call: tuple[str, object]) -> None:
    handle, _, _ = served
    method, request = call
    _call(handle, method, request)


def test_injection_ids_are_served_verbatim_and_the_interceptor_saw_no_internal_errors(
        served: tuple[ServingHandle, MetricsInterceptor, LadybugStore]) -> None:
    handle, interceptor, store = served
    for user in INJECTIONS[:2]:
        assert _call(handle, "Recommend", pb.RecommendRequest(user_id=user, k=5, exclude_seen=True)) \
            == grpc.StatusCode.OK
        assert {e.item_id for e in store.edges_of_user(NodeId(user))}  # stored verbatim, found by its exact id
    assert store.counts()["users"] == len(USERS)  # no query was changed into a delete or a write
    codes = {values[2] for values in interceptor.histograms.snapshots()}
    assert codes and not codes & {"INTERNAL", "UNKNOWN"}, codes
