"""Base rows for nodes a checkpoint never saw: derived from neighbours, hashed as the last resort."""

from __future__ import annotations

import numpy as np

from core.domain import NodeId, NodeKind, Subgraph
from models.lightgcn.base_embeddings import UNTRAINED_SHARED, BaseTable, hashed_base
from models.lightgcn.checkpoint import LightGCNCheckpoint


def _checkpoint() -> LightGCNCheckpoint:
    return LightGCNCheckpoint(
        user_ids=[NodeId("alice")], item_ids=[NodeId("a"), NodeId("b")],
        user_base=np.array([[1.0, 1.0]], np.float32),
        item_base=np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), layers=2,
    )


def _subgraph(users: list[str], items: list[str], edges: list[tuple[int, int]], user_degree: list[int],
              item_degree: list[int]) -> Subgraph:
    return Subgraph(
        user_ids=[NodeId(u) for u in users], item_ids=[NodeId(i) for i in items],
        edge_user=np.array([e[0] for e in edges], np.int64), edge_item=np.array([e[1] for e in edges], np.int64),
        edge_weight=np.ones(len(edges), np.float32), user_degree=np.array(user_degree, np.int64),
        item_degree=np.array(item_degree, np.int64), user_hops=np.zeros(len(users), np.int64),
        item_hops=np.zeros(len(items), np.int64),
    )


def test_new_user_gets_degree_weighted_mean_of_its_items() -> None:
    table = BaseTable(_checkpoint())
    # bob clicked a (degree 4) and b (degree 1): b counts twice as much as a (1/sqrt(1) vs 1/sqrt(4)).
    sub = _subgraph(["alice", "bob"], ["a", "b"], [(0, 0), (1, 0), (1, 1)], [1, 2], [4, 1])
    user_base, item_base, derived = table.for_subgraph(sub)
    np.testing.assert_allclose(user_base[1], [0.5 / 1.5, 1.0 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(user_base[0], [1.0, 1.0])  # trained rows are used as they are
    np.testing.assert_allclose(item_base, [[1.0, 0.0], [0.0, 1.0]])
    assert [(rows.kind, rows.ids) for rows in derived] == [(NodeKind.USER, ["bob"])]
    rows, found = table.known(NodeKind.USER, [NodeId("bob"), NodeId("carol")])
    assert found.tolist() == [True, False]  # remembered for later rounds
    np.testing.assert_allclose(rows[0], user_base[1])


def test_new_nodes_behind_new_nodes_are_reached_in_a_second_pass() -> None:
    table = BaseTable(_checkpoint())
    # carol (new) clicked only item c (new), which alice (trained) also clicked.
    sub = _subgraph(["alice", "carol"], ["c"], [(0, 0), (1, 0)], [2, 1], [2])
    user_base, item_base, _ = table.for_subgraph(sub)
    np.testing.assert_allclose(item_base[0], [1.0, 1.0])
    np.testing.assert_allclose(user_base[1], [1.0, 1.0])


def test_seeds_are_derived_again_but_trained_rows_never_change() -> None:
    table = BaseTable(_checkpoint())
    table.for_subgraph(_subgraph(["bob"], ["a"], [(0, 0)], [1], [1]))
    again = _subgraph(["bob", "alice"], ["a", "b"], [(0, 0), (0, 1), (1, 0)], [2, 1], [2, 1])
    user_base, _, derived = table.for_subgraph(again, np.array([True, True]), np.array([False, False]))
    w = np.array([2**-0.5, 1.0])  # a has degree 2, b degree 1
    np.testing.assert_allclose(user_base[0], w / w.sum(), rtol=1e-6)  # bob now averages a and b
    np.testing.assert_allclose(user_base[1], [1.0, 1.0])  # alice is trained
    assert [rows.ids for rows in derived] == [["bob"]]


def test_isolated_new_nodes_get_hashed_rows_of_the_checkpoint_scale() -> None:
    table = BaseTable(_checkpoint())
    user_base, _, derived = table.for_subgraph(_subgraph(["zed"], [], [], [0], []))
    assert derived[0].ids == ["zed"]
    np.testing.assert_allclose(user_base[0], hashed_base(["zed"], 2, table.scale, NodeKind.USER)[0])


def test_without_checkpoint_every_row_is_hashed_and_deterministic() -> None:
    table = BaseTable(None, dim=16)
    sub = _subgraph(["u1", "u2"], ["u1"], [(0, 0)], [1, 0], [1])
    user_base, item_base, derived = table.for_subgraph(sub)
    assert derived == []  # nothing to persist: a pure function of the ids
    expected = hashed_base(["u1", "u2"], 16, 1.0, NodeKind.USER)
    expected[:, 0] += UNTRAINED_SHARED
    np.testing.assert_array_equal(user_base, expected)
    assert not np.allclose(user_base[0], item_base[0])  # user "u1" and item "u1" differ
    norms = np.linalg.norm(hashed_base([f"n{i}" for i in range(500)], 16, 1.0, NodeKind.ITEM), axis=1)
    assert 0.9 < norms.mean() < 1.1
