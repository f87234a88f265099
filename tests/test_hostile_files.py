"""Hostile files end in a located error, never an internal error: dates no calendar holds,
JSON nested without end, a column named like the readers' own, a state store that is a folder,
not a database or damaged, a streak cache that is damaged, and a disk that fills up while
messages are delivered (nothing lost, nothing sent twice)."""

import json
import random
import shutil
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from courtship.cli import app
from courtship.sources import SourceError, read_customers_file, read_events_file

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-23T15:00:00Z"
runner = CliRunner()


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copy(ROOT / "courtship.yaml", tmp_path / "courtship.yaml")
    return tmp_path


def invoke(project: Path, *args: str):
    result = runner.invoke(app, [*args, "--project", str(project)])
    assert "internal error" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def edit(file: Path, old: str, new: str, count: int = 1) -> None:
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, count))


# ── the customer file and the event file ────────────────────────────────


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("0000-11-23", "'0000-11-23' is a date no calendar holds; write a year from 1 to 9999"),
        ("99999-11-23", "'99999-11-23' is not a date (YYYY-MM-DD)"),
    ],
)
def test_a_birthday_no_calendar_holds_is_a_finding_at_its_line(project, cell, expected):
    edit(project / "examples" / "customers.csv", "1990-11-23", cell)
    result = invoke(project, "plan", "--at", AT)
    assert result.exit_code == 1
    assert f"examples/customers.csv:2: birthday: {expected}" in result.output


def test_a_declared_date_fact_in_year_zero_is_a_finding(tmp_path):
    from courtship.catalogue import FactSpec

    file = tmp_path / "customers.csv"
    file.write_text("customer_id,crm_since\nc-1,2020-01-01\nc-2,0000-01-01\n")
    spec = FactSpec(name="crm_since", type="date", description="", source="crm")
    with pytest.raises(SourceError) as error:
        read_customers_file(file, facts={"crm_since": spec})
    assert str(error.value).startswith(f"{file}:3: crm_since: '0000-01-01' is not a date")


@pytest.mark.parametrize(
    "at", ["0000-12-02T00:52:00Z", "9999-12-31T23:59:00-05:00", "-0001-01-01T00:00:00Z"]
)
def test_an_event_at_a_moment_no_calendar_holds_is_a_finding(project, at):
    edit(project / "examples" / "events.jsonl", "2022-12-02T00:52:00Z", at)
    result = invoke(project, "plan", "--at", AT)
    assert result.exit_code == 1
    assert "examples/events.jsonl:1: at: " in result.output
    assert "write a moment from the year 1 to 9999" in result.output or "ISO 8601" in result.output


def test_the_first_and_last_moments_a_calendar_holds_are_read_and_run(project):
    edit(project / "examples" / "customers.csv", "1990-11-23", "0001-01-01")
    edit(project / "examples" / "customers.csv", "1987-11-23", "9999-12-31")
    edit(project / "examples" / "events.jsonl", "2022-12-02T00:52:00Z", "0001-01-01T00:00:00Z")
    edit(project / "examples" / "events.jsonl", "2022-12-02T11:29:00Z", "9999-12-31T23:59:59Z")
    assert invoke(project, "plan", "--at", AT).exit_code == 0
    for customer in ("c-0002", "c-0566"):
        assert invoke(project, "explain", customer, "--at", AT).exit_code == 0
    assert invoke(project, "run", "--at", AT, "-q").exit_code == 0


def deep(levels: int, opener: str = '{"a":', closer: str = "}") -> str:
    return opener * levels + "1" + closer * levels


@pytest.mark.parametrize(
    "line",
    [deep(100_000), deep(100_000, "[", "]"), deep(500), deep(65)],
    ids=["objects-100000", "lists-100000", "objects-500", "objects-65"],
)
def test_an_event_nested_without_end_is_a_finding_at_its_line(project, line):
    with (project / "examples" / "events.jsonl").open("a") as events:
        events.write(line + "\n")
    lines = (project / "examples" / "events.jsonl").read_text().count("\n")
    result = invoke(project, "plan", "--at", AT)
    assert result.exit_code == 1
    assert f"examples/events.jsonl:{lines}: the line nests values deeper than 64 levels" in (
        result.output
    )


def test_a_customer_json_line_nested_without_end_is_a_finding(tmp_path):
    file = tmp_path / "customers.jsonl"
    nested = '{"customer_id": "c-2", "notes": ' + deep(100_000) + "}"
    file.write_text('{"customer_id": "c-1"}\n' + nested + "\n")
    with pytest.raises(SourceError) as error:
        read_customers_file(file, format="jsonl")
    assert str(error.value).startswith(f"{file}:2: the line nests values deeper than 64 levels")


