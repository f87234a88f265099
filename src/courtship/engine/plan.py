"""What one moment decided: a ``Decision`` per message, the ``Plan`` that holds them, and the one
table of reasons a decision can give."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any

import polars as pl

#: Why a decision did not become a send, in guard order.
REASONS = {
    "no-consent": "no consented channel among {channels}",
    "no-name": "no first name: we never send a message that cannot call them by name",
    "quiet-hours": "quiet hours in their time zone: deferred",
    "cadence": "their cadence: one marketing message every {cadence} days",
    "cap": "the cap of marketing messages",
    "priority": "a higher-priority playbook ({winner}) speaks to them at this moment",
    "suppressed": "suppressed by {winner}",
    "duplicate": "already sent with the same dedup key",
}


@dataclass(slots=True)
class Decision:
    """One message the engine decided about (sent, deferred or blocked), with why."""

    customer_id: str
    playbook: str
    step: int
    category: str
    priority: int
    channel: str | None
    tone: str
    template: str
    status: str  # send | deferred | blocked
    reason: str = ""
    due_at: dt.datetime | None = None
    dedup_key: str | None = None
    to: str = "customer"
    recipient_id: str = ""
    subject: str = ""
    text: str = ""
    channels: list[str] = field(default_factory=list)  # the consented channels, in order
    addresses: dict[str, str] = field(default_factory=dict)
    hours_since_last_inbound: float | None = None
    unsubscribe_url: str | None = None
    max_segments: int | None = None
    offer: dict[str, Any] | None = None
    key: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer": self.customer_id,
            "recipient": self.recipient_id or self.customer_id,
            "playbook": self.playbook,
            "step": self.step,
            "category": self.category,
            "channel": self.channel,
            "tone": self.tone,
            "template": self.template,
            "status": self.status,
            "reason": self.reason,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "subject": self.subject,
            "text": self.text,
            "key": self.key,
        }


@dataclass
class Plan:
    """What one moment decided. Recording it (``Engine.record``) makes it happen exactly once."""

    now: dt.datetime
    since: dt.datetime
    decisions: list[Decision] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    fired: dict[str, list[str]] = field(default_factory=dict)
    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    disabled: dict[str, str] = field(default_factory=dict)
    customer_facts: dict[str, Any] | None = None
    #: per ``becomes`` playbook: the customers whose condition holds now (customer_id,
    #: true_since, fired) — saved beside the state store, read back by the next run
    streaks: dict[str, pl.DataFrame] = field(default_factory=dict)
    #: the facts as the moment left them, until the messages are rendered
    facts: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def sends(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "send"]

    @property
    def deferred(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "deferred"]

    @property
    def blocked(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "blocked"]


@functools.lru_cache(maxsize=64)
def iso(moment: dt.datetime) -> str:
    """An instant as the state store writes it: ISO 8601 in UTC."""
    return moment.astimezone(dt.UTC).isoformat()
