"""``--executor dask``: the moment decided over the base in parts on a Dask cluster comes out as
from one process — the same plan JSON, the same recorded decisions, the same outbox — with
friends and persona peers in other parts, and from Parquet files each part reads itself."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from courtship.cli import app
from courtship.cli.common import load
from courtship.cli.plan import render_json
from courtship.engine import partitions
from courtship.engine.facts import FactHistory
from courtship.sources import CustomerBase
from courtship.state import StateStore

distributed = pytest.importorskip("distributed")

from courtship.executors.dask import DaskExecutor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-23T15:00:00Z"
NOW = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)
runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes: every part and what the parts share crosses a process boundary.
    The commands reach it with ``--scheduler`` (``on``): starting a cluster of worker
    processes for each command is what a command without one does, and one test does that."""
    with DaskExecutor(n_workers=2, processes=True, memory_limit="1GiB") as executor:
        yield executor


def on(cluster: DaskExecutor) -> list[str]:
    """The options that decide a command's moments in parts on ``cluster``."""
    return ["--executor", "dask", "--scheduler", cluster.client.scheduler.address]


@pytest.fixture(scope="module")
def one_process_plan(tmp_path_factory) -> str:
    """The bundled plan's JSON at ``AT``, decided in one process."""
    project = bundled(tmp_path_factory.mktemp("one"))
    one = runner.invoke(app, ["plan", "--at", AT, "-p", str(project), "-f", "json"])
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["sends"], "the bundled plan sends something"
    return one.stdout


def bundled(folder: Path, **files: str) -> Path:
    """The bundled project in ``folder`` (its own state store and outbox), its customers and
    events replaced by ``files`` when given."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        (ROOT / "courtship.yaml")
        .read_text()
        .replace("playbooks: playbooks", f"playbooks: {ROOT / 'playbooks'}")
        .replace("examples/", f"{ROOT / 'examples'}/")
    )
    for key, value in files.items():
        text = "\n".join(
            f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines()
        )
    (folder / "courtship.yaml").write_text(text + "\n")
    return folder


def test_the_bundled_plan_is_the_same_from_one_process_and_through_dask(tmp_path, one_process_plan):
    """Without --scheduler: a cluster of worker processes started for the command."""
    project = bundled(tmp_path / "p")
    dask = runner.invoke(
        app, ["plan", "--at", AT, "-p", str(project), "-f", "json", "--executor", "dask"]
    )
    assert dask.exit_code == 0, dask.output
    assert dask.stdout == one_process_plan
    assert "peak memory" in dask.stderr and "tcp://" in dask.stderr


def whole_plan(project: Path) -> tuple[str, list[object]]:
    """The plan of ``project`` at ``NOW`` decided in one process: its JSON, its notifications."""
    loaded = load(project, quiet=True)
    whole = loaded.engine.plan(loaded.base, NOW, StateStore(None))
    return render_json(whole), whole.notifications


@pytest.fixture(scope="module")
def bundled_whole() -> tuple[str, list[object]]:
    return whole_plan(ROOT)


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_any_number_of_parts_gives_the_same_plan(cluster, bundled_whole, parts):
    loaded = load(ROOT, quiet=True)
    plan = partitions.decide(
        loaded.engine, partitions.split(loaded.base, parts), NOW, StateStore(None), cluster
    )
    loaded.engine.render(plan)
    assert (render_json(plan), plan.notifications) == bundled_whole


def test_messages_heard_through_serve_are_the_same_events_in_parts(cluster, tmp_path):
    """Inbound SMS on record (``courtship serve``) join each part's own customers' events:
    the parts decide what one process decides with the same messages."""
    import datetime as dt

    import polars as pl

    people = pl.read_csv(ROOT / "examples" / "customers.csv", infer_schema=False)
    phones = people.drop_nulls("phone").get_column("phone").gather_every(11).to_list()

    def heard() -> StateStore:
        state = StateStore(None)
        for number, phone in enumerate(phones):
            state.record_callback(
                NOW - dt.timedelta(minutes=20 + number),
                "twilio",
                "inbound",
                channel="sms",
                address=phone,
                detail="are you open on sunday?",
            )
        return state

    loaded = load(ROOT, quiet=True)
    whole = loaded.engine.plan(loaded.base, NOW, heard())
    answered = {d.customer_id for d in whole.decisions if d.playbook == "answer-their-calls"}
    assert answered, "the messages reach the playbook that answers them"
    plan = partitions.decide(loaded.engine, partitions.split(loaded.base, 3), NOW, heard(), cluster)
    loaded.engine.render(plan)
    assert (render_json(plan), plan.notifications) == (render_json(whole), whole.notifications)


def _state_rows(project: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the state store (the outbox's file names made relative to the project)."""

    def plain(row: tuple[object, ...]) -> tuple[object, ...]:
        return tuple(v.replace(str(project), "") if isinstance(v, str) else v for v in row)

    with sqlite3.connect(project / ".courtship" / "state.sqlite") as db:
        return {
            table: sorted(plain(row) for row in db.execute(f"SELECT * FROM {table}"))
            for table in ("runs", "fired", "enrollments", "sends", "decisions", "facts", "tags")
        }


