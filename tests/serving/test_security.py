"""Optional TLS and bearer-token auth, against a real server with a self-signed certificate."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.settings import Settings
from graph_store.ladybug import LadybugStore
from serving import SERVICE_NAME
from serving.client import RecommenderClient, RecommenderError
from serving.config import ClientConfig, ServingConfig
from serving.server import ServingHandle, ServingStartError, start_serving
from tests.serving.conftest import DIM, EmbeddingWriter

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed: cannot make a test certificate")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def serve_with(settings: Settings, store: LadybugStore, write: EmbeddingWriter) -> ServingHandle:
    write(1, users={"u1": np.ones(DIM)}, items={"i1": np.ones(DIM), "i2": -np.ones(DIM)})
    return start_serving(ServingConfig.from_settings(settings), store)


@pytest.fixture
def tls_server(settings: Settings, ladybug_store: LadybugStore, write_embeddings: EmbeddingWriter,
               certificate: tuple[Path, Path]) -> Iterator[ServingHandle]:
    cert, key = certificate
    handle = serve_with(settings.replace(tls_cert=str(cert), tls_key=str(key), auth_token=TOKEN),
                        ladybug_store, write_embeddings)
    try:
        yield handle
    finally:
        handle.stop(0)


def test_tls_with_the_right_token_is_served(tls_server: ServingHandle, certificate, settings: Settings) -> None:
    cert, _ = certificate
    configured = settings.replace(grpc_addr=f"127.0.0.1:{tls_server.port}", tls_root_cert=str(cert),
                                  auth_token=TOKEN)
    with RecommenderClient.from_config(ClientConfig.from_settings(configured)) as client:
        client.wait_until_serving(timeout_s=10)
        assert [s.item_id for s in client.recommend("u1", k=1).items] == ["i1"]
        assert next(iter(client.watch("u1", k=1))).items[0].item_id == "i1"


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no-token", "wrong-token"])
def test_a_missing_or_wrong_token_is_unauthenticated(tls_server: ServingHandle, certificate, token) -> None:
    cert, _ = certificate
    with RecommenderClient(f"127.0.0.1:{tls_server.port}", root_cert=cert.read_bytes(), token=token) as client:
        for call in (lambda: client.recommend("u1", k=1), lambda: next(iter(client.watch("u1", k=1)))):
            with pytest.raises(RecommenderError) as caught:
                call()
            assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in caught.value.message
        # Health stays open, so load balancers need no secret.
        assert client.serving()


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server: ServingHandle) -> None:
    with RecommenderClient(f"127.0.0.1:{tls_server.port}", timeout_s=2, token=TOKEN) as client:
        with pytest.raises(RecommenderError) as caught:
            client.recommend("u1", k=1)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_token_auth_without_tls(settings: Settings, ladybug_store: LadybugStore,
                                write_embeddings: EmbeddingWriter) -> None:
    handle = serve_with(settings.replace(auth_token=TOKEN), ladybug_store, write_embeddings)
    try:
        address = f"127.0.0.1:{handle.port}"
        with RecommenderClient(address, token=TOKEN) as good, RecommenderClient(address) as anonymous:
            assert good.recommend("u1", k=1).items
            with pytest.raises(RecommenderError) as caught:
                anonymous.status()
            assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                                              timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        handle.stop(0)


def test_half_a_tls_configuration_is_refused(settings: Settings, ladybug_store: LadybugStore,
                                             certificate) -> None:
    cert, _ = certificate
    with pytest.raises(ServingStartError, match="IG_TLS_CERT and IG_TLS_KEY"):
        start_serving(ServingConfig.from_settings(settings.replace(tls_cert=str(cert))), ladybug_store)


def test_the_auth_token_stays_out_of_the_configs_repr() -> None:
    settings = Settings(auth_token=TOKEN)
    for config in (ServingConfig.from_settings(settings), ClientConfig.from_settings(settings)):
        assert config.auth_token == TOKEN
        assert TOKEN not in repr(config)