def test_nesting_within_the_limit_is_read(tmp_path):
    file = tmp_path / "events.jsonl"
    event = {"customer_id": "c-1", "type": "order", "at": "2026-11-20T10:15:00Z"}
    file.write_text(json.dumps(event | {"basket": json.loads(deep(30))}) + "\n")
    assert read_events_file(file).height == 1


def test_a_row_column_in_the_customer_csv_is_a_clear_error(project):
    file = project / "examples" / "customers.csv"
    lines = file.read_text().splitlines()
    file.write_text("\n".join(["_row," + lines[0], *("x," + line for line in lines[1:])]) + "\n")
    result = invoke(project, "plan", "--at", AT)
    assert result.exit_code == 1
    assert (
        "examples/customers.csv:1: _row: the name is taken: Courtship numbers the rows in a "
        "column of that name; rename or remove the column" in result.output
    )


@pytest.mark.parametrize("value", ['"x"', "7"])
def test_a_row_field_in_a_json_line_is_a_clear_error(project, value):
    edit(
        project / "examples" / "events.jsonl",
        '"type": "signup"',
        f'"_row": {value}, "type": "signup"',
    )
    result = invoke(project, "plan", "--at", AT)
    assert result.exit_code == 1
    assert "examples/events.jsonl:1: _row: the name is taken" in result.output


# ── the state store ─────────────────────────────────────────────────────


def test_a_state_that_names_a_folder_is_an_error_at_its_line(project):
    (project / "stores").mkdir()
    edit(project / "courtship.yaml", "state: .courtship/state.sqlite", "state: stores")
    result = invoke(project, "run", "--at", AT)
    assert result.exit_code == 2
    assert (
        f"courtship.yaml:6:8: state: {project / 'stores'} is a folder, not a state store; name a "
        f"file in it, such as {project / 'stores' / 'state.sqlite'}" in result.output
    )


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_state_that_names_a_file_of_another_kind_is_an_error_at_its_line(project, command):
    edit(project / "courtship.yaml", "state: .courtship/state.sqlite", "state: examples/README.md")
    before = (project / "examples" / "README.md").read_bytes()
    result = invoke(project, command, "--at", AT)
    assert result.exit_code == 2
    assert (
        f"courtship.yaml:6:8: state: {project / 'examples' / 'README.md'} is not a state store "
        "Courtship can read (file is not a database); point it at the store's file" in result.output
    )
    assert (project / "examples" / "README.md").read_bytes() == before
    assert not (project / "examples" / "README.md.id").exists()


def damage_in_the_middle(file: Path) -> None:
    data = bytearray(file.read_bytes())
    middle = len(data) // 3
    data[middle : middle + len(data) // 3] = random.Random(7).randbytes(len(data) // 3)
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["middle", "truncated", "random"])
def test_a_damaged_state_store_stops_the_run_before_anything_is_sent(project, damage):
    assert invoke(project, "run", "--at", AT, "-q").exit_code == 0
    store = project / ".courtship" / "state.sqlite"
    outbox = sorted((project / ".courtship" / "outbox").iterdir())
    if damage == "middle":
        damage_in_the_middle(store)
    elif damage == "truncated":
        store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    else:
        store.write_bytes(random.Random(3).randbytes(store.stat().st_size))
    result = invoke(project, "run", "--at", "2026-11-24T15:00:00Z", "-q")
    assert result.exit_code == 1
    assert f"{store}: the state store is " in result.output
    assert "restore it from a backup" in result.output
    assert sorted((project / ".courtship" / "outbox").iterdir()) == outbox


def decided(project: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(project / ".courtship" / "state.sqlite") as db:
        return set(db.execute("SELECT key, customer_id, playbook FROM sends"))


@pytest.mark.parametrize("damage", ["random", "truncated", "other-parquet"])
def test_a_damaged_streak_file_is_rebuilt_from_the_data_without_a_double(
    project, tmp_path_factory, damage
):
    """The streaks of becomes playbooks are a cache: the same decisions come without them."""
    intact = tmp_path_factory.mktemp("intact")
    shutil.copytree(project, intact, dirs_exist_ok=True)
    for root in (project, intact):
        assert invoke(root, "run", "--at", AT, "-q").exit_code == 0
    streaks = sorted((project / ".courtship" / "streaks").glob("*.parquet"))
    assert len(streaks) >= 5
    for file in streaks:
        if damage == "random":
            file.write_bytes(random.Random(file.name).randbytes(2000))
        elif damage == "truncated":
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        else:
            pl.DataFrame({"something": [1, 2]}).write_parquet(file)
    later = "2026-11-25T15:00:00Z"
    for root in (project, intact):
        assert invoke(root, "run", "--at", later, "-q").exit_code == 0
    assert decided(project) == decided(intact)
    kept = sorted(p.name for p in (project / ".courtship" / "streaks").iterdir())
    assert kept == sorted(p.name for p in (intact / ".courtship" / "streaks").iterdir())