def _outbox(project: Path) -> dict[str, str]:
    folder = project / ".courtship" / "outbox"
    return {f.name: f.read_text() for f in sorted(folder.glob("*"))} if folder.exists() else {}


def test_runs_through_dask_record_and_deliver_what_one_process_does(tmp_path, cluster):
    """Three moments in a row (the second resumes sequences and reads the saved streaks):
    the same state store rows and the same outbox, message for message."""
    one, dask = bundled(tmp_path / "one"), bundled(tmp_path / "dask")
    for at in (AT, "2026-11-24T09:00:00Z", "2026-11-26T12:00:00Z"):
        first = runner.invoke(app, ["run", "--at", at, "-p", str(one), "-q", "-f", "json"])
        second = runner.invoke(
            app, ["run", "--at", at, "-p", str(dask), "-q", "-f", "json", *on(cluster)]
        )
        assert first.exit_code == 0, first.output
        assert second.exit_code == 0, second.output
        summary = json.loads(second.stdout)
        on_dask = summary.pop("dask")
        assert on_dask["customers"] == 600 and len(on_dask["peak_memory_mib"]) == 3
        assert summary == json.loads(first.stdout)
    assert _state_rows(dask) == _state_rows(one)
    assert _outbox(one) and _outbox(dask) == _outbox(one)


def test_friends_and_persona_peers_in_other_parts_get_the_whole_base_facts(cluster):
    """Each part's facts equal the whole base's for its customers: the referral facts of a
    customer whose friend is in another part, the persona medians over every part, the
    learned facts fitted on the whole base."""
    loaded = load(ROOT, quiet=True)
    engine, base = loaded.engine, loaded.base
    engine.learns = True  # p_alive and expected_orders_90d too
    parts = partitions.split(base, 3)
    of_part = {
        cid: p.number for p in parts for cid in p.customers.get_column("customer_id").to_list()
    }
    referrals = base.events.filter(
        pl.col("type") == "referral", pl.col("friend_id").is_in(list(of_part))
    )
    across = [
        (r, f)
        for r, f in referrals.select("customer_id", "friend_id").iter_rows()
        if of_part[r] != of_part[f]
    ]
    assert across, "a referral whose friend is in another part"
    personas = base.customers.group_by("persona").agg(pl.col("customer_id"))
    assert any(len({of_part[c] for c in ids}) > 1 for _, ids in personas.iter_rows())

    view = partitions.StateView(StateStore(None), engine)
    window = (NOW - dt.timedelta(days=1), NOW)
    surveys = cluster.map(partitions.survey, [(p,) for p in parts], window)
    people = pl.concat(
        [s.referrals.get_column(c) for s in surveys for c in ("referrer_id", "friend_id")]
    ).unique()
    empty = pl.Series([], dtype=pl.String())
    counts = cluster.map(
        partitions.count, [(p,) for p in parts], (engine, NOW, view, people, empty)
    )
    shared = partitions.shared_facts(engine, parts, surveys, counts)

    def facts(part_base, shared=None):
        history = FactHistory(
            part_base, learning=engine.project.learning, default_timezone="UTC", shared=shared
        )
        return history.at(NOW)

    whole = facts(base)
    assert whole.get_column("p_alive").drop_nulls().len() > 0
    assert whole.get_column("friends_count").sum() > 0
    in_parts = pl.concat([facts(p.load(), shared[p.number]) for p in parts])
    assert in_parts.equals(whole)
    alone = pl.concat([facts(p.load()) for p in parts])
    assert not alone.equals(whole), "alone, a part would not know its customers' friends"


