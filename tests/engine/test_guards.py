"""The guards across moments: what holds a message back is judged again when it is due, priority
picks among messages that can go out, the per-channel cap queues, and docs/engine.md lists the
guards in the order the code runs them."""

import datetime as dt
import re
from pathlib import Path

from conftest import NOW, customer

from courtship.engine.guards import GUARDS

VISIT = """
    id: {id}
    title: {id}
    stage: active
    category: marketing
    priority: {priority}
    trigger: {{event: visit}}
    respond:
      - send: {{channel: preferred, fallback: [email], template: hello}}
    {extra}
"""


def visit_playbook(pb_id, priority=50, extra=""):
    return VISIT.format(id=pb_id, priority=priority, extra=extra)


def test_quiet_hours_come_before_cadence_and_the_cadence_is_judged_when_they_end(world):
    """At 23:00 in London, their last message 13.5 days ago and a 14-day cadence: deferred by
    quiet hours to 08:00, not blocked by the cadence; at 08:00 the cadence holds it until
    12:00, when it goes out."""
    world.playbook(visit_playbook("nudge"))
    world.customers.append(customer("c001", cadence=14))
    world.event("c001", "sent", "2026-11-10T12:00:00Z", channel="sms", category="marketing")
    world.event("c001", "visit", "2026-11-23T22:30:00Z")
    night = dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC)
    [held] = world.run(night).decisions
    assert (held.status, held.guard) == ("deferred", "quiet-hours")
    assert held.due_at == dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
    [again] = world.run(dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)).decisions
    assert (again.status, again.guard) == ("deferred", "cadence")
    assert again.due_at == dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    [sent] = world.run(dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)).decisions
    assert (sent.status, sent.key) == ("send", held.key)  # the same message, with its key


def test_a_message_held_by_cadence_goes_out_once_the_cadence_allows(world):
    world.playbook(visit_playbook("nudge"))
    world.customers.append(customer("c001", cadence=14))
    world.event("c001", "sent", "2026-11-13T15:00:00Z", channel="sms", category="marketing")
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    [held] = world.run().decisions
    assert (held.status, held.guard) == ("deferred", "cadence")
    assert held.due_at == NOW + dt.timedelta(days=4)
    assert world.run(NOW + dt.timedelta(days=2)).decisions == []  # not due yet
    [sent] = world.run(NOW + dt.timedelta(days=4, hours=1)).decisions
    assert (sent.status, sent.key) == ("send", held.key)
    assert world.state.count("sends") == 1
    assert world.run(NOW + dt.timedelta(days=5)).decisions == []  # and only once


def test_a_held_message_expires(world):
    world.playbook(
        visit_playbook("nudge").replace("template: hello}", "template: hello, expires: 2d}")
    )
    world.customers.append(customer("c001", cadence=14))
    world.event("c001", "sent", "2026-11-13T15:00:00Z", channel="sms", category="marketing")
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    assert world.run().decisions[0].guard == "cadence"
    [late] = world.run(NOW + dt.timedelta(days=4, hours=1)).decisions
    assert (late.status, late.guard) == ("blocked", "expired")
    assert "expired" in late.reason
    assert world.state.count("sends") == 0


def test_when_the_winner_is_blocked_by_its_dedup_key_the_next_in_priority_speaks(world):
    world.playbook(visit_playbook("big", priority=90, extra='dedup_key: "big-{{ now.year }}"'))
    world.playbook(visit_playbook("small", priority=10))
    world.customers.append(customer("c001", cadence=0))
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    first = {d.playbook: d for d in world.run().decisions}
    assert first["big"].status == "send"
    assert (first["small"].status, first["small"].guard) == ("blocked", "priority")
    assert "(big)" in first["small"].reason
    world.event("c001", "visit", "2026-11-24T12:00:00Z")
    second = {d.playbook: d for d in world.run(NOW + dt.timedelta(days=1)).decisions}
    assert (second["big"].status, second["big"].guard) == ("blocked", "duplicate")
    assert second["small"].status == "send"  # the next in priority speaks


def test_a_loser_names_the_playbook_that_did_speak(world):
    """big cannot reach them (SMS only, and no consent for it): middle speaks, and small's
    reason names middle, not big."""
    world.playbook(
        visit_playbook("big", priority=90).replace(
            "{channel: preferred, fallback: [email], template: hello}",
            "{channel: sms, template: hello}",
        )
    )
    world.playbook(visit_playbook("middle", priority=50))
    world.playbook(visit_playbook("small", priority=10))
    world.customers.append(customer("c001", cadence=0, sms=False, email=True))
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    decided = {d.playbook: d for d in world.plan().decisions}
    assert decided["big"].guard == "no-consent"
    assert (decided["middle"].status, decided["middle"].channel) == ("send", "email")
    assert decided["small"].guard == "priority" and "(middle)" in decided["small"].reason


def test_messages_over_a_per_channel_cap_wait_for_the_next_run_oldest_first(world):
    world.playbook(visit_playbook("nudge"))
    world.customers += [customer(f"c00{n}", cadence=0) for n in range(1, 5)]
    for n in range(1, 4):
        world.event(f"c00{n}", "visit", "2026-11-23T12:00:00Z")
    caps = {"per_channel": {"sms": 1}}  # one SMS a run
    first = world.run(**caps).decisions
    assert [(d.recipient_id, d.status) for d in first] == [
        ("c001", "send"),
        ("c002", "deferred"),
        ("c003", "deferred"),
    ]
    assert {d.guard for d in first if d.status == "deferred"} == {"channel-cap"}
    world.event("c004", "visit", "2026-11-23T15:30:00Z")  # a newer one joins the queue
    second = world.run(NOW + dt.timedelta(hours=1), **caps).decisions
    assert sorted((d.recipient_id, d.status) for d in second) == [
        ("c002", "send"),
        ("c003", "deferred"),
        ("c004", "deferred"),
    ]
    third = world.run(NOW + dt.timedelta(hours=2), **caps).decisions
    assert [(d.recipient_id, d.status) for d in third if d.status == "send"] == [("c003", "send")]
    assert world.state.count("sends") == 3


def test_transactional_messages_are_deferred_by_quiet_hours_but_not_held_by_cadence(world):
    world.playbook(
        visit_playbook("answer").replace("category: marketing", "category: transactional")
    )
    world.customers.append(customer("c001", cadence=14))
    world.event("c001", "sent", "2026-11-22T15:00:00Z", channel="sms", category="marketing")
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    [answer] = world.plan().decisions
    assert answer.status == "send"


def test_the_engine_page_lists_the_guards_in_the_order_they_run():
    """docs/engine.md is the contract: its numbered list of guards names each guard's code,
    in the order of ``guards.GUARDS``."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    section = page.split("## The guards, in order", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\s*\d+\. `([a-z-]+)`", section, flags=re.MULTILINE)
    assert listed == [code for code, _, _ in GUARDS]
