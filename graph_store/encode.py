"""Domain objects to statement parameters, validated before any transaction starts.

Bad input raises :class:`ValueError` naming the offending value, so a caller learns what is wrong
and the store is left exactly as it was (nothing is sent until every row has passed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.domain import EdgeDelta, EmbeddingRows, EventType, ItemMeta, UpsertBatch
from graph_store.cypher import TYPE_COUNT_COLUMNS


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    return value


def _check_int(value: object, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{what} must be an int, got {type(value).__name__}: {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def _check_weight(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{what} must be a number, got {type(value).__name__}: {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {number}")
    return number


def interaction_key(user_id: str, item_id: str) -> str:
    """The primary key of a (user, item) pair's Interaction node (LadybugDB keeps edge tallies there).

    The user id's length comes first, so no two pairs share a key whatever characters ids hold.
    """
    return f"{len(user_id)}:{user_id}{item_id}"


def pair_params(user_id: str, item_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Rows naming (user, item) pairs for EDGE_TALLIES."""
    user = _check_id(user_id, "user_id")
    return [{"user_id": user, "item_id": item, "key": interaction_key(user, item)}
            for item in (_check_id(i, "item_id") for i in item_ids)]


def edge_params(edges: Sequence[EdgeDelta]) -> list[dict[str, Any]]:
    """One parameter row per delta; ``k`` is its position (ADD_TO_EDGES returns it), ``key`` its
    :func:`interaction_key`.

    Raises :class:`ValueError` on duplicate (user, item) keys: the caller must aggregate first,
    because neither dialect accumulates two rows for one edge inside one statement reliably.
    """
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for k, delta in enumerate(edges):
        what = f"edge {k} ({delta.user_id!r}, {delta.item_id!r})"
        key = (_check_id(delta.user_id, f"{what} user_id"), _check_id(delta.item_id, f"{what} item_id"))
        if key in seen:
            raise ValueError(f"duplicate edge {key} in one batch: aggregate deltas per (user, item) first")
        seen.add(key)
        row: dict[str, Any] = {
            "k": k,
            "user_id": key[0],
            "item_id": key[1],
            "key": interaction_key(*key),
            "weight": _check_weight(delta.weight, f"{what} weight"),
            "cnt": _check_int(delta.count, f"{what} count", minimum=0),
            "last_ts": _check_int(delta.last_ts_ms, f"{what} last_ts_ms"),
        }
        row.update(dict.fromkeys(TYPE_COUNT_COLUMNS.values(), 0))
        for event_type, n in delta.type_counts.items():
            try:
                column = TYPE_COUNT_COLUMNS[EventType(event_type)]
            except ValueError:
                raise ValueError(f"{what}: unknown event type {event_type!r}") from None
            row[column] = _check_int(n, f"{what} count of {event_type}", minimum=0)
        rows.append(row)
    return rows


def offset_key(group: str, topic: str, partition: int) -> str:
    """Key of an Offset node: JSON, so no group or topic name can collide with another."""
    return json.dumps([group, topic, partition], ensure_ascii=False)


def offset_params(batch: UpsertBatch) -> list[dict[str, Any]]:
    """One row per partition the batch covers, with the range start the staleness check needs."""
    group = _check_id(batch.group, "batch group")
    rows = []
    for tp, rng in batch.offsets.items():
        what = f"offsets of {tp.topic!r}[{tp.partition}]"
        part = _check_int(tp.partition, f"{what} partition", minimum=0)
        first = _check_int(rng.first, f"{what} first", minimum=0)
        last = _check_int(rng.last, f"{what} last", minimum=0)
        if last < first:
            raise ValueError(f"{what}: last {last} < first {first}")
        topic = _check_id(tp.topic, f"{what} topic")
        key = offset_key(group, topic, part)
        rows.append({"key": key, "grp": group, "topic": topic, "part": part, "applied": last, "first": first})
    return rows


def item_params(items: Sequence[ItemMeta]) -> list[dict[str, Any]]:
    """Catalog rows; the last entry wins when an item appears twice."""
    rows: dict[str, dict[str, Any]] = {}
    for meta in items:
        item_id = _check_id(meta.item_id, "item_id")
        categories = [_check_id(c, f"category of item {item_id!r}") for c in meta.categories]
        rows[item_id] = {
            "id": item_id,
            "title": _check_id(meta.title, f"title of item {item_id!r}"),
            "categories": categories,
            "text": _check_id(meta.text, f"text of item {item_id!r}"),
        }
    return list(rows.values())


def vector_params(rows: EmbeddingRows, encode_vector: Callable[[np.ndarray], Any]) -> list[dict[str, Any]]:
    """``{id, vector}`` rows of one kind, each vector as ``encode_vector`` stores it.

    Vectors must be finite and one per id.
    """
    vectors = np.asarray(rows.vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(rows.ids):
        raise ValueError(f"{rows.kind} embeddings: expected a [{len(rows.ids)}, d] array, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{rows.kind} embeddings contain NaN or infinite values")
    if len(set(rows.ids)) != len(rows.ids):
        raise ValueError(f"{rows.kind} embeddings name some id twice")
    return [
        {"id": _check_id(node_id, f"{rows.kind} embedding id"), "vector": encode_vector(vector)}
        for node_id, vector in zip(rows.ids, vectors, strict=True)
    ]


def float32_bytes(vector: np.ndarray) -> bytes:
    """A vector as little-endian float32 bytes (LadybugDB's BLOB embedding columns)."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_float32_bytes(blobs: Sequence[Any]) -> np.ndarray:
    """Stack BLOB vectors written by :func:`float32_bytes` into a ``[n, d]`` float32 array."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    sizes = {len(b) for b in blobs}
    if len(sizes) != 1 or next(iter(sizes)) % 4:
        raise ValueError(f"stored vectors have differing or invalid byte sizes {sorted(sizes)}")
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float32)


def float_list(vector: np.ndarray) -> list[float]:
    """A vector as a list of floats (Neo4j's list properties)."""
    return [float(x) for x in vector]


def from_float_lists(lists: Sequence[Any]) -> np.ndarray:
    """Stack list vectors into a ``[n, d]`` float32 array."""
    if not lists:
        return np.zeros((0, 0), dtype=np.float32)
    if len({len(v) for v in lists}) != 1:
        raise ValueError("stored vectors have differing lengths")
    return np.asarray(lists, dtype=np.float32)
