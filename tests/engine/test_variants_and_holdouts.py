"""Experiments in the engine: variants change the message a customer gets, a holdout and the
project's control group are decided like the others but recorded as held out, and every
assignment is a hash of the customer (and the playbook): the same at every run."""

import datetime as dt

from conftest import NOW, customer

from courtship import experiments

AB = """
    id: welcome-test
    title: Welcome test
    stage: active
    category: marketing
    holdout: 20%
    goal: {event: order, within: 7d}
    trigger: {event: visit}
    respond:
      - send:
          channel: email
          template: hello
          variants:
            - {id: plain, weight: 1}
            - {id: bold, weight: 1, template: bold, tone: salesy, offer: {percent_off: 10}}
"""


def _world(world, n=200):
    world.playbook(AB)
    world.template("bold", "BIG NEWS {{ first_name }}! {{ offer.code }}")
    for number in range(n):
        cid = f"c{number:03d}"
        world.customers.append(customer(cid, preferred="email", cadence=0))
        world.event(cid, "visit", "2026-11-23T12:00:00Z")


def test_each_customer_gets_one_arm_by_hash_and_the_record_keeps_it(world):
    _world(world)
    plan = world.run()
    arms = {d.customer_id: d.arm for d in plan.decisions}
    counts = {arm: list(arms.values()).count(arm) for arm in set(arms.values())}
    assert set(counts) == {"plain", "bold", "holdout"}
    assert 20 <= counts["holdout"] <= 60  # 20 % of 200, give or take chance
    for d in plan.decisions:
        assert d.arm == (
            "holdout"
            if experiments.held_out("welcome-test", d.customer_id, 0.2)
            else experiments.variant_of(
                "welcome-test", d.step_id, d.customer_id, [{"id": "plain"}, {"id": "bold"}]
            )["id"]
        )
        if d.arm == "holdout":
            assert (d.status, d.guard) == ("blocked", "holdout")
            assert d.reason == "held out of this playbook, to measure it (its holdout: 20%)"
        elif d.arm == "bold":
            assert (d.status, d.template, d.tone) == ("send", "bold", "salesy")
            assert d.text.startswith("BIG NEWS Maya!") and d.offer == {"percent_off": 10}
        else:
            assert (d.status, d.template, d.tone) == ("send", "hello", "buddy")
    recorded = world.state.assignments()
    assert dict(recorded.select("customer_id", "arm").iter_rows()) == arms
    assert world.state.count("sends") == counts["plain"] + counts["bold"]


def test_the_same_customer_is_in_the_same_arm_at_another_run(world):
    _world(world, 40)
    first = {d.customer_id: d.arm for d in world.plan().decisions}
    world.event("c001", "visit", "2026-11-30T12:00:00Z")
    later = {d.customer_id: d.arm for d in world.plan(NOW + dt.timedelta(days=7)).decisions}
    assert all(later[c] == first[c] for c in later) and later


def test_the_control_group_gets_no_marketing_but_its_answers(world):
    world.playbook(AB)
    world.playbook(
        AB.replace("welcome-test", "answer")
        .replace("marketing", "transactional")
        .replace("holdout: 20%", "")
    )
    world.template("bold", "BIG NEWS {{ first_name }}!")
    for number in range(100):
        cid = f"c{number:03d}"
        world.customers.append(customer(cid, preferred="email", cadence=0))
        world.event(cid, "visit", "2026-11-23T12:00:00Z")
    plan = world.run(per_moment=2, control_group=0.3)
    control = {d.customer_id for d in plan.decisions if d.guard == "control-group"}
    assert control == {
        f"c{n:03d}" for n in range(100) if experiments.in_control_group(f"c{n:03d}", 0.3)
    }
    answers = [d for d in plan.decisions if d.playbook == "answer"]
    assert all(d.status == "send" for d in answers) and len(answers) == 100
    assert {d.arm for d in plan.decisions if d.guard == "control-group"} == {"control"}


def test_a_playbook_without_an_experiment_records_no_arm(world):
    world.playbook(
        AB.replace("holdout: 20%", "")
        .replace("goal: {event: order, within: 7d}", "")
        .split("          variants:")[0]
    )
    world.customers.append(customer("c001", preferred="email", cadence=0))
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    [sent] = world.run().decisions
    assert (sent.status, sent.arm) == ("send", "")
    assert world.state.assignments().height == 0


def test_a_variant_held_back_is_recorded_when_it_goes_out(world):
    """Quiet hours hold the message: the customer is reached, in their arm, when it goes out."""
    world.playbook(AB.replace("holdout: 20%", ""))
    world.template("bold", "BIG NEWS {{ first_name }}!")
    world.customers.append(customer("c001", preferred="email", cadence=0))
    world.event("c001", "visit", "2026-11-23T22:00:00Z")
    night = dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC)
    [held] = world.run(night).decisions
    assert (held.status, held.guard) == ("deferred", "quiet-hours") and held.arm
    assert world.state.assignments().height == 0
    [sent] = world.run(dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)).decisions
    assert (sent.status, sent.arm) == ("send", held.arm)
    [(arm, at)] = world.state.assignments().select("arm", "at").iter_rows()
    assert (arm, at) == (held.arm, dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC))


def test_recording_a_plan_twice_assigns_once(world):
    _world(world, 30)
    engine, base = world.engine()
    plan = engine.plan(base, NOW, world.state)
    engine.record(plan, world.state)
    engine.record(plan, world.state)
    assert world.state.assignments().height == 30
