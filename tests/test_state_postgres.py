"""The state store on the real PostgreSQL server (``COURTSHIP_TEST_POSTGRES``, default
postgresql://postgres@127.0.0.1:5432/test; each test in a schema of its own, dropped after it;
skipped, saying why, when no server answers): the project settings ``state:`` and
``state_env``, the commands on it, its secrets, its missing driver, and the bundled plan, which
comes out the same from SQLite and from PostgreSQL."""

import datetime as dt
import json
import os
import sys
from pathlib import Path

import pytest
from conftest import HEADER, customer, drop_schema, postgres_schema
from typer.testing import CliRunner

from courtship.cli import app
from courtship.redaction import forget_all
from courtship.state import OutboxBatch, StateBusy, StateStore, open_store
from courtship.state_postgres import PostgresStore, shown

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-23T15:00:00Z"
runner = CliRunner()


def small_project(root: Path, state: str) -> Path:
    """A welcome on signup for three customers, on the state ``state`` (a line of YAML)."""
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "welcome.yaml").write_text(
        "id: welcome\ntitle: Welcome\nstage: new\ncategory: transactional\n"
        "trigger: {event: signup}\nrespond:\n  - send: {channel: email, template: hello}\n"
    )
    (root / "playbooks" / "templates" / "hello.md").write_text(
        "---\nsubject: Welcome\n---\nHi {{ first_name }}!\n"
    )
    ids = ["c001", "c002", "c003"]
    (root / "customers.csv").write_text(
        "\n".join([HEADER, *(customer(c, preferred="email") for c in ids)]) + "\n"
    )
    (root / "events.jsonl").write_text(
        "".join(
            json.dumps({"customer_id": c, "type": "signup", "at": "2026-11-23T12:00:00Z"}) + "\n"
            for c in ids
        )
    )
    (root / "courtship.yaml").write_text(
        f"playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n{state}\n"
        "quiet_hours: {start: '23:59', end: '00:00'}\n"
    )
    return root


def cli(root: Path, *args: str):
    return runner.invoke(app, [*args, "--project", str(root)])


def outbox(root: Path) -> list[str]:
    return sorted(p.name for p in (root / ".courtship" / "outbox").rglob("*.json"))


@pytest.fixture
def on_postgres(tmp_path, postgres_url, monkeypatch):
    monkeypatch.setenv("COURTSHIP_STATE_URL", postgres_url)
    yield small_project(tmp_path, "state_env: COURTSHIP_STATE_URL")
    forget_all()


