"""``learning: {preferred_channel: learned}``: ``channel: preferred`` is the learned
``best_channel`` for a customer whose file names no preferred channel; ``explain`` says which
it used and why."""

from __future__ import annotations

import datetime as dt

from typer.testing import CliRunner

from courtship.cli import app
from courtship.project import ProjectError, load_project
from tests.conftest import NOW, customer

PREFERRED = """
    id: on-their-channel
    title: On their channel
    stage: active
    category: marketing
    trigger: {event: goodbye}
    respond:
      - send: {channel: preferred, template: hello}
"""


def story(world) -> None:
    world.playbook(PREFERRED)
    world.customers += [
        customer("c001", preferred="", cadence=0),  # no preferred channel; answers sms
        customer("c002", preferred="email", cadence=0),  # the file says email; answers sms
        customer("c003", preferred="", email=False, sms=False, cadence=0),  # nothing to use
    ]
    for cid in ("c001", "c002"):
        for days in (30, 20, 10):
            sent = NOW - dt.timedelta(days=days)
            world.event(cid, "sent", f"{sent:%Y-%m-%dT%H:%M:%SZ}", channel="sms")
            world.event(cid, "click", f"{sent + dt.timedelta(hours=2):%Y-%m-%dT%H:%M:%SZ}")
    for cid in ("c001", "c002", "c003"):
        world.event(cid, "goodbye", "2026-11-23T14:00:00Z")


def channels(plan) -> dict[str, tuple[str | None, str]]:
    return {d.customer_id: (d.channel, d.status) for d in plan.decisions}


def test_by_default_preferred_is_the_file_s_only(world):
    story(world)
    assert channels(world.plan()) == {
        "c001": (None, "blocked"),  # no preferred channel and no fallback
        "c002": ("email", "send"),
        "c003": (None, "blocked"),
    }


def test_learned_preferred_channel_stands_in_when_the_file_has_none(world):
    story(world)
    assert channels(world.plan(preferred_channel="learned")) == {
        "c001": ("sms", "send"),  # their learned best_channel
        "c002": ("email", "send"),  # the file wins
        "c003": (None, "blocked"),  # nothing consented, nothing learned
    }


def test_explain_says_which_channel_preferred_is_and_why(world):
    story(world)
    world.engine()
    (world.root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state.sqlite\nlearning: {preferred_channel: learned}\n"
    )
    runner = CliRunner()

    def explain(cid: str) -> str:
        result = runner.invoke(
            app, ["explain", cid, "--at", "2026-11-23T15:00:00Z", "--project", str(world.root)]
        )
        assert result.exit_code == 0, result.output
        return result.stdout

    assert (
        "channel: preferred is sms, their learned best_channel: the customer file names no "
        "preferred channel (learning.preferred_channel: learned)" in explain("c001")
    )
    assert "→ send on sms (buddy)" in explain("c001")
    assert (
        "channel: preferred is email, their own preferred channel from the customer file (the "
        "learned best_channel, sms, stands in only when the file has none)" in explain("c002")
    )


def test_the_project_file_is_checked(tmp_path):
    (tmp_path / "courtship.yaml").write_text(
        "playbooks: playbooks\nlearning:\n  preferred_channel: best\n  churn_horizon: 3d\n"
    )
    try:
        load_project(tmp_path)
    except ProjectError as error:
        messages = [f"{f.line}:{f.col} {f.rule_id} {f.message}" for f in error.findings]
    else:
        raise AssertionError("a bad learning: section loaded")
    assert any(
        m.startswith("3:22 schema") and "'best' is not a valid preferred_channel" in m
        for m in messages
    ), messages
    assert "4:18 bad-duration '3d' is no horizon to judge churn by (learning.churn_horizon)" in (
        messages
    ), messages
