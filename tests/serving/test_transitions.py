"""ItemTransitions against the module's formula recomputed from whole histories, its bounds and erasure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.domain import EdgeDelta, NodeId
from serving.transitions import ItemTransitions


def edge(user: str, item: str, ts_ms: int) -> EdgeDelta:
    return EdgeDelta(NodeId(user), NodeId(item), 1.0, 1, ts_ms)


def reader(items: list[str]) -> Callable[[list[NodeId]], np.ndarray]:
    """positions_of for a caller whose rows are ``items`` in order."""
    row_of = {NodeId(item): row for row, item in enumerate(items)}
    return lambda ids: np.asarray([row_of.get(i, -1) for i in ids], dtype=np.int64)


def scores_for(transitions: ItemTransitions, user: NodeId, items: list[str]) -> np.ndarray | None:
    """The user's s(j) over a caller whose rows are ``items`` in order (``None``: nothing it holds follows)."""
    found = transitions.successor_rows(user, object(), reader(items))
    if found is None:
        return None
    out = np.zeros(len(items))
    out[found[0]] = found[1]
    return out


def recomputed(histories: dict[str, list[str]], user: str, items: list[str], window: int, query: int,
               half: float) -> np.ndarray:
    """The module docs' s(j), from every user's whole history at once (distinct items, latest order)."""
    counts: dict[tuple[str, str], float] = {}
    latest: dict[str, list[str]] = {}
    for who, history in histories.items():
        mine: list[str] = []
        for item in history:
            if mine and mine[-1] == item:
                continue
            earlier = [i for i in mine if i != item]
            for gap, source in enumerate(reversed(earlier[-window:]), start=1):
                counts[source, item] = counts.get((source, item), 0.0) + 2.0 ** (1 - gap)
            mine = [*earlier, item]
        latest[who] = mine
    out = np.zeros(len(items))
    for place, source in enumerate(reversed(latest[user][-query:])):
        for row, item in enumerate(items):
            out[row] += 2.0 ** (-place / half) * counts.get((source, item), 0.0)
    return out


def test_scores_equal_the_formula_over_whole_histories_fed_in_batches() -> None:
    rng = np.random.default_rng(11)
    items = [f"i{n}" for n in range(12)]
    histories: dict[str, list[str]] = {f"u{n}": [] for n in range(6)}
    stream = []
    for ts in range(400):
        user = f"u{rng.integers(6)}"
        item = items[int(rng.integers(12))]
        histories[user].append(item)
        stream.append(edge(user, item, ts))
    transitions = ItemTransitions(window=3, query_items=4, half_items=1.5, max_successors=1000)
    for start in range(0, len(stream), 50):  # batches arrive in order, each batch's deltas in any order
        transitions.add_edges([stream[n] for n in rng.permutation(range(start, start + 50)).tolist()])
    for user in histories:
        got = scores_for(transitions, NodeId(user), items)
        assert got is not None
        np.testing.assert_allclose(got, recomputed(histories, user, items, 3, 4, 1.5), rtol=1e-12)


def test_batches_taken_up_by_event_time_not_arrival_order() -> None:
    transitions = ItemTransitions(window=1, query_items=2)
    transitions.add_edges([edge("u", "b", 2), edge("u", "a", 1)])
    transitions.add_edges([edge("v", "a", 5)])
    got = scores_for(transitions, NodeId("v"), ["a", "b"])
    assert got is not None and got.tolist() == [0.0, 1.0]
    assert transitions.latest(NodeId("u")) == [NodeId("b"), NodeId("a")]


def test_a_user_with_nothing_after_their_items_gets_none() -> None:
    transitions = ItemTransitions()
    assert scores_for(transitions, NodeId("nobody"), ["a"]) is None
    transitions.add_edges([edge("u", "a", 1), edge("u", "b", 2)])
    assert scores_for(transitions, NodeId("w"), ["a", "b"]) is None  # w has no items
    transitions.add_edges([edge("w", "b", 3)])
    assert scores_for(transitions, NodeId("w"), ["a", "b"]) is None  # nothing followed b
    assert scores_for(transitions, NodeId("u"), ["x"]) is None  # followers the caller lacks


def test_rows_keep_their_heaviest_successors() -> None:
    transitions = ItemTransitions(window=1, query_items=1, max_successors=2)
    stream, ts = [], 0
    for n, repeats in enumerate([1, 5, 1, 3, 1, 1]):  # a -> s1 (5 times), a -> s3 (3 times), the rest once
        for r in range(repeats):
            ts += 2
            stream += [edge(f"u{n}-{r}", "a", ts), edge(f"u{n}-{r}", f"s{n}", ts + 1)]
    transitions.add_edges(stream)
    transitions.add_edges([edge("q", "a", ts + 10)])
    got = scores_for(transitions, NodeId("q"), [f"s{n}" for n in range(6)])
    assert got is not None
    assert np.count_nonzero(got) <= 4  # pruned to 2 when a row passed 4
    assert got[1] == 5.0 and got[3] == 3.0
    items, pairs, users = transitions.counts()
    assert items == 7 and pairs <= 4 and users == 13  # a, s0..s5; 12 walkers and q
    assert pairs == np.count_nonzero(got)  # the running count follows the pruning: only a has successors


def test_forgetting_a_user_drops_their_latest_items() -> None:
    transitions = ItemTransitions()
    transitions.add_edges([edge("v", "a", 1), edge("v", "b", 2), edge("u", "a", 3)])
    assert scores_for(transitions, NodeId("u"), ["a", "b"]) is not None
    transitions.forget_user(NodeId("u"))
    assert transitions.latest(NodeId("u")) == []
    assert scores_for(transitions, NodeId("u"), ["a", "b"]) is None


@pytest.mark.parametrize("bad", [{"window": 0}, {"query_items": 0}, {"half_items": 0.0}, {"max_successors": 0}])
def test_bad_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ItemTransitions(**bad)  # type: ignore[arg-type]  # the refused values are the point


def test_successor_rows_map_ids_once_per_table_and_follow_new_items() -> None:
    transitions = ItemTransitions(window=1, query_items=1)
    transitions.add_edges([edge("v", "a", 1), edge("v", "b", 2), edge("u", "a", 3)])
    looked_up: list[list[NodeId]] = []
    rows_of = {NodeId("a"): 0, NodeId("b"): 1, NodeId("c"): 2}

    def positions(ids: list[NodeId]) -> np.ndarray:
        looked_up.append(list(ids))
        return np.asarray([rows_of.get(i, -1) for i in ids], dtype=np.int64)

    table = object()
    found = transitions.successor_rows(NodeId("u"), table, positions)
    assert found is not None and found[0].tolist() == [1] and found[1].tolist() == [1.0]
    assert transitions.successor_rows(NodeId("u"), table, positions) is not None
    assert looked_up == [[NodeId("a"), NodeId("b")]]  # once for the table
    transitions.add_edges([edge("w", "a", 4), edge("w", "c", 5), edge("x", "a", 6)])
    found = transitions.successor_rows(NodeId("x"), table, positions)
    assert found is not None and sorted(found[0].tolist()) == [1, 2]
    assert looked_up[-1] == [NodeId("c")]  # only the item new since
    other = object()
    assert transitions.successor_rows(NodeId("x"), other, positions) is not None
    assert len(looked_up[-1]) == 3  # a new table: every id again
    assert transitions.successor_rows(NodeId("nobody"), other, positions) is None
