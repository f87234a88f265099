"""Idempotency keys: a message's key comes from what started it — the event, or the
occurrence of a calendar trigger — never from the run that found it, so two runs that both
see it write one row to the outbox."""

import datetime as dt

import pytest
from conftest import World, customer

SCHEDULE = """
    id: digest
    title: Digest
    stage: active
    category: marketing
    trigger: {schedule: {every: 1d}, at: "10:00"}
    respond:
      - send: {channel: preferred, template: hello}
"""
BIRTHDAY = """
    id: birthday
    title: Birthday
    stage: loyal
    category: marketing
    trigger: {anniversary: birthday, at: "10:00"}
    respond:
      - send: {channel: preferred, template: hello}
"""


def key_at(root, playbook, at):
    world = World(root)
    world.playbook(playbook)
    world.customers.append(customer("c001", cadence=0, birthday="1990-11-24", tz="UTC"))
    try:
        [message] = world.plan(at).sends
        return message.key
    finally:
        world.state.close()


@pytest.mark.parametrize("playbook", [SCHEDULE, BIRTHDAY], ids=["schedule", "anniversary"])
def test_runs_at_10_05_and_10_10_find_the_same_10_00_occurrence(tmp_path, playbook):
    early = dt.datetime(2026, 11, 24, 10, 5, tzinfo=dt.UTC)
    late = dt.datetime(2026, 11, 24, 10, 10, tzinfo=dt.UTC)
    assert key_at(tmp_path / "a", playbook, early) == key_at(tmp_path / "b", playbook, late)


def test_the_next_occurrence_has_a_key_of_its_own(tmp_path):
    today = dt.datetime(2026, 11, 24, 10, 5, tzinfo=dt.UTC)
    tomorrow = today + dt.timedelta(days=1)
    assert key_at(tmp_path / "a", SCHEDULE, today) != key_at(tmp_path / "b", SCHEDULE, tomorrow)
