"""Reading the ``user item item ...`` split format and rating CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models.interactions import (
    InteractionFormatError,
    load_ratings_csv,
    load_split,
    split_per_user,
    write_interaction_file,
)


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_load_split_builds_binary_matrices_over_shared_ids(tmp_path: Path) -> None:
    write(tmp_path / "train.txt", "0 0 1 1\n1 2\n\n2\n")
    write(tmp_path / "test.txt", "0 3\n3 4\n")
    split = load_split(tmp_path)
    assert split.train.shape == split.test.shape == (4, 5)
    assert split.train.toarray().tolist() == [[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0] * 5, [0] * 5]
    assert split.test[3, 4] == 1.0 and split.test.nnz == 2
    assert split.train.dtype == np.float32
    assert split.user_ids == ["0", "1", "2", "3"] and split.item_ids[-1] == "4"


def test_written_files_read_back_identically(tmp_path: Path) -> None:
    matrix = sp.random(20, 15, density=0.3, random_state=0, format="csr", dtype=np.float32)
    matrix.data[:] = 1.0
    write_interaction_file(tmp_path / "train.txt", matrix)
    write_interaction_file(tmp_path / "test.txt", sp.csr_matrix(matrix.shape, dtype=np.float32))
    assert (load_split(tmp_path).train != matrix).nnz == 0


@pytest.mark.parametrize("text", ["0 1 x\n", "u 1 2\n", "0 -1\n"])
def test_malformed_lines_raise_a_clear_error(tmp_path: Path, text: str) -> None:
    write(tmp_path / "train.txt", text)
    write(tmp_path / "test.txt", "0 1\n")
    with pytest.raises(InteractionFormatError, match=r"train\.txt"):
        load_split(tmp_path)
    assert InteractionFormatError.retryable is False


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InteractionFormatError, match="does not exist"):
        load_split(tmp_path)


def test_ratings_csv_and_per_user_split(tmp_path: Path) -> None:
    rows = ["userId,movieId,rating,timestamp"]
    rows += [f"u{u},m{i},{1 + (u + i) % 5},0" for u in range(6) for i in range(10) if (u + i) % 3]
    write(tmp_path / "ratings.csv", "\n".join(rows) + "\n")
    matrix, user_ids, item_ids = load_ratings_csv(tmp_path / "ratings.csv")
    assert user_ids[0] == "u0" and len(item_ids) == 10 and matrix.nnz == len(rows) - 1
    liked, _, _ = load_ratings_csv(tmp_path / "ratings.csv", min_rating=4.0)
    assert 0 < liked.nnz < matrix.nnz
    train, test = split_per_user(matrix, test_fraction=0.25, seed=1)
    assert train.multiply(test).nnz == 0 and (train + test != matrix).nnz == 0
    per_user = test.getnnz(axis=1)
    assert (per_user == np.round(0.25 * matrix.getnnz(axis=1))).all()
    again, _ = split_per_user(matrix, test_fraction=0.25, seed=1)
    assert (again != train).nnz == 0
