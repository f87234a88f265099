"""Sequences across moments: a later step never goes out when an earlier message did not; a
held message waits at its step; a message that can never go out ends the sequence unless its
step is optional."""

import datetime as dt

from conftest import NOW, customer

WIN_BACK = """
    id: win-back
    title: Win back
    stage: churned
    category: marketing
    priority: 70
    trigger: {event: goodbye}
    respond:
      - send: {channel: preferred, fallback: [email], template: hello}
      - set: {fact: apologised_at, value: now}
      - wait: 7d
        unless: {event: order}
      - send: {channel: preferred, fallback: [email], template: hello, offer: {percent_off: 30}}
"""


def steps(plan):
    return [(d.recipient_id, d.step_id, d.status, d.guard) for d in plan.decisions]


def test_the_grand_gesture_never_goes_out_without_the_apology_before_it(world):
    """The apology is held by their 14-day cadence; nothing is set and no wait starts until
    it goes out; a week after it, the grand gesture."""
    world.playbook(WIN_BACK)
    world.customers.append(customer("c001", cadence=14))
    world.event("c001", "sent", "2026-11-13T15:00:00Z", channel="sms", category="marketing")
    world.event("c001", "goodbye", "2026-11-23T12:00:00Z")
    assert steps(world.run()) == [("c001", "send:hello", "deferred", "cadence")]
    assert world.state.count("facts") == 0  # the step after the apology has not happened
    apology_at = NOW + dt.timedelta(days=7, hours=1)
    assert steps(world.run(apology_at)) == [("c001", "send:hello", "send", "")]  # at last
    assert world.state.count("facts") == 1
    # after the wait, their cadence holds the grand gesture until 14 days after the apology
    [waiting] = world.run(apology_at + dt.timedelta(days=7)).decisions
    assert (waiting.step_id, waiting.guard) == ("send:hello#2", "cadence")
    assert waiting.due_at == apology_at + dt.timedelta(days=14)
    [gesture] = world.run(apology_at + dt.timedelta(days=14)).decisions
    assert (gesture.step_id, gesture.status) == ("send:hello#2", "send")
    assert world.state.count("sends") == 2


def test_a_message_that_can_never_go_out_ends_the_sequence(world):
    world.playbook(WIN_BACK)
    world.customers.append(customer("c001", cadence=0, email=False, sms=False))
    world.event("c001", "goodbye", "2026-11-23T12:00:00Z")
    assert steps(world.run()) == [("c001", "send:hello", "blocked", "no-consent")]
    assert world.state.count("enrollments") == 0  # no wait began
    assert world.run(NOW + dt.timedelta(days=8)).decisions == []  # and no grand gesture


def test_an_optional_message_that_cannot_go_out_lets_the_sequence_go_on(world):
    world.playbook(
        WIN_BACK.replace(
            "- send: {channel: preferred, fallback: [email], template: hello}\n",
            "- send: {channel: instagram, template: hello, optional: true}\n",
            1,
        )
    )
    world.customers.append(customer("c001", cadence=0))
    world.event("c001", "goodbye", "2026-11-23T12:00:00Z")
    assert steps(world.run()) == [("c001", "send:hello", "blocked", "no-consent")]
    assert world.state.count("facts") == 1  # the sequence went on: set, then the wait
    [gesture] = world.run(NOW + dt.timedelta(days=7, hours=1)).decisions
    assert gesture.status == "send" and gesture.offer == {"percent_off": 30}


def test_a_held_step_of_a_resumed_sequence_waits_there_and_ends_if_they_came_back(world):
    """After the wait the grand gesture falls in quiet hours: it is deferred at its step; an
    order before it goes out does not stop it (the unless belongs to the wait, which is over),
    but the sequence never repeats the apology."""
    world.playbook(WIN_BACK)
    world.customers.append(customer("c001", cadence=0))
    world.event("c001", "goodbye", "2026-11-23T12:00:00Z")
    assert [d.status for d in world.run().decisions] == ["send"]
    night = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.UTC)
    [held] = world.run(night).decisions
    assert (held.step_id, held.status, held.guard) == ("send:hello#2", "deferred", "quiet-hours")
    [sent] = world.run(dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)).decisions
    assert (sent.step_id, sent.status, sent.key) == ("send:hello#2", "send", held.key)
    assert world.state.count("sends") == 2


def test_a_set_step_changes_its_customers_only_and_the_last_value_wins():
    """What ``set`` and ``tag`` steps write reaches only their customers' rows; a customer
    named twice keeps the last value; the facts frame the earlier playbooks read is left as
    it was (a step writes a new one)."""
    import polars as pl

    from courtship.engine.sequences import _patched

    facts = pl.DataFrame(
        {
            "visits": pl.Series([1.0, 2.0, 3.0, 4.0]),
            "tags": pl.Series([["a"], [], None, ["b"]], dtype=pl.List(pl.String())),
        }
    )
    rows = pl.Series([2, 0, 2], dtype=pl.UInt32())
    changed = _patched(facts, rows, "visits", pl.Series([7.0, 8.0, 9.0]), None)
    assert changed.get_column("visits").to_list() == [8.0, 2.0, 9.0, 4.0]
    assert facts.get_column("visits").to_list() == [1.0, 2.0, 3.0, 4.0]
    added = _patched(facts, pl.Series([1], dtype=pl.UInt32()), "vip_since", pl.Series(["x"]), None)
    assert added.get_column("vip_since").to_list() == [None, "x", None, None]
    tagged = _patched(facts, rows, "tags", pl.Series([["c"], ["d"], ["e"]]), None)
    assert tagged.get_column("tags").to_list() == [["d"], [], ["e"], ["b"]]
    # a value of another type than the fact's column is written as the column's supertype
    mixed = _patched(facts, pl.Series([3], dtype=pl.UInt32()), "visits", pl.Series([5]), None)
    assert mixed.get_column("visits").to_list() == [1.0, 2.0, 3.0, 5.0]
