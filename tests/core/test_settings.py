"""Settings: declared once, read from the environment, secrets never dumped or printed."""

from __future__ import annotations

from core.settings import Settings


def test_secrets_stay_out_of_environment_dumps_and_reprs() -> None:
    settings = Settings(neo4j_password="hunter2", auth_token="t0ken", max_k=50)
    environ = settings.as_environ()
    assert "NEO4J_PASSWORD" not in environ and "IG_AUTH_TOKEN" not in environ
    assert environ["IG_MAX_K"] == "50"
    assert "hunter2" not in repr(settings) and "t0ken" not in repr(settings) and "max_k=50" in repr(settings)
    assert "hunter2" not in Settings.reference()
    # The child that gets as_environ() reads its secrets from its own environment, as this process did.
    assert Settings.from_env({**environ, "IG_AUTH_TOKEN": "t0ken"}).auth_token == "t0ken"


def test_environment_round_trips_every_other_setting() -> None:
    settings = Settings(batch_max_events=77, grpc_share_port=True, refresh_interval_s=0.5)
    again = Settings.from_env(settings.as_environ())
    for declared in Settings.declared():
        if not declared.secret:
            assert getattr(again, declared.name) == getattr(settings, declared.name), declared.name


def test_section_fills_a_room_config_from_settings_named_like_its_fields() -> None:
    import dataclasses

    import pytest

    from core.settings import SettingsError

    @dataclasses.dataclass(frozen=True)
    class Limits:
        max_k: int
        grace: float

    assert Settings(max_k=7).section(Limits, grace=1.5) == Limits(max_k=7, grace=1.5)
    with pytest.raises(SettingsError, match=r"Limits\.grace is not a setting"):
        Settings().section(Limits)
