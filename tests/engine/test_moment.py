"""The engine on small, hand-made customer bases: triggers, audiences, guards, sequences, state."""

import datetime as dt

import pytest
from conftest import NOW, SEQUENCE, World, customer

BIRTHDAY = """
    id: birthday
    title: Birthday
    stage: loyal
    category: marketing
    priority: 60
    trigger: {anniversary: birthday, at: "10:00"}
    respond:
      - send:
          channel: preferred
          fallback: [email]
          template: hello
          offer: {gift: cake, code_prefix: BDAY}
    limits: {once_every: 300d}
    dedup_key: "birthday-{{ now.year }}"
"""


def sent(plan):
    return sorted((d.recipient_id, d.playbook, d.channel) for d in plan.sends)


def test_birthday_in_their_own_time_zone_and_quiet_hours_defer(world):
    world.playbook(BIRTHDAY)
    world.customers += [
        customer("c001", birthday="1990-11-23"),  # London: 10:00 local is in the window
        customer("c002", birthday="1990-11-23", tz="Asia/Tokyo"),  # 00:00 local now: quiet
        customer("c003", birthday="1990-11-24", tz="Pacific/Auckland"),  # already the 24th there
        customer("c004", birthday="1990-11-22"),  # yesterday in London: outside the window
    ]
    plan = world.plan()
    assert sent(plan) == [("c001", "birthday", "sms")]
    [deferred] = plan.deferred
    assert deferred.recipient_id == "c002"
    assert deferred.due_at == dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC)  # 08:00 in Tokyo
    assert "quiet hours" in deferred.reason
    # In Auckland it is already 04:00 on the 24th, but 10:00 has not come yet: not now.
    assert "c003" not in {d.recipient_id for d in plan.decisions}
    assert world.plan(dt.datetime(2026, 11, 23, 21, 30, tzinfo=dt.UTC)).sends[0].recipient_id == (
        "c003"
    )


def test_leap_day_birthday_falls_on_28_february(world):
    world.playbook(BIRTHDAY)
    world.customers.append(customer("c001", birthday="1992-02-29"))
    plan = world.plan(dt.datetime(2027, 2, 28, 12, 0, tzinfo=dt.UTC))
    assert sent(plan) == [("c001", "birthday", "sms")]
    assert world.plan(dt.datetime(2028, 2, 28, 12, 0, tzinfo=dt.UTC)).sends == []
    assert len(world.plan(dt.datetime(2028, 2, 29, 12, 0, tzinfo=dt.UTC)).sends) == 1


def test_no_name_no_message(world):
    world.playbook(BIRTHDAY)
    world.customers.append(customer("c001", first="", birthday="1990-11-23"))
    [decision] = world.plan().decisions
    assert decision.status == "blocked"
    assert "no first name" in decision.reason


def test_preferred_channel_falls_back_only_to_consented_channels(world):
    world.playbook(BIRTHDAY)
    world.customers += [
        customer("c001", birthday="1990-11-23", preferred="sms", sms=False),  # → email
        customer("c002", birthday="1990-11-23", preferred="sms", sms=False, email=False),
    ]
    plan = world.plan()
    assert sent(plan) == [("c001", "birthday", "email")]
    [blocked] = plan.blocked
    assert blocked.recipient_id == "c002" and "no consented channel" in blocked.reason


ANSWER = """
    id: answer
    title: Answer their calls
    stage: active
    category: transactional
    priority: 95
    trigger: {becomes: {fact: unanswered_inbound_hours, gte: 4}}
    respond:
      - send: {channel: preferred, template: hello}
      - notify: {team: support}
"""
NUDGE = """
    id: nudge
    title: Nudge
    stage: active
    category: marketing
    priority: 20
    trigger: {event: visit}
    respond:
      - send: {channel: preferred, template: hello}
"""


