"""LiveUsers: a fold-in laid over item rows gives a user's vector from the user's row."""

from __future__ import annotations

import numpy as np

from core.domain import NodeId, UserFoldIn
from serving.live_users import LiveUsers


def _fold_in(values: str = "weight") -> UserFoldIn:
    return UserFoldIn((NodeId("a"), NodeId("b"), NodeId("gone")), np.asarray([0.5, 2.0, 9.0], np.float32), values,
                      model_version=3)


def test_a_fold_in_is_laid_over_the_rows_the_items_hold_and_later_rows_add_nothing() -> None:
    # a at row 2, b at row 0, "gone" not held; row 1 holds an item the fold-in does not name
    live = LiveUsers.lay(_fold_in(), np.asarray([2, 0, -1]), num_rows=3)
    assert live.scale.tolist() == [2.0, 0.0, 0.5] and live.model_version == 3  # "gone" has no row: skipped
    assert live.folds(np.asarray([0, 1, 2, 7])).tolist() == [True, False, True, False]  # row 7 came after


def test_the_vector_sums_edge_values_times_scale_times_item_vectors() -> None:
    items = np.asarray([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0]], np.float32)
    rows, weights = np.asarray([0, 1, 2]), np.asarray([3.0, 4.0, -1.0], np.float32)
    weighted = LiveUsers.lay(_fold_in(), np.asarray([2, 0, -1]), num_rows=3)
    # b: 3 x 2.0 x [1, 0]; row 1 adds nothing; a: a negative weight counts as 0
    np.testing.assert_allclose(weighted.vector(items.__getitem__, rows, weights), [6.0, 0.0])
    binary = LiveUsers.lay(_fold_in("binary"), np.asarray([2, 0, -1]), num_rows=3)
    np.testing.assert_allclose(binary.vector(items.__getitem__, rows, weights), [2.0, 0.5])
    assert binary.vector(items.__getitem__, np.zeros(0, np.int64), np.zeros(0, np.float32)).tolist() == [0.0, 0.0]
