"""The shape of the code stays easy to see: no module over 500 lines, no function over 80.

Alembic migrations and the declarative schema (`db/schema.py`) are excepted: each is one table
after another, with no logic to follow, and the schema is read as the one picture of the database.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    path
    for root in ("libs", "services")
    for path in (REPO / root).rglob("*.py")
    if "migrations/versions" not in path.as_posix() and ".venv" not in path.parts
)
TABLE_DEFINITIONS = {"libs/common/src/crmsync/common/db/schema.py"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_there_are_sources_to_check() -> None:
    assert len(SOURCES) > 100


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_module_over_500_lines_and_no_function_over_80(path: Path) -> None:
    text = path.read_text()
    if path.relative_to(REPO).as_posix() not in TABLE_DEFINITIONS:
        assert text.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {text.count(chr(10))} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long
