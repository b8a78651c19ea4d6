"""Fold a batch of Kafka records into one :class:`UpsertBatch`: the pure core of the ingest agent.

Exactly-once *effect* under at-least-once delivery rests on two facts:

1. a batch's edge deltas and the offsets it covers are written in one store transaction, so the
   store's applied offset of a partition is exactly "everything up to here is in the graph";
2. records at or below the applied offset are dropped before aggregation (:func:`filter_applied`),
   so a redelivered record (after a crash, a rebalance or a retried batch) never counts twice.

Rejected records are part of the batch's offsets too: the dead-letter topic holds them, and the
partition's applied offset must move past them or they would block the offsets from advancing.

With an edge half-life (:class:`~core.domain.EdgeDecay`), each event's weight is multiplied by
its factor at its own event time before the sums, so a batch's deltas are exact whatever its
events' order; the batch carries the reference its weights are in, moved up to its newest event
when that is more than :data:`~core.domain.REBASE_AFTER_HALF_LIVES` half-lives past the last one
(the store then rescales what it holds in the same transaction).

Erasure requests ride the same path, so a replay neither loses nor repeats one: the batch that
reads a request carries an :class:`~core.domain.Erasure` the store applies in the same
transaction as the offsets. Events of a user erased in the batch, or on the deny-list (digests of
forgotten users, see :mod:`core.privacy`), change nothing: they only advance the offsets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from core.domain import (
    EdgeDecay,
    EdgeDelta,
    Erasure,
    ErasureRequest,
    InteractionEvent,
    NodeId,
    OffsetRange,
    SourcePosition,
    TopicPartition,
    UpsertBatch,
)
from core.privacy import Privacy
from streams.config import EventContract
from streams.validation import Rejection, validate_event


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka record as the agent hands it to the pure functions: value, key and position.

    ``timestamp_ms`` is the record's Kafka timestamp (when the producer sent it; 0 = unknown): the
    start of the end-to-end freshness measurement (see :mod:`interest_graph.freshness`).
    """

    value: bytes | None
    key: bytes | None
    position: SourcePosition
    timestamp_ms: int = 0


@dataclass(slots=True)
class BatchPlan:
    """What one batch of records does: the store batch, the rejects to dead-letter, the skipped.

    ``batch.offsets`` covers accepted and rejected records; it is empty when every record was
    already applied, and then nothing needs writing.
    """

    batch: UpsertBatch
    accepted: int = 0
    rejected: list[tuple[SourceRecord, Rejection]] = field(default_factory=list)
    skipped: int = 0
    #: Kafka timestamps of the accepted records (freshness is measured per accepted event).
    accepted_ts_ms: list[int] = field(default_factory=list)
    #: Valid events ignored because their user is forgotten (erased in this batch or denied).
    forgotten: int = 0

    @property
    def needs_write(self) -> bool:
        return bool(self.batch.offsets)


def is_applied(position: SourcePosition, applied: Mapping[TopicPartition, int]) -> bool:
    """Whether the store already holds the effect of the record at ``position``."""
    last = applied.get(position.tp)
    return last is not None and position.offset <= last


def filter_applied(records: Iterable[SourceRecord],
                   applied: Mapping[TopicPartition, int]) -> list[SourceRecord]:
    """Records not yet applied, keeping only the first delivery of each position.

    Args:
        records (Iterable[SourceRecord]): records in delivery order.
        applied (Mapping[TopicPartition, int]): highest applied offset per partition
            (``GraphStore.applied_offsets``); partitions absent from it have nothing applied.
    """
    seen: set[SourcePosition] = set()
    fresh = []
    for record in records:
        if record.position in seen or is_applied(record.position, applied):
            continue
        seen.add(record.position)
        fresh.append(record)
    return fresh


def offset_ranges(positions: Iterable[SourcePosition]) -> dict[TopicPartition, OffsetRange]:
    """Lowest and highest offset per partition among ``positions``."""
    bounds: dict[TopicPartition, tuple[int, int]] = {}
    for pos in positions:
        low, high = bounds.get(pos.tp, (pos.offset, pos.offset))
        bounds[pos.tp] = (min(low, pos.offset), max(high, pos.offset))
    return {tp: OffsetRange(low, high) for tp, (low, high) in bounds.items()}


def aggregate(events: Sequence[tuple[InteractionEvent, SourcePosition]], group: str,
              extra_positions: Iterable[SourcePosition] = (), decay: EdgeDecay | None = None) -> UpsertBatch:
    """One :class:`EdgeDelta` per (user, item) plus the offsets the batch covers.

    Per edge: weights summed (each times its decay factor with ``decay``), events counted,
    ``last_ts_ms`` the latest event time, counts per event type. Edges come sorted by (user, item)
    so concurrent writers lock rows in one order.

    Args:
        events (Sequence[tuple[InteractionEvent, SourcePosition]]): valid events and where each was read.
        group (str): consumer group the offsets belong to.
        extra_positions (Iterable[SourcePosition]): positions of records that change no edge but
            must advance the offsets (dead-lettered records) (default: ``()``).
        decay (EdgeDecay, optional): the reference the weights are expressed in (default: ``None``,
            weights as the events give them).
    """
    deltas: dict[tuple[NodeId, NodeId], EdgeDelta] = {}
    for event, _ in events:
        key = (event.user_id, event.item_id)
        delta = deltas.get(key)
        if delta is None:
            delta = deltas[key] = EdgeDelta(event.user_id, event.item_id, 0.0, 0, event.ts_ms)
        delta.weight += event.weight if decay is None else event.weight * decay.factor(event.ts_ms)
        delta.count += 1
        delta.last_ts_ms = max(delta.last_ts_ms, event.ts_ms)
        delta.type_counts[event.type] = delta.type_counts.get(event.type, 0) + 1
    positions = [pos for _, pos in events]
    positions.extend(extra_positions)
    edges = [deltas[key] for key in sorted(deltas)]
    return UpsertBatch(edges=edges, offsets=offset_ranges(positions), group=group, decay=decay)


