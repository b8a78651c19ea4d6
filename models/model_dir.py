"""The one model directory format: a manifest (JSON) naming one array file (npz) of some method.

Layout of a model dir (``interest-graph train`` writes it, from the store or from a dataset; the
refresh worker, ``evaluate`` and ``export`` read it)::

    checkpoint.json          manifest: version, method, file name, layers, meta  (replaced atomically)
    lightgcn-<version>.npz   method "lightgcn": see :mod:`models.lightgcn.checkpoint`
    spectral-<version>.npz   method "spectral": see :mod:`models.spectral.checkpoint`
    sage-<version>.npz       methods "sage" and "gat": see :mod:`models.inductive.checkpoint`
    gat-<version>.npz

The arrays are written first under a fresh name, then the manifest is swapped in with
``os.replace``; a reader that opens the manifest therefore always finds a complete array file, and
a watcher only needs the manifest's ``version`` to know a new checkpoint arrived. Versions are
shared by every method, so a switch of method is just the next version. A manifest without a
``method`` (written before methods existed) is a LightGCN one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core.errors import InterestGraphError

MANIFEST = "checkpoint.json"
#: Methods a model dir can hold, each with the prefix of its array files.
METHODS = ("spectral", "lightgcn", "sage", "gat")
#: Array files kept besides the current one, so a reader that just read the old manifest can finish.
KEEP_PREVIOUS = 1
#: How error messages name each method.
METHOD_NAMES = {"lightgcn": "LightGCN", "spectral": "spectral", "sage": "GraphSAGE", "gat": "GAT"}

T = TypeVar("T")


class CheckpointError(InterestGraphError):
    """A checkpoint is missing or unreadable. Retryable: a trainer may be writing the next one."""

    retryable = True


def save_versioned(model_dir: str | os.PathLike[str], method: str, arrays: dict[str, np.ndarray],
                   meta: dict[str, Any], **manifest_fields: Any) -> Path:
    """Write ``arrays`` under a new version and swap the manifest in atomically; returns its path.

    Two writers (``interest-graph train`` and the refresh worker's bootstrap) may save at once:
    each claims its version by creating the array file exclusively, and a manifest is never
    replaced by an older version than the one it names. ``meta["version"]`` is set to the version.
    """
    if method not in METHODS:
        raise ValueError(f"unknown checkpoint method {method!r}; expected one of {METHODS}")
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    version, name = _claim_version(directory, method)
    try:
        with _atomic(directory / name, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # stubs type the 2nd parameter as allow_pickle
    except BaseException:
        (directory / name).unlink(missing_ok=True)  # give the claimed version back
        raise
    meta["version"] = version
    manifest = {**manifest_fields, "version": version, "method": method, "arrays": name, "meta": meta}
    if manifest_version(directory) < version:
        with _atomic(directory / MANIFEST, "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
    _prune(directory, below=version)
    return directory / MANIFEST


def load_versioned(model_dir: str | os.PathLike[str], method: str,
                   build: Callable[[dict[str, Any], dict[str, np.ndarray]], T]) -> T:
    """Read the current checkpoint of ``method``: ``build(manifest, arrays)`` on its manifest and
    arrays. :class:`CheckpointError` if there is none, it is broken (``build`` raising ``KeyError``
    or ``ValueError`` included) or the directory holds another method."""
    directory = Path(model_dir)
    manifest = read_manifest(directory)
    name = METHOD_NAMES[method]
    if manifest_method(manifest) != method:
        raise CheckpointError(f"{directory} holds a {manifest_method(manifest)!r} checkpoint, not a {name} one")
    try:
        with np.load(directory / manifest["arrays"], allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        return build(manifest, arrays)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"no readable {name} checkpoint in {directory}: {exc}") from exc


def read_manifest(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of ``model_dir``; :class:`CheckpointError` if there is none or it is unreadable."""
    try:
        manifest = json.loads((Path(model_dir) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"no readable checkpoint manifest in {model_dir}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(f"the checkpoint manifest in {model_dir} is not a JSON object")
    return manifest


def manifest_method(manifest: dict[str, Any]) -> str:
    """The method a manifest names (``"lightgcn"`` when it names none)."""
    return str(manifest.get("method", "lightgcn"))


def manifest_version(model_dir: str | os.PathLike[str]) -> int:
    """Version of the checkpoint in ``model_dir``, ``-1`` if there is none (reads the manifest only)."""
    try:
        return int(json.loads((Path(model_dir) / MANIFEST).read_text())["version"])
    except (OSError, KeyError, ValueError):
        return -1


class _atomic:
    """Open a temp file next to ``path``; on success fsync and rename it over ``path``."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        self.handle = os.fdopen(fd, mode)

    def __enter__(self) -> Any:
        return self.handle

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def _array_versions(directory: Path) -> dict[int, Path]:
    """Array files of every method by version number."""
    found = {}
    for method in METHODS:
        for path in directory.glob(f"{method}-*.npz"):
            number = path.stem.rsplit("-", 1)[1]
            if number.isdigit():
                found[int(number)] = path
    return found


def _claim_version(directory: Path, method: str) -> tuple[int, str]:
    """The next free version, claimed by creating its (empty) array file exclusively."""
    version = max([manifest_version(directory), 0, *_array_versions(directory)]) + 1
    while True:
        if any((directory / f"{other}-{version}.npz").exists() for other in METHODS):
            version += 1
            continue
        name = f"{method}-{version}.npz"
        try:
            os.close(os.open(directory / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return version, name
        except FileExistsError:
            version += 1


def _prune(directory: Path, below: int) -> None:
    """Remove array files older than ``below`` except the newest ``KEEP_PREVIOUS`` of them."""
    versions = _array_versions(directory)
    old = sorted(v for v in versions if v < below)
    for version in old[: max(len(old) - KEEP_PREVIOUS, 0)]:
        versions[version].unlink(missing_ok=True)
