"""Request checks shared by every RPC: each field is validated before any work, with a clear message.

Bad input is always ``INVALID_ARGUMENT`` (never ``INTERNAL``), so clients know not to retry; a
deadline that passes between stages is ``DEADLINE_EXCEEDED``, so the server stops working on an
answer nobody waits for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NoReturn

import grpc

from core.domain import InvalidIdError, NodeId, check_id
from proto import recommender_pb2 as pb
from serving.config import ServingConfig

#: ``ExplainRequest.limit`` when the client leaves it 0.
DEFAULT_EXPLAIN_LIMIT = 10


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: ServicerContext.abort raises")  # for type checkers


def invalid(context: grpc.ServicerContext, message: str) -> NoReturn:
    abort(context, grpc.StatusCode.INVALID_ARGUMENT, message)


class RequestChecker:
    """Validates request fields against the server's limits.

    Args:
        config (ServingConfig): ``max_k``, ``max_id_length`` and ``max_filter_values``.
    """

    def __init__(self, config: ServingConfig) -> None:
        self.max_k = config.max_k
        self.max_id_length = config.max_id_length
        self.max_filter_values = config.max_filter_values

    def node_id(self, value: str, field: str, context: grpc.ServicerContext) -> NodeId:
        """A request's user or item id, under the same rule ingest applies to event ids."""
        try:
            return check_id(value, field, self.max_id_length)
        except InvalidIdError as exc:
            invalid(context, str(exc))

    def k(self, k: int, context: grpc.ServicerContext, field: str = "k") -> int:
        if not 1 <= k <= self.max_k:
            invalid(context, f"{field} must be between 1 and max_k={self.max_k}, got {k}")
        return k

    def limit(self, limit: int, context: grpc.ServicerContext) -> int:
        """``ExplainRequest.limit``: 0 means :data:`DEFAULT_EXPLAIN_LIMIT`, else 1..max_k."""
        if limit == 0:
            return DEFAULT_EXPLAIN_LIMIT
        if not 1 <= limit <= self.max_k:
            # Name the 0 case too: "between 1 and max_k" alone would call the proto's default invalid.
            invalid(context, f"limit must be 0 (the default, {DEFAULT_EXPLAIN_LIMIT}) or between 1 and "
                    f"max_k={self.max_k}, got {limit}")
        return limit

    def categories(self, values: Sequence[str], field: str, context: grpc.ServicerContext) -> list[str]:
        if len(values) > self.max_filter_values:
            invalid(context, f"{field} has {len(values)} values; at most max_filter_values="
                    f"{self.max_filter_values} are allowed")
        for n, value in enumerate(values):
            if not value:
                invalid(context, f"{field}[{n}] is empty")
            if len(value) > self.max_id_length:
                invalid(context, f"{field}[{n}] has {len(value)} characters; at most {self.max_id_length} "
                        "are allowed")
        return list(dict.fromkeys(values))  # duplicates change nothing; drop them once here

    def item_filter(self, item_filter: pb.ItemFilter, context: grpc.ServicerContext) -> tuple[list[str], list[str]]:
        """A request's ``filter``: its ``(include, exclude)`` categories, each checked by :meth:`categories`."""
        return (self.categories(item_filter.include_categories, "filter.include_categories", context),
                self.categories(item_filter.exclude_categories, "filter.exclude_categories", context))

    def diversity(self, present: bool, value: float, context: grpc.ServicerContext) -> float:
        """``diversity_lambda``: unset = 1.0 (pure relevance), else a number in [0, 1]."""
        if not present:
            return 1.0
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            invalid(context, f"diversity_lambda must be in [0, 1] (1 = pure relevance), got {value}")
        return value


def check_deadline(context: grpc.ServicerContext, stage: str) -> None:
    """Abort with DEADLINE_EXCEEDED if the caller's deadline has passed (checked between stages)."""
    left = context.time_remaining()
    if left is not None and left <= 0:
        abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline passed {stage}")
