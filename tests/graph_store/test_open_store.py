"""open_store: the backend the settings name, schema ready, clear errors otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError
from graph_store import StoreConfig, open_store
from graph_store.ladybug import LadybugStore
from tests.graph_store.builders import OffsetClock, batch, delta


def test_ladybug_creates_parent_dir_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "graph.lbdb"
    with open_store(StoreConfig.from_settings(Settings(store_backend="ladybug", store_path=str(path)))) as store:
        assert isinstance(store, LadybugStore)
        assert store.counts() == {"users": 0, "items": 0, "edges": 0, "seq": 0}
    with open_store(StoreConfig.from_settings(Settings(store_path=str(path))), read_only=True) as reader:
        assert reader.counts()["seq"] == 0


def test_unknown_backend_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="expected one of ladybug, neo4j"):
        open_store(StoreConfig.from_settings(Settings(store_backend="sqlite", store_path=str(tmp_path / "g"))))


def test_neo4j_without_uri_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="NEO4J_URI"):
        open_store(StoreConfig.from_settings(Settings(store_backend="neo4j", neo4j_uri="")))


def test_ladybug_checkpoints_at_the_configured_log_size(tmp_path: Path) -> None:
    path = tmp_path / "graph.lbdb"
    settings = Settings(store_path=str(path), store_checkpoint_mb=0.05)
    with open_store(StoreConfig.from_settings(settings)) as store:
        assert isinstance(store, LadybugStore) and abs(store.checkpoint_bytes - 0.05 * 2**20) <= 1
        # Asked of the database itself: the store checkpoints, LadybugDB does not on its own.
        shown = store._connection().execute("CALL current_setting('auto_checkpoint') RETURN *").get_all()
        assert [[str(v).lower() for v in row] for row in shown] == [["false"]]
        clock, logged = OffsetClock(), []
        for n in range(40):
            store.apply_batch(batch([delta(f"u{n}-{k}", f"i{k}") for k in range(20)], clock, "g"))
            logged.append(os.path.getsize(f"{path}.wal") if os.path.exists(f"{path}.wal") else 0)
        # The log grew past 0.05 MiB and was folded in, more than once, never growing far past it.
        assert logged.count(0) >= 2 and max(logged) < 4 * store.checkpoint_bytes
        assert store.counts()["edges"] == 800


def test_non_positive_checkpoint_size_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="IG_STORE_CHECKPOINT_MB must be > 0"):
        open_store(StoreConfig.from_settings(Settings(store_path=str(tmp_path / "g.lbdb"), store_checkpoint_mb=0.0)))


def test_store_config_keeps_the_neo4j_password_out_of_repr() -> None:
    config = StoreConfig.from_settings(Settings(neo4j_uri="neo4j://db:7687", neo4j_password="hunter2"))
    assert config.neo4j_password == "hunter2"
    assert "hunter2" not in repr(config)
