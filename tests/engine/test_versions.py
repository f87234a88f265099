"""Editing a playbook while customers wait in it: they stay at their step by its name, leave
with a reason when it is gone, the wait's ``unless`` is always checked, nothing crashes, and
``plan`` says how many an edit moved or let go."""

import datetime as dt

from conftest import NOW, SEQUENCE, customer

from courtship.cli.plan import render_text

INSERTED = SEQUENCE.replace(
    "      - wait: 7d",
    "      - tag: apologised\n      - wait: 7d",
)
LATER = NOW + dt.timedelta(days=7, hours=1)


def waiting(world, count=2):
    world.playbook(SEQUENCE)
    world.customers += [customer(f"c00{n}", cadence=0) for n in range(1, count + 1)]
    for n in range(1, count + 1):
        world.event(f"c00{n}", "goodbye", "2026-11-23T12:00:00Z")
    assert len(world.run().sends) == count


def test_a_step_inserted_before_the_wait_keeps_waiting_customers_at_their_step(world):
    waiting(world)
    world.playbook(INSERTED)
    world.event("c002", "order", "2026-11-26T12:00:00Z")  # c002 came back
    plan = world.run(NOW + dt.timedelta(days=1))
    assert plan.edits == {"win-back": {"moved": 2, "let_go": 0}}
    assert "2  moved with their step" in render_text(plan)
    later = world.run(LATER)
    # c001 resumes after the wait: the grand gesture, not the inserted tag nor the wait again
    assert [(d.recipient_id, d.step_id, d.status) for d in later.decisions] == [
        ("c001", "send:hello#2", "send")
    ]
    assert later.decisions[0].offer == {"percent_off": 30}
    # c002 ordered meanwhile: the unless let them out, in the new version too
    statuses = dict(
        world.state.db.execute("SELECT customer_id, status FROM enrollments").fetchall()
    )
    assert statuses == {"c001": "done", "c002": "exited"}


def test_removing_the_wait_lets_waiting_customers_go_with_a_reason(world):
    waiting(world)
    world.playbook(SEQUENCE.replace("      - wait: 7d\n        unless: {event: order}\n", ""))
    plan = world.run(NOW + dt.timedelta(days=1))  # no IndexError, for anyone
    assert plan.edits == {"win-back": {"moved": 0, "let_go": 2}}
    assert "2  let go: their step is gone" in render_text(plan)
    rows = world.state.db.execute("SELECT status, context FROM enrollments").fetchall()
    assert [status for status, _ in rows] == ["left", "left"]
    assert all("its step wait:7d is gone" in context for _, context in rows)
    assert world.run(LATER).decisions == []
    assert world.run(LATER).edits == {}  # reported once


def test_removing_a_step_after_the_wait_moves_nobody_and_the_sequence_ends_there(world):
    waiting(world, count=1)
    world.playbook(SEQUENCE.rsplit("      - send:", 1)[0])
    assert world.run(LATER).decisions == []
    statuses = [s for (s,) in world.state.db.execute("SELECT status FROM enrollments")]
    assert statuses == ["done"]


def test_removing_the_playbook_lets_its_waiting_customers_go(world):
    waiting(world, count=1)
    (world.root / "playbooks" / "win-back.yaml").unlink()
    world.playbook(SEQUENCE.replace("id: win-back", "id: other").replace("goodbye", "hello"))
    plan = world.run(NOW + dt.timedelta(days=1))
    assert plan.edits == {"win-back": {"moved": 0, "let_go": 1}}
    [(status, context)] = world.state.db.execute(
        "SELECT status, context FROM enrollments WHERE playbook = 'win-back'"
    ).fetchall()
    assert status == "left" and "removed" in context


def test_a_declared_step_id_keeps_customers_through_an_edit_of_the_step_itself(world):
    named = SEQUENCE.replace("      - wait: 7d", "      - id: grace\n        wait: 7d")
    world.playbook(named)
    world.customers.append(customer("c001", cadence=0))
    world.event("c001", "goodbye", "2026-11-23T12:00:00Z")
    world.run()
    world.playbook(named.replace("wait: 7d", "wait: 10d"))  # a longer wait, same step
    assert world.run(NOW + dt.timedelta(days=1)).edits == {"win-back": {"moved": 0, "let_go": 0}}
    [gesture] = world.run(LATER).decisions  # the wait already begun keeps its end
    assert gesture.status == "send" and gesture.step_id == "send:hello#2"
