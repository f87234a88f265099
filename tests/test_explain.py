"""`courtship explain`: one customer's story reads well, whatever is missing from their file."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship.cli import app
from courtship.cli.explain import render
from courtship.engine import Decision, Plan

runner = CliRunner()
NOW = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
AT = "2026-11-23T15:00:00Z"
HEADER = (
    "customer_id,first_name,last_name,email,phone,instagram_id,timezone,language,city,persona,"
    "birthday,signup_date,stage,tags,preferred_channel,cadence_days,tone,consent_email,"
    "consent_sms,consent_instagram"
)
ADA = "c-001,Ada,Lovelace,ada@example.org,,,Europe/London,en,,,,2023-01-10,active,,email,14,buddy"
GRACE = "c-002,Grace,Hopper,grace@example.org,,,Europe/London,en,,,,2023-01-10,new,,email,14,direct"


class Project:
    """A project folder: courtship.yaml, playbooks, a template, customers and events."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "playbooks" / "templates").mkdir(parents=True)
        (root / "playbooks" / "templates" / "hello.md").write_text("Hi {{ first_name }}!\n")
        (root / "courtship.yaml").write_text(
            "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
            "state: state.sqlite\n"
        )
        self.customers: list[str] = []
        self.events: list[dict[str, object]] = []

    def playbook(self, text: str) -> None:
        data = textwrap.dedent(text)
        pb_id = data.split("id:", 1)[1].split()[0]
        (self.root / "playbooks" / f"{pb_id}.yaml").write_text(data)

    def write(self) -> None:
        rows = [f"{row},true,false,false" for row in self.customers]
        (self.root / "customers.csv").write_text("\n".join([HEADER, *rows]) + "\n")
        (self.root / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in self.events))

    def invoke(self, *args: str) -> str:
        self.write()
        result = runner.invoke(app, [*args, "--project", str(self.root)])
        assert result.exit_code == 0, result.output
        return result.stdout

    def explain(self, customer: str, at: str = AT) -> str:
        return self.invoke("explain", customer, "--at", at)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def habits_line(text: str) -> str:
    return text.splitlines()[1].strip()


# ── the customer's habits, in words ──────────────────────────────────────────


def test_empty_stage_channel_tone_and_cadence_are_said_in_words() -> None:
    plan = Plan(now=NOW, since=NOW - dt.timedelta(hours=24))
    plan.customer_facts = {"first_name": "Eve", "stage": None, "preferred_channel": None}
    text = render("c-0042", plan, [])
    assert habits_line(text) == (
        "no stage, no preferred channel, tone direct (default), no cadence"
    )
    assert "None" not in text


def test_known_habits_are_printed_as_they_are() -> None:
    plan = Plan(now=NOW, since=NOW - dt.timedelta(hours=24))
    plan.customer_facts = {
        "stage": "loyal",
        "preferred_channel": "sms",
        "tone": "buddy",
        "cadence_days": 1,
    }
    text = render("c-0042", plan, [])
    assert habits_line(text) == "stage loyal, prefers sms, tone buddy, cadence 1 day"


def test_a_customer_read_from_a_file_with_empty_cells(project: Project) -> None:
    project.customers.append("c-003,Eve,,eve@example.org,,,,en,,,,2023-01-10,,,,,")
    project.playbook(SINCE_LAST_WEEK)
    out = project.explain("c-003")
    assert out.startswith("c-003 Eve at 2026-11-23T15:00:00Z (UTC, 2026-11-23 15:00 local)\n")
    assert habits_line(out) == "no stage, no preferred channel, tone direct (default), no cadence"


# ── messages ─────────────────────────────────────────────────────────────────


def test_a_message_blocked_before_any_channel_says_why_not_where() -> None:
    plan = Plan(now=NOW, since=NOW - dt.timedelta(hours=24))
    blocked = Decision(
        customer_id="c-0042",
        playbook="birthday",
        step=0,
        category="marketing",
        priority=50,
        channel=None,
        tone="buddy",
        template="birthday",
        status="blocked",
        reason="no consent on any channel (email, sms)",
        recipient_id="c-0042",
    )
    entry = {"playbook": "birthday", "outcome": "fired", "why": [], "messages": [blocked.as_dict()]}
    text = render("c-0042", plan, [entry])
    assert "    → blocked: no consent on any channel (email, sms)" in text.splitlines()
    assert "None" not in text