def test_run_on_postgres_records_delivers_once_and_a_rerun_sends_nothing(on_postgres):
    first = cli(on_postgres, "run", "--at", AT, "-q", "-f", "json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["delivered"] == {"email": 3}
    sent = outbox(on_postgres)
    assert len(sent) == 3
    again = cli(on_postgres, "run", "--at", AT, "-q", "-f", "json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["delivered"] == {}
    assert outbox(on_postgres) == sent
    history = cli(on_postgres, "history", "c002")
    assert history.exit_code == 0, history.output
    assert "welcome" in history.stdout and "delivered" in history.stdout
    plan = cli(on_postgres, "plan", "--at", AT)
    assert plan.exit_code == 0, plan.output
    assert "already" in plan.output  # the moment is recorded: where its decisions are
    earlier = cli(on_postgres, "run", "--at", "2026-11-23T14:00:00Z", "-q")
    assert earlier.exit_code == 2 and "runs go forward in time" in earlier.output


def test_simulate_reads_a_copy_of_the_postgres_store_and_leaves_it_alone(on_postgres):
    assert cli(on_postgres, "run", "--at", AT, "-q").exit_code == 0
    url = os.environ["COURTSHIP_STATE_URL"]
    store = PostgresStore(url)
    before = (store.decisions(), store.count("sends"), store.last_run())
    store.close()
    result = cli(
        on_postgres,
        *("simulate", "--from", "2026-11-24T09:00:00Z", "--to", "2026-11-25T09:00:00Z"),
        *("--report", str(on_postgres / "simulation.html")),
    )
    assert result.exit_code == 0, result.output
    store = PostgresStore(url)
    try:
        assert (store.decisions(), store.count("sends"), store.last_run()) == before
    finally:
        store.close()
    # the copy had the store's run: simulating from before it is refused, as a run would
    early = cli(
        on_postgres,
        *("simulate", "--from", "2026-11-22T09:00:00Z", "--to", AT),
        *("--report", str(on_postgres / "early.html")),
    )
    assert early.exit_code == 2 and "already run" in early.output


def test_a_dry_run_on_an_empty_database_creates_nothing(on_postgres, postgres_url):
    result = cli(on_postgres, "plan", "--at", AT, "-f", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["sends"]) == 3
    import psycopg

    with psycopg.connect(postgres_url) as db:
        tables = db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchone()
    assert tables == (0,)


def test_a_password_in_state_env_never_shows(tmp_path, postgres_url, monkeypatch):
    """Trust authentication takes any password: one in the URL reaches the server, and neither
    the output of a run nor the error of a server that does not answer ever shows it."""
    secret = "s3cret-Pa55word"
    with_password = postgres_url.replace("postgres@", f"postgres:{secret}@")
    root = small_project(tmp_path, "state_env: COURTSHIP_STATE_URL")
    monkeypatch.setenv("COURTSHIP_STATE_URL", with_password)
    try:
        ran = cli(root, "run", "--at", AT, "-q", "-f", "json")
        assert ran.exit_code == 0, ran.output
        assert secret not in ran.output
        down = with_password.replace("127.0.0.1:5432", "127.0.0.1:9")
        monkeypatch.setenv("COURTSHIP_STATE_URL", down)
        failed = cli(root, "run", "--at", "2026-11-23T16:00:00Z", "-q")
        assert failed.exit_code == 1
        assert "cannot connect to the state store" in failed.output
        assert "postgresql://postgres@127.0.0.1:9/test" in failed.output
        assert secret not in failed.output and "Traceback" not in failed.output
    finally:
        forget_all()


def test_shown_takes_the_password_out():
    assert shown("postgresql://shop:pw@db:5433/shop?sslmode=require") == (
        "postgresql://shop@db:5433/shop"
    )
    assert shown("postgresql://shop@db/shop") == "postgresql://shop@db/shop"


def test_state_env_that_is_not_set_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("COURTSHIP_STATE_URL", raising=False)
    root = small_project(tmp_path, "state_env: COURTSHIP_STATE_URL")
    result = cli(root, "run", "--at", AT, "-q")
    assert result.exit_code == 2
    assert "courtship.yaml:4:12: state_env: the variable COURTSHIP_STATE_URL is not set" in (
        result.output
    )


def test_state_env_that_holds_no_postgres_url_is_refused_without_quoting_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURTSHIP_STATE_URL", "mysql://root:hunter2-secret@db/shop")
    root = small_project(tmp_path, "state_env: COURTSHIP_STATE_URL")
    try:
        result = cli(root, "run", "--at", AT, "-q")
        assert result.exit_code == 2
        assert "COURTSHIP_STATE_URL holds no PostgreSQL URL" in result.output
        assert "hunter2" not in result.output
    finally:
        forget_all()


def test_a_url_with_a_password_in_the_project_file_is_refused_pointing_to_state_env(tmp_path):
    root = small_project(tmp_path, "state: postgresql://shop:hunter2-secret@db/shop")
    result = cli(root, "run", "--at", AT, "-q")
    assert result.exit_code == 1
    assert "courtship.yaml:4:8: error schema[state] 'state' is a URL with credentials" in (
        result.output
    )
    assert "state_env: COURTSHIP_STATE_URL" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "state: x.sqlite\nstate_env: COURTSHIP_STATE_URL",
            "give state or state_env, not both",
        ),
        ("state: mysql://db/shop", "'mysql://' is no state store Courtship knows"),
        ("state_env: 'not a name'", "it must match ^[A-Za-z_][A-Za-z0-9_]*$"),
    ],
)
def test_state_settings_that_cannot_be_are_errors_at_their_line(tmp_path, lines, message):
    root = small_project(tmp_path, lines)
    result = cli(root, "validate")
    assert result.exit_code == 1, result.output
    assert message in result.output and "courtship.yaml:" in result.output


