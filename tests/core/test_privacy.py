"""Privacy keys: where the erasure key comes from, and what the settings switch on."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.privacy import ForgetKey, Privacy, PrivacyKeyError, Pseudonyms
from core.settings import Settings


def test_erasure_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "erasure.key"
    first = ForgetKey.resolve("", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ForgetKey.resolve("", str(path)).digest("u1") == first.digest("u1")
    assert ForgetKey.resolve("an-explicit-erasure-key", str(path)).digest("u1") != first.digest("u1")


def test_settings_turn_pseudonyms_on(tmp_path: Path) -> None:
    off = Privacy.from_settings(Settings(erasure_key_file=str(tmp_path / "k")))
    assert off.pseudonyms is None and off.user_id("u1") == "u1" and not off.redact_dead_letters
    on = Privacy.from_settings(Settings(id_key="a-pseudonym-key-of-16+", id_key_version=2,
                                        erasure_key="an-explicit-erasure-key", forget_retention_s=60.0))
    assert on.pseudonyms == Pseudonyms(b"a-pseudonym-key-of-16+", 2) and on.user_id("u1").startswith("p2_")
    assert on.redact_dead_letters and on.forget_retention_ms == 60_000


@pytest.mark.parametrize("settings", [Settings(id_key="short"), Settings(erasure_key="short"),
                                      Settings(id_key="a-pseudonym-key-of-16+", id_key_version=0),
                                      Settings(erasure_key="an-explicit-erasure-key", forget_retention_s=0.0)])
def test_unusable_keys_are_refused(settings: Settings) -> None:
    with pytest.raises(PrivacyKeyError):
        Privacy.from_settings(settings.replace(erasure_key=settings.erasure_key or "an-explicit-erasure-key"))


def test_secrets_are_never_printed() -> None:
    settings = Settings(id_key="a-pseudonym-key-of-16+", erasure_key="an-explicit-erasure-key")
    assert "pseudonym-key" not in repr(settings) and "explicit" not in repr(settings)
    assert "IG_ID_KEY" not in settings.as_environ() and "IG_ERASURE_KEY" not in settings.as_environ()
