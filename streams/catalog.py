"""The item catalog contract: validate raw records of the items topic into :class:`ItemMeta`.

On the wire a catalog record is a UTF-8 JSON object keyed by ``item_id``::

    {"item_id": "i9", "title": "Toy Story (1995)", "categories": ["Animation", "Comedy"],
     "text": "pixar, fun"}

Only ``item_id`` is required (same id rules as events); missing attributes are empty. A later
record for the same item replaces its attributes (last write wins, as with a compacted topic).
"""

from __future__ import annotations

import json
from typing import Any

from core.domain import IdProblem, InvalidIdError, ItemMeta, NodeId, check_id
from streams.config import EventContract
from streams.validation import Rejection, RejectReason, too_large

#: Longest title/text kept; longer values are producer bugs that would bloat every response.
MAX_TEXT_LENGTH = 10_000


def validate_item(raw: bytes | None, contract: EventContract) -> ItemMeta | Rejection:
    """Parse one items-topic value into :class:`ItemMeta`, or say why it is invalid.

    Args:
        raw (bytes, optional): the record value (``None`` is rejected as ``bad_json``).
        contract (EventContract): ``max_id_length``, the longest accepted ``item_id``, and
            ``max_item_bytes``, the longest accepted value (longer ones are not decoded).
    """
    if raw is None:
        return Rejection(RejectReason.BAD_JSON, "empty record value (tombstone)")
    if len(raw) > contract.max_item_bytes:
        return too_large(raw, contract.max_item_bytes, "IG_MAX_ITEM_BYTES")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.BAD_JSON, f"not UTF-8: {exc.reason} at byte {exc.start}")
    except (ValueError, RecursionError) as exc:
        return Rejection(RejectReason.BAD_JSON, f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return Rejection(RejectReason.NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    return _item_from_object(obj, contract.max_id_length)


def _item_from_object(obj: dict[str, Any], max_id_length: int) -> ItemMeta | Rejection:
    item_id = obj.get("item_id")
    if item_id is None:
        return Rejection(RejectReason.MISSING_FIELD, "required field 'item_id' is missing", "item_id")
    if not isinstance(item_id, str):
        return Rejection(RejectReason.WRONG_TYPE, f"item_id must be a string, got {type(item_id).__name__}",
                         "item_id")
    try:
        check_id(item_id, "item_id", max_id_length)  # the same rule as events' and requests' ids
    except InvalidIdError as exc:
        reason = RejectReason.EMPTY_ID if exc.problem is IdProblem.BLANK else RejectReason.ID_TOO_LONG
        return Rejection(reason, str(exc), "item_id")
    for name in ("title", "text"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            return Rejection(RejectReason.WRONG_TYPE, f"{name} must be a string", name)
    categories = obj.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return Rejection(RejectReason.WRONG_TYPE, "categories must be a list of strings", "categories")
    return ItemMeta(
        item_id=NodeId(item_id),
        title=(obj.get("title") or "")[:MAX_TEXT_LENGTH],
        categories=tuple(categories),
        text=(obj.get("text") or "")[:MAX_TEXT_LENGTH],
    )


def encode_item(item: ItemMeta) -> bytes:
    """The wire form of one catalog record (compact JSON, UTF-8)."""
    record = {"item_id": item.item_id, "title": item.title, "categories": list(item.categories),
              "text": item.text}
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