def test_the_parts_read_the_customers_and_events_from_parquet_themselves(
    tmp_path, cluster, one_process_plan
):
    loaded = load(ROOT, quiet=True)
    customers, events = tmp_path / "customers", tmp_path / "events"
    customers.mkdir()
    events.mkdir()
    for number, offset in enumerate(range(0, loaded.base.customers.height, 250)):
        loaded.base.customers.slice(offset, 250).write_parquet(customers / f"part-{number}.parquet")
    half = loaded.base.events.height // 2
    loaded.base.events.slice(0, half).write_parquet(events / "a.parquet")
    loaded.base.events.slice(half).write_parquet(events / "b.parquet")
    project = bundled(tmp_path / "p", customers=str(customers), events=str(events / "*.parquet"))
    assert load(project, quiet=True, executor="dask").base is None, "the driver reads no base"
    parts = partitions.parquet_parts(customers, events / "*.parquet")
    assert [p.size for p in parts] == [250, 250, 100]

    dask = runner.invoke(app, ["plan", "--at", AT, "-p", str(project), "-f", "json", *on(cluster)])
    assert dask.exit_code == 0, dask.output
    assert dask.stdout == one_process_plan
    assert "3 part(s), 600 customers" in dask.stderr


def test_without_dask_installed_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    result = runner.invoke(
        app, ["plan", "--at", AT, "-p", str(bundled(tmp_path / "p")), "--executor", "dask"]
    )
    assert result.exit_code == 2
    assert "pip install 'courtship[dask]'" in result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_executor_or_a_scheduler_without_dask_is_a_usage_error(tmp_path):
    project = str(bundled(tmp_path / "p"))
    unknown = runner.invoke(app, ["plan", "--at", AT, "-p", project, "--executor", "spark"])
    assert unknown.exit_code == 2 and "unknown --executor 'spark'" in unknown.stderr
    alone = runner.invoke(app, ["plan", "--at", AT, "-p", project, "--scheduler", "tcp://x:1"])
    assert alone.exit_code == 2 and "--scheduler needs --executor dask" in alone.stderr


def test_a_scheduler_address_connects_a_client_to_that_cluster(tmp_path, cluster, one_process_plan):
    address = cluster.client.scheduler.address
    project = bundled(tmp_path / "p")
    args = ["plan", "--at", AT, "-p", str(project), "-f", "json", "--executor", "dask"]
    dask = runner.invoke(app, [*args, "--scheduler", address])
    assert dask.exit_code == 0, dask.output
    assert dask.stdout == one_process_plan
    assert all(worker in dask.stderr for worker in cluster.workers)


