"""Edge decay in the store, on every backend: what a half-life declaration accepts, the rebase, and a
batch from a writer whose reference is behind the store's."""

from __future__ import annotations

import pytest

from core.domain import EdgeDecay, NodeId, UpsertBatch
from graph_store.base import DecayMismatchError
from graph_store.cypher_store import CypherGraphStore
from tests.fixtures.store import IdFactory
from tests.graph_store.builders import OffsetClock, delta

HOUR_MS = 3_600_000.0
T0 = 1_700_000_000_000


@pytest.fixture
def group(store_prefix: str) -> str:
    return store_prefix + "group"


def decayed(edges: list, clock: OffsetClock, group: str, decay: EdgeDecay) -> UpsertBatch:
    return UpsertBatch(edges, clock.take(len(edges)), group=group, decay=decay)


def weight(store: CypherGraphStore, user: str, item: str) -> float:
    edge = store.edge(NodeId(user), NodeId(item))
    assert edge is not None
    return edge.weight


def test_an_empty_store_takes_any_half_life_and_a_plain_one_may_start_decaying(
        store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    assert store.edge_decay(0) is None
    assert store.edge_decay(HOUR_MS) == EdgeDecay(HOUR_MS, 0)
    assert store.edge_decay(2 * HOUR_MS) == EdgeDecay(2 * HOUR_MS, 0)  # no edges yet: nothing to convert
    assert store.edge_decay(0) is None
    u, i = store_ids("u"), store_ids("i")
    clock = OffsetClock()
    store.apply_batch(UpsertBatch([delta(u, i, 3.0)], clock.take(1), group=group))
    # Plain weights start decaying: they count as of the first reference, unchanged.
    assert store.edge_decay(HOUR_MS) == EdgeDecay(HOUR_MS, 0)
    store.apply_batch(decayed([delta(u, store_ids("j"), 1.0)], clock, group, EdgeDecay(HOUR_MS, T0)))
    assert store.edge_decay(HOUR_MS) == EdgeDecay(HOUR_MS, T0) and weight(store, u, i) == 3.0
    for other in (0, 2 * HOUR_MS):
        with pytest.raises(DecayMismatchError, match="half-life of 1 h"):
            store.edge_decay(other)


def test_a_batch_at_a_later_reference_rebases_every_weight_and_stamps_every_node(
        store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    u, v, i, j = store_ids("u"), store_ids("v"), store_ids("i"), store_ids("j")
    clock = OffsetClock()
    store.edge_decay(HOUR_MS)
    store.apply_batch(decayed([delta(u, i, 8.0), delta(v, j, 2.0)], clock, group, EdgeDecay(HOUR_MS, T0)))
    later = EdgeDecay(HOUR_MS, T0 + 3 * 3_600_000)
    seq = store.apply_batch(decayed([delta(u, j, 1.0)], clock, group, later))
    assert weight(store, u, i) == pytest.approx(1.0) and weight(store, v, j) == pytest.approx(0.25)
    assert weight(store, u, j) == 1.0
    assert {ref.id for ref in store.changes_since(seq - 1).nodes} >= {u, v, i, j}
    assert store.edge_decay(HOUR_MS) == later
    # The tallies read back agree with the traversal's weights (LadybugDB keeps both).
    assert [e.weight for e in store.edges_of_user(u)] == pytest.approx([1.0, 1.0])
    assert dict(zip(store.user_row(u).items, store.user_row(u).weights.tolist(), strict=True)) == pytest.approx(
        {i: 1.0, j: 1.0})


def test_a_batch_behind_the_stores_reference_is_taken_into_its_units(
        store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    u, i = store_ids("u"), store_ids("i")
    clock = OffsetClock()
    store.edge_decay(HOUR_MS)
    ahead = EdgeDecay(HOUR_MS, T0 + 2 * 3_600_000)
    store.apply_batch(decayed([delta(u, i, 1.0)], clock, group, ahead))
    seq = store.counts()["seq"]
    store.apply_batch(decayed([delta(u, i, 4.0)], clock, group, EdgeDecay(HOUR_MS, T0)))  # another writer's, older
    assert weight(store, u, i) == pytest.approx(2.0)
    assert store.edge_decay(HOUR_MS) == ahead
    assert {ref.id for ref in store.changes_since(seq).nodes} == {u, i}  # no rebase: only the batch's nodes


def test_a_batch_at_another_half_life_changes_nothing(
        store: CypherGraphStore, store_ids: IdFactory, group: str) -> None:
    u, i = store_ids("u"), store_ids("i")
    clock = OffsetClock()
    with pytest.raises(DecayMismatchError, match="none declared"):
        store.apply_batch(decayed([delta(u, i)], clock, group, EdgeDecay(HOUR_MS, T0)))
    store.edge_decay(2 * HOUR_MS)
    with pytest.raises(DecayMismatchError, match="the store's: 2 h"):
        store.apply_batch(decayed([delta(u, i)], clock, group, EdgeDecay(HOUR_MS, T0)))
    assert store.edge(NodeId(u), NodeId(i)) is None and store.applied_offsets(group) == {}
