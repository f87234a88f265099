"""``split:`` (random arms by weight, stable, recorded as assignments) and ``branch:`` (``if``
→ ``then`` / ``else``) inside a sequence: across moments, with the guards, repeated runs, an
edit while customers wait in an arm, and in plan and explain."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from courtship.cli import app
from courtship.experiments import results
from tests.conftest import NOW, customer

SPLIT = """
    id: nudge
    title: Nudge
    stage: active
    category: marketing
    trigger: {event: goodbye}
    respond:
      - split:
          - id: now
            weight: 1
            steps:
              - send: {channel: email, template: hello}
          - id: later
            weight: 3
            steps:
              - wait: 2d
              - send: {channel: email, template: hello}
      - branch:
          if: {fact: total_spent, gte: 100}
          then:
            - tag: vip
          else:
            - tag: regular
            - send: {channel: sms, template: hello}
"""
LATER = NOW + dt.timedelta(days=2, hours=1)


def people(world, count: int, **kwargs) -> list[str]:
    ids = [f"c{n:03d}" for n in range(count)]
    world.customers += [customer(cid, cadence=0, **kwargs) for cid in ids]
    for cid in ids:
        world.event(cid, "goodbye", "2026-11-23T14:00:00Z")
    return ids


def arms(plan) -> dict[str, str]:
    return {c: way.removeprefix("arm ") for _, c, step, way in plan.routes if step == "split"}


def test_each_customer_goes_down_one_arm_by_weight_the_same_at_every_run(world, tmp_path):
    world.playbook(SPLIT)
    ids = people(world, 400)
    plan = world.plan()
    picked = arms(plan)
    assert sorted(picked) == ids
    later = sum(arm == "later" for arm in picked.values())
    assert 240 < later < 360  # weight 3 of 4: about 300 (binomial sd ≈ 8.7)
    # Planned again, and from another state store: the same arms.
    assert arms(world.plan()) == picked
    from courtship.state import StateStore

    other = StateStore(tmp_path / "other.sqlite")
    engine, base = world.engine()
    assert arms(engine.plan(base, NOW, other)) == picked
    other.close()
    # The arm-now customers got their message at once; the others wait.
    sent = {d.customer_id for d in plan.decisions if d.step_id == "split/now/send:hello"}
    assert sent == {c for c, arm in picked.items() if arm == "now"}


def test_a_customer_waiting_in_an_arm_resumes_in_it_then_goes_on_after_the_split(world):
    world.playbook(SPLIT)
    world.customers += [customer("c001", cadence=0)]
    world.event("c001", "goodbye", "2026-11-23T14:00:00Z")
    world.customers += [customer("c002", cadence=0)]
    world.event("c002", "goodbye", "2026-11-23T14:00:00Z")
    world.event("c002", "order", "2026-11-01T10:00:00Z", amount=150)
    first = world.run()
    picked = arms(first)
    assert picked == {"c001": "later", "c002": "later"}  # by their hash, weight 3 of 4
    assert first.decisions == []
    assert world.run(NOW + dt.timedelta(days=1)).decisions == []
    resumed = world.run(LATER)
    assert arms(resumed) == {}  # nobody is split again
    assert [(d.customer_id, d.step_id, d.status) for d in resumed.decisions] == [
        ("c001", "split/later/send:hello", "send"),
        ("c002", "split/later/send:hello", "send"),
        ("c001", "branch/else/send:hello", "send"),  # after the split, the branch
    ]
    ways = {c: way for _, c, step, way in resumed.routes if step == "branch"}
    assert ways == {"c001": "else", "c002": "then"}  # c002 spent 150
    assert _tags(world, "c002") == {"vip"}
    assert _tags(world, "c001") == {"regular"}
    assert world.run(LATER + dt.timedelta(days=3)).decisions == []  # the sequence is over


def test_splits_are_recorded_as_assignments_and_results_report_their_arms(world):
    world.playbook(
        SPLIT.replace("    respond:", "    goal: {event: order, within: 30d}\n    respond:")
    )
    ids = people(world, 40)
    plan = world.run()
    assignments = world.state.assignments()
    rows = assignments.filter(assignments["step_id"] == "split")
    assert dict(rows.select("customer_id", "arm").iter_rows()) == arms(plan)
    # A run at a later moment assigns nobody again, and the first assignment stands.
    world.run(LATER)
    again = world.state.assignments()
    assert again.filter(again["step_id"] == "split").height == len(ids)
    _, base = world.engine()
    report = results("nudge", {"event": "order"}, again, base.events, dt.timedelta(days=30))
    reached = {row["arm"]: row["reached"] for row in report["arms"]}
    picked = arms(plan)
    assert reached == {
        "now": sum(a == "now" for a in picked.values()),
        "later": sum(a == "later" for a in picked.values()),
    }


GUARDED = """
    id: nudge
    title: Nudge
    stage: active
    category: marketing
    trigger: {event: goodbye}
    respond:
      - split:
          - id: now
            weight: 0.0001
            steps:
              - send: {channel: email, template: hello}
          - id: later
            steps:
              - wait: 2d
              - send: {channel: email, template: hello}
      - branch:
          if: {fact: total_spent, gte: 100}
          then:
            - tag: vip
          else:
            - send: {channel: sms, template: hello}
            - tag: regular
