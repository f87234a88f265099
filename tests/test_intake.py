"""`sources:` in the project file: customers and events read through source plugins, events read
incrementally from a SQL database with a cache beside the state store."""

import shutil
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from courtship.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
WELCOME = """\
id: welcome
title: Welcome
stage: new
category: transactional
trigger: {event: signup}
respond:
  - send: {channel: email, template: hello}
"""


def make_project(root: Path) -> sqlite3.Connection:
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "welcome.yaml").write_text(WELCOME)
    (root / "playbooks" / "templates" / "hello.md").write_text("Hi {{ first_name }}!\n")
    lines = (ROOT / "examples" / "customers.csv").read_text().splitlines()[:4]
    (root / "customers.csv").write_text("\n".join(lines) + "\n")
    db = sqlite3.connect(root / "shop.db")
    db.execute("CREATE TABLE events (client TEXT, kind TEXT, at TEXT)")
    db.commit()
    (root / "courtship.yaml").write_text(
        """\
playbooks: playbooks
state: state/state.sqlite
sources:
  customers: {type: csv, path: customers.csv}
  events:
    type: sql
    url: sqlite:///shop.db
    table: events
    at_column: at
    columns: {customer_id: client, type: kind}
    incremental: true
"""
    )
    return db


def run(root: Path, at: str) -> dict:
    import json

    result = runner.invoke(app, ["run", "--at", at, "--project", str(root), "-q", "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_events_are_read_incrementally_and_cached(tmp_path):
    db = make_project(tmp_path)
    db.execute("INSERT INTO events VALUES ('c-0001', 'signup', '2026-11-23T12:00:00Z')")
    db.commit()
    assert run(tmp_path, "2026-11-23T15:00:00Z")["delivered"] == {"email": 1}
    cache = tmp_path / "state" / "events.parquet"
    assert cache.exists()
    db.execute("INSERT INTO events VALUES ('c-0001', 'signup', '2026-11-23T16:00:00Z')")
    db.commit()
    assert run(tmp_path, "2026-11-23T17:00:00Z")["delivered"] == {"email": 1}
    import polars as pl

    assert sorted(pl.read_parquet(cache)["customer_id"].to_list()) == ["c-0001", "c-0001"]
    # the source is asked only for what is new: a row it would re-read is not there twice
    assert run(tmp_path, "2026-11-23T18:00:00Z")["delivered"] == {}


def test_an_unknown_source_type_is_named(tmp_path):
    make_project(tmp_path)
    text = (tmp_path / "courtship.yaml").read_text().replace("type: sql", "type: sqll")
    (tmp_path / "courtship.yaml").write_text(text)
    result = runner.invoke(app, ["plan", "--at", "2026-11-23T15:00:00Z", "-p", str(tmp_path)])
    assert result.exit_code == 1
    assert "sources.events.type" in result.stderr and "no source plugin 'sqll'" in result.stderr


def test_a_missing_column_is_named_with_its_table(tmp_path):
    make_project(tmp_path)
    text = (tmp_path / "courtship.yaml").read_text().replace("type: kind", "type: knd")
    (tmp_path / "courtship.yaml").write_text(text)
    result = runner.invoke(app, ["plan", "--at", "2026-11-23T15:00:00Z", "-p", str(tmp_path)])
    assert result.exit_code == 1
    assert "events" in result.stderr and "knd" in result.stderr
    shutil.rmtree(tmp_path / "playbooks")


def test_the_events_of_a_run_hold_their_few_texts_as_categories_with_the_same_values(tmp_path):
    """The events a run reads (from files, and from a kept copy of them) hold type, channel and
    friend_id as categories, a quarter of the memory of text, with every value as written."""
    import polars as pl

    from courtship.intake import read_base
    from courtship.plugins import installed
    from courtship.project import load_project
    from courtship.sources import read_events_jsonl

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    shutil.copy(ROOT / "courtship.yaml", tmp_path / "courtship.yaml")
    as_written = read_events_jsonl(tmp_path / "examples" / "events.jsonl")
    for _ in ("parsed now", "read from the kept copy"):
        events = read_base(load_project(tmp_path), installed(), dry_run=False).events
        for name in ("type", "channel", "friend_id"):
            assert events.schema[name] == pl.Categorical(), name
        assert events.cast(as_written.schema).equals(as_written)
    assert (tmp_path / ".courtship" / "index" / "read_events.parquet").exists()
