"""``best_hour`` (the local hour of a customer's own activity, their persona's as a prior) and
``send: {at: best_hour, within: …}``, which holds a message until then: with quiet hours, the
weekly cap, sequences, repeated runs, plan and explain."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from courtship.cli import app
from tests.conftest import NOW, customer

UTC = dt.UTC


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def playbook(send: str = "at: best_hour, within: 6h", category: str = "marketing") -> str:
    return f"""
    id: evening
    title: At their hour
    stage: active
    category: {category}
    trigger: {{event: goodbye}}
    respond:
      - send: {{channel: email, template: hello, {send}}}
      - tag: greeted
      - send: {{channel: sms, template: hello}}
"""


def active_at(world, cid: str, hour: int, days: int = 3) -> None:
    """Orders at ``hour`` UTC on ``days`` days before NOW (London is UTC in November)."""
    for day in range(days):
        world.event(cid, "order", stamp(at(10 + day, hour, 30)), amount=20)


def test_best_hour_is_their_busiest_local_hour_with_the_persona_as_prior(world):
    world.playbook(playbook())
    world.customers += [
        customer("c001"),  # orders at 19:30 London: 19
        customer("c002", tz="America/New_York"),  # clicks at 23:30 UTC: 18 local
        customer("c003"),  # nothing of their own: the persona's busiest hour
        customer("c004"),  # one order at 08:00 and one at 12:00: a tie the persona breaks
    ]
    active_at(world, "c001", 19)
    for day in range(4):
        world.event("c002", "click", stamp(at(10 + day, 23, 30)))
    world.event("c004", "order", stamp(at(1, 8)), amount=5)
    world.event("c004", "inbound_message", stamp(at(2, 12)), channel="sms")
    world.event("c001", "order", stamp(at(3, 12)), amount=5)
    engine, base = world.engine()
    facts = engine.facts(base, NOW, world.state).rows_by_key("customer_id", named=True)
    assert facts["c001"][0]["best_hour"] == 19
    assert facts["c002"][0]["best_hour"] == 18  # New York's 18:30, not UTC's 23:30
    # The persona is about at 18 (c002) 4 times, 19 three, 12 two, 08 once: c003 gets 18,
    # and c004's tie (08 and 12, once each) goes to 12.
    assert facts["c003"][0]["best_hour"] == 18
    assert facts["c004"][0]["best_hour"] == 12


def test_best_hour_is_null_with_nothing_to_go_on(world):
    world.playbook(playbook())
    world.customers += [customer("c001")]
    engine, base = world.engine()
    facts = engine.facts(base, NOW, world.state)
    assert facts.get_column("best_hour").to_list() == [None]


def test_a_message_waits_for_their_best_hour_and_goes_out_once_then_the_sequence_goes_on(world):
    world.playbook(playbook())
    world.customers += [customer("c001"), customer("c002")]
    active_at(world, "c001", 19)
    active_at(world, "c002", 14)  # 14:00 went by an hour ago: nearer than 21:00, so at once
    world.event("c001", "goodbye", stamp(at(23, 14)))
    world.event("c002", "goodbye", stamp(at(23, 14)))
    first = world.run(NOW)  # 15:00
    held = {d.customer_id: d for d in first.decisions}
    assert held["c001"].status == "deferred"
    assert held["c001"].guard == "best-hour"
    assert held["c001"].due_at == at(23, 19)
    assert held["c001"].reason == "held until 19:00 local, their best hour"
    # c002's message went out at once, and their sequence went on to its sms.
    assert [(d.customer_id, d.channel, d.status) for d in first.decisions][1:] == [
        ("c002", "email", "send"),
        ("c002", "sms", "send"),
    ]
    # Before 19:00 nothing moves; the tag after the held message has not happened.
    early = world.run(at(23, 17))
    assert [d.customer_id for d in early.decisions] == []
    assert "greeted" not in _tags(world, "c001")
    # The first run at or after 19:00 sends it, then the steps after it.
    late = world.run(at(23, 19, 20))
    assert [(d.customer_id, d.channel, d.status) for d in late.decisions] == [
        ("c001", "email", "send"),
        ("c001", "sms", "send"),
    ]
    assert late.decisions[0].key == held["c001"].key  # the same message
    assert "greeted" in _tags(world, "c001")
    assert world.run(at(23, 20)).decisions == []  # and once
    assert world.run(at(24, 19, 30)).decisions == []


def test_beyond_the_window_it_goes_out_at_the_end_of_the_window(world):
    world.playbook(playbook("at: best_hour, within: 2h"))
    world.customers += [customer("c001")]
    active_at(world, "c001", 19)
    world.event("c001", "goodbye", stamp(at(23, 14)))
    decision = world.plan(NOW).decisions[0]
    assert (decision.status, decision.guard, decision.due_at) == (
        "deferred",
        "best-hour",
        at(23, 17),
    )
    assert decision.reason == (
        "held until 17:00 local, the end of its 2h window (their best hour, 19:00, is beyond it)"
    )


def test_the_window_is_read_in_their_time_zone(world):
    world.playbook(playbook("at: best_hour, within: 12h"))
    world.customers += [customer("c001", tz="America/New_York")]
    for day in range(3):  # 20:00 local in New York is 01:00 UTC the next day
        world.event("c001", "order", stamp(at(10 + day, 1)), amount=10)
    world.event("c001", "goodbye", stamp(at(23, 14)))
    decision = world.plan(NOW).decisions[0]  # 10:00 in New York
    assert decision.due_at == at(24, 1)
    assert decision.reason == "held until 20:00 local, their best hour"


def test_a_best_hour_in_quiet_hours_waits_for_their_end(world):
    world.playbook(playbook("at: best_hour, within: 12h"))
    world.customers += [customer("c001")]
    active_at(world, "c001", 23)
    world.event("c001", "goodbye", stamp(at(23, 14)))
    project = {"quiet_start": dt.time(21), "quiet_end": dt.time(8)}
    first = world.run(NOW, **project).decisions[0]
    assert (first.guard, first.due_at) == ("best-hour", at(23, 23))
    second = world.run(at(23, 23, 5), **project).decisions[0]
    assert (second.guard, second.due_at) == ("quiet-hours", at(24, 8))
    third = world.run(at(24, 8), **project).decisions
    assert [(d.channel, d.status) for d in third] == [("email", "send"), ("sms", "send")]


def test_the_window_begins_when_the_other_guards_let_it_through(world):
    """Their cadence holds it first; its best hour is counted from when the cadence allows."""
    world.playbook(playbook())
    world.customers += [customer("c001", cadence=14)]
    active_at(world, "c001", 19)
    world.event("c001", "goodbye", stamp(at(23, 14)))
    world.event("c001", "sent", stamp(NOW - dt.timedelta(days=13)), channel="email")
    held = world.run(NOW).decisions[0]
    assert (held.guard, held.due_at) == ("cadence", at(24, 15))
    waits = world.run(at(24, 15)).decisions[0]
    assert (waits.guard, waits.due_at) == ("best-hour", at(24, 19))
    assert [d.status for d in world.run(at(24, 19)).decisions] == ["send", "send"]


def test_transactional_messages_wait_for_it_too(world):
    world.playbook(playbook(category="transactional"))
    world.customers += [customer("c001")]
    active_at(world, "c001", 19)
    world.event("c001", "goodbye", stamp(at(23, 14)))
    assert world.plan(NOW).decisions[0].guard == "best-hour"


def test_without_a_best_hour_it_goes_out_at_once(world):
    world.playbook(playbook())
    world.customers += [customer("c001")]
    world.event("c001", "goodbye", stamp(at(23, 14)))
    assert [d.status for d in world.plan(NOW).decisions] == ["send", "send"]


def _project(world) -> None:
    (world.root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state.sqlite\n"
    )


def test_plan_and_explain_say_it_is_held_until_their_best_hour_and_why(world):
    world.playbook(playbook())
    world.customers += [customer("c001"), customer("c002")]
    active_at(world, "c001", 19)
    world.event("c001", "order", stamp(at(5, 8)), amount=10)
    active_at(world, "c002", 20, days=2)
    world.event("c001", "goodbye", stamp(at(23, 14)))
    world.engine()
    _project(world)
    runner = CliRunner()
    plan = runner.invoke(
        app,
        ["plan", "--at", stamp(NOW), "--project", str(world.root), "--format", "json"],
    )
    assert plan.exit_code == 0, plan.output
    decisions = json.loads(plan.stdout)["deferred"]
    assert [(d["guard"], d["due_at"], d["reason"]) for d in decisions] == [
        ("best-hour", "2026-11-23T19:00:00+00:00", "held until 19:00 local, their best hour")
    ]
    result = runner.invoke(
        app, ["explain", "c001", "--at", stamp(NOW), "--project", str(world.root)]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "learned: best_hour 19:00 local, from" in out
    assert (
        "their activity by local hour (Europe/London; orders, clicks, messages): "
        "19:00 (3), 08:00 (1)" in out
    )
    assert (
        "persona coffee-regular prior (weighs half an event at most): busiest 19:00 (3), 20:00 (2)"
        in out
    )
    assert "deferred on email (buddy): held until 19:00 local, their best hour" in out


def _tags(world, cid: str) -> set[str]:
    tags = world.state.set_tags()
    return {r["tag"] for r in tags.filter(tags["customer_id"] == cid).to_dicts() if r["present"]}
