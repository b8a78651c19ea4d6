"""SpectralCF serving: refreshing only the changed nodes from their 1-hop rows equals a full
recompute after any sequence of edge inserts, and the full recompute is the model's own fold-in."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import EdgeSnapshot, EmbeddingRows, NodeId
from models.spectral.checkpoint import fit_spectral, interaction_matrix
from models.spectral.refresh import SpectralEmbedder, SpectralRefresh, snapshot_with_weights
from tests.models.graphs import weighted_one_hop

Edge = tuple[str, str, float]


def _snapshot(weights: dict[tuple[str, str], float]) -> EdgeSnapshot:
    users = sorted({u for u, _ in weights})
    items = sorted({i for _, i in weights})
    user_pos, item_pos = {u: n for n, u in enumerate(users)}, {i: n for n, i in enumerate(items)}
    return EdgeSnapshot(user_ids=[NodeId(u) for u in users], item_ids=[NodeId(i) for i in items],
                        user_index=np.array([user_pos[u] for u, _ in weights], dtype=np.int64),
                        item_index=np.array([item_pos[i] for _, i in weights], dtype=np.int64),
                        weight=np.array(list(weights.values()), dtype=np.float32))


def _insert(weights: dict[tuple[str, str], float], batch: list[Edge]) -> None:
    for user, item, weight in batch:
        weights[(user, item)] = weights.get((user, item), 0.0) + weight


def _as_dict(rows: list[EmbeddingRows]) -> dict[tuple[str, str], np.ndarray]:
    return {(r.kind.value, node): vec for r in rows for node, vec in zip(r.ids, r.vectors, strict=True)}


@st.composite
def history(draw: st.DrawFn) -> tuple[list[Edge], list[list[Edge]], str]:
    """A small initial graph and insert batches that reach new users and new items too."""
    users, items = draw(st.integers(2, 7)), draw(st.integers(2, 7))
    weight = st.sampled_from([0.5, 1.0, 2.0, 4.0])
    initial = draw(st.lists(st.tuples(st.integers(0, users - 1), st.integers(0, items - 1), weight),
                            min_size=1, max_size=25))
    edge = st.tuples(st.integers(0, users + 2), st.integers(0, items + 2), weight)  # +3: unseen ids
    batches = draw(st.lists(st.lists(edge, min_size=1, max_size=4), min_size=1, max_size=5))
    values = draw(st.sampled_from(["weight", "binary"]))

    def named(edges: list[tuple[int, int, float]]) -> list[Edge]:
        return [(f"u{u}", f"i{i}", w) for u, i, w in edges]

    return named(initial), [named(b) for b in batches], values


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=history())
def test_refreshing_changed_nodes_equals_full_recompute_after_inserts(
        case: tuple[list[Edge], list[list[Edge]], str]) -> None:
    initial, batches, values = case
    weights: dict[tuple[str, str], float] = {}
    _insert(weights, initial)
    refresh = SpectralRefresh(fit_spectral(_snapshot(weights), rank=4, values=values, device="cpu"))
    published = _as_dict(refresh.full(_snapshot(weights)).rows)
    for batch in batches:
        _insert(weights, batch)
        sub = weighted_one_hop(weights, {u for u, _, _ in batch}, {i for _, i, _ in batch})
        seeds_u, seeds_i = np.flatnonzero(sub.user_hops == 0), np.flatnonzero(sub.item_hops == 0)
        published.update(_as_dict(refresh.embedder.embed(sub, seeds_u, seeds_i)))

    full = _as_dict(refresh.full(_snapshot(weights)).rows)
    assert published.keys() == full.keys()
    worst = max(float(np.abs(published[key] - full[key]).max(initial=0.0)) for key in full)
    assert worst < 1e-4


def test_full_recompute_is_the_models_fold_in() -> None:
    rng = np.random.default_rng(0)
    weights = {(f"u{u}", f"i{i}"): float(rng.integers(1, 5)) for u in range(12) for i in range(9) if rng.random() < 0.4}
    checkpoint = fit_spectral(_snapshot(weights), rank=6, values="weight", device="cpu")
    snapshot = _snapshot(weights)
    matrix = interaction_matrix(snapshot.user_index, snapshot.item_index, snapshot.weight,
                                (len(snapshot.user_ids), len(snapshot.item_ids)), "weight")
    fitted_users, fitted_items = checkpoint.model.user_embedding(matrix), checkpoint.model.item_emb
    rows = SpectralRefresh(checkpoint).full(snapshot).rows
    np.testing.assert_allclose(rows[0].vectors, fitted_users, atol=1e-5)
    np.testing.assert_allclose(rows[1].vectors, fitted_items, atol=1e-6)

    # A new item clicked by fitted users gets their fold-in; a new user of only new items gets zero.
    _insert(weights, [("u0", "new-item", 2.0), ("u3", "new-item", 1.0), ("newcomer", "other-new", 1.0)])
    after = _as_dict(SpectralRefresh(checkpoint).full(_snapshot(weights)).rows)
    column = np.zeros((1, len(checkpoint.user_ids)), np.float32)
    column[0, [checkpoint.user_ids.index(NodeId("u0")), checkpoint.user_ids.index(NodeId("u3"))]] = [2.0, 1.0]
    np.testing.assert_allclose(after[("item", "new-item")], checkpoint.model.item_embedding(sp.csr_matrix(column))[0],
                               atol=1e-5)
    assert not after[("user", "newcomer")].any()
    np.testing.assert_allclose(after[("user", "u0")], fitted_users[checkpoint.user_ids.index(NodeId("u0"))],
                               atol=1e-5)  # edges to unknown items add nothing


def test_binary_values_ignore_weights_and_repeats() -> None:
    snapshot = _snapshot({("a", "x"): 5.0, ("a", "y"): 1.0, ("b", "y"): 3.0})
    sub = snapshot_with_weights(snapshot)
    assert sub.edge_weight.tolist() == [5.0, 1.0, 3.0]
    matrix = interaction_matrix(np.array([0, 0, 1]), np.array([0, 0, 1]), np.array([2.0, 3.0, -1.0]), (2, 2),
                                "binary")
    assert matrix.toarray().tolist() == [[1.0, 0.0], [0.0, 1.0]]
    weighted = interaction_matrix(np.array([0, 0, 1]), np.array([0, 0, 1]), np.array([2.0, 3.0, -1.0]), (2, 2),
                                  "weight")
    assert weighted.toarray().tolist() == [[5.0, 0.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="values"):
        interaction_matrix(np.array([0]), np.array([0]), np.array([1.0]), (1, 1), "log")


def test_embedder_selects_only_the_requested_nodes() -> None:
    weights = {("a", "x"): 1.0, ("a", "y"): 1.0, ("b", "y"): 1.0, ("c", "x"): 1.0}
    embedder = SpectralEmbedder(fit_spectral(_snapshot(weights), rank=2, device="cpu"))
    sub = snapshot_with_weights(_snapshot(weights))
    rows = embedder.embed(sub, np.array([2]), np.array([], dtype=np.int64))
    assert rows[0].ids == ["c"] and rows[0].vectors.shape == (1, embedder.model.dim) and rows[1].ids == []
