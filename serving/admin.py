"""The ``interestgraph.v1.Admin`` service: operator calls, apart from the Recommender.

``Forget`` hands the ids to a publisher the launcher supplies (``up``/``serve`` give
:class:`streams.erasure_publisher.ErasurePublisher`): serving never speaks Kafka itself, and the
erasure takes the ingest path like any event, so it is ordered, offset-tracked and applied once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc

from core.domain import ErasureReceipt, NodeId
from core.errors import InterestGraphError
from proto import recommender_pb2 as pb
from proto import recommender_pb2_grpc
from serving.requests import RequestChecker, abort, invalid

log = logging.getLogger(__name__)

#: Publishes one erasure request per user id (as producers name the user); their receipts, in order.
#: Raises an :class:`~core.errors.InterestGraphError` (retryable when the broker is only unavailable).
PublishErasures = Callable[[Sequence[NodeId]], list[ErasureReceipt]]


class AdminServicer(recommender_pb2_grpc.AdminServicer):
    """Answers Admin RPCs.

    Args:
        check (RequestChecker): the server's limits (``max_k`` ids per call, ``max_id_length``).
        publish (PublishErasures, optional): where erasure requests go; ``None`` answers Forget with
            ``FAILED_PRECONDITION`` (a server started without a broker) (default: ``None``).
        topic (str): the events topic, named in replies (default: ``""``).
    """

    def __init__(self, check: RequestChecker, publish: PublishErasures | None = None, topic: str = "") -> None:
        self.check = check
        self.publish = publish
        self.topic = topic

    def Forget(  # CamelCase: names fixed by the generated servicer base
        self, request: pb.ForgetRequest, context: grpc.ServicerContext
    ) -> pb.ForgetReply:
        if not 1 <= len(request.user_ids) <= self.check.max_k:
            invalid(context, f"user_ids must hold 1..max_k={self.check.max_k} ids, got {len(request.user_ids)}")
        user_ids = [self.check.node_id(u, "user_ids", context) for u in request.user_ids]
        if self.publish is None:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                  "this server has no broker to publish erasure requests to; use `interest-graph forget`")
        try:
            receipts = self.publish(user_ids)
        except InterestGraphError as exc:
            log.warning("Forget of %d users failed: %s", len(user_ids), exc)
            abort(context, grpc.StatusCode.UNAVAILABLE if exc.retryable else grpc.StatusCode.INTERNAL, str(exc))
        log.info("published erasure requests for %d users", len(user_ids))  # never their ids
        return pb.ForgetReply(topic=self.topic, receipts=[pb.ForgetReceipt(partition=r.partition, offset=r.offset)
                                                          for r in receipts])
