"""What the tests share: a small project in a temp folder (``World``) with playbooks,
templates, customers, events and a real SQLite state file, and the moment they run at."""

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from courtship.engine import Engine
from courtship.project import Project
from courtship.sources import CustomerBase, empty_events, read_customers_csv, read_events_jsonl
from courtship.state import StateStore
from courtship.validate import validate_paths

HEADER = (
    "customer_id,first_name,last_name,email,phone,instagram_id,timezone,language,city,persona,"
    "birthday,signup_date,stage,tags,preferred_channel,cadence_days,tone,consent_email,"
    "consent_sms,consent_instagram"
)
NOW = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)


def customer(
    cid,
    first="Maya",
    tz="Europe/London",
    birthday="1990-05-02",
    preferred="sms",
    cadence=14,
    tone="buddy",
    email=True,
    sms=True,
    insta=False,
    stage="active",
):
    return (
        f"{cid},{first},Doe,{cid}@example.org,+447700900{cid[-3:]},ig{cid},{tz},en,Leeds,"
        f"coffee-regular,{birthday},2023-01-10,{stage},,{preferred},{cadence},{tone},"
        f"{str(email).lower()},{str(sms).lower()},{str(insta).lower()}"
    )


class World:
    """A project in a temp folder: playbooks, templates, customers, events, a state file.
    ``plan`` decides a moment (recording nothing), ``run`` decides and records it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "playbooks" / "templates").mkdir(parents=True)
        self.customers: list[str] = []
        self.events: list[str] = []
        self.state = StateStore(root / "state.sqlite")
        self.template(
            "hello", "Hi {{ first_name }}!{% if offer.code %} {{ offer.code }}{% endif %}"
        )

    def playbook(self, text: str) -> None:
        data = textwrap.dedent(text)
        pb_id = data.split("id:", 1)[1].split()[0]
        (self.root / "playbooks" / f"{pb_id}.yaml").write_text(data)

    def template(self, name: str, body: str) -> None:
        (self.root / "playbooks" / "templates" / f"{name}.md").write_text(body + "\n")

    def event(self, cid: str, kind: str, at: str, **fields: object) -> None:
        extra = "".join(f', "{k}": {v!r}'.replace("'", '"') for k, v in fields.items())
        self.events.append(f'{{"customer_id": "{cid}", "type": "{kind}", "at": "{at}"{extra}}}')

    def engine(self, **project: object) -> tuple[Engine, CustomerBase]:
        report = validate_paths([self.root / "playbooks"])
        assert report.errors == [], [str(f) for f in report.errors]
        (self.root / "customers.csv").write_text("\n".join([HEADER, *self.customers]) + "\n")
        (self.root / "events.jsonl").write_text("\n".join(self.events) + "\n")
        events = read_events_jsonl(self.root / "events.jsonl") if self.events else empty_events()
        base = CustomerBase(read_customers_csv(self.root / "customers.csv"), events)
        settings = {"root": self.root, "playbooks": self.root / "playbooks"} | project
        return Engine(report.playbooks, Project(**settings)), base

    def plan(self, at=NOW, **project):
        engine, base = self.engine(**project)
        return engine.plan(base, at, self.state)

    def run(self, at=NOW, **project):
        engine, base = self.engine(**project)
        plan = engine.plan(base, at, self.state)
        engine.record(plan, self.state)
        return plan


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.state.close()


#: A win-back sequence: a message, a week's wait unless they order, then a grand gesture.
SEQUENCE = """
    id: win-back
    title: Win back
    stage: churned
    category: marketing
    trigger: {event: goodbye}
    respond:
      - send: {channel: preferred, template: hello}
      - wait: 7d
        unless: {event: order}
      - send: {channel: preferred, template: hello, offer: {percent_off: 30}}
"""
