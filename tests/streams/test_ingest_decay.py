"""Edge decay through the ingest step against a real LadybugStore: whatever the batches, their order
and the rebases on the way, every stored weight is the closed form ``sum w * 2^((t - ref) / h)``."""

from __future__ import annotations

import asyncio
import itertools
import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import REBASE_AFTER_HALF_LIVES, NodeId, SourcePosition, TopicPartition
from core.retry import RetryPolicy
from graph_store.base import DecayMismatchError
from graph_store.ladybug import LadybugStore
from streams.aggregate import SourceRecord
from streams.config import EventContract
from streams.ingest import AppliedBatch, EventIngestor, IngestStats, StoreWriter
from streams.validation import encode_event
from tests.streams.test_ingest import Collected

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000
TP = TopicPartition("ev", 0)
CONTRACT = EventContract(edge_half_life_h=1.0)
WEIGHTS = {"click": CONTRACT.weight_click, "purchase": CONTRACT.weight_purchase}

#: (user, item, type, event time in half-lives after T0); times span several rebases.
events_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 4), st.sampled_from(sorted(WEIGHTS)),
              st.floats(0, 3.5 * REBASE_AFTER_HALF_LIVES, allow_nan=False)),
    min_size=1, max_size=60)


def ingestor(store: LadybugStore, executor: ThreadPoolExecutor, contract: EventContract = CONTRACT,
             heard: list[AppliedBatch] | None = None) -> EventIngestor:
    stats = IngestStats(on_applied=heard.append if heard is not None else None)
    writer = StoreWriter(store, executor, stats, retry=RetryPolicy(first_s=0.01))
    return EventIngestor(contract, writer, Collected(), stats, group="g")


def records(events: list[tuple[int, int, str, float]], first_offset: int = 0) -> list[SourceRecord]:
    return [SourceRecord(encode_event(f"u{u}", f"i{i}", kind, T0 + int(t * HOUR_MS)), f"u{u}".encode(),
                         SourcePosition(TP, first_offset + n))
            for n, (u, i, kind, t) in enumerate(events)]


def closed_form(events: list[tuple[int, int, str, float]], ref_ms: int) -> dict[tuple[str, str], float]:
    expected: dict[tuple[str, str], float] = {}
    for u, i, kind, t in events:
        at = T0 + int(t * HOUR_MS)
        key = (f"u{u}", f"i{i}")
        expected[key] = expected.get(key, 0.0) + WEIGHTS[kind] * 2.0 ** ((at - ref_ms) / HOUR_MS)
    return expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, cuts=st.lists(st.integers(1, 59), max_size=6))
def test_stored_weights_are_the_closed_form_after_any_batches_and_rebases(
        events: list[tuple[int, int, str, float]], cuts: list[int]) -> None:
    bounds = sorted({c for c in cuts if c < len(events)} | {0, len(events)})
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=1) as pool:
        store = LadybugStore(str(Path(tmp) / "graph.lbdb"))
        store.ensure_schema()
        heard: list[AppliedBatch] = []
        ingest = ingestor(store, pool, heard=heard)
        for start, end in itertools.pairwise(bounds):
            asyncio.run(ingest.ingest(records(events[start:end], start)))
        decay = store.edge_decay(CONTRACT.edge_half_life_ms)
        assert decay is not None and decay == ingest.decay
        expected = closed_form(events, decay.ref_ms)
        # The reference never falls more than the rebase distance behind the newest event.
        newest = max(T0 + int(t * HOUR_MS) for *_, t in events)
        assert newest - decay.ref_ms <= REBASE_AFTER_HALF_LIVES * HOUR_MS
        # What a copy kept from the commits alone (up's user rows) is the stored weight too.
        mirror: dict[tuple[str, str], float] = {}
        for batch in heard:
            mirror = {key: w * batch.rescaled for key, w in mirror.items()}
            for edge in batch.edges:
                mirror[(edge.user_id, edge.item_id)] = mirror.get((edge.user_id, edge.item_id), 0.0) + edge.weight
        for (user, item), weight in expected.items():
            stored = store.edge(NodeId(user), NodeId(item))
            assert stored is not None
            assert math.isclose(stored.weight, weight, rel_tol=1e-9, abs_tol=1e-300)
            assert math.isclose(mirror[(user, item)], weight, rel_tol=1e-9, abs_tol=1e-300)
        store.close()


def test_a_rebase_is_heard_with_its_factor_and_the_trending_weights_stay_plain(
        ladybug_store: LadybugStore) -> None:
    heard: list[AppliedBatch] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        ingest = ingestor(ladybug_store, pool, heard=heard)
        asyncio.run(ingest.ingest(records([(0, 0, "click", 0.0)])))
        far = REBASE_AFTER_HALF_LIVES + 8.0
        asyncio.run(ingest.ingest(records([(0, 1, "purchase", far)], first_offset=1)))
    first, second = heard
    assert first.rescaled == 1.0 and first.decay is not None and first.decay.ref_ms == T0
    assert second.decay is not None and second.decay.ref_ms == T0 + int(far * HOUR_MS)
    assert second.rescaled == pytest.approx(2.0 ** -far)
    (edge,) = second.edges
    assert second.decay.plain(edge.weight, edge.last_ts_ms) == pytest.approx(CONTRACT.weight_purchase)
    # Every node was stamped by the rebase: the refresh recomputes what the rescaled weights feed.
    changed = {ref.id for ref in ladybug_store.changes_since(second.seq - 1).nodes}
    assert changed == {"u0", "i0", "i1"}


def test_a_writer_with_another_half_life_is_refused_before_it_writes(ladybug_store: LadybugStore) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        asyncio.run(ingestor(ladybug_store, pool).ingest(records([(0, 0, "click", 0.0)])))
        seq = ladybug_store.counts()["seq"]
        for other in (EventContract(edge_half_life_h=2.0), EventContract()):
            with pytest.raises(DecayMismatchError, match="half-life of 1 h"):
                asyncio.run(ingestor(ladybug_store, pool, other).ingest(records([(1, 1, "click", 1.0)], 1)))
        assert ladybug_store.counts()["seq"] == seq