#: Ids as sent, erasure requests digested with a random key of this process (callers without settings).
_PLAIN = Privacy()


def plan_batch(records: Sequence[SourceRecord], applied: Mapping[TopicPartition, int],
               contract: EventContract, group: str, now_ms: int, privacy: Privacy | None = None,
               denied: Mapping[str, int] | None = None, decay: EdgeDecay | None = None) -> BatchPlan:
    """Filter, validate and aggregate one batch of records (everything but the I/O).

    Args:
        records (Sequence[SourceRecord]): the batch, in delivery order.
        applied (Mapping[TopicPartition, int]): the store's applied offsets for ``group``.
        contract (EventContract): validation limits and default weights.
        group (str): consumer group the offsets belong to.
        now_ms (int): current time in epoch ms (bounds future timestamps, dates deny-list expiry).
        privacy (Privacy, optional): pseudonyms and the erasure key (default: ``None``, ids as sent
            and erasure requests digested with a random key: tests of the plain path).
        denied (Mapping[str, int], optional): the deny-list, expiry (epoch ms) by digest (default: empty).
        decay (EdgeDecay, optional): the store's decay reference before this batch (default: ``None``,
            no decay); ``batch.decay`` is the one the batch's weights are in.
    """
    privacy = privacy if privacy is not None else _PLAIN
    fresh = filter_applied(records, applied)
    valid: list[tuple[InteractionEvent, SourcePosition]] = []
    rejected: list[tuple[SourceRecord, Rejection]] = []
    requests: list[tuple[ErasureRequest, SourcePosition]] = []
    accepted_ts: list[int] = []
    for record in fresh:
        outcome = validate_event(record.value, contract, now_ms)
        if isinstance(outcome, Rejection):
            rejected.append((record, outcome))
        elif isinstance(outcome, ErasureRequest):
            requests.append((ErasureRequest(privacy.user_id(outcome.user_id), outcome.requested_ms), record.position))
        else:
            if privacy.pseudonyms is not None:
                outcome = dataclasses.replace(outcome, user_id=privacy.pseudonyms(outcome.user_id))
            valid.append((outcome, record.position))
            accepted_ts.append(record.timestamp_ms)
    erasures = _erasures(requests, privacy, now_ms)
    kept, forgotten = _without_forgotten(valid, accepted_ts, erasures, privacy, denied or {}, now_ms)
    extra = [record.position for record, _ in rejected] + [pos for _, pos in requests] + forgotten
    if decay is not None and kept:
        decay = decay.moved_to(max(event.ts_ms for event, _, _ in kept))
    batch = aggregate([(event, pos) for event, pos, _ in kept], group, extra_positions=extra, decay=decay)
    batch.erasures = list(erasures.values())
    return BatchPlan(batch=batch, accepted=len(kept), rejected=rejected, skipped=len(records) - len(fresh),
                     accepted_ts_ms=[ts for _, _, ts in kept], forgotten=len(forgotten))


def _erasures(requests: Sequence[tuple[ErasureRequest, SourcePosition]], privacy: Privacy,
              now_ms: int) -> dict[NodeId, Erasure]:
    """One erasure per user asked for in the batch (a request repeated in a later batch applies again:
    nothing left to delete, and the deny entry's expiry moves on)."""
    expires_ms = now_ms + privacy.forget_retention_ms
    return {request.user_id: Erasure(request.user_id, privacy.forget_key.digest(request.user_id), expires_ms)
            for request, _ in requests}


def _without_forgotten(valid: Sequence[tuple[InteractionEvent, SourcePosition]], accepted_ts: Sequence[int],
                       erasures: Mapping[NodeId, Erasure], privacy: Privacy, denied: Mapping[str, int],
                       now_ms: int) -> tuple[list[tuple[InteractionEvent, SourcePosition, int]], list[SourcePosition]]:
    """The events to apply, and the positions of those whose user is forgotten."""
    kept = [(event, pos, ts) for (event, pos), ts in zip(valid, accepted_ts, strict=True)]
    if not erasures and not denied:
        return kept, []  # the usual case: no digest computed
    digests: dict[NodeId, bool] = {}

    def is_forgotten(user_id: NodeId) -> bool:
        found = digests.get(user_id)
        if found is None:
            found = digests[user_id] = user_id in erasures or denied.get(
                privacy.forget_key.digest(user_id), 0) > now_ms
        return found

    forgotten = [pos for event, pos, _ in kept if is_forgotten(event.user_id)]
    return [entry for entry in kept if not is_forgotten(entry[0].user_id)], forgotten
