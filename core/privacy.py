"""Keyed hashes that keep user ids out of places that do not need them.

Two keys, two jobs (both HMAC-SHA256, so nobody without the key can test a guessed id):

* :class:`Pseudonyms` (``IG_ID_KEY``, optional): at ingest every user id becomes
  ``p{version}_{32 hex}``, and serving maps the id a client sends the same way, so the store, the
  change log, metrics and logs hold pseudonyms only. The version names the key: a new key with a
  new version starts new pseudonyms that can never collide with the old ones.
* :class:`ForgetKey` (``IG_ERASURE_KEY``): the deny-list of forgotten users stores
  ``forget_digest(user_id)`` only, so the list of who asked to be forgotten is itself no list of
  ids. Every stage that holds user ids (ingest, refresh, serving) recognises a forgotten one by
  digesting its own ids with the same key (:class:`DigestCache` does that once per id).

128 bits of a digest are kept: among 10^10 ids the chance of any two colliding is about 10^-19.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.domain import NodeId
from core.errors import InterestGraphError
from core.settings import Settings

#: Hex characters kept of a digest (128 bits).
DIGEST_HEX = 32
#: Length of a generated erasure key file's key, bytes.
GENERATED_KEY_BYTES = 32
#: What a pseudonym looks like (so tests and tools can tell one from a raw id).
PSEUDONYM_PATTERN = re.compile(r"^p[0-9]+_[0-9a-f]{32}$")


class PrivacyKeyError(InterestGraphError, ValueError):
    """A privacy key is unusable (empty, unreadable file, bad version). Not retryable."""


def _digest(key: bytes, domain: bytes, value: str) -> str:
    # The domain byte string keeps the two uses apart even if an operator set one key for both.
    return hmac.new(key, domain + b"\0" + value.encode("utf-8"), hashlib.sha256).hexdigest()[:DIGEST_HEX]


@dataclass(frozen=True, slots=True)
class Pseudonyms:
    """Replaces user ids by keyed hashes (``IG_ID_KEY`` / ``IG_ID_KEY_VERSION``).

    Args:
        key (bytes): the secret; at least 16 bytes.
        version (int): names the key in every pseudonym, ``>= 1`` (default: 1).
    """

    key: bytes
    version: int = 1

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise PrivacyKeyError("IG_ID_KEY must be at least 16 bytes")
        if self.version < 1:
            raise PrivacyKeyError(f"IG_ID_KEY_VERSION must be >= 1, got {self.version}")

    def __call__(self, user_id: str) -> NodeId:
        """The pseudonym of a raw user id (deterministic: the same id always maps the same way)."""
        return NodeId(f"p{self.version}_{_digest(self.key, b'user-id', user_id)}")

    def __repr__(self) -> str:  # never print the key
        return f"Pseudonyms(version={self.version})"


@dataclass(frozen=True, slots=True)
class ForgetKey:
    """Digests user ids for the deny-list of forgotten users (``IG_ERASURE_KEY``).

    Args:
        key (bytes): the secret; at least 16 bytes.
    """

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise PrivacyKeyError("the erasure key must be at least 16 bytes")

    def digest(self, user_id: str) -> str:
        """The deny-list entry of ``user_id`` (as the store names the user: a pseudonym if they are on)."""
        return _digest(self.key, b"forget", user_id)

    def record_digest(self, data: bytes) -> str:
        """A keyed hash of a whole record (a redacted dead letter's, so nobody can confirm a guessed payload)."""
        return hmac.new(self.key, b"record\0" + data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never print the key
        return "ForgetKey(***)"

    @classmethod
    def resolve(cls, key: str, key_file: str) -> ForgetKey:
        """The erasure key from ``IG_ERASURE_KEY`` if set, else from ``key_file``, created with a random
        key (mode 0600) the first time. Production sets the key itself (a secret every worker shares);
        the file keeps a single-host install working with no setup.

        Raises:
            PrivacyKeyError: the key is too short or the file cannot be read or created.
        """
        if key:
            return cls(key.encode("utf-8"))
        path = Path(key_file)
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(GENERATED_KEY_BYTES))
            return cls(path.read_text().strip().encode("utf-8"))
        except FileExistsError:  # another process created it between our check and our open
            return cls(path.read_text().strip().encode("utf-8"))
        except OSError as exc:
            raise PrivacyKeyError(f"cannot read or create the erasure key file {key_file!r}: {exc}") from exc


class DigestCache:
    """Deny-list digests of the ids a stage holds, each computed once (an HMAC is ~1 µs).

    Args:
        key (ForgetKey): the erasure key.
    """

    def __init__(self, key: ForgetKey) -> None:
        self.key = key
        self._digests: dict[str, str] = {}

    def digest(self, user_id: str) -> str:
        found = self._digests.get(user_id)
        if found is None:
            found = self._digests[user_id] = self.key.digest(user_id)
        return found

    def forgotten(self, user_ids: Iterable[str], digests: set[str] | frozenset[str]) -> list[str]:
        """Those of ``user_ids`` whose digest is in ``digests``."""
        if not digests:
            return []
        return [user_id for user_id in user_ids if self.digest(user_id) in digests]

    def drop(self, user_ids: Iterable[str]) -> None:
        """Forget the cached digests of ids the stage no longer holds."""
        for user_id in user_ids:
            self._digests.pop(user_id, None)


@dataclass(frozen=True, slots=True)
class Privacy:
    """What every stage needs to know of the privacy settings.

    Args:
        forget_key (ForgetKey): digests ids for the deny-list (default: a random key of this process,
            so nothing unconfigured ever uses a known key; ``from_settings`` gives the deployment's).
        pseudonyms (Pseudonyms, optional): maps raw user ids to pseudonyms (default: ``None``, off).
        forget_retention_s (float): how long a forgotten id stays denied, in seconds
            (default: ``IG_FORGET_RETENTION``'s).
        redact_dead_letters (bool): dead letters without key or payload (default: ``IG_DEAD_LETTER_REDACT``'s;
            always on with pseudonyms).
    """

    forget_key: ForgetKey = dataclasses.field(default_factory=lambda: ForgetKey(secrets.token_bytes(32)))
    pseudonyms: Pseudonyms | None = None
    forget_retention_s: float = Settings.forget_retention_s.default
    redact_dead_letters: bool = Settings.dead_letter_redact.default

    def __post_init__(self) -> None:
        if self.forget_retention_s <= 0:
            raise PrivacyKeyError(f"IG_FORGET_RETENTION must be > 0 s, got {self.forget_retention_s}")
        if self.pseudonyms is not None and not self.redact_dead_letters:
            # A dead letter's payload holds the raw id that pseudonyms keep out of every other place.
            object.__setattr__(self, "redact_dead_letters", True)

    def user_id(self, raw: str) -> NodeId:
        """The user id as the store names it: the pseudonym when they are on, else ``raw``."""
        return self.pseudonyms(raw) if self.pseudonyms is not None else NodeId(raw)

    @property
    def dead_letter_key(self) -> ForgetKey | None:
        """The key dead letters are redacted with, or ``None`` when they keep key and payload."""
        return self.forget_key if self.redact_dead_letters else None

    @property
    def forget_retention_ms(self) -> int:
        return int(self.forget_retention_s * 1000)

    @classmethod
    def from_settings(cls, settings: Settings) -> Privacy:
        """The privacy configuration these settings declare (reads or creates the erasure key file).

        Raises:
            PrivacyKeyError: a key is too short, or the key file is unusable.
        """
        pseudonyms = (Pseudonyms(settings.id_key.encode("utf-8"), settings.id_key_version)
                      if settings.id_key else None)
        return cls(forget_key=ForgetKey.resolve(settings.erasure_key, settings.erasure_key_file),
                   pseudonyms=pseudonyms, forget_retention_s=settings.forget_retention_s,
                   redact_dead_letters=settings.dead_letter_redact)