"""


def test_the_guards_judge_messages_in_arms_and_branches_as_anywhere(world):
    """A message held by quiet hours in an arm waits there; no consent for the sms of the
    else side blocks it, which ends the sequence (its tag never happens)."""
    world.playbook(GUARDED)
    world.customers += [customer("c001", cadence=0, sms=False)]
    world.event("c001", "goodbye", "2026-11-23T14:00:00Z")
    world.run()
    at_night = dt.datetime(2026, 11, 25, 22, 0, tzinfo=dt.UTC)
    held = world.run(at_night, quiet_start=dt.time(21), quiet_end=dt.time(8)).decisions
    assert [(d.step_id, d.guard) for d in held] == [("split/later/send:hello", "quiet-hours")]
    morning = world.run(
        dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC),
        quiet_start=dt.time(21),
        quiet_end=dt.time(8),
    ).decisions
    assert [(d.step_id, d.status, d.guard) for d in morning] == [
        ("split/later/send:hello", "send", ""),
        ("branch/else/send:hello", "blocked", "no-consent"),
    ]
    assert _tags(world, "c001") == set()  # the blocked sms ended the sequence


def test_an_edit_while_customers_wait_in_an_arm_follows_their_step(world):
    world.playbook(SPLIT)
    world.customers += [customer("c001", cadence=0)]
    world.event("c001", "goodbye", "2026-11-23T14:00:00Z")
    assert arms(world.run()) == {"c001": "later"}
    # A step added to the other arm changes nothing for them: their step keeps its name.
    world.playbook(
        SPLIT.replace(
            "              - send: {channel: email, template: hello}\n          - id: later",
            "              - send: {channel: email, template: hello}\n              - tag: quick\n"
            "          - id: later",
        )
    )
    moved = world.plan(NOW + dt.timedelta(days=1))
    # their step moved one place down the flow (the new tag comes before it), and they stay
    assert moved.edits == {"nudge": {"moved": 1, "let_go": 0}}
    resumed = world.plan(LATER)
    assert [d.step_id for d in resumed.decisions][:1] == ["split/later/send:hello"]
    # Renaming their arm removes their step: they are let go, with the reason.
    world.playbook(SPLIT.replace("id: later", "id: slow"))
    gone = world.plan(LATER)
    assert gone.edits == {"nudge": {"moved": 0, "let_go": 1}}
    assert gone.decisions == []
    left = [e for e in gone.changes["enrollments"] if e[5] == "left"]
    assert "its step split/later/wait:2d is gone" in json.loads(left[0][6])["reason"]


def _project(world) -> None:
    (world.root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state.sqlite\n"
    )


def test_plan_and_explain_show_the_way_each_customer_went(world):
    world.playbook(SPLIT.replace("weight: 3", "weight: 0.0001"))  # everyone goes now
    world.customers += [customer("c001", cadence=0), customer("c002", cadence=0)]
    world.event("c001", "goodbye", "2026-11-23T14:00:00Z")
    world.event("c002", "goodbye", "2026-11-23T14:00:00Z")
    world.event("c002", "order", "2026-11-01T10:00:00Z", amount=150)
    world.engine()
    _project(world)
    runner = CliRunner()
    text = runner.invoke(
        app, ["plan", "--at", "2026-11-23T15:00:00Z", "--project", str(world.root)]
    )
    assert text.exit_code == 0, text.output
    assert "splits and branches:" in text.stdout
    assert "nudge                                 2  split: arm now" in text.stdout
    assert "nudge                                 1  branch: then" in text.stdout
    assert "nudge                                 1  branch: else" in text.stdout
    data = json.loads(
        runner.invoke(
            app,
            ["plan", "--at", "2026-11-23T15:00:00Z", "--project", str(world.root), "-f", "json"],
        ).stdout
    )
    assert {"playbook": "nudge", "step_id": "split", "way": "arm now", "customers": 2} in data[
        "routes"
    ]
    result = runner.invoke(
        app, ["explain", "c002", "--at", "2026-11-23T15:00:00Z", "--project", str(world.root)]
    )
    assert result.exit_code == 0, result.output
    assert "split: arm now, picked by weight from a hash of the customer" in result.stdout
    assert "branch: then (total_spent gte 100: total_spent is 150)" in result.stdout


def test_lint_names_a_branch_whose_condition_never_holds(world):
    from courtship.lint import lint_report
    from courtship.validate import validate_paths

    world.playbook(
        SPLIT.replace(
            "if: {fact: total_spent, gte: 100}",
            "if: {all: [{fact: total_spent, gte: 100}, {fact: total_spent, lt: 50}]}",
        )
    )
    findings = lint_report(validate_paths([world.root / "playbooks"]), {}, world.root)
    never = [f for f in findings if f.rule_id == "never-true"]
    assert len(never) == 1
    assert "its branch's then steps never run" in never[0].message


def _tags(world, cid: str) -> set[str]:
    tags = world.state.set_tags()
    return {r["tag"] for r in tags.filter(tags["customer_id"] == cid).to_dicts() if r["present"]}


def test_a_fact_set_inside_a_branch_is_declared_for_the_playbooks_that_read_it(world):
    world.playbook(
        SPLIT.replace("            - tag: vip", "            - set: {fact: vip_since, value: now}")
    )
    world.playbook("""
    id: after-vip
    title: After VIP
    stage: active
    category: marketing
    trigger: {schedule: {every: 1d}, at: "10:00"}
    audience: {fact: vip_since, exists: true}
    respond:
      - send: {channel: email, template: hello}
""")
    engine, _ = world.engine()  # validates clean: vip_since is known, a datetime
    assert engine.order.index("nudge") < engine.order.index("after-vip")
