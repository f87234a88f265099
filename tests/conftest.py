"""What the tests share: a small project in a temp folder (``World``) with playbooks,
templates, customers, events and a real SQLite state file, and the moment they run at; and a
fresh schema of the real PostgreSQL server (``postgres_url``) for a store there. ``CliRunner``
builds the click command of the ``courtship`` app once, as the console script does."""

import datetime as dt
import os
import textwrap
import uuid
from pathlib import Path

import pytest
import typer.testing

from courtship.engine import Engine
from courtship.intake import compact
from courtship.project import Project
from courtship.sources import CustomerBase, empty_events, read_customers_csv, read_events_jsonl
from courtship.state import open_store
from courtship.validate import validate_paths

HEADER = (
    "customer_id,first_name,last_name,email,phone,instagram_id,timezone,language,city,persona,"
    "birthday,signup_date,stage,tags,preferred_channel,cadence_days,tone,consent_email,"
    "consent_sms,consent_instagram"
)
NOW = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)

#: The PostgreSQL server the tests use (trust authentication on 127.0.0.1, database ``test``).
POSTGRES = os.environ.get("COURTSHIP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _commands_of(app: typer.Typer) -> tuple[object, ...]:
    """What a Typer app's click command is built from: its callback, commands and groups."""
    groups = tuple(
        (group, _commands_of(group.typer_instance) if group.typer_instance else ())
        for group in app.registered_groups
    )
    return (app.registered_callback, tuple(app.registered_commands), groups)


_build_command = typer.testing._get_command
_built: dict[int, tuple[typer.Typer, tuple[object, ...], object]] = {}


def _command_built_once(app: typer.Typer) -> object:
    """The click command of ``app``, built once while its commands stay the same, as the
    console script builds it once a process. ``CliRunner.invoke`` built it again for every
    command a test runs (15 to 20 ms each: the annotations of every command read again)."""
    commands = _commands_of(app)
    kept = _built.get(id(app))
    if kept is None or kept[0] is not app or kept[1] != commands:
        kept = (app, commands, _build_command(app))
        _built[id(app)] = kept
    return kept[2]


typer.testing._get_command = _command_built_once


def postgres_schema() -> tuple[str, object]:
    """A new schema on the test server, and the connection that drops it (``drop_schema``);
    skips the test, saying why, when no server answers."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[test]'): no PostgreSQL tests")
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        pytest.skip(
            f"no PostgreSQL answers at {POSTGRES} ({' '.join(str(error).split())}); start one, "
            "or point COURTSHIP_TEST_POSTGRES at one"
        )
    schema = f"courtship_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES else "?"
    return f"{POSTGRES}{separator}options=-csearch_path%3D{schema}", (admin, schema)


def drop_schema(handle: object) -> None:
    admin, schema = handle  # type: ignore[misc]
    admin.execute(f"DROP SCHEMA {schema} CASCADE")
    admin.close()


@pytest.fixture
def postgres_url():
    """The URL of a store in a fresh schema of the test PostgreSQL server, dropped afterwards."""
    url, handle = postgres_schema()
    yield url
    drop_schema(handle)


def customer(
    cid,
    first="Maya",
    tz="Europe/London",
    birthday="1990-05-02",
    preferred="sms",
    cadence=14,
    tone="buddy",
    email=True,
    sms=True,
    insta=False,
    stage="active",
):
    return (
        f"{cid},{first},Doe,{cid}@example.org,+447700900{cid[-3:]},ig{cid},{tz},en,Leeds,"
        f"coffee-regular,{birthday},2023-01-10,{stage},,{preferred},{cadence},{tone},"
        f"{str(email).lower()},{str(sms).lower()},{str(insta).lower()}"
    )


class World:
    """A project in a temp folder: playbooks, templates, customers, events, a state file.
    ``plan`` decides a moment (recording nothing), ``run`` decides and records it."""

    def __init__(self, root: Path, store: str | None = None) -> None:
        self.root = root
        (root / "playbooks" / "templates").mkdir(parents=True)
        self.customers: list[str] = []
        self.events: list[str] = []
        #: where the state is: a PostgreSQL URL, else the SQLite file state.sqlite
        self.store = store or root / "state.sqlite"
        self.state = open_store(self.store)
        self.template(
            "hello", "Hi {{ first_name }}!{% if offer.code %} {{ offer.code }}{% endif %}"
        )

    def playbook(self, text: str) -> None:
        data = textwrap.dedent(text)
        pb_id = data.split("id:", 1)[1].split()[0]
        (self.root / "playbooks" / f"{pb_id}.yaml").write_text(data)

    def template(self, name: str, body: str) -> None:
        (self.root / "playbooks" / "templates" / f"{name}.md").write_text(body + "\n")

    def event(self, cid: str, kind: str, at: str, **fields: object) -> None:
        extra = "".join(f', "{k}": {v!r}'.replace("'", '"') for k, v in fields.items())
        self.events.append(f'{{"customer_id": "{cid}", "type": "{kind}", "at": "{at}"{extra}}}')

    def engine(self, **project: object) -> tuple[Engine, CustomerBase]:
        report = validate_paths([self.root / "playbooks"])
        assert report.errors == [], [str(f) for f in report.errors]
        (self.root / "customers.csv").write_text("\n".join([HEADER, *self.customers]) + "\n")
        (self.root / "events.jsonl").write_text("\n".join(self.events) + "\n")
        events = read_events_jsonl(self.root / "events.jsonl") if self.events else empty_events()
        # held as a run holds it (``courtship.intake.compact``)
        base = compact(CustomerBase(read_customers_csv(self.root / "customers.csv"), events))
        settings = {"root": self.root, "playbooks": self.root / "playbooks"} | project
        return Engine(report.playbooks, Project(**settings)), base

    def plan(self, at=NOW, **project):
        engine, base = self.engine(**project)
        return engine.plan(base, at, self.state)

    def reopen(self) -> None:
        """A restart: the store closed and opened again."""
        self.state.close()
        self.state = open_store(self.store)

    def lose_streaks(self) -> None:
        """The ``becomes`` streaks gone (the files beside a SQLite store, the table in
        PostgreSQL), as after a crash between recording a moment and saving them."""
        if isinstance(self.store, str):
            self.state.db.execute("DELETE FROM streaks")
            return
        for file in (self.root / "streaks").iterdir():
            file.unlink()

    def run(self, at=NOW, **project):
        engine, base = self.engine(**project)
        plan = engine.plan(base, at, self.state)
        engine.record(plan, self.state)
        return plan


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The engine's tests (tests/engine/) run on both stores: a SQLite file and PostgreSQL."""
    if "world" in metafunc.fixturenames and metafunc.definition.path.parent.name == "engine":
        metafunc.parametrize("world", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def world(request, tmp_path):
    """A World on a SQLite file, or (``postgres``) on a fresh schema of the test server."""
    handle = None
    store = None
    if getattr(request, "param", "sqlite") == "postgres":
        store, handle = postgres_schema()
    w = World(tmp_path, store)
    yield w
    w.state.close()
    if handle is not None:
        drop_schema(handle)


#: A win-back sequence: a message, a week's wait unless they order, then a grand gesture.
SEQUENCE = """
    id: win-back
    title: Win back
    stage: churned
    category: marketing
    trigger: {event: goodbye}
    respond:
      - send: {channel: preferred, template: hello}
      - wait: 7d
        unless: {event: order}
      - send: {channel: preferred, template: hello, offer: {percent_off: 30}}
"""
