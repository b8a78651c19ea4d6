"""Only ``graph_store/ladybug.py`` opens a LadybugDB database; everything else goes through LadybugStore.

With its defaults ``ladybug.Database(path)`` refuses a database whose write-ahead log a killed
writer left torn ("the WAL file is corrupted"); ``LadybugStore`` opens with lenient replay. A raw
open elsewhere works until the first crash (a test helper doing that once failed at random). This
scan parses every Python file of the repository, the Python scripts held in its string constants
(``python -c`` children) and the Python blocks of its Markdown files, and finds every
``ladybug.Database(...)`` however ``ladybug`` or ``Database`` was imported.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The one module that may open a LadybugDB database, and does so by the store's rules.
OPENER = "graph_store/ladybug.py"

#: Raw opens kept on purpose: (file, enclosing function) -> why it must not go through LadybugStore.
ALLOWED: dict[tuple[str, str], str] = {
    ("tests/graph_store/test_ladybug.py", "test_database_with_tallies_on_the_relationship_is_refused"):
        "builds a database with the old edge layout on purpose (LadybugStore would create today's schema)",
    ("tests/graph_store/test_ladybug.py", "test_a_writer_killed_mid_commit_leaves_a_store_that_opens"):
        "proves that LadybugDB's defaults refuse a torn log: the reason the store opens leniently",
    ("tests/interest_graph/test_store_recover.py", "plain_open"):
        "a user's own plain open: it fails on a crashed store and must work after `store-recover`",
    ("tests/graph_store/test_open_rules.py", "test_the_scan_finds_every_spelling_of_a_raw_open"):
        "examples of raw opens fed to the scanner itself",
    ("bench/store_checkpoint.py", "LadybugCheckpointStore._open_database"):
        "the benchmark's reference: LadybugDB's own automatic checkpoint (opened as leniently as the store)",
}

_SKIPPED_DIRS = {"node_modules", "__pycache__"}
_MARKDOWN_PYTHON = re.compile(r"^```(?:python|py|python3)[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _ladybug_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to the ladybug module (or a submodule) and names bound to ``Database`` itself."""
    modules: set[str] = set()
    openers: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "ladybug" or alias.name.startswith("ladybug."):
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
                node.module == "ladybug" or node.module.startswith("ladybug.")):
            for alias in node.names:
                (openers if alias.name == "Database" else modules).add(alias.asname or alias.name)
    return modules, openers


def _is_module(expr: ast.expr, modules: set[str]) -> bool:
    while isinstance(expr, ast.Attribute):  # ladybug.database.Database: the chain's root decides
        expr = expr.value
    return isinstance(expr, ast.Name) and expr.id in modules


def raw_opens(source: str, scope: str = "<module>", first_line: int = 1) -> Iterator[tuple[int, str, ast.Call]]:
    """``(line, enclosing function, call)`` of every LadybugDB open in ``source``, scripts in its strings included."""
    tree = ast.parse(source)
    modules, openers = _ladybug_names(tree)

    def walk(node: ast.AST, scope: str) -> Iterator[tuple[int, str, ast.Call]]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope = node.name if scope == "<module>" else f"{scope}.{node.name}"
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id in openers) or (
                    isinstance(func, ast.Attribute) and func.attr == "Database" and _is_module(func.value, modules)):
                yield first_line + node.lineno - 1, scope, node
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" in node.value \
                and "ladybug" in node.value.lower():
            with contextlib.suppress(SyntaxError):  # prose, not a script
                yield from raw_opens(node.value, scope, first_line + node.lineno - 1)
        for child in ast.iter_child_nodes(node):
            yield from walk(child, scope)

    yield from walk(tree, scope)


def repository_sources() -> Iterator[tuple[str, str]]:
    """``(path from the repository root, Python source)``: .py files and Markdown Python blocks."""
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS
                         and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(root, name)
            rel = path.relative_to(REPO).as_posix()
            if name.endswith(".py"):
                yield rel, path.read_text(encoding="utf-8")
            elif name.endswith(".md"):
                for block in _MARKDOWN_PYTHON.finditer(path.read_text(encoding="utf-8")):
                    yield rel, block.group(1)


def test_only_the_store_opens_ladybugdb() -> None:
    found: dict[tuple[str, str], list[int]] = {}
    for rel, source in repository_sources():
        try:
            opens = list(raw_opens(source))
        except SyntaxError:
            continue  # a Markdown block that is not whole Python (ruff owns the .py files' syntax)
        for line, scope, _ in opens:
            if rel != OPENER:
                found.setdefault((rel, scope), []).append(line)
    stray = {f"{rel}:{lines} (in {scope})" for (rel, scope), lines in found.items() if (rel, scope) not in ALLOWED}
    assert not stray, (
        "LadybugDB opened outside graph_store/ladybug.py: open through graph_store.ladybug.LadybugStore "
        f"(lenient log replay), or allow-list a deliberate raw open here with its reason: {sorted(stray)}")
    stale = set(ALLOWED) - set(found)
    assert not stale, f"allow-listed places that no longer open LadybugDB raw (drop them): {sorted(stale)}"


def test_the_store_opens_with_lenient_log_replay() -> None:
    opens = [call for _, _, call in raw_opens((REPO / OPENER).read_text(encoding="utf-8"))]
    assert opens, f"{OPENER} no longer opens LadybugDB: update this test"
    for call in opens:
        lenient = [k.value for k in call.keywords if k.arg == "throw_on_wal_replay_failure"]
        assert len(lenient) == 1 and isinstance(lenient[0], ast.Constant) and lenient[0].value is False, (
            f"{OPENER}:{call.lineno} must open with throw_on_wal_replay_failure=False (a killed writer's torn log)")


def test_the_scan_finds_every_spelling_of_a_raw_open() -> None:
    examples = '''
import ladybug
import ladybug as lb
import ladybug.database
from ladybug import Database
from ladybug import Database as Db
ladybug.Database(a)
lb.Database(b)
ladybug.database.Database(c)
Database(d)
Db(e)
HOLD = """
import sys, ladybug
db = ladybug.Database(sys.argv[1])
"""
ladybug.Connection(db)
neo4j.GraphDatabase.driver(uri)
ProtoReflectionDescriptorDatabase(channel)
other.Database(x)
'''
    lines = [line for line, _, _ in raw_opens(examples)]
    assert lines == [7, 8, 9, 10, 11, 14]
