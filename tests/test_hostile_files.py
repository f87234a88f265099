"""Hostile files end in a located error, never an internal error: dates no calendar holds,
JSON nested without end, a column named like the readers' own, a state store that is a folder,
not a database or damaged, a streak cache that is damaged, and a disk that fills up while
messages are delivered (nothing lost, nothing sent twice)."""

import datetime as dt
import json
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from courtship.channels import Delivery, Message
from courtship.cli import app
from courtship.delivery import Dispatcher
from courtship.sources import SourceError, read_customers_file, read_events_file
from courtship.state import DiskFull, StateStore

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-23T15:00:00Z"
runner = CliRunner()


def bundled(folder: Path) -> Path:
    """The bundled project copied into ``folder``."""
    shutil.copytree(ROOT / "playbooks", folder / "playbooks")
    shutil.copytree(ROOT / "examples", folder / "examples")
    shutil.copy(ROOT / "courtship.yaml", folder / "courtship.yaml")
    return folder


@pytest.fixture
def project(tmp_path):
    return bundled(tmp_path)


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


#: The moment after ``AT`` the streak files are read at.
LATER = "2026-11-25T15:00:00Z"


@pytest.fixture(scope="module")
def intact(tmp_path_factory) -> tuple[set[tuple[str, str, str]], list[str]]:
    """Runs at ``AT`` and ``LATER`` with the streak files intact: the sends they decide, and
    the streak files kept."""
    root = bundled(tmp_path_factory.mktemp("intact"))
    for at in (AT, LATER):
        assert invoke(root, "run", "--at", at, "-q").exit_code == 0
    return decided(root), sorted(p.name for p in (root / ".courtship" / "streaks").iterdir())


@pytest.mark.parametrize("damage", ["random", "truncated", "other-parquet"])
def test_a_damaged_streak_file_is_rebuilt_from_the_data_without_a_double(project, intact, damage):
    """The streaks of becomes playbooks are a cache: the same decisions come without them."""
    assert invoke(project, "run", "--at", AT, "-q").exit_code == 0
    streaks = sorted((project / ".courtship" / "streaks").glob("*.parquet"))
    assert len(streaks) >= 5
    for file in streaks:
        if damage == "random":
            file.write_bytes(random.Random(file.name).randbytes(2000))
        elif damage == "truncated":
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        else:
            pl.DataFrame({"something": [1, 2]}).write_parquet(file)
    assert invoke(project, "run", "--at", LATER, "-q").exit_code == 0
    kept = sorted(p.name for p in (project / ".courtship" / "streaks").iterdir())
    assert (decided(project), kept) == intact


# ── a full disk while delivering ────────────────────────────────────────


class Provider:
    """A channel whose provider accepts every message and keeps each key it was given."""

    name = "email"

    def __init__(self) -> None:
        self.keys: list[str] = []

    def check(self, message: Message) -> None:
        return None

    def send(self, message: Message) -> Delivery:
        self.keys.append(message.key)
        return Delivery.delivered(f"id-{len(self.keys)}")


def outbox_rows(count: int) -> list[tuple]:
    stamp = "2026-11-23T15:00:00+00:00"
    return [
        (f"key-{n:04d}", f"c{n:04d}", "welcome", "email", "transactional", "direct", None, stamp,
         stamp, "pending", "Welcome", "Hello " * 50, '["email"]', f'{{"email": "c{n}@x.org"}}',
         None, None, None, 0, None, None)
        for n in range(count)
    ]  # fmt: skip