def test_cadence_blocks_marketing_but_not_an_answer_to_their_call(world):
    world.playbook(ANSWER)
    world.playbook(NUDGE)
    world.customers.append(customer("c001", cadence=14))
    world.event("c001", "sent", "2026-11-18T10:00:00Z", channel="sms", category="marketing")
    world.event("c001", "inbound_message", "2026-11-23T09:00:00Z", channel="sms")
    world.event("c001", "visit", "2026-11-23T12:00:00Z", channel="web")
    plan = world.plan()
    assert sent(plan) == [("c001", "answer", "sms")]
    [held] = plan.deferred
    assert held.playbook == "nudge" and held.guard == "cadence" and "cadence" in held.reason
    # held until fourteen days after the last message (18 November, 10:00)
    assert held.due_at == dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)
    assert [n["team"] for n in plan.notifications] == ["support"]


def test_transactional_still_needs_consent(world):
    world.playbook(ANSWER)
    world.customers.append(customer("c001", sms=False, email=False))
    world.event("c001", "inbound_message", "2026-11-23T09:00:00Z", channel="sms")
    [decision] = world.plan().decisions
    assert decision.status == "blocked" and "consent" in decision.reason


def test_one_marketing_message_per_moment_highest_priority_wins(world):
    world.playbook(BIRTHDAY)
    world.playbook(NUDGE)
    world.customers.append(customer("c001", birthday="1990-11-23"))
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    plan = world.plan()
    assert sent(plan) == [("c001", "birthday", "sms")]
    [lost] = plan.blocked
    assert lost.playbook == "nudge" and "higher-priority playbook (birthday)" in lost.reason


def test_suppression_is_explained(world):
    world.playbook(BIRTHDAY + "    suppresses: [nudge]\n")
    world.playbook(NUDGE)
    world.customers.append(customer("c001", birthday="1990-11-23"))
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    [lost] = world.plan().blocked
    assert lost.reason == "suppressed by birthday"


def test_the_same_moment_twice_sends_nothing_new(world):
    world.playbook(BIRTHDAY)
    world.playbook(ANSWER)
    world.customers += [customer("c001", birthday="1990-11-23"), customer("c002")]
    world.event("c002", "inbound_message", "2026-11-23T09:00:00Z", channel="sms")
    first = world.run()
    assert len(first.sends) == 2
    sends_after_first = world.state.count("sends")
    again = world.run()
    assert again.decisions == []
    assert world.state.count("sends") == sends_after_first
    # and a later moment does not repeat them either
    later = world.run(NOW + dt.timedelta(hours=6))
    assert later.sends == []


def test_a_range_as_one_step_or_many_decides_the_same_sends(tmp_path):
    def build(root):
        w = World(root)
        w.playbook(BIRTHDAY)
        w.playbook(ANSWER)
        w.playbook(NUDGE)
        w.customers += [
            customer("c001", birthday="1990-11-24"),
            customer("c002", birthday="1990-11-24", tz="America/New_York"),
            customer("c003"),
            customer("c004", cadence=0),
        ]
        w.event("c003", "inbound_message", "2026-11-23T20:00:00Z", channel="sms")
        w.event("c004", "visit", "2026-11-24T02:00:00Z")
        return w

    start, end = NOW, NOW + dt.timedelta(hours=24)
    one, many = build(tmp_path / "one"), build(tmp_path / "many")
    one.run(start), many.run(start)
    one_plan = one.run(end)
    many_sends = []
    moment = start
    while moment < end:
        moment += dt.timedelta(hours=3)
        many_sends += [d for d in many.run(moment).decisions if d.status != "blocked"]
    one_sends = [d for d in one_plan.decisions if d.status != "blocked"]
    # a message held back at one step is judged again at the next, so it is decided twice
    assert {(d.recipient_id, d.playbook) for d in one_sends} == {
        (d.recipient_id, d.playbook) for d in many_sends
    }
    assert len(one_sends) >= 3


