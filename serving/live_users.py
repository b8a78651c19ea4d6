"""User vectors folded in from user rows at request time, for models whose users are linear in them.

SpectralCF's user vector is :math:`\\mathbf{e}_u = \\mathbf{r}_u \\mathbf{P}_U` with
:math:`\\mathbf{P}_U[i] = \\mathbf{E}_I[i] / d_i` (:class:`core.domain.UserFoldIn`), so serving needs
one float per item beside the item vectors it already holds, and the user's row, which it reads
for ``exclude_seen`` anyway. Served this way, a click counts from the moment its edge is committed:
no refresh round, no 4 kB user-vector write into the store, no user table in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.domain import UserFoldIn, edge_values


@dataclass(frozen=True, slots=True)
class LiveUsers:
    """A :class:`~core.domain.UserFoldIn` laid over the rows of an item table.

    Args:
        scale (np.ndarray): ``float32``, read-only: the fold-in scale of each item row (0 for items
            that add nothing; rows appended after it was laid, past its end, add nothing either).
        values (str): the model's edge values (:func:`core.domain.edge_values`).
        model_version (int): the checkpoint it belongs to.
    """

    scale: np.ndarray
    values: str
    model_version: int

    @classmethod
    def lay(cls, fold_in: UserFoldIn, at: np.ndarray, num_rows: int) -> LiveUsers:
        """``fold_in`` over an item table of ``num_rows`` rows that holds ``fold_in.item_ids[k]`` at
        row ``at[k]`` (``-1``: not held)."""
        scale = np.zeros(num_rows, dtype=np.float32)
        held = at >= 0
        scale[at[held]] = np.asarray(fold_in.scale, dtype=np.float32)[held]
        scale.setflags(write=False)
        return cls(scale, fold_in.values, fold_in.model_version)

    def folds(self, rows: np.ndarray) -> np.ndarray:
        """``bool``: which of these item rows add to a user vector."""
        rows = np.asarray(rows, dtype=np.int64)
        inside = rows < len(self.scale)
        out = np.zeros(len(rows), dtype=bool)
        out[inside] = self.scale[rows[inside]] > 0
        return out

    def vector(self, item_vectors: Callable[[np.ndarray], np.ndarray], rows: np.ndarray,
               weights: np.ndarray) -> np.ndarray:
        """A user's vector from the item ``rows`` of the user's edges and their accumulated ``weights``:
        ``sum value(weight) * scale * item vector`` (zero when no row adds anything); ``item_vectors``
        gives the ``float32`` vectors of item rows (the item table's ``gather``)."""
        rows = np.asarray(rows, dtype=np.int64)
        use = self.folds(rows)
        coef = edge_values(np.asarray(weights, dtype=np.float32)[use], self.values) * self.scale[rows[use]]
        return np.asarray(coef @ item_vectors(rows[use]), dtype=np.float32)
