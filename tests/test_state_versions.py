"""The state store's schema has a version: a store of an older version is migrated when it is
opened (in one transaction), never misread; one of a newer version is refused with what to do.
Version 1 is the store as Courtship wrote it before versions were recorded
(``tests/data/state-schema-v1.sql``, its tables verbatim)."""

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import HEADER, NOW, SEQUENCE, World, customer
from typer.testing import CliRunner

from courtship.cli import app
from courtship.state import SCHEMA_VERSION, StateStore, StateVersionError

V1_TABLES = (Path(__file__).parent / "data" / "state-schema-v1.sql").read_text()
runner = CliRunner()


def tables_of(db: sqlite3.Connection) -> list[str]:
    return [
        name
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]


def as_version_1(store: Path, copy: Path) -> None:
    """``copy``: the rows of ``store`` in a store of version 1 (its tables, no ``meta``)."""
    with sqlite3.connect(store) as source, sqlite3.connect(copy) as target:
        target.executescript(V1_TABLES)
        for table in tables_of(source):
            if table == "meta":
                continue
            rows = source.execute(f"SELECT * FROM {table}").fetchall()
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                target.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)
    with sqlite3.connect(copy) as target:
        assert "meta" not in tables_of(target)


def everything(state: StateStore) -> dict[str, object]:
    """What the engine and the commands read of a store."""
    return {
        "last_run": state.last_run(),
        "decisions": state.decisions(),
        "waiting": state.waiting_enrollments(),
        "fired": state.fired().sort("playbook", "customer_id").to_dicts(),
        "sends": state.sends().sort("customer_id", "at").to_dicts(),
        "tags": state.set_tags().sort("customer_id", "tag").to_dicts(),
        "facts": state.set_facts().sort("customer_id", "fact").to_dicts(),
    }


@pytest.fixture
def recorded(tmp_path):
    """A store the current code recorded a moment in: a win-back sequence, sent and waiting."""
    world = World(tmp_path / "now")
    world.playbook(SEQUENCE)
    world.template("hello", "Hi {{ first_name }}!")
    world.customers += [customer("c001"), customer("c002", preferred="email")]
    world.event("c001", "goodbye", "2026-11-23T10:00:00Z")
    world.event("c002", "goodbye", "2026-11-23T11:00:00Z")
    plan = world.run()
    assert len(plan.sends) == 2
    yield world
    world.state.close()


def test_a_store_of_version_1_is_migrated_and_reads_the_same(recorded, tmp_path):
    old = tmp_path / "v1" / "state.sqlite"
    old.parent.mkdir()
    as_version_1(recorded.root / "state.sqlite", old)
    with sqlite3.connect(old) as db:  # a tag the earliest stores kept in their table `tags`
        db.execute("INSERT INTO tags VALUES ('c002', 'vip')")
    migrated = StateStore(old)
    try:
        assert migrated.schema_version() == SCHEMA_VERSION == 2
        expected = everything(recorded.state)
        expected["tags"] = [{"customer_id": "c002", "tag": "vip", "present": 1}]
        assert everything(migrated) == expected
        assert len(expected["decisions"]) == 2 and len(expected["waiting"]) == 2
        # the next moment decides the same on the migrated store as on the original
        week = NOW + dt.timedelta(days=8)
        engine, base = recorded.engine()
        assert [d.reason for d in engine.plan(base, week, migrated).decisions] == [
            d.reason for d in engine.plan(base, week, recorded.state).decisions
        ]
    finally:
        migrated.close()
    with sqlite3.connect(old) as db:
        assert db.execute("SELECT value FROM meta").fetchall() == [("2",)]


def test_a_simulation_migrates_its_copy_never_the_store(recorded, tmp_path):
    old = tmp_path / "v1" / "state.sqlite"
    old.parent.mkdir()
    as_version_1(recorded.root / "state.sqlite", old)
    copy = StateStore.copy_of(old, tmp_path / "copy")
    try:
        assert copy.schema_version() == SCHEMA_VERSION
        assert copy.decisions() == recorded.state.decisions()
    finally:
        copy.close()
    with sqlite3.connect(old) as db:
        assert "meta" not in tables_of(db)  # still version 1, as the Courtship that wrote it


def test_opening_a_current_store_writes_nothing(recorded):
    """A store at the current version opens while another connection writes to it (a run, as
    `courtship serve` or `history` opens it): opening takes no write lock."""
    path = recorded.root / "state.sqlite"
    recorded.state.db.execute("BEGIN IMMEDIATE")
    try:
        again = StateStore(path)
        assert again.schema_version() == SCHEMA_VERSION
        assert again.decisions() == recorded.state.decisions()
        again.close()
    finally:
        recorded.state.db.rollback()


def test_a_migration_that_fails_changes_nothing(tmp_path):
    """A store of version 1 whose migration cannot run (a table of the wrong shape): the error
    says so, and the store is left at version 1, as it was."""
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_TABLES)
        db.execute("DROP TABLE tags")
        db.execute("CREATE TABLE tags (customer_id TEXT)")  # no column tag
    with pytest.raises(Exception, match="no such column: tag"):
        StateStore(path)
    with sqlite3.connect(path) as db:
        assert "meta" not in tables_of(db)


def test_a_store_of_a_newer_version_is_refused_never_misread(recorded):
    path = recorded.root / "state.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(StateVersionError) as refused:
        StateStore(path)
    message = str(refused.value)
    assert "schema version 3, newer than this Courtship reads (2)" in message
    assert "never an older one" in message
    with sqlite3.connect(path) as db:  # untouched
        assert db.execute("SELECT value FROM meta").fetchall() == [("3",)]


def test_a_version_that_is_no_version_is_refused(recorded):
    path = recorded.root / "state.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    with pytest.raises(StateVersionError, match="records no schema version Courtship knows"):
        StateStore(path)


def test_the_commands_refuse_a_newer_store_with_the_reason(tmp_path):
    root = tmp_path
    (root / "playbooks").mkdir()
    (root / "playbooks" / "hello.yaml").write_text(
        "id: hello\ntitle: Hello\nstage: new\ncategory: transactional\n"
        "trigger: {event: signup}\nrespond:\n  - tag: greeted\n"
    )
    (root / "customers.csv").write_text(f"{HEADER}\n{customer('c001')}\n")
    (root / "events.jsonl").write_text(
        '{"customer_id": "c001", "type": "signup", "at": "2026-11-23T12:00:00Z"}\n'
    )
    (root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state.sqlite\n"
    )
    first = runner.invoke(app, ["run", "--at", "2026-11-23T15:00:00Z", "-p", str(root), "-q"])
    assert first.exit_code == 0, first.output
    with sqlite3.connect(root / "state.sqlite") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(9),))
    for command in (["run", "--at", "2026-11-23T16:00:00Z"], ["history", "c001"]):
        result = runner.invoke(app, [*command, "-p", str(root)])
        assert result.exit_code == 1, result.output
        assert "schema version 9, newer than this Courtship reads (2)" in result.output
        assert "Traceback" not in result.output