def test_an_inline_url_without_credentials_is_a_postgres_store(tmp_path, postgres_url):
    root = small_project(tmp_path, f"state: '{postgres_url}'")
    result = cli(root, "run", "--at", AT, "-q", "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["delivered"] == {"email": 3}
    store = PostgresStore(postgres_url)
    try:
        assert store.count("sends") == 3
    finally:
        store.close()


def test_without_the_driver_the_error_names_the_extra(on_postgres, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails
    result = cli(on_postgres, "run", "--at", AT, "-q")
    assert result.exit_code == 1
    assert "pip install 'courtship[postgres]'" in result.output
    assert "Traceback" not in result.output


def test_a_server_that_is_down_is_an_error_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("COURTSHIP_STATE_URL", "postgresql://postgres@127.0.0.1:9/test")
    root = small_project(tmp_path, "state_env: COURTSHIP_STATE_URL")
    try:
        for command in (["run", "--at", AT, "-q"], ["plan", "--at", AT], ["history", "c001"]):
            result = cli(root, *command)
            assert result.exit_code == 1, result.output
            assert "cannot connect to the state store" in result.output
            assert "Traceback" not in result.output
    finally:
        forget_all()


def test_a_store_of_a_newer_version_is_refused_on_postgres(postgres_url):
    store = PostgresStore(postgres_url)
    store.db.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(Exception, match="schema version 7, newer than this Courtship reads"):
        PostgresStore(postgres_url)


def test_every_table_reads_back_as_from_sqlite(tmp_path, postgres_url):
    """What the engine and the commands read, written alike to both stores."""
    now = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)
    stores = [StateStore(tmp_path / "state.sqlite"), open_store(postgres_url)]
    seen = []
    for store in stores:
        stamp = now.isoformat()
        store.record(
            now,
            {
                "fired": [("p", "c1", stamp)],
                "enrollments": [("p", "c1", stamp, 1, stamp, "waiting", '{"at": "send"}')],
                "facts": [("c1", "vip", "true", "bool", stamp)],
                "tags": [("c1", "gold", 1), ("c1", "gold", 0)],
            },
            [
                (
                    *("k1", "c1", "p", "email", "marketing", "direct", "d1", stamp, stamp),
                    *("pending", "Hi", "Hello 100% ", '["email"]', '{"email": "a@b.c"}', 1.25),
                    *(None, None, 0, None, None),
                )
            ],
            [
                (
                    *(stamp, "c1", "c1", "p", "1", 0, "s0", "marketing", "t", "self", "email"),
                    *("email", "direct", "send", None, "ok", stamp, "k1", "{}"),
                )
            ],
            [("p", "c1", "s0", "a", stamp)],
        )
        store.record_consent_change(now, "sms", "withdrawn", "all", "twilio", customer_id="c1")
        store.record_callback(now, "twilio", "delivered", send_key="k1", provider_id="SM1")
        store.record_test_send(now, seed="sam", playbook="p", status="sent")
        batch = OutboxBatch(sending=[("k1", 1)], delivered=[("k1", "SM1")])
        batch.attempts.append(("k1", 1, now, "email", "delivered", ""))
        store.commit_outbox(batch)
        seen.append(
            {
                "decisions": store.decisions(),
                "fired": store.fired().to_dicts(),
                "waiting": store.waiting_enrollments(),
                "held": store.waiting_sends(),
                "facts": store.set_facts().to_dicts(),
                "tags": store.set_tags().to_dicts(),
                "sends": store.sends().to_dicts(),
                "dedup": store.dedup_keys(),
                "consent": store.consent_changes(),
                "callbacks": store.callbacks(),
                "provider": store.send_of_provider_id("SM1"),
                "tests": store.test_sends(),
                "assignments": store.assignments().to_dicts(),
                "has_run": store.has_run(now),
                "previous": store.previous_run(now + dt.timedelta(hours=1)),
            }
        )
        store.close()
    assert seen[0] == seen[1]
    assert seen[0]["tags"] == [{"customer_id": "c1", "tag": "gold", "present": 0}]
    assert seen[0]["decisions"][0]["delivery"] == "delivered"
    assert seen[0]["held"] == 1


def _bundled_project(folder: Path, state: str) -> Path:
    """The bundled project in ``folder``, its state store at ``state`` (a project file line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "courtship.yaml").write_text(
        (ROOT / "courtship.yaml")
        .read_text()
        .replace("playbooks: playbooks", f"playbooks: {ROOT / 'playbooks'}")
        .replace("examples/", f"{ROOT / 'examples'}/")
        .replace("state: .courtship/state.sqlite", state)
    )
    return folder


def _plan_and_record(root: Path, on_postgres: bool, *how: str) -> tuple[dict, list[dict]]:
    """A run the day before, then the plan at the README's moment and the decisions a run of it
    records (``how``: the executor's options)."""
    day_before = cli(root, "run", "--at", "2026-11-22T15:00:00Z", "-q", "-f", "json", *how)
    assert day_before.exit_code in (0, 1), day_before.output
    plan = cli(root, "plan", "--at", AT, "--format", "json", *how)
    assert plan.exit_code == 0, plan.output
    ran = cli(root, "run", "--at", AT, "-q", "-f", "json", *how)
    assert ran.exit_code in (0, 1), ran.output
    store = open_store(_url_of(root) if on_postgres else root / "state.sqlite", dry_run=True)
    try:
        recorded = [{k: v for k, v in d.items() if k != "provider_id"} for d in store.decisions()]
    finally:
        store.close()
    return json.loads(plan.stdout), recorded


@pytest.fixture(scope="module")
def on_sqlite(tmp_path_factory) -> tuple[dict, list[dict]]:
    """``_plan_and_record`` of the bundled project on a SQLite file, in one process."""
    root = _bundled_project(tmp_path_factory.mktemp("sqlite"), "state: state.sqlite")
    plan, recorded = _plan_and_record(root, False)
    assert plan["sends"], "the bundled plan sends something at the README's moment"
    assert len(recorded) > len(plan["sends"])
    return plan, recorded


def test_the_bundled_plan_is_the_same_from_sqlite_and_from_postgres(tmp_path, on_sqlite):
    """A run the day before on each store, then the plan at the README's moment, and the
    decisions a run of it records: identical, to the order."""
    url, handle = postgres_schema()
    try:
        root = _bundled_project(tmp_path / "postgres", f"state: '{url}'")
        on_postgres = _plan_and_record(root, True)
    finally:
        drop_schema(handle)
    assert on_postgres[0] == on_sqlite[0]
    assert on_postgres[1] == on_sqlite[1]


def test_the_bundled_plan_is_the_same_from_sqlite_in_one_process_and_postgres_through_dask(
    tmp_path, on_sqlite
):
    """The issue's end: SQLite in one process, PostgreSQL with the moment decided in parts on a
    Dask cluster (a LocalCluster of worker processes, which the commands reach with
    --scheduler): the same plan and the same recorded decisions."""
    pytest.importorskip("distributed", reason="Dask is the `dask` extra")
    from courtship.executors.dask import DaskExecutor

    url, handle = postgres_schema()
    try:
        root = _bundled_project(tmp_path / "postgres", f"state: '{url}'")
        with DaskExecutor(n_workers=2, processes=True, memory_limit="1GiB") as cluster:
            address = cluster.client.scheduler.address
            on_dask = _plan_and_record(root, True, "--executor", "dask", "--scheduler", address)
    finally:
        drop_schema(handle)
    assert on_dask[0] == on_sqlite[0]
    assert on_dask[1] == on_sqlite[1]


def _url_of(root: Path) -> str:
    line = next(x for x in (root / "courtship.yaml").read_text().splitlines() if "state:" in x)
    return line.split("state:", 1)[1].strip().strip("'")


def outbox_rows(count: int, now: dt.datetime) -> list[tuple]:
    stamp = now.isoformat()
    return [
        (
            *(f"k{i:03d}", f"c{i:03d}", "p", "email", "transactional", "direct", None, stamp),
            *(stamp, "pending", "Hi", "Hello", '["email"]', "{}", None, None, None, 0, None, None),
        )
        for i in range(count)
    ]


def test_workers_take_disjoint_batches_and_take_over_a_dead_workers(postgres_url):
    """Two workers' batches never overlap; a worker whose connection dies leaves its batch to
    the others, who record what it had noted as accepted delivered instead of taking it."""
    now = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    try:
        first.record(now, {}, outbox_rows(10, now))
        mine = next(first.due_batches(now, ("pending", "sending"), 4))
        theirs = next(second.due_batches(now, ("pending", "sending"), 4))
        assert len(mine) == len(theirs) == 4
        assert {r["key"] for r in mine}.isdisjoint(r["key"] for r in theirs)
        first.commit_outbox(OutboxBatch(sending=[(r["key"], 1) for r in mine]))
        first.note_accepted(mine[0]["key"], "<id0@x>")
        first.note_accepted(mine[1]["key"], "<id1@x>")
        first.db.conn.close()  # dies: no release, its advisory lock goes with the connection
        first._notes.conn.close()
        batches = second.due_batches(now, ("pending", "sending"), 4)
        rest = {row["key"] for batch in batches for row in batch}
        noted = {mine[0]["key"], mine[1]["key"]}
        every = {f"k{i:03d}" for i in range(10)}
        assert rest == every - {row["key"] for row in theirs} - noted  # not its own, nor noted
        statuses = dict(second.db.execute("SELECT key, status FROM sends").fetchall())
        assert statuses[mine[0]["key"]] == statuses[mine[1]["key"]] == "delivered"
        assert second.send_of_provider_id("<id1@x>")["key"] == mine[1]["key"]
        assert second.db.execute("SELECT count(*) FROM accepted").fetchone() == (0,)
    finally:
        second.close()


def test_one_worker_decides_a_moment_at_a_time(postgres_url):
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    try:
        with first.deciding(), pytest.raises(StateBusy) as busy, second.deciding(wait=0.1):
            pass
        assert "another worker has been deciding a moment on this state store" in str(busy.value)
        with second.deciding():  # free again once the first has recorded its moment
            pass
    finally:
        first.close()
        second.close()


def test_a_url_that_now_names_an_empty_schema_is_refused_not_a_first_run(on_postgres, monkeypatch):
    """The project ran on a store; its URL then names another, empty schema (a typo in
    search_path, a dropped schema): the run stops, sends nothing, and says what to do, as a
    SQLite store whose file is gone does. Removing the marker starts afresh on purpose."""
    assert cli(on_postgres, "run", "--at", AT, "-q").exit_code == 0
    marker = on_postgres / ".courtship" / "postgres-state.id"
    assert marker.exists()
    sent = outbox(on_postgres)
    url, handle = postgres_schema()
    monkeypatch.setenv("COURTSHIP_STATE_URL", url)
    try:
        result = cli(on_postgres, "run", "--at", "2026-11-23T16:00:00Z", "-q")
        assert result.exit_code == 1, result.output
        assert "the state store has no Courtship tables, but this project ran on the one" in (
            result.output
        )
        assert f"remove {marker}" in result.output.replace("\n", "")
        assert outbox(on_postgres) == sent
        marker.unlink()  # afresh, on purpose: the lookback window is decided again
        again = cli(on_postgres, "run", "--at", "2026-11-23T16:00:00Z", "-q", "-f", "json")
        assert again.exit_code == 0, again.output
        assert marker.exists()
    finally:
        drop_schema(handle)


def test_the_postgres_tables_have_every_column_of_the_sqlite_ones(tmp_path, postgres_url):
    """The two stores write their tables in their own SQL: a column added to one is added to
    the other (PostgreSQL has more: its workers' claims, its accepted notes, its streaks)."""
    lite = StateStore(tmp_path / "state.sqlite")
    post = open_store(postgres_url)
    try:
        tables = [
            name
            for (name,) in lite.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        ]
        assert "sends" in tables and "decisions" in tables
        for table in tables:
            mine = [row[1] for row in lite.db.execute(f"PRAGMA table_info({table})").fetchall()]
            theirs = {
                name
                for (name,) in post.db.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = ?",
                    (table,),
                ).fetchall()
            }
            assert set(mine) <= theirs, (table, set(mine) - theirs)
    finally:
        lite.close()
        post.close()