def learning_project(folder: Path) -> Path:
    """The bundled project reading the learned facts: win-back's audience reads ``churn_risk``,
    ``channel: preferred`` is the learned ``best_channel`` (half the customers have no channel
    of their own), the sends on it wait for ``best_hour``; some customers click messages."""
    playbooks = folder / "playbooks"
    shutil.copytree(ROOT / "playbooks", playbooks)
    for file in playbooks.glob("*.yaml"):
        text = file.read_text()
        text = text.replace(
            "{channel: preferred,", "{channel: preferred, at: best_hour, within: 6h,"
        ).replace(
            "      channel: preferred\n",
            "      channel: preferred\n      at: best_hour\n      within: 6h\n",
        )
        if file.name == "keep-in-touch.yaml":  # some of its customers are below, some above
            text = text.replace(
                "audience:\n  all:\n", "audience:\n  all:\n    - {fact: churn_risk, gt: 0.04}\n"
            )
        if file.name == "win-back.yaml":
            text = text.replace(
                "audience:\n  all:\n", "audience:\n  all:\n    - {fact: churn_risk, gt: 0.2}\n"
            )
        file.write_text(text)
    customers = pl.read_csv(ROOT / "examples" / "customers.csv", infer_schema=False)
    customers = customers.with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0)
        .then(pl.col("preferred_channel"))
        .alias("preferred_channel")
    )
    customers.write_csv(folder / "customers.csv")
    lines = (ROOT / "examples" / "events.jsonl").read_text().splitlines()
    clicks = []
    for line in lines:
        event = json.loads(line)
        if event["type"] == "sent" and int(event["customer_id"][2:]) % 3 == 0:
            at = dt.datetime.fromisoformat(event["at"]) + dt.timedelta(minutes=40)
            clicks.append(
                json.dumps(
                    {"customer_id": event["customer_id"], "type": "click", "at": at.isoformat()}
                )
            )
    (folder / "events.jsonl").write_text("\n".join(lines + clicks) + "\n")
    project = bundled(
        folder / "p", customers=str(folder / "customers.csv"), events=str(folder / "events.jsonl")
    )
    yaml = (project / "courtship.yaml").read_text()
    (project / "courtship.yaml").write_text(
        yaml.replace(f"playbooks: {ROOT / 'playbooks'}", f"playbooks: {playbooks}")
        + "learning: {preferred_channel: learned}\n"
    )
    return project


@pytest.fixture(scope="module")
def learning(tmp_path_factory):
    return learning_project(tmp_path_factory.mktemp("learning"))


def test_playbooks_reading_churn_risk_and_learned_preferences_plan_the_same_through_dask(
    learning, cluster
):
    loaded = load(learning, quiet=True)
    assert loaded.engine.churns and loaded.engine.prefers
    one = runner.invoke(app, ["plan", "--at", AT, "-p", str(learning), "-f", "json"])
    dask = runner.invoke(app, ["plan", "--at", AT, "-p", str(learning), "-f", "json", *on(cluster)])
    assert one.exit_code == 0 and dask.exit_code == 0, dask.output
    assert dask.stdout == one.stdout
    plan = json.loads(one.stdout)
    messages = plan["sends"] + plan["deferred"]
    facts = FactHistory(
        loaded.base,
        learning=loaded.engine.project.learning,
        churn_days=loaded.engine.project.churn_horizon_days,
        preferences=True,
    ).at(NOW)
    by_id = {row["customer_id"]: row for row in facts.iter_rows(named=True)}
    kept = [m["customer"] for m in messages if m["playbook"] == "keep-in-touch"]
    assert kept and all(by_id[c]["churn_risk"] > 0.04 for c in kept)
    learned = [
        m
        for m in messages
        if m["channel"] != "team" and by_id[m["recipient"]]["preferred_channel"] is None
    ]
    assert learned, "a message on the learned channel of a customer without one of their own"
    assert any(m["status"] == "deferred" for m in messages), "a message waits for best_hour"


@pytest.fixture(scope="module")
def learning_whole(learning) -> tuple[str, list[object]]:
    return whole_plan(learning)


@pytest.mark.parametrize("parts", [2, 3])
def test_the_learned_facts_plan_is_the_same_in_any_number_of_parts(
    cluster, learning, learning_whole, parts
):
    loaded = load(learning, quiet=True)
    plan = partitions.decide(
        loaded.engine, partitions.split(loaded.base, parts), NOW, StateStore(None), cluster
    )
    loaded.engine.render(plan)
    assert (render_json(plan), plan.notifications) == learning_whole


