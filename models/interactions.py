"""Implicit-feedback interaction matrices: the ``train.txt``/``test.txt`` format and rating CSVs,
and the :class:`~core.domain.EdgeSnapshot` a method is fitted on, made from them.

The ``user item item ...`` format (one line per user, integer ids) is the one NGCF and LightGCN
publish their splits in; ids are row/column indices, so a matrix row ``u`` is the user written
``u`` in the file. Interactions are binary: a repeated item on one line counts once.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from core.domain import EdgeSnapshot, NodeId
from core.errors import InterestGraphError


class InteractionFormatError(InterestGraphError, ValueError):
    """An interaction file is malformed (not retryable: the file itself must be fixed)."""


@dataclass(frozen=True, slots=True)
class InteractionSplit:
    """A train/test split of binary interactions over one shared id space.

    ``train``/``test`` are ``float32`` CSR matrices of shape ``[num_users, num_items]``;
    ``user_ids[u]``/``item_ids[i]`` are the ids of row ``u``/column ``i`` as producer ids.
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: list[NodeId]
    item_ids: list[NodeId]

    @property
    def num_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.train.shape[1])


def _parse_lines(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return the (user, item) pairs of a ``user item item ...`` file as int64 arrays."""
    users: list[int] = []
    counts: list[int] = []
    items: list[str] = []
    with path.open("r", encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                users.append(int(fields[0]))
            except ValueError:
                raise InteractionFormatError(f"{path}:{lineno}: user id {fields[0]!r} is not an integer") from None
            counts.append(len(fields) - 1)
            items.extend(fields[1:])
    try:
        # One vectorised conversion instead of a million int() calls.
        item_arr = np.asarray(items, dtype=np.str_).astype(np.int64) if items else np.zeros(0, np.int64)
    except ValueError as exc:
        raise InteractionFormatError(f"{path}: an item id is not an integer ({exc})") from None
    user_arr = np.repeat(np.asarray(users, dtype=np.int64), np.asarray(counts, dtype=np.int64))
    if (user_arr < 0).any() or (item_arr < 0).any():
        raise InteractionFormatError(f"{path}: negative ids are not allowed")
    return user_arr, item_arr


def positions_of(index: dict[NodeId, int], ids: Sequence[NodeId]) -> np.ndarray:
    """Positions of ``ids`` in ``index`` (``-1`` where absent) as ``int64``: a model's rows of a subgraph's nodes."""
    return np.fromiter((index.get(node, -1) for node in ids), dtype=np.int64, count=len(ids))


def binary_csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary ``float32`` CSR matrix with a one at every ``(users[e], items[e])``."""
    matrix = sp.csr_matrix(
        (np.ones(users.shape[0], dtype=np.float32), (users, items)), shape=shape, dtype=np.float32
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def load_split(data_dir: str | Path, train_name: str = "train.txt", test_name: str = "test.txt") -> InteractionSplit:
    """Load ``train.txt`` and ``test.txt`` of ``data_dir`` into one id space.

    The matrices are sized by the largest id seen in either file, so a user or item that appears
    only in the test file still gets its row/column.
    """
    root = Path(data_dir)
    for name in (train_name, test_name):
        if not (root / name).is_file():
            raise InteractionFormatError(f"{root / name} does not exist")
    train_u, train_i = _parse_lines(root / train_name)
    test_u, test_i = _parse_lines(root / test_name)
    num_users = int(max(train_u.max(initial=-1), test_u.max(initial=-1))) + 1
    num_items = int(max(train_i.max(initial=-1), test_i.max(initial=-1))) + 1
    if num_users == 0 or num_items == 0:
        raise InteractionFormatError(f"{root}: no interactions found")
    shape = (num_users, num_items)
    return InteractionSplit(
        train=binary_csr(train_u, train_i, shape),
        test=binary_csr(test_u, test_i, shape),
        user_ids=[NodeId(str(u)) for u in range(num_users)],
        item_ids=[NodeId(str(i)) for i in range(num_items)],
    )


def write_interaction_file(path: str | Path, matrix: sp.csr_matrix) -> None:
    """Write ``matrix`` in the ``user item item ...`` format (users without items get a bare id)."""
    matrix = sp.csr_matrix(matrix)
    with Path(path).open("w", encoding="utf-8") as handle:
        for user in range(matrix.shape[0]):
            row = matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]]
            handle.write(" ".join([str(user), *map(str, np.sort(row))]) + "\n")