def test_a_store_that_fills_up_after_a_provider_accepted_loses_nothing_and_sends_once(tmp_path):
    """SQLite's own limit (max_page_count) fills the store for real while messages go out: the
    commit after an acceptance fails. The next run records that message delivered and sends
    only the others: every key once at the provider."""
    now = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)
    store = StateStore(tmp_path / "state.sqlite")
    store.record(now, {}, outbox_rows(100))
    store.claim()
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    provider = Provider()
    with pytest.raises(DiskFull) as error:
        Dispatcher(store, {"email": provider}).dispatch(now)
    assert str(error.value).startswith(
        f"the disk is full: cannot write the state store {tmp_path / 'state.sqlite'} "
        "(database or disk is full); free space and run again"
    )
    accepted = list(provider.keys)
    assert 0 < len(accepted) < 100  # it stopped at the first failed commit
    store.close()

    again = StateStore(tmp_path / "state.sqlite")
    again.claim()  # records the acceptance noted beside the store
    Dispatcher(again, {"email": provider}).dispatch(now)
    assert sorted(provider.keys) == sorted(set(provider.keys))
    assert len(provider.keys) == 100
    rows = again.db.execute("SELECT status, count(*) FROM sends GROUP BY 1").fetchall()
    assert rows == [("delivered", 100)]
    last = again.db.execute("SELECT provider_id FROM sends WHERE key = ?", (accepted[-1],))
    assert last.fetchone() == (f"id-{len(accepted)}",)
    again.close()


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs (root may mount one; elsewhere the test is skipped)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` but for ``leave`` bytes."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def outbox_keys(folder: Path) -> list[str]:
    return sorted(json.loads(p.read_text())["key"] for p in folder.glob("*.json"))


@pytest.fixture(scope="module")
def roomy(tmp_path_factory) -> list[str]:
    """The keys of the messages a run at ``AT`` delivers on a roomy disk."""
    root = bundled(tmp_path_factory.mktemp("roomy"))
    assert invoke(root, "run", "--at", AT, "-q").exit_code == 0
    return outbox_keys(root / ".courtship" / "outbox")


@pytest.mark.parametrize(
    ("leave", "state_on_it"),
    [(8_192, True), (100_000, True), (200_000, True), (260_000, True), (12_000, False)],
)
def test_a_full_disk_while_delivering_is_a_clear_error_and_the_next_run_resumes(
    project, small_disk, roomy, leave, state_on_it
):
    """The state store and the outbox on a small real disk, filled to ``leave`` bytes: the run
    stops with a clear error, and once space is freed the next run delivers the rest, each
    message once, as a run on a roomy disk does."""
    store = small_disk / "state.sqlite" if state_on_it else project / "state.sqlite"
    edit(
        project / "courtship.yaml",
        "state: .courtship/state.sqlite",
        f"state: {store}\ndelivery: {{outbox: {small_disk}/outbox}}",
    )
    filler = fill(small_disk, leave)
    result = invoke(project, "run", "--at", AT, "-q")
    assert result.exit_code == 1
    said = "cannot " if state_on_it else "the email channel cannot write"  # or its streaks
    assert f"courtship: the disk is full: {said}" in result.output
    assert "; free space and run again" in result.output
    filler.unlink()
    assert invoke(project, "run", "--at", AT, "-q").exit_code == 0
    assert outbox_keys(small_disk / "outbox") == roomy
    with sqlite3.connect(store) as db:
        assert set(db.execute("SELECT status FROM sends")) == {("delivered",)}


@pytest.mark.parametrize("at", ["9999-12-31T10:00:00Z", "0001-01-01T10:00:00Z"])
def test_a_moment_too_far_for_the_calendar_is_a_usage_error(project, at):
    result = invoke(project, "plan", "--at", at)
    assert result.exit_code == 2
    assert f"--at {at} is too far from now for the calendar; give a year from 1000 to 9000" in (
        result.output
    )


@pytest.mark.parametrize("at", ["1000-01-01T00:00:00Z", "9000-12-31T23:00:00Z"])
def test_the_first_and_last_years_of_at_are_planned(project, at):
    assert invoke(project, "plan", "--at", at).exit_code == 0


@pytest.mark.parametrize("damage", [b"PAR1 not parquet at all", b""])
def test_a_damaged_event_cache_is_read_again_from_the_source_without_a_double(tmp_path, damage):
    from test_intake import make_project
    from test_intake import run as run_json

    db = make_project(tmp_path)
    db.execute("INSERT INTO events VALUES ('c-0001', 'signup', '2026-11-23T12:00:00Z')")
    db.commit()
    assert run_json(tmp_path, "2026-11-23T15:00:00Z")["delivered"] == {"email": 1}
    cache = tmp_path / "state" / "events.parquet"
    cache.write_bytes(damage)
    db.execute("INSERT INTO events VALUES ('c-0001', 'signup', '2026-11-23T16:00:00Z')")
    db.commit()
    assert run_json(tmp_path, "2026-11-23T17:00:00Z")["delivered"] == {"email": 1}
    assert pl.read_parquet(cache)["at"].dt.hour().sort().to_list() == [12, 16]