@pytest.mark.parametrize("parts", [2, 3])
def test_churn_risk_and_the_preferences_in_parts_are_the_whole_base_s(cluster, learning, parts):
    """The churn model fitted once on every part's training rows, in the file's order, scores
    each customer as one process does, to the bit; the personas' priors of ``best_channel``
    and ``best_hour`` are summed over the parts."""
    loaded = load(learning, quiet=True)
    engine, base = loaded.engine, loaded.base
    split = partitions.split(base, parts)
    view = partitions.StateView(StateStore(None), engine)
    window = (NOW - dt.timedelta(days=1), NOW)
    surveys = cluster.map(partitions.survey, [(p,) for p in split], window)
    people = pl.concat(
        [s.referrals.get_column(c) for s in surveys for c in ("referrer_id", "friend_id")]
    ).unique()
    empty = pl.Series([], dtype=pl.String())
    counts = cluster.map(
        partitions.count, [(p,) for p in split], (engine, NOW, view, people, empty)
    )
    shared = partitions.shared_facts(engine, split, surveys, counts)
    partitions.with_churn_models(engine, split, shared, cluster, NOW, view)

    def facts(part_base, shared=None):
        history = FactHistory(
            part_base,
            learning=engine.project.learning,
            default_timezone="UTC",
            churn_days=engine.project.churn_horizon_days,
            preferences=True,
            shared=shared,
        )
        return history.at(NOW)

    whole = facts(base)
    for name in ("churn_risk", "best_channel", "best_hour", "suggested_cadence_days"):
        assert whole.get_column(name).drop_nulls().len() > 100, name
    in_parts = pl.concat([facts(p.load(), shared[p.number]) for p in split])
    assert in_parts.equals(whole)
    alone = pl.concat([facts(p.load()) for p in split])
    assert not alone.get_column("churn_risk").equals(whole.get_column("churn_risk"))
    assert not alone.select("best_channel", "best_hour").equals(
        whole.select("best_channel", "best_hour")
    ), "alone, a part would learn its personas' priors from its own customers only"


def _paired(tmp_path: Path) -> tuple[Path, Path]:
    """The bundled base in three customer files, each with an event file of the same name
    holding its customers' events."""
    loaded = load(ROOT, quiet=True)
    customers, events = tmp_path / "customers", tmp_path / "events"
    customers.mkdir()
    events.mkdir()
    for number, offset in enumerate(range(0, loaded.base.customers.height, 250)):
        part = loaded.base.customers.slice(offset, 250)
        part.write_parquet(customers / f"part-{number}.parquet")
        loaded.base.events.filter(
            pl.col("customer_id").is_in(part.get_column("customer_id").implode())
        ).write_parquet(events / f"part-{number}.parquet")
    return customers, events


def test_event_files_named_as_the_customer_files_are_read_by_their_part_only(
    tmp_path, cluster, one_process_plan
):
    customers, events = _paired(tmp_path)
    parts = partitions.parquet_parts(customers, events)
    assert [p.event_files for p in parts] == [
        (str(events / f"part-{n}.parquet"),) for n in range(3)
    ]
    project = bundled(tmp_path / "p", customers=str(customers), events=str(events))
    dask = runner.invoke(app, ["plan", "--at", AT, "-p", str(project), "-f", "json", *on(cluster)])
    assert dask.exit_code == 0, dask.output
    assert dask.stdout == one_process_plan


def test_an_event_of_another_parts_customer_in_a_paired_file_is_an_error_naming_it(
    tmp_path, cluster
):
    customers, events = _paired(tmp_path)
    first = pl.read_parquet(events / "part-0.parquet")
    stray = pl.read_parquet(events / "part-1.parquet").head(1)
    pl.concat([first, stray]).write_parquet(events / "part-0.parquet")
    project = bundled(tmp_path / "p", customers=str(customers), events=str(events))
    result = runner.invoke(app, ["plan", "--at", AT, "-p", str(project), *on(cluster)])
    assert result.exit_code == 1, result.output
    who = stray.get_column("customer_id")[0]
    assert "part-0.parquet" in result.stderr and who in result.stderr
    assert "the file named as their customer file" in result.stderr
    assert "Traceback" not in result.output


