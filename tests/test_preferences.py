"""Learned preferences: ``best_channel`` (the consented channel a customer answers most, their
persona's as a prior) and ``suggested_cadence_days``, with their evidence in ``explain``."""

from __future__ import annotations

import datetime as dt

from tests.conftest import NOW, customer

READS = """
    id: on-their-channel
    title: On the channel they answer
    stage: active
    category: marketing
    trigger: {schedule: {every: 1d}, at: "10:00"}
    audience: {fact: best_channel, eq: sms}
    respond:
      - send: {channel: email, template: hello}
"""


def iso(days_before: float) -> str:
    return (NOW - dt.timedelta(days=days_before)).strftime("%Y-%m-%dT%H:%M:%SZ")


def story(world) -> None:
    world.playbook(READS)
    world.customers += [
        customer("c001"),  # email and sms: answers sms, never email
        customer("c002"),  # no history: their persona's channel
        customer("c003", sms=False),  # email only, never answered: nothing to go on
        customer("c004"),  # answers email by clicking; an answer after 48 h does not count
    ]
    for days in (60, 40, 20):
        world.event("c001", "sent", iso(days), channel="email")
        world.event("c001", "sent", iso(days + 5), channel="sms")
        world.event("c001", "inbound_message", iso(days + 4), channel="sms")
        world.event("c003", "sent", iso(days), channel="email")
        world.event("c004", "sent", iso(days), channel="email")
        world.event("c004", "sent", iso(days + 3), channel="sms")
        world.event("c004", "click", iso(days - 1))  # a day after the email
        world.event("c004", "order", iso(days + 3 - 2.5))  # 60 h after the sms


def test_best_channel_is_the_consented_one_they_answer_with_the_persona_as_prior(world):
    story(world)
    engine, base = world.engine()
    facts = engine.facts(base, NOW, world.state).rows_by_key("customer_id", named=True)
    assert facts["c001"][0]["best_channel"] == "sms"
    assert facts["c004"][0]["best_channel"] == "email"
    # No history: the persona's most answered channel; its customers answered email (c004)
    # and sms (c001) three times each: a tie goes to the first channel by name.
    assert facts["c002"][0]["best_channel"] == "email"
    assert facts["c003"][0]["best_channel"] == "email"  # the persona answers email (c004)


def test_suggested_cadence_follows_how_often_they_answer(world):
    story(world)
    engine, base = world.engine()
    facts = engine.facts(base, NOW, world.state).rows_by_key("customer_id", named=True)
    # c001: 6 messages over 45 days (9 days apart), 3 answered: every 18 days.
    assert facts["c001"][0]["suggested_cadence_days"] == 18
    assert facts["c003"][0]["suggested_cadence_days"] is None  # never answered
    assert facts["c002"][0]["suggested_cadence_days"] is None  # never written to


def test_a_playbook_reads_best_channel_and_explain_shows_the_evidence(world):
    story(world)
    plan = world.plan()
    fired = {d.customer_id for d in plan.decisions if d.playbook == "on-their-channel"}
    assert "c001" in fired and "c004" not in fired
    from typer.testing import CliRunner

    from courtship.cli import app

    (world.root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state.sqlite\n"
    )
    result = CliRunner().invoke(
        app, ["explain", "c001", "--at", "2026-11-23T15:00:00Z", "--project", str(world.root)]
    )
    assert result.exit_code == 0, result.output
    assert "learned: best_channel sms, suggested_cadence_days 18, from" in result.stdout
    assert "email: answered 0 of 3 messages within 48 h" in result.stdout
    assert "sms: answered 3 of 3 messages within 48 h" in result.stdout


def test_preferences_are_learned_only_when_asked_for(world):
    from courtship.engine.facts import compute_facts

    story(world)
    _, base = world.engine()
    unasked = compute_facts(base, NOW)
    assert unasked.get_column("best_channel").null_count() == unasked.height
    asked = compute_facts(base, NOW, preferences=True)
    assert asked.get_column("best_channel").to_list()[0] == "sms"
    assert compute_facts(base, NOW, learning=None).columns.count("best_channel") == 0
