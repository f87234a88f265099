"""The steady run: a run carries on the aggregates the last run kept beside the state store,
aggregating anew only the customers whose aggregates can differ, and decides exactly what a
run that aggregates everyone decides (docs/engine.md, "The steady run")."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from courtship.engine import Engine
from courtship.engine.carry import Aggregates
from courtship.engine.facts import FactHistory
from courtship.intake import read_base
from courtship.plugins import installed
from courtship.project import load_project
from courtship.state import StateStore
from courtship.validate import discover, validate_files

ROOT = Path(__file__).resolve().parents[1]
FIRST = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)


def make_project(folder: Path) -> Path:
    """The bundled project (playbooks, example customers and events) in ``folder``."""
    shutil.copytree(ROOT / "playbooks", folder / "playbooks")
    shutil.copytree(ROOT / "examples", folder / "examples")
    shutil.copy(ROOT / "courtship.yaml", folder / "courtship.yaml")
    return folder


def engine_of(folder: Path) -> tuple[Engine, object]:
    project = load_project(folder)
    files, _ = discover([project.playbooks])
    catalogue = installed().catalogue()
    report = validate_files(files, catalogue)
    return Engine(report.valid_playbooks, project, catalogue), project


def run(folder: Path, moment: dt.datetime, *, carry: bool = True, trace: str | None = None):
    """One run at ``moment`` on the project's state store: the plan, recorded (with the facts
    of customer ``trace``)."""
    engine, project = engine_of(folder)
    base = read_base(project, installed(), dry_run=False)
    state = StateStore(folder / ".courtship" / "state.sqlite")
    try:
        if not carry:
            shutil.rmtree(folder / ".courtship" / "aggregates", ignore_errors=True)
        plan = engine.plan(base, moment, state, trace=trace)
        engine.record(plan, state)
        return plan
    finally:
        state.close()


def decided(plan) -> list[tuple]:
    return sorted(
        (d.playbook, d.customer_id, d.status, d.channel or "", d.reason, d.text, str(d.due_at))
        for d in plan.decisions
    )


def add_events(folder: Path, events: list[dict]) -> None:
    with (folder / "examples" / "events.jsonl").open("a", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event) + "\n")


def customer_ids(folder: Path, count: int, step: int = 37) -> list[str]:
    ids = pl.read_csv(folder / "examples" / "customers.csv", infer_schema=False)["customer_id"]
    return ids.gather_every(step).head(count).to_list()


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_the_next_run_decides_what_a_whole_aggregation_decides(tmp_path):
    carried = make_project(tmp_path / "carried")
    whole = make_project(tmp_path / "whole")
    moment = FIRST
    for folder in (carried, whole):
        run(folder, moment, carry=folder == carried)
    assert list((carried / ".courtship" / "aggregates").glob("aggregates@*.arrow"))
    people = customer_ids(carried, 12)
    # hour after hour, then days apart (orders and sends leave their 90- and 30-day windows)
    for step, gap in enumerate((1, 1, 5, 24, 24 * 3, 24 * 30)):
        before, moment = moment, moment + dt.timedelta(hours=gap)
        new = [
            {
                "customer_id": people[step],
                "type": "order",
                "amount": 42.5,
                "at": iso(before + dt.timedelta(minutes=20)),
            },
            {
                "customer_id": people[step + 1],
                "type": "inbound_message",
                "channel": "email",
                "at": iso(moment - dt.timedelta(minutes=5)),
            },
            # back-dated: an event that arrives late, from before the last run
            {
                "customer_id": people[step + 2],
                "type": "visit",
                "at": iso(before - dt.timedelta(days=40)),
            },
        ]
        for folder in (carried, whole):
            add_events(folder, new)
        one, other = run(carried, moment), run(whole, moment, carry=False)
        assert decided(one) == decided(other), f"at {moment}"


def test_messages_heard_through_serve_are_carried_on_as_events_are(tmp_path):
    """SMS and Instagram messages recorded by ``courtship serve`` between runs count as the
    customers' events: the runs that carry on the aggregates (and the index, which the
    messages join without its being built again) decide what runs aggregating everyone do,
    hour after hour, the messages staying on record."""
    from courtship.engine.facts import event_rows

    carried = make_project(tmp_path / "carried")
    whole = make_project(tmp_path / "whole")
    moment = FIRST
    for folder in (carried, whole):
        run(folder, moment, carry=folder == carried)
    people = pl.read_csv(carried / "examples" / "customers.csv", infer_schema=False)
    heard_from = people.drop_nulls("phone").gather_every(23)
    phones = heard_from.get_column("phone").to_list()
    for step, gap in enumerate((1, 1, 1, 24)):
        before, moment = moment, moment + dt.timedelta(hours=gap)
        for folder in (carried, whole):
            state = StateStore(folder / ".courtship" / "state.sqlite")
            try:
                if step < 3:  # no new message before the last run: the same ones on record
                    state.record_callback(
                        # the second one recorded late: from before the last run
                        before + dt.timedelta(minutes=10 + step - 120 * (step == 1)),
                        "twilio",
                        "inbound",
                        channel="sms",
                        address=phones[step % len(phones)],
                        detail="are you open on sunday?",
                    )
            finally:
                state.close()
        someone = heard_from.get_column("customer_id")[min(step, 2)]
        one = run(carried, moment, trace=someone)
        other = run(whole, moment, carry=False, trace=someone)
        assert decided(one) == decided(other), f"at {moment}"
        # the customer who wrote is aggregated anew with the message, as by a whole run
        assert one.customer_facts == other.customer_facts
        assert one.customer_facts["last_inbound_channel"] == "sms"
        assert one.aggregated[0] < one.aggregated[1] // 4  # and not everyone
    # the heard messages are events of their customers, numbered as a whole base would be
    _, project = engine_of(carried)
    base = read_base(project, installed(), dry_run=True)
    state = StateStore(carried / ".courtship" / "state.sqlite")
    try:
        from courtship.engine.consent import with_inbound

        heard = with_inbound(base, state.callbacks("inbound"))
    finally:
        state.close()
    assert heard.events.height == base.events.height + 3
    assert heard.__dict__["_event_rows"][1] is heard.events  # carried on with the messages
    assert_frame_equal(event_rows(heard), event_rows(type(base)(heard.customers, heard.events)))


def history(folder: Path, state: StateStore, carried: Aggregates | None) -> FactHistory:
    _, project = engine_of(folder)
    base = read_base(project, installed(), dry_run=True)
    return FactHistory(
        base,
        sends=state.sends().select("customer_id", "at", "channel", "playbook", "category"),
        set_facts=state.set_facts(),
        set_tags=state.set_tags(),
        default_timezone=project.timezone,
        carried=carried,
        keep=True,
    )


@pytest.fixture(scope="module")
def after_first_run(tmp_path_factory) -> Path:
    """The bundled project after its run at FIRST (which kept its aggregates)."""
    folder = make_project(tmp_path_factory.mktemp("first"))
    run(folder, FIRST)
    return folder


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    hours=st.integers(min_value=0, max_value=24 * 120),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40),
            st.sampled_from(["order", "visit", "inbound_message", "reply", "signup", "click"]),
            st.integers(min_value=-24 * 400, max_value=24 * 120),
        ),
        max_size=8,
    ),
)
def test_carried_facts_are_the_facts_of_a_whole_aggregation(
    after_first_run, tmp_path_factory, hours, edits
):
    folder = tmp_path_factory.mktemp("steady") / "p"
    shutil.copytree(after_first_run, folder)
    people = customer_ids(folder, 41, step=13)
    add_events(
        folder,
        [
            {
                "customer_id": people[who],
                "type": kind,
                "amount": 10.0,
                "channel": "sms",
                "at": iso(FIRST + dt.timedelta(hours=offset)),
            }
            for who, kind, offset in edits
        ],
    )
    moment = FIRST + dt.timedelta(hours=hours)
    state = StateStore(folder / ".courtship" / "state.sqlite")
    try:
        kept = state.aggregates(engine_of_mark(folder))
        assert kept is not None and kept.moment == FIRST
        carried = history(folder, state, kept).at(moment)
        whole = history(folder, state, None).at(moment)
    finally:
        state.close()
    assert_frame_equal(carried, whole)


def engine_of_mark(folder: Path) -> int:
    from courtship.engine.facts import customer_file_mark

    _, project = engine_of(folder)
    return customer_file_mark(read_base(project, installed(), dry_run=True))


def test_aggregates_of_another_customer_file_or_a_damaged_file_are_not_carried(tmp_path):
    folder = make_project(tmp_path / "p")
    run(folder, FIRST)
    state = StateStore(folder / ".courtship" / "state.sqlite")
    try:
        mark = engine_of_mark(folder)
        assert state.aggregates(mark) is not None
        assert state.aggregates(mark + 1) is None  # another customer file
        (arrow,) = (folder / ".courtship" / "aggregates").glob("*.arrow")
        arrow.write_bytes(b"not arrow")
        assert state.aggregates(mark) is None
    finally:
        state.close()
    # and the next run aggregates everyone, and keeps its own again
    plan = run(folder, FIRST + dt.timedelta(hours=1))
    assert plan.now == FIRST + dt.timedelta(hours=1)
    state = StateStore(folder / ".courtship" / "state.sqlite")
    try:
        assert state.aggregates(mark) is not None
    finally:
        state.close()


def test_a_reordered_customer_file_aggregates_everyone_again(tmp_path):
    carried = make_project(tmp_path / "carried")
    whole = make_project(tmp_path / "whole")
    for folder in (carried, whole):
        run(folder, FIRST)
        customers = folder / "examples" / "customers.csv"
        frame = pl.read_csv(customers, infer_schema=False)
        frame.reverse().write_csv(customers)
    moment = FIRST + dt.timedelta(hours=2)
    assert decided(run(carried, moment)) == decided(run(whole, moment, carry=False))


def test_a_run_that_cannot_keep_its_aggregates_still_runs(tmp_path):
    folder = make_project(tmp_path / "p")
    (folder / ".courtship" / "aggregates").mkdir(parents=True)
    (folder / ".courtship" / "aggregates" / "aggregates@1.arrow").mkdir()  # in the way
    run(folder, FIRST)
    plan = run(folder, FIRST + dt.timedelta(hours=1))
    assert plan.now == FIRST + dt.timedelta(hours=1)


def test_a_plan_writes_no_aggregates(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from courtship.cli import app

    folder = make_project(tmp_path / "p")
    run(folder, FIRST)
    kept = folder / ".courtship" / "aggregates"
    before = {f.name: f.stat().st_mtime_ns for f in kept.iterdir()}
    monkeypatch.chdir(folder)
    monkeypatch.setenv("COURTSHIP_UNSUBSCRIBE_SECRET", "steady-test")
    later = iso(FIRST + dt.timedelta(hours=1))
    result = CliRunner().invoke(app, ["plan", "--at", later, "-f", "json"])
    assert result.exit_code in (0, 1), result.output
    assert {f.name: f.stat().st_mtime_ns for f in kept.iterdir()} == before


def test_the_timings_say_how_many_customers_were_aggregated(tmp_path):
    import os
    import subprocess
    import sys

    folder = make_project(tmp_path / "p")
    command = [str(Path(sys.executable).parent / "courtship"), "run", "-q", "-f", "json"]
    env = os.environ | {"COURTSHIP_TIMINGS": "1", "COURTSHIP_UNSUBSCRIBE_SECRET": "steady"}

    def aggregated(moment: dt.datetime) -> dict:
        done = subprocess.run(
            [*command, "--at", iso(moment)], cwd=folder, env=env, capture_output=True, text=True
        )
        assert done.returncode in (0, 1), done.stderr
        line = next(x for x in done.stderr.splitlines() if x.startswith('{"seconds"'))
        return json.loads(line)["aggregated"]

    first = aggregated(FIRST)
    assert first["customers"] == first["of"] > 0
    (someone,) = customer_ids(folder, 1)
    add_events(
        folder,
        [
            {
                "customer_id": someone,
                "type": "order",
                "amount": 5.0,
                "at": iso(FIRST + dt.timedelta(minutes=30)),
            }
        ],
    )
    steady = aggregated(FIRST + dt.timedelta(hours=1))
    assert steady["of"] == first["of"]
    assert 1 <= steady["customers"] < first["of"] // 10


def test_streaks_found_then_unreadable_stop_the_run_with_what_to_do(tmp_path):
    """A streak file whose schema reads but whose data does not (damaged between the two reads)
    stops the moment with a clear error saying to run again (``load_streaks`` has put such a
    file aside, so the next run reads the data)."""
    from courtship.engine.moment import SavedStreaks
    from courtship.state import StateError

    folder = make_project(tmp_path / "p")
    run(folder, FIRST)
    state = StateStore(folder / ".courtship" / "state.sqlite")
    try:
        last = state.last_run()
        saved = sorted(p.name.split("@")[0] for p in state.streaks_folder.glob("*.parquet"))
        assert saved, "the bundled project has becomes playbooks"
        streaks = SavedStreaks(state, saved, last)
        assert streaks.saved == set(saved)
        state.load_streaks = lambda playbook, moment, **_: None  # a damaged data page's answer
        with pytest.raises(StateError, match=r"put aside.*run again"):
            streaks.pop(saved[0])
    finally:
        state.close()


def test_streaks_of_the_same_customer_file_are_read_without_their_ids(tmp_path):
    """Streaks numbered against this very customer file are read by row, without the ids (most
    of what reading them costs); against another file, with the ids that match them."""
    from courtship.engine.facts import customer_file_mark

    folder = make_project(tmp_path / "p")
    run(folder, FIRST)
    mark = customer_file_mark(read_base(load_project(folder), installed(), dry_run=True))
    state = StateStore(folder / ".courtship" / "state.sqlite")
    try:
        last = state.last_run()
        playbook = sorted(p.name.split("@")[0] for p in state.streaks_folder.glob("*.parquet"))[0]
        whole = state.load_streaks(playbook, last)
        by_row = state.load_streaks(playbook, last, file_mark=mark)
        other = state.load_streaks(playbook, last, file_mark=mark + 1)
    finally:
        state.close()
    assert whole is not None and by_row is not None and other is not None
    assert "customer_id" in whole.columns and "customer_id" not in by_row.columns
    assert by_row.equals(whole.drop("customer_id", "_file"))
    assert other.equals(whole)
