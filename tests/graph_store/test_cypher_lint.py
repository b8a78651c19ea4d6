"""Every Neo4j statement passes Neo4j's own linter, and every call site sends exactly its parameters.

No Neo4j server runs here, so ``lint.mjs`` (npm ``@neo4j-cypher/language-support``) parses and
semantically checks each statement; the LadybugDB texts are checked by running them (the other
tests in this folder). Call sites are checked statically: every ``tx.run(cypher.X, a=..., b=...)``
in ``graph_store`` must name exactly ``X.params``, which ``Dialect.bind`` also enforces at run time.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.domain import NodeKind
from graph_store import cypher
from graph_store.cypher import Dialect, statement

LINT_DIR = Path(__file__).with_name("cypher_lint")
PACKAGE_DIR = Path(cypher.__file__).parents[1]  # graph_store/


def _lint(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js) is not installed: cannot run Neo4j's Cypher linter")
    if not (LINT_DIR / "node_modules" / "@neo4j-cypher" / "language-support").is_dir():
        pytest.fail(f"linter not installed: run `npm ci --prefix {LINT_DIR}` (make test does)")
    proc = subprocess.run(
        [node, str(LINT_DIR / "lint.mjs")],
        input=json.dumps(statements),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {r["name"]: r for r in json.loads(proc.stdout)}


def _neo4j_statements() -> list[dict[str, Any]]:
    found = [
        {"name": name, "query": d.neo4j, "params": sorted(d.params)} for name, d in cypher.all_statements().items()
    ]
    found += [{"name": f"NEO4J_SCHEMA[{k}]", "query": q, "params": []} for k, q in enumerate(cypher.NEO4J_SCHEMA)]
    return found


#: Known-bad statements: the lint test would pass vacuously if the linter reported nothing.
BROKEN = [
    {"name": "broken:syntax", "query": "MATCH (n:User RETURN n", "params": [], "needle": "Invalid input"},
    {"name": "broken:variable", "query": "MATCH (n:User) RETURN m", "params": [], "needle": "not defined"},
    {"name": "broken:parameter", "query": "MATCH (n:User {id: $id}) RETURN n", "params": [], "needle": "$id"},
]


@pytest.fixture(scope="module")
def lint_results() -> dict[str, dict[str, Any]]:
    """One linter run (Node.js start-up and Neo4j's analyser are slow) for the whole module."""
    return _lint(_neo4j_statements() + [{k: b[k] for k in ("name", "query", "params")} for b in BROKEN])


def test_neo4j_statements_pass_neo4j_linter(lint_results: dict[str, dict[str, Any]]) -> None:
    for s in _neo4j_statements():
        result = lint_results[s["name"]]
        # Errors cover syntax, undefined variables and `$parameters` the caller does not supply.
        assert result["diagnostics"] == [], f"{s['name']}: {result['diagnostics']}\n{s['query']}"
        assert set(result["parameters"]) == set(s["params"]), s["name"]


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: b["name"])
def test_linter_catches_the_mistakes_it_guards_against(
    lint_results: dict[str, dict[str, Any]], broken: dict[str, Any]
) -> None:
    messages = [d["message"] for d in lint_results[broken["name"]]["diagnostics"] if d["severity"] == 1]
    assert any(broken["needle"] in m for m in messages), messages


def _statement_of(node: ast.expr) -> list[Dialect] | None:
    """The Dialect(s) a call's first argument names: ``cypher.X`` or ``cypher.X[kind]``."""
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cypher":
        value = getattr(cypher, node.attr)
        return list(value.values()) if isinstance(value, dict) else [value]
    return None


def test_call_sites_pass_exactly_the_declared_parameters() -> None:
    checked = 0
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.args):
                continue
            dialects = _statement_of(call.args[0])
            if dialects is None or call.func.attr != "run":
                continue
            where = f"{path.name}:{call.lineno}"
            assert all(kw.arg is not None for kw in call.keywords), f"{where}: pass parameters by name"
            passed = {kw.arg for kw in call.keywords if kw.arg is not None}
            for d in dialects:
                assert passed == set(d.params), f"{where}: {d.name} takes {sorted(d.params)}, got {sorted(passed)}"
            checked += 1
    assert checked >= 25, f"only {checked} call sites found: has the calling convention changed?"


def test_every_statement_is_sent_somewhere() -> None:
    sources = "".join(p.read_text() for p in PACKAGE_DIR.glob("*.py"))
    families = {
        name
        for name, value in vars(cypher).items()
        if isinstance(value, Dialect)
        or (isinstance(value, dict) and all(isinstance(v, Dialect) for v in value.values()))
    }
    unused = sorted(name for name in families if f"cypher.{name}" not in sources)
    assert unused == []


def test_bind_refuses_missing_or_extra_parameters() -> None:
    stmt = cypher.CHANGED_NODES[NodeKind.USER]
    with pytest.raises(TypeError, match="do not match"):
        stmt.bind({"since": 0, "upto": 1})
    with pytest.raises(TypeError, match="do not match"):
        stmt.bind({"since": 0, "upto": 1, "limit": 5, "extra": 1})
    assert stmt.bind({"since": 0, "upto": 1, "limit": 5}) == {"since": 0, "upto": 1, "limit": 5}


def test_batch_parameters_are_loaded_as_tables_by_ladybug_and_unwound_by_neo4j() -> None:
    for stmt in (cypher.ADD_TO_EDGES, cypher.CREATE_EDGES, cypher.EDGE_TALLIES):
        (name,) = stmt.tables
        assert f"LOAD FROM ${name}" in stmt.ladybug and f"UNWIND ${name}" in stmt.neo4j, stmt.name
    assert statement("T", ladybug="LOAD FROM $rows RETURN k", neo4j="UNWIND $rows AS r RETURN r.k",
                     params=("rows",)).tables == {"rows"}
    assert cypher.TOUCH_NODES[NodeKind.USER].tables == frozenset()


def test_declaring_a_statement_checks_both_texts() -> None:
    with pytest.raises(AssertionError, match="declares"):
        statement("BAD", ladybug="RETURN $a", neo4j="RETURN $a, $b", params=("a",))