def test_a_customer_in_two_customer_files_is_an_error_naming_both(tmp_path, cluster):
    customers, _ = _paired(tmp_path)
    first = pl.read_parquet(customers / "part-0.parquet")
    again = pl.read_parquet(customers / "part-2.parquet").head(1)
    pl.concat([first, again]).write_parquet(customers / "part-0.parquet")
    project = bundled(tmp_path / "p", customers=str(customers), events=str(tmp_path / "none"))
    (project / "courtship.yaml").write_text(
        "\n".join(
            line
            for line in (project / "courtship.yaml").read_text().splitlines()
            if not line.startswith("events:")
        )
    )
    result = runner.invoke(app, ["plan", "--at", AT, "-p", str(project), *on(cluster)])
    assert result.exit_code == 2, result.output
    who = again.get_column("customer_id")[0]
    assert f"customer {who} is in" in result.stderr
    assert "part-0.parquet" in result.stderr and "part-2.parquet" in result.stderr
    assert "customer ids must be unique" in result.stderr


def test_simulate_through_dask_gives_the_same_summary(tmp_path, cluster):
    project = bundled(tmp_path / "p")
    args = ["simulate", "--from", AT, "--to", "2026-11-25T15:00:00Z", "-p", str(project)]
    args += ["-q", "-f", "json"]
    one = runner.invoke(app, [*args, "--report", str(tmp_path / "one.html")])
    dask = runner.invoke(app, [*args, "--report", str(tmp_path / "dask.html"), *on(cluster)])
    assert one.exit_code == 0 and dask.exit_code == 0, dask.output
    assert json.loads(one.stdout), "a summary of the simulated moments"
    assert dask.stdout == one.stdout


@dataclass
class CrashOnce:
    """A part's reader whose worker process dies the first time it reads part 1."""

    marker: str

    def __call__(self, part: partitions.Part) -> CustomerBase:
        if part.number == 1 and not Path(self.marker).exists():
            Path(self.marker).write_text("the worker died here")
            os._exit(1)
        assert part.customers is not None and part.events is not None
        return CustomerBase(part.customers, part.events)


def test_a_worker_that_dies_has_its_part_done_again_and_nothing_recorded_twice(cluster, tmp_path):
    loaded = load(ROOT, quiet=True)
    whole_state, dask_state = (
        StateStore(tmp_path / "one.sqlite"),
        StateStore(tmp_path / "dask.sqlite"),
    )
    whole = loaded.engine.plan(loaded.base, NOW, whole_state)
    loaded.engine.record(whole, whole_state)
    parts = partitions.split(loaded.base, 3)
    for part in parts:
        part.reader = CrashOnce(str(tmp_path / "crashed"))
    plan = partitions.decide(loaded.engine, parts, NOW, dask_state, cluster)
    loaded.engine.render(plan)
    loaded.engine.record(plan, dask_state)
    assert (tmp_path / "crashed").exists(), "a worker died"
    assert render_json(plan) == render_json(whole)
    for table in ("sends", "decisions", "enrollments", "fired"):
        query = f"SELECT * FROM {table}"
        assert sorted(dask_state.db.execute(query)) == sorted(whole_state.db.execute(query))
    whole_state.close()
    dask_state.close()


def _cancelled_once(marker: str, number: int) -> int:
    """A task that, the first time, has the scheduler cancel it (what a worker's death that
    takes a pass's shared inputs with it does); after that, its number."""
    import distributed

    if not Path(marker).exists():
        Path(marker).write_text("cancelled here")
        worker = distributed.get_worker()
        key = worker.get_current_task()
        worker.client.cancel(distributed.Future(key, client=worker.client), force=True)
        import time

        time.sleep(1)  # the scheduler cancels it meanwhile: its result is never taken
    return number


def test_a_pass_whose_tasks_dask_cancels_is_run_again_once(cluster, tmp_path):
    marker = str(tmp_path / "cancelled")
    assert cluster.map(_cancelled_once, [(marker, n) for n in range(3)], ()) == [0, 1, 2]
    assert Path(marker).exists(), "a task was cancelled"
