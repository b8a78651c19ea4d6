"""The :class:`Dialect` pair, the words statements are built from, and the parameter check."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.domain import EventType, NodeKind

#: Key of the single ``Meta`` node (sequence, embedding version, refresh cursor).
META_KEY = "interest-graph"

#: Per-event-type counters on every edge: one column per :class:`EventType`.
TYPE_COUNT_COLUMNS: dict[EventType, str] = {t: f"n_{t.value}" for t in EventType}

#: Node labels per kind; the only words ever put into statement texts.
LABELS: dict[NodeKind, str] = {NodeKind.USER: "User", NodeKind.ITEM: "Item"}

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LOADED = re.compile(r"\bLOAD\s+FROM\s+\$([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


class Backend:
    """Names of the two dialects (``Dialect.text(backend)``)."""

    LADYBUG = "ladybug"
    NEO4J = "neo4j"


@dataclass(frozen=True, slots=True)
class Dialect:
    """One statement in both dialects and the parameters both take.

    Args:
        name (str): Constant name, for error messages and test ids.
        ladybug (str): LadybugDB text.
        neo4j (str): Neo4j text.
        params (frozenset[str]): Every ``$parameter`` either text uses; callers pass exactly these.
        tables (frozenset[str]): Parameters the LadybugDB text scans with ``LOAD FROM $name``:
            callers pass rows (a list of dicts, as Neo4j's ``UNWIND`` takes them) and the LadybugDB
            backend sends them as one Arrow table (default: empty).
    """

    name: str
    ladybug: str
    neo4j: str
    params: frozenset[str]
    tables: frozenset[str] = frozenset()

    def text(self, backend: str) -> str:
        return self.ladybug if backend == Backend.LADYBUG else self.neo4j

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters to send, after checking they are exactly the declared ones."""
        given = set(params)
        if given != self.params:
            raise TypeError(f"{self.name}: parameters {sorted(given)} do not match declared {sorted(self.params)}")
        return dict(params)


def statement(name: str, *, ladybug: str, neo4j: str, params: tuple[str, ...] = ()) -> Dialect:
    """Declare a statement; fails at import if a text uses a parameter it does not declare."""
    declared = frozenset(params)
    for dialect, text in (("ladybug", ladybug), ("neo4j", neo4j)):
        used = set(_PARAM.findall(text))
        if used != declared:
            raise AssertionError(f"{name} ({dialect}) uses {sorted(used)}, declares {sorted(declared)}")
    return Dialect(name, ladybug.strip(), neo4j.strip(), declared, frozenset(_LOADED.findall(ladybug)))


def per_label(name: str, text: str, params: tuple[str, ...] = ()) -> dict[NodeKind, Dialect]:
    """One statement per node kind, the same in both dialects: ``{label}`` in ``text`` (and
    ``{LABEL}`` in ``name``) becomes each kind's label."""
    return {kind: statement(name.format(LABEL=label.upper()), ladybug=text.format(label=label),
                            neo4j=text.format(label=label), params=params)
            for kind, label in LABELS.items()}


def type_columns(template: str, sep: str = ", ") -> str:
    """Expand ``template`` (with ``{c}`` for the column) over every per-type count column."""
    return sep.join(template.format(c=c) for c in TYPE_COUNT_COLUMNS.values())
