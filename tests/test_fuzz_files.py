"""Fuzzing what a user hands Courtship: the project file, playbooks, the customer file and the
event file, as random bytes and as files of the right shape with wrong parts. The property is
"a finding (or a ``SourceError``) or a clean result, never an exception of another kind".

CI runs a bounded number of examples (a few seconds each); for a long bug hunt:

    COURTSHIP_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest tests/test_fuzz_files.py

Each input a run found that crashed is kept below as an ``@example``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from courtship.project import ProjectError, load_project
from courtship.sources import (
    CUSTOMER_SCHEMA,
    SourceError,
    read_customers_file,
    read_events_file,
)
from courtship.validate import validate_files
from courtship.yamlload import load_text

ROOT = Path(__file__).resolve().parents[1]
PROJECT_TEXT = (ROOT / "courtship.yaml").read_text()
CUSTOMER_LINES = (ROOT / "examples" / "customers.csv").read_text().splitlines()[:6]
EVENT_LINES = (ROOT / "examples" / "events.jsonl").read_text().splitlines()[:6]
PLAYBOOK_TEXT = (ROOT / "playbooks" / "win-back.yaml").read_text()

#: Examples per test; COURTSHIP_FUZZ_EXAMPLES raises it for a long run.
EXAMPLES = int(os.environ.get("COURTSHIP_FUZZ_EXAMPLES", "0")) or None


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


@contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


#: Cells and values that have broken readers before, or could.
NASTY = st.sampled_from(
    [
        "",
        " ",
        "0000-01-01",
        "9999-12-31T23:59:59-05:00",
        "-0001-01-01",
        "2026-02-30",
        "1e400",
        "-1",
        "NaN",
        "inf",
        "99999999999999999999999",
        "true",
        "null",
        "\x00",
        "\ufeff",
        "=1+2",
        '"',
        ",",
        ";;;",
        "_row",
        "{",
        "[[[[",
        "é" * 3,
        "\U0001f600",
        "Europe/Londn",
        "a" * 300,
    ]
)
TEXT = st.one_of(NASTY, st.text(max_size=20))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


# ── the project file ────────────────────────────────────────────────────


def check_project(root: Path) -> None:
    try:
        load_project(root)
    except ProjectError as error:
        assert error.findings
        for finding in error.findings:
            assert finding.path.endswith("courtship.yaml") and finding.line >= 1


@fuzz(150)
@given(st.binary(max_size=400))
def test_random_bytes_as_the_project_file(raw):
    with folder() as root:
        (root / "courtship.yaml").write_bytes(raw)
        check_project(root)


@fuzz(250)
@given(
    st.integers(min_value=0, max_value=len(PROJECT_TEXT.splitlines()) - 1),
    st.one_of(JSON_VALUES.map(json.dumps), NASTY, st.sampled_from(["[]", "{}", "- a", "&a *a"])),
)
@example(6, '"examples"')  # state: a folder
@example(9, '{"start": "25:00", "end": "08:00"}')
def test_a_project_setting_of_the_wrong_kind(line, value):
    lines = PROJECT_TEXT.splitlines()
    key = lines[line].split(":", 1)[0]
    if ":" in lines[line] and not key.startswith(("#", " ")):
        lines[line] = f"{key}: {value}"
    with folder() as root:
        (root / "courtship.yaml").write_text("\n".join(lines) + "\n")
        check_project(root)


# ── playbooks ───────────────────────────────────────────────────────────


@fuzz(150)
@given(st.binary(max_size=400))
def test_random_bytes_as_a_playbook(raw):
    with folder() as root:
        (root / "fuzzed.yaml").write_bytes(raw)
        report = validate_files([root / "fuzzed.yaml"])
    assert all(f.line >= 1 for f in report.findings)


@fuzz(200)
@given(
    st.integers(min_value=0, max_value=len(PLAYBOOK_TEXT.splitlines()) - 1),
    st.one_of(JSON_VALUES.map(json.dumps), NASTY),
)
@example(33, "a" * 300)  # a template name too long for a file name
@example(33, "a\x00b")  # a template name with a NUL in it
def test_a_playbook_value_of_the_wrong_kind(line, value):
    lines = PLAYBOOK_TEXT.splitlines()
    head, _, _ = lines[line].partition(":")
    lines[line] = f"{head}: {value}"
    text = "\n".join(lines) + "\n"
    doc = load_text(text, "fuzzed.yaml")
    assert all(f.line >= 1 for f in doc.findings)
    with folder() as root:
        shutil.copytree(ROOT / "playbooks" / "templates", root / "templates")
        (root / "fuzzed.yaml").write_text(text)
        validate_files([root / "fuzzed.yaml"])


# ── the customer file and the event file ────────────────────────────────


def read(kind: str, file: Path, format: str) -> None:
    reader = read_customers_file if kind == "customers" else read_events_file
    try:
        frame = reader(file, format=format)
    except SourceError as error:
        assert str(error).startswith(str(file))
        return
    if kind == "customers":
        assert list(frame.columns)[: len(CUSTOMER_SCHEMA)] == list(CUSTOMER_SCHEMA)
    else:
        assert frame.columns[:3] == ["customer_id", "type", "at"]


FILES = st.sampled_from(
    [("customers", "csv"), ("customers", "jsonl"), ("events", "jsonl"), ("events", "csv")]
)


@fuzz(200)
@given(FILES, st.binary(max_size=400))
@example(("events", "jsonl"), b'{"a":' * 2000 + b"1" + b"}" * 2000)
@example(("customers", "csv"), b"_row,customer_id\nx,c-1\n")
@example(("customers", "csv"), b"*")  # polars took the column '*' for all the columns
@example(("events", "jsonl"), b'{"^a$": 1, "customer_id": "c", "type": "t", "at": "2026"}')
def test_random_bytes_as_a_data_file(kind, raw):
    with folder() as root:
        file = root / f"data.{kind[1]}"
        file.write_bytes(raw)
        read(kind[0], file, kind[1])


@fuzz(300)
@given(
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=0, max_value=len(CUSTOMER_LINES[0].split(",")) - 1),
    TEXT,
)
@example(1, 10, "0000-11-23")  # a birthday in year 0000
@example(0, 0, "_row")
def test_a_customer_cell_of_the_wrong_kind(row, column, value):
    lines = [line.split(",") for line in CUSTOMER_LINES]
    lines[row][column] = value.replace("\n", " ")
    with folder() as root:
        file = root / "customers.csv"
        file.write_text("\n".join(",".join(cells) for cells in lines) + "\n")
        read("customers", file, "csv")


@fuzz(300)
@given(
    st.sampled_from(["customers", "events"]),
    st.integers(min_value=0, max_value=5),
    st.sampled_from(["customer_id", "type", "at", "amount", "channel", "birthday", "_row", "x"]),
    JSON_VALUES,
)
@example("events", 0, "at", "0000-12-02T00:52:00Z")
@example("customers", 0, "birthday", "0000-01-01")
@example("customers", 0, "type", [[]])  # a list of lists: polars could not cast it to text
@example("customers", 0, "type", 9.223372036854776e18)  # a whole float past the int64 range
@example("customers", 0, "cadence_days", float("inf"))
def test_a_json_line_field_of_the_wrong_kind(kind, line, field, value):
    if kind == "events":
        rows = [json.loads(text) for text in EVENT_LINES]
    else:
        header = CUSTOMER_LINES[0].split(",")
        rows = [dict(zip(header, text.split(","), strict=True)) for text in CUSTOMER_LINES[1:]]
    rows[line % len(rows)][field] = value
    with folder() as root:
        file = root / f"{kind}.jsonl"
        file.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
        read(kind, file, "jsonl")
