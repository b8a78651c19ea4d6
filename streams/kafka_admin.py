"""Kafka cluster administration the ingest side needs: create topics, read the cluster id.

Kept apart from the agents (:mod:`streams.app`) and from the embedded broker's process
(:mod:`interest_graph.embedded_broker`): these calls work the same on Tansu and on Apache Kafka.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from core.errors import InterestGraphError


class BrokerUnavailableError(InterestGraphError, RuntimeError):
    """The Kafka cluster did not answer. Retryable: it may be starting or restarting."""

    retryable = True


def create_topics(bootstrap: Sequence[str] | str, partitions: Mapping[str, int],
                  timeout_s: float = 10.0) -> list[str]:
    """Create each topic ``name`` with ``partitions[name]`` partitions, if it does not exist yet.

    Faust would create source topics lazily with the broker's default partition count; creating
    them up front fixes the partition count (the unit of parallelism and of applied offsets).

    Args:
        bootstrap (Sequence[str] | str): ``host:port`` of the brokers.
        partitions (Mapping[str, int]): partitions per topic name.
        timeout_s (float): deadline for the admin requests (default: ``10.0`` s).

    Returns:
        The names of the topics this call created (existing ones are left as they are).
    """
    servers = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=int(timeout_s * 1000))
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in partitions.items() if name not in existing}
        if not missing:
            return []
        spec = {name: {"num_partitions": n, "replication_factor": 1} for name, n in missing.items()}
        # Another process may create a topic between our list and create: same outcome.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(spec, timeout_ms=int(timeout_s * 1000), wait_for_metadata=True)
        return sorted(missing)
    finally:
        admin.close()


def cluster_id(bootstrap: Sequence[str] | str, timeout_s: float = 10.0) -> str:
    """The id of the Kafka cluster at ``bootstrap`` (stable for a cluster's life; Tansu: per start).

    Raises:
        BrokerUnavailableError: the cluster did not answer within ``timeout_s``.
    """
    servers = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=timeout_ms,
                                 bootstrap_timeout_ms=timeout_ms)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"Kafka at {servers} did not answer: {exc}") from exc
    try:
        return str(admin.describe_cluster()["cluster_id"])
    except KafkaError as exc:
        raise BrokerUnavailableError(f"Kafka at {servers} did not describe its cluster: {exc}") from exc
    finally:
        admin.close()
