"""The engine's shape, as the issue that made it a package asks: one module per step of the
data flow, nothing in it too long to read, and the state store the only owner of SQL on its
tables."""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "courtship"
ENGINE = SRC / "engine"
STEPS = (
    "moment",
    "plan",
    "facts",
    "consent",
    "conditions",
    "triggers",
    "calendar",
    "audience",
    "sequences",
    "guards",
    "render",
    "outbox",
    "record",
    "oracle",
    "partitions",
    "carry",
)
STATE_TABLES = (
    "runs",
    "fired",
    "enrollments",
    "sends",
    "attempts",
    "facts",
    "tags",
    "consent_changes",
    "callbacks",
    "decisions",
    "test_sends",
    "assignments",
)


def test_one_module_per_step_of_the_data_flow():
    assert {p.stem for p in ENGINE.glob("*.py")} - {"__init__"} == set(STEPS)


@pytest.mark.parametrize("module", STEPS)
def test_no_class_or_function_of_the_engine_is_over_300_lines(module):
    tree = ast.parse((ENGINE / f"{module}.py").read_text())
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.end_lineno - node.lineno + 1 > 300
    ]
    assert long == []


def test_only_the_state_store_runs_sql_on_the_state_tables():
    statement = re.compile(
        r"\b(SELECT|INSERT|UPDATE|DELETE)\b[^\"']*\b(FROM|INTO|UPDATE)?\s*("
        + "|".join(STATE_TABLES)
        + r")\b"
    )
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name not in ("state.py", "state_postgres.py")  # the store, on SQLite and on PG
        and any(
            statement.search(node.value)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        )
    ]
    assert offenders == []