def test_a_sequence_survives_restarts_and_resumes_after_its_wait(world):
    world.playbook(SEQUENCE)
    world.customers += [customer("c001", cadence=0), customer("c002", cadence=0)]
    world.event("c001", "goodbye", "2026-11-23T10:00:00Z")
    world.event("c002", "goodbye", "2026-11-23T10:00:00Z")
    world.event("c002", "order", "2026-11-26T10:00:00Z", amount=20)  # c002 came back
    assert len(world.run().sends) == 2
    world.reopen()
    assert world.run(NOW + dt.timedelta(days=3)).sends == []
    later = world.run(NOW + dt.timedelta(days=7, hours=1))
    assert sent(later) == [("c001", "win-back", "sms")]
    assert world.run(NOW + dt.timedelta(days=8)).sends == []


SETTER = """
    id: setter
    title: Sets a fact
    stage: active
    category: transactional
    trigger: {event: visit}
    respond:
      - set: {fact: visited_today, value: true}
"""
READER = """
    id: reader
    title: Reads it
    stage: active
    category: transactional
    trigger: {becomes: {fact: visited_today, eq: true}}
    respond:
      - send: {channel: email, template: hello}
"""


def test_a_fact_set_at_this_moment_is_read_by_the_playbooks_after(world):
    world.playbook(READER)
    world.playbook(SETTER)
    world.customers.append(customer("c001"))
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    plan = world.run()
    assert sent(plan) == [("c001", "reader", "email")]
    assert world.state.count("facts") == 1


HOLD = """
    id: hold
    title: Lapsed for a while
    stage: at-risk
    category: transactional
    trigger: {becomes: {fact: days_since_last_order, gt: 30}, for: 3d}
    respond:
      - send: {channel: email, template: hello}
"""


def test_becomes_for_a_duration_waits_until_it_has_held(world):
    world.playbook(HOLD)
    world.customers.append(customer("c001"))
    world.event("c001", "order", "2026-10-30T12:00:00Z", amount=10)
    world.run(dt.datetime(2026, 11, 20, tzinfo=dt.UTC))  # 21 days: false; the past is now known
    assert world.run(dt.datetime(2026, 12, 1, tzinfo=dt.UTC)).sends == []  # true since today
    assert world.run(dt.datetime(2026, 12, 3, tzinfo=dt.UTC)).sends == []  # 2 days
    assert len(world.run(dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)).sends) == 1  # 3.5 days
    assert world.run(dt.datetime(2026, 12, 6, tzinfo=dt.UTC)).sends == []  # once per streak


def test_dedup_key_blocks_a_second_birthday_message_in_the_same_year(world):
    world.playbook(BIRTHDAY.replace("once_every: 300d", "reentry: always"))
    world.customers.append(customer("c001", birthday="1990-11-23", cadence=0))
    assert len(world.run().sends) == 1
    # the same birthday seen again in a new window (after a state reset of the runs only)
    world.state.db.execute("DELETE FROM runs")
    world.state.db.commit()
    [again] = world.plan().decisions
    assert again.status == "blocked", again
    assert "dedup" in again.reason, again.reason


def test_referral_rewards_both_sides(world):
    world.playbook(
        """
        id: referral
        title: Welcome their friends
        stage: advocate
        category: marketing
        trigger: {event: referral}
        respond:
          - send: {channel: preferred, template: hello, offer: {percent_off: 10, for: customer}}
          - send: {channel: preferred, template: hello, to: friend, offer: {percent_off: 10}}
        """
    )
    world.customers += [customer("c001", cadence=0), customer("c002", first="Ana", cadence=0)]
    world.event("c001", "referral", "2026-11-23T11:00:00Z", friend_id="c002")
    plan = world.plan()
    assert sent(plan) == [("c001", "referral", "sms"), ("c002", "referral", "sms")]
    friend = next(d for d in plan.sends if d.recipient_id == "c002")
    assert friend.text.startswith("Hi Ana!")


