"""How item vectors are held in serving memory: as float32, or as one signed byte per coordinate.

A served item vector is read in three ways: gathered by row (candidates to rescore, Explain's
evidence, a user vector folded in from its row), scanned whole (an exact top-k), and handed to
the HNSW graph. :class:`Int8Codec` keeps each coordinate as a signed byte with one scale per
*dimension*, :math:`x_{id} \\approx s_d c_{id}`, :math:`c \\in [-127, 127]`, chosen from the largest
magnitude of that dimension over the vectors it is fitted on. Scale per dimension rather than per
item keeps every score a plain dot product of codes: :math:`e_u^\\top \\hat{x}_i = (e_u \\circ s)^\\top
c_i`, so a scan multiplies the codes by a rescaled query, and an HNSW graph over the codes
(:class:`serving.ann.HnswIndex`) searches with the same rescaled query.

``bench/serving_width.py`` measures what it costs on Gowalla against float32, side by side
(``bench/RESULTS.md``): the quality is the same to the third decimal at every width, at a quarter
of the memory. An exact scan decodes block by block and costs up to 1.7 times a float32 one at
1,024 dims (about the same at 64), since numpy has no int8 product; searches of large catalogs go
through the HNSW graph. Vectors fitted later than the scale (a refresh round's rewritten items,
cold-start items) are clipped to its range; a full reload fits it afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = "f32"
INT8 = "int8"
CODECS = (F32, INT8)

#: Largest code magnitude: symmetric, so -128 is never used and 0 decodes to exactly 0.
CODE_MAX = 127
#: Floats decoded at a time by a whole scan (1 MB, reused per block): a block that stays in cache
#: while the product reads it. Measured at 1,000,000 codes, one query: 348 ms at 1,024 dims in
#: blocks of 256 rows against 485 ms for 64 and 799 ms for 512 (float32: 207 ms); 26 ms at 64 dims
#: in blocks of 4,096 against 74 ms for 8,192 (float32: 28 ms).
SCAN_BLOCK_FLOATS = 262_144


@dataclass(frozen=True, slots=True)
class Int8Codec:
    """Signed-byte codes with one scale per dimension.

    Args:
        scale (np.ndarray): ``float32 [d]``, read-only: the value of one code step per dimension.
    """

    scale: np.ndarray

    @classmethod
    def fitted(cls, vectors: np.ndarray) -> Int8Codec:
        """The codec whose range per dimension is the largest magnitude in ``vectors`` (``[n, d]``)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be [n, d], got shape {vectors.shape}")
        peak = np.abs(vectors).max(axis=0) if vectors.shape[0] else np.zeros(vectors.shape[1], np.float32)
        scale = np.where(peak > 0, peak / CODE_MAX, 1.0).astype(np.float32)
        scale.setflags(write=False)
        return cls(scale)

    @property
    def dim(self) -> int:
        return int(self.scale.shape[0])

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """``int8 [n, d]`` codes of ``float32 [n, d]`` vectors (clipped to the fitted range)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of shape {vectors.shape} do not fit a codec of width {self.dim}")
        return np.clip(np.rint(vectors / self.scale), -CODE_MAX, CODE_MAX).astype(np.int8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``float32`` vectors of ``int8`` codes (any leading shape)."""
        return np.asarray(codes, dtype=np.float32) * self.scale

    def query(self, vector: np.ndarray) -> np.ndarray:
        """The query whose dot product with codes equals its dot product with the decoded vectors."""
        return np.asarray(vector, dtype=np.float32) * self.scale

    def scan(self, codes: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Scores of every code row for each query: ``float32 [b, n]`` for ``[b, d]`` queries (``[n]``
        for one ``[d]`` query). Decoded a block at a time, so a scan never holds a float copy of
        the whole table."""
        one = np.ndim(queries) == 1
        scaled = np.atleast_2d(self.query(queries))
        n = codes.shape[0]
        step = max(64, SCAN_BLOCK_FLOATS // max(self.dim, 1))
        out = np.empty((scaled.shape[0], n), dtype=np.float32)
        block = np.empty((min(step, n), self.dim), dtype=np.float32)
        for start in range(0, n, step):
            stop = min(start + step, n)
            part = block[: stop - start]
            np.copyto(part, codes[start:stop], casting="unsafe")
            np.matmul(scaled, part.T, out=out[:, start:stop])
        return out[0] if one else out
