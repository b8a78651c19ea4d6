"""Int8Codec: codes within half a step of the vectors, scans equal to decoded products, clipping."""

from __future__ import annotations

import numpy as np
import pytest

from serving.codec import CODE_MAX, SCAN_BLOCK_FLOATS, Int8Codec


@pytest.fixture
def vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    # Dimensions of very different spread, as a spectral embedding's are (its singular values fall).
    return (rng.standard_normal((500, 16)) * np.geomspace(4.0, 0.01, 16)).astype(np.float32)


def test_each_coordinate_decodes_within_half_a_step(vectors: np.ndarray) -> None:
    codec = Int8Codec.fitted(vectors)
    codes = codec.encode(vectors)
    assert codes.dtype == np.int8 and codes.shape == vectors.shape
    assert int(np.abs(codes.astype(np.int16)).max()) == CODE_MAX  # the range is used to its end
    error = np.abs(codec.decode(codes) - vectors)
    assert (error <= codec.scale / 2 * (1 + 1e-5)).all()
    # The step follows each dimension's own spread: a small dimension keeps its precision.
    np.testing.assert_allclose(codec.scale, np.abs(vectors).max(axis=0) / CODE_MAX, rtol=1e-6)


def test_scans_equal_the_decoded_products_for_one_query_and_many(vectors: np.ndarray) -> None:
    rng = np.random.default_rng(8)
    many = np.concatenate([vectors] * (2 * SCAN_BLOCK_FLOATS // 16 // len(vectors) + 1))  # over two blocks
    codec = Int8Codec.fitted(many)
    codes = codec.encode(many)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    decoded = codec.decode(codes)
    np.testing.assert_allclose(codec.scan(codes, queries), queries @ decoded.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(codec.scan(codes, queries[0]), decoded @ queries[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(codes.astype(np.float32) @ codec.query(queries[1]), decoded @ queries[1],
                               rtol=1e-4, atol=1e-4)


def test_vectors_past_the_fitted_range_are_clipped_to_it(vectors: np.ndarray) -> None:
    codec = Int8Codec.fitted(vectors)
    beyond = np.abs(vectors).max(axis=0, keepdims=True) * 3
    codes = codec.encode(np.concatenate([beyond, -beyond]))
    assert (codes[0] == CODE_MAX).all() and (codes[1] == -CODE_MAX).all()


def test_an_all_zero_dimension_encodes_to_zero_and_widths_must_match() -> None:
    codec = Int8Codec.fitted(np.zeros((4, 3), np.float32))
    assert (codec.encode(np.ones((2, 3), np.float32) * 0) == 0).all()
    with pytest.raises(ValueError, match="width 3"):
        codec.encode(np.ones((2, 4), np.float32))
