"""The outbox: a plan's messages as the rows the state store keeps (the ``sends`` table), before
any channel sees them. Only messages that go out are rows: a deferred one waits at its step of
the sequence (an enrollment) and is judged again when it is due; a blocked one never goes out."""

from __future__ import annotations

import json
from typing import NamedTuple

from courtship.engine.plan import Plan, iso


class OutboxRow(NamedTuple):
    """One message in the outbox, keyed by its idempotency key (the ``sends`` table's columns,
    in order)."""

    key: str
    customer_id: str
    playbook: str
    channel: str | None
    category: str
    tone: str
    dedup_key: str | None
    at: str
    due_at: str
    status: str
    subject: str
    text: str
    channels: str
    addresses: str
    hours_since_last_inbound: float | None
    unsubscribe_url: str | None
    max_segments: int | None
    attempts: int = 0
    provider_id: str | None = None
    error: str | None = None


def outbox_rows(plan: Plan) -> list[OutboxRow]:
    """Every message of ``plan`` that goes out, and every team notification."""
    stamp = iso(plan.now)
    rows = [
        OutboxRow(
            key=d.key,
            customer_id=d.recipient_id,
            playbook=d.playbook,
            channel=d.channel,
            category=d.category,
            tone=d.tone,
            dedup_key=d.dedup_key,
            at=stamp,
            due_at=stamp,
            status="pending",
            subject=d.subject,
            text=d.text,
            channels=json.dumps(d.channels),
            addresses=json.dumps(d.addresses),
            hours_since_last_inbound=d.hours_since_last_inbound,
            unsubscribe_url=d.unsubscribe_url,
            max_segments=d.max_segments,
        )
        for d in plan.decisions
        if d.status == "send"
    ]
    rows += [
        OutboxRow(
            key=note["key"],
            customer_id=note["customer"],
            playbook=note["playbook"],
            channel="team",
            category="transactional",
            tone="direct",
            dedup_key=None,
            at=stamp,
            due_at=stamp,
            status="pending",
            subject=note["subject"],
            text=note["text"],
            channels=json.dumps(["team"]),
            addresses=json.dumps({"team": note["team"]}),
            hours_since_last_inbound=None,
            unsubscribe_url=None,
            max_segments=None,
        )
        for note in plan.notifications
    ]
    return rows
