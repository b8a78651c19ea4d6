"""The ingest stage's configs are views of the one declaration of every setting, core.settings."""

from __future__ import annotations

import dataclasses

import pytest

from core.domain import EventType
from core.settings import Settings
from streams.config import EventContract, IngestConfig

#: An erasure key, so reading the settings creates no key file.
KEYED = Settings(erasure_key="config-test-erasure-key")


def test_defaults_are_the_declared_defaults() -> None:
    from_settings = IngestConfig.from_settings(KEYED)
    assert dataclasses.replace(IngestConfig(), privacy=from_settings.privacy) == from_settings
    assert EventContract() == EventContract.from_settings(Settings())


@pytest.mark.parametrize("config_type", [IngestConfig, EventContract])
def test_every_field_is_read_from_its_setting(config_type: type[IngestConfig] | type[EventContract]) -> None:
    names = [f.name for f in dataclasses.fields(config_type) if f.name not in ("contract", "privacy")]
    changed: dict[str, object] = {}
    for name in names:
        default = getattr(Settings, name).default
        changed[name] = default + "-x" if isinstance(default, str) else default + 1
    config = config_type.from_settings(KEYED.replace(**changed))
    assert {name: getattr(config, name) for name in names} == changed


def test_ingest_config_carries_the_event_contract() -> None:
    config = IngestConfig.from_settings(KEYED.replace(max_id_length=7, weight_like=9.0))
    assert config.contract == EventContract(max_id_length=7, weight_like=9.0)


def test_default_weights() -> None:
    contract = EventContract.from_settings(Settings(weight_rating_per_star=0.25, weight_purchase=8.0))
    assert contract.default_weight(EventType.PURCHASE) == 8.0
    assert contract.default_weight(EventType.RATING) == 1.0  # a rating without stars counts as 4 stars
    assert [contract.default_weight(t) for t in (EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART,
                                                 EventType.LIKE)] == [0.5, 1.0, 2.0, 2.0]


def test_bootstrap_servers_match_the_settings() -> None:
    settings = Settings(broker_url="kafka://a:1;kafka://b:2")
    assert IngestConfig.from_settings(settings).bootstrap_servers == settings.bootstrap_servers == ["a:1", "b:2"]