def test_lost_streaks_are_read_again_from_the_data_without_firing_twice(world):
    world.playbook(ANSWER)
    world.customers.append(customer("c001"))
    world.event("c001", "inbound_message", "2026-11-23T09:00:00Z", channel="sms")
    assert len(world.run().sends) == 1
    assert world.state.load_streaks("answer", NOW) is not None
    world.lose_streaks()  # as if the run died after recording, before saving these
    assert world.state.load_streaks("answer", NOW) is None
    assert world.run(NOW + dt.timedelta(hours=1)).decisions == []
    # and a new unanswered message, once answered and asked again, is a new streak
    world.event("c001", "reply", "2026-11-23T17:00:00Z", channel="sms")
    world.event("c001", "inbound_message", "2026-11-23T18:00:00Z", channel="sms")
    assert world.run(NOW + dt.timedelta(hours=4)).decisions == []  # 1 h: not yet 4 h
    [answer] = world.run(NOW + dt.timedelta(hours=8)).decisions
    assert answer.status == "deferred"  # 23:00 in London: quiet hours, even for an answer


@pytest.mark.parametrize("file_changes", [False, True])
def test_streaks_carry_on_when_the_customer_file_is_reordered(world, file_changes):
    """Streaks are saved with each customer's row; a later run reads them by row only from the
    same customer file, and by customer id when the file changed (new order, new customers)."""
    world.playbook(ANSWER)
    world.customers += [customer("c001"), customer("c002")]
    world.event("c001", "inbound_message", "2026-11-23T09:00:00Z", channel="sms")
    assert [d.customer_id for d in world.run().sends] == ["c001"]
    if file_changes:
        world.customers = [customer("c000"), *reversed(world.customers)]
    # Still unanswered an hour later: the same streak, not a new one.
    assert world.run(NOW + dt.timedelta(hours=1)).decisions == []
    # c002 writes in and waits four hours: their streak begins, and fires once.
    world.event("c002", "inbound_message", "2026-11-23T15:30:00Z", channel="sms")
    assert world.run(NOW + dt.timedelta(hours=2)).decisions == []
    [answer] = world.run(NOW + dt.timedelta(hours=5)).decisions
    assert answer.customer_id == "c002"


def test_a_cooldown_keeps_other_marketing_away(world):
    world.playbook(BIRTHDAY.replace("once_every: 300d", "cooldown: 3d"))
    world.playbook(NUDGE)
    world.customers.append(customer("c001", birthday="1990-11-23", cadence=0))
    assert sent(world.run()) == [("c001", "birthday", "sms")]
    world.event("c001", "visit", "2026-11-24T12:00:00Z")
    [held] = world.run(NOW + dt.timedelta(days=1)).decisions
    assert held.status == "deferred" and "cooldown after birthday" in held.reason
    assert held.due_at == NOW + dt.timedelta(days=3)  # the end of the cooldown
    world.event("c001", "visit", "2026-11-27T12:00:00Z")
    # the held nudge goes out once the cooldown is over; the new visit finds it in progress
    assert sent(world.run(NOW + dt.timedelta(days=4))) == [("c001", "nudge", "sms")]


def test_a_schedule_in_its_own_time_zone(world):
    world.playbook(
        """
        id: digest
        title: Digest
        stage: active
        category: transactional
        trigger: {schedule: {every: 1d, timezone: Asia/Tokyo}, at: "09:00"}
        respond:
          - send: {channel: email, template: hello}
        """
    )
    world.customers += [customer("c001"), customer("c002", tz="America/New_York")]
    # 09:00 in Tokyo is 00:00 UTC: both customers, whatever their own zone, at that moment
    plan = world.plan(
        dt.datetime(2026, 11, 24, 0, 30, tzinfo=dt.UTC), lookback=dt.timedelta(hours=1)
    )
    assert sorted(d.recipient_id for d in plan.decisions) == ["c001", "c002"]
    later = world.plan(
        dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC), lookback=dt.timedelta(hours=1)
    )
    assert later.decisions == []