def load_ratings_csv(
    path: str | Path,
    min_rating: float = 0.0,
    user_col: str = "userId",
    item_col: str = "movieId",
    rating_col: str = "rating",
) -> tuple[sp.csr_matrix, list[NodeId], list[NodeId]]:
    """Binary matrix of a MovieLens-style ratings CSV, keeping ratings ``>= min_rating``.

    Args:
        path (str or Path): the CSV file with a header row.
        min_rating (float, optional): ratings below this are dropped. (default: :obj:`0.0`, keep all)
        user_col (str, optional): header of the user column. (default: :obj:`"userId"`)
        item_col (str, optional): header of the item column. (default: :obj:`"movieId"`)
        rating_col (str, optional): header of the rating column. (default: :obj:`"rating"`)

    Returns the matrix and the producer ids of its rows and columns, in first-seen order.
    """
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    users: list[int] = []
    items: list[int] = []
    with Path(path).open("r", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for lineno, record in enumerate(reader, start=2):
            try:
                keep = float(record[rating_col]) >= min_rating
                user, item = record[user_col], record[item_col]
            except (KeyError, TypeError, ValueError) as exc:
                raise InteractionFormatError(f"{path}:{lineno}: bad rating record ({exc})") from None
            if keep:
                users.append(user_index.setdefault(user, len(user_index)))
                items.append(item_index.setdefault(item, len(item_index)))
    matrix = binary_csr(np.asarray(users), np.asarray(items), (len(user_index), len(item_index)))
    return matrix, _ids(user_index), _ids(item_index)


def _ids(index: dict[str, int]) -> list[NodeId]:
    return [NodeId(key) for key in index]


def split_per_user(
    matrix: sp.csr_matrix, test_fraction: float = 0.2, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Random per-user holdout: each user keeps ``round(test_fraction * n)`` of its items for test.

    Users with a single interaction keep it for training. Deterministic for a given ``seed``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    matrix = sp.csr_matrix(matrix)
    rng = np.random.default_rng(seed)
    train_rows: list[np.ndarray] = []
    test_rows: list[np.ndarray] = []
    for user in range(matrix.shape[0]):
        row = matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]]
        n_test = round(test_fraction * row.shape[0]) if row.shape[0] > 1 else 0
        shuffled = rng.permutation(row)
        test_rows.append(shuffled[:n_test])
        train_rows.append(shuffled[n_test:])
    return _rows_to_csr(train_rows, matrix.shape), _rows_to_csr(test_rows, matrix.shape)


def _rows_to_csr(rows: Iterable[np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
    rows = list(rows)
    users = np.repeat(np.arange(len(rows)), [r.shape[0] for r in rows])
    items = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return binary_csr(users, items.astype(np.int64), shape)


def snapshot_from_matrix(matrix: sp.spmatrix, user_ids: list[NodeId], item_ids: list[NodeId],
                         seq: int = 0) -> EdgeSnapshot:
    """The graph of ``matrix`` (``[len(user_ids), len(item_ids)]``): one edge per nonzero, weighted
    by its value. Every id is kept, those without an edge too, so row ``u`` of a fit is ``user_ids[u]``."""
    coo = sp.coo_matrix(matrix)
    if coo.shape != (len(user_ids), len(item_ids)):
        raise ValueError(f"matrix {coo.shape} does not match {len(user_ids)} users x {len(item_ids)} items")
    return EdgeSnapshot(user_ids=list(user_ids), item_ids=list(item_ids), user_index=coo.row.astype(np.int64),
                        item_index=coo.col.astype(np.int64), weight=coo.data.astype(np.float32), seq=seq)


def snapshot_from_pairs(user_ids: list[str], item_ids: list[str], seq: int = 0) -> EdgeSnapshot:
    """An :class:`EdgeSnapshot` from parallel lists of producer ids (datasets, tests); weights are 1."""
    users, user_index = np.unique(np.asarray(user_ids, dtype=str), return_inverse=True)
    items, item_index = np.unique(np.asarray(item_ids, dtype=str), return_inverse=True)
    return EdgeSnapshot(user_ids=[NodeId(str(x)) for x in users], item_ids=[NodeId(str(x)) for x in items],
                        user_index=user_index.astype(np.int64), item_index=item_index.astype(np.int64),
                        weight=np.ones(len(user_index), dtype=np.float32), seq=seq)