def test_a_blocked_message_from_a_real_plan(project: Project) -> None:
    project.customers.append(ADA.replace("ada@example.org", ""))  # consents to email, no address
    project.events.append({"customer_id": "c-001", "type": "order", "at": "2026-11-23T12:00:00Z"})
    project.playbook(
        """
        id: hello
        title: Hello
        stage: active
        category: marketing
        trigger: {event: order}
        respond:
          - send: {channel: email, template: hello}
        """
    )
    out = project.explain("c-001")
    [line] = [line for line in out.splitlines() if "→" in line]
    assert line.startswith("    → blocked: ")
    assert "None" not in out


ADA_REFERS_GRACE = {
    "customer_id": "c-001",
    "type": "referral",
    "at": "2026-11-23T12:00:00Z",
    "friend_id": "c-002",
}
REFERRAL = """
    id: welcome-friends
    title: Welcome their friends
    stage: advocate
    category: marketing
    trigger:
      event: referral
      where: {field: friend_id, exists: true}
    respond:
      - send: {channel: email, template: hello}
      - send: {to: friend, channel: email, template: hello}
"""


def test_the_friends_welcome_is_told_in_the_friends_story(project: Project) -> None:
    project.customers += [ADA, GRACE]
    project.events.append(ADA_REFERS_GRACE)
    project.playbook(REFERRAL)
    friend = project.explain("c-002")
    assert "welcome-friends                fired for c-001 (as their friend)" in friend
    assert "→ send on email (direct), to them as the friend of c-001" in friend
    assert "Hi Grace!" in friend
    assert "not triggered" not in friend.split("welcome-friends", 1)[1]

    referrer = project.explain("c-001")
    assert "welcome-friends                fired\n" in referrer
    assert "→ send on email (direct) to their friend c-002" in referrer
    assert "Hi Ada!" in referrer


def test_json_lists_the_friends_welcome_with_its_sender(project: Project) -> None:
    project.customers += [ADA, GRACE]
    project.events.append(ADA_REFERS_GRACE)
    project.playbook(REFERRAL)
    payload = json.loads(project.invoke("explain", "c-002", "--at", AT, "--format", "json"))
    [entry] = [p for p in payload["playbooks"] if p["playbook"] == "welcome-friends"]
    assert entry["outcome"] == "fired for c-001 (as their friend)"
    [message] = entry["messages"]
    sender_and_recipient = (message["customer"], message["recipient"], message["to"])
    assert sender_and_recipient == ("c-001", "c-002", "friend")


# ── a becomes that holds but did not fire ────────────────────────────────────

SINCE_LAST_WEEK = """
    id: regulars
    title: Thank the regulars
    stage: active
    category: marketing
    trigger:
      becomes: {fact: orders_count, gte: 1}
    respond:
      - send: {channel: email, template: hello}
"""


def becomes_reason(out: str) -> str:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("regulars "))
    assert lines[start].split()[1:] == ["not", "triggered"]
    return lines[start + 1]


def test_on_a_fresh_store_a_condition_true_before_the_window_was_taken_as_answered(
    project: Project,
) -> None:
    project.customers.append(ADA)
    project.events.append({"customer_id": "c-001", "type": "order", "at": "2026-11-16T10:00:00Z"})
    project.playbook(SINCE_LAST_WEEK)
    reason = becomes_reason(project.explain("c-001"))
    assert reason == (
        "    · the condition holds, but it was already true before this window began "
        "(2026-11-22 15:00 UTC), so a first run takes it as already answered"
    )
    assert not (project.root / "state.sqlite").exists()  # explain records nothing


def test_with_history_a_condition_that_stayed_true_already_fired(project: Project) -> None:
    project.customers.append(ADA)
    project.events.append({"customer_id": "c-001", "type": "order", "at": "2026-11-16T10:00:00Z"})
    project.playbook(SINCE_LAST_WEEK)
    project.invoke("run", "--at", "2026-11-16T12:00:00Z")  # fired then: the order was new
    reason = becomes_reason(project.explain("c-001"))
    assert reason == "    · the condition holds, but it already fired while it stayed true"
