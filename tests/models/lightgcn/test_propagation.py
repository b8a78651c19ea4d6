"""Incremental refresh is exact: 2K-hop subgraphs with full degrees reproduce full propagation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import EdgeSnapshot, NodeId
from models.lightgcn.propagation import propagate_full, propagate_subgraph, snapshot_as_subgraph
from tests.models.graphs import bfs_subgraph, dense_lightgcn


def _snapshot(edges: list[tuple[int, int]], num_users: int, num_items: int) -> EdgeSnapshot:
    return EdgeSnapshot(
        user_ids=[NodeId(f"u{u}") for u in range(num_users)], item_ids=[NodeId(f"i{i}") for i in range(num_items)],
        user_index=np.array([e[0] for e in edges], dtype=np.int64),
        item_index=np.array([e[1] for e in edges], dtype=np.int64),
        weight=np.ones(len(edges), dtype=np.float32),
    )


@st.composite
def graph_and_inserts(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]], int]:
    num_users = draw(st.integers(1, 9))
    num_items = draw(st.integers(1, 9))
    edge = st.tuples(st.integers(0, num_users - 1), st.integers(0, num_items - 1))
    initial = draw(st.lists(edge, max_size=30))
    inserts = draw(st.lists(edge, min_size=1, max_size=6))
    layers = draw(st.integers(1, 3))
    return num_users, num_items, initial, inserts, layers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=graph_and_inserts(), seed=st.integers(0, 2**16))
def test_subgraph_with_2k_hops_equals_full_graph_near_seeds(
    device: torch.device, case: tuple[int, int, list[tuple[int, int]], list[tuple[int, int]], int], seed: int
) -> None:
    num_users, num_items, initial, inserts, layers = case
    edges = initial + inserts
    base = np.random.default_rng(seed).standard_normal((num_users + num_items, 8)).astype(np.float32)
    user_base, item_base = base[:num_users], base[num_users:]
    full_u, full_i = propagate_full(_snapshot(edges, num_users, num_items), user_base, item_base, layers, device)
    before_u, before_i = propagate_full(_snapshot(initial, num_users, num_items), user_base, item_base, layers,
                                        device)

    seed_users, seed_items = {u for u, _ in inserts}, {i for _, i in inserts}
    sub, users, items = bfs_subgraph(edges, num_users, num_items, seed_users, seed_items, hops=2 * layers)
    sub_u, sub_i = propagate_subgraph(sub, user_base[users], item_base[items], layers, device)

    near_u, near_i = sub.user_hops <= layers, sub.item_hops <= layers
    assert np.abs(sub_u.numpy()[near_u] - full_u.numpy()[users[near_u]]).max(initial=0) < 1e-4
    assert np.abs(sub_i.numpy()[near_i] - full_i.numpy()[items[near_i]]).max(initial=0) < 1e-4

    # Everything farther than K hops from the changed nodes kept its output: refreshing the near
    # nodes alone keeps every published embedding equal to a full propagation.
    far_u = np.setdiff1d(np.arange(num_users), users[near_u])
    far_i = np.setdiff1d(np.arange(num_items), items[near_i])
    assert np.abs(full_u.numpy()[far_u] - before_u.numpy()[far_u]).max(initial=0) < 1e-5
    assert np.abs(full_i.numpy()[far_i] - before_i.numpy()[far_i]).max(initial=0) < 1e-5


def test_full_propagation_matches_dense_reference(device: torch.device) -> None:
    edges = [(0, 0), (0, 2), (1, 2), (2, 1), (2, 2), (1, 2)]
    base = np.random.default_rng(3).standard_normal((3 + 3, 5)).astype(np.float32)
    user_out, item_out = propagate_full(_snapshot(edges, 3, 3), base[:3], base[3:], 2, device)
    expected = dense_lightgcn(edges, 3, 3, base, 2)
    np.testing.assert_allclose(np.concatenate([user_out.numpy(), item_out.numpy()]), expected, atol=1e-5)


def test_snapshot_as_subgraph_counts_distinct_neighbours() -> None:
    sub = snapshot_as_subgraph(_snapshot([(0, 0), (0, 0), (0, 1), (1, 1)], 2, 2))
    assert sub.num_edges == 3
    assert sub.user_degree.tolist() == [2, 1] and sub.item_degree.tolist() == [1, 2]
    assert not sub.user_hops.any() and not sub.item_hops.any()


def test_base_rows_must_match_the_subgraph() -> None:
    sub = snapshot_as_subgraph(_snapshot([(0, 0)], 1, 1))
    with pytest.raises(ValueError, match="user_base"):
        propagate_subgraph(sub, np.zeros((2, 4), np.float32), np.zeros((1, 4), np.float32), 2, "cpu")
