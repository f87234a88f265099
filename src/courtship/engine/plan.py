"""What one moment decided: a ``Decision`` per message, the ``Plan`` that holds them, and the one
table of reasons a decision can give."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any

import polars as pl

#: Why a decision is what it is: one text per guard code, in the order the guards run
#: (``guards.GUARDS``), then what rendering can say. ``{…}`` are filled from the decision.
REASONS = {
    "unknown-friend": "the friend is not a known customer",
    "no-consent": "no consented channel among {channels}",
    "instagram-only": "instagram: outside the 24-hour messaging window, and no other consented "
    "channel",
    "no-name": "no first name: we never send a message that cannot call them by name",
    "duplicate": "already sent with the same dedup key ({key})",
    "template-broken": "held for the next run: its playbook is disabled at this moment, as its "
    "template or dedup key fails ({why})",
    "expired": "held back since {since:%Y-%m-%d %H:%M} UTC, longer than its {expires}: expired",
    "best-hour": "held until {local:%H:%M} local, their best hour",
    "best-hour-window": "held until {local:%H:%M} local, the end of its {within} window (their "
    "best hour, {hour:02d}:00, is beyond it)",
    "quiet-hours": "quiet hours in their time zone: deferred to {end:%H:%M} local",
    "cadence": "their cadence: one marketing message every {cadence} days; the last was "
    "{last:.1f} days ago",
    "cooldown": "the cooldown after {playbook}, until {until:%Y-%m-%d %H:%M} UTC",
    "cap": "the cap of marketing messages: {weekly} a week",
    "suppressed": "suppressed by {winner}",
    "priority": "a higher-priority playbook ({winner}) speaks to them at this moment",
    "channel-cap": "the cap of marketing messages: {cap} on {channel} per moment; waits for the "
    "next run",
    "holdout": "held out of this playbook, to measure it (its holdout: {share})",
    "control-group": "in the project's control group, who get no marketing ({share})",
    "instagram": "instagram: outside the 24-hour messaging window; fell back to {channel}",
    "template-missing": "template file missing",
    "template-failed": "template {file} failed to render: {error}",
}


def reason(code: str, **values: object) -> str:
    """The text of a reason code, filled in."""
    return REASONS[code].format(**values) if code in REASONS else code


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
    #: the stable name of the send step (``Playbook.step_ids``)
    step_id: str = ""
    #: the guard that decided, as a code of ``REASONS`` ("" when nothing stood in the way)
    guard: str = ""
    #: the sequence this message belongs to: when it started, and since when it was held
    started_at: str = ""
    held_since: dt.datetime | None = None
    #: a message sent ``at: best_hour``: since when it waits for the best hour (its window)
    best_from: dt.datetime | None = None
    #: a referral's friend (the referrer is ``customer_id``)
    friend_id: str | None = None
    #: the experiment's arm when it is one (a variant, ``holdout``, ``control``, ``message``)
    arm: str = ""
    #: where it came from: the batch of candidates and the row in it
    origin: tuple[Any, int] | None = None
    #: the channel it was meant for first (the customer's preferred one, or the step's);
    #: ``channel`` differs when it fell back
    wanted: str = ""
    #: the values, at this moment, of the facts its playbook reads (what decided it)
    decided_by: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer": self.customer_id,
            "recipient": self.recipient_id or self.customer_id,
            "playbook": self.playbook,
            "step": self.step,
            "step_id": self.step_id,
            "category": self.category,
            "channel": self.channel,
            "tone": self.tone,
            "template": self.template,
            "status": self.status,
            "reason": self.reason,
            "guard": self.guard,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "subject": self.subject,
            "text": self.text,
            "key": self.key,
            **({"arm": self.arm} if self.arm else {}),
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
    #: the split arms customers were put in at this moment, as ``assignments`` rows
    #: (playbook, customer_id, step_id, arm, at)
    assigned: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    #: which way each customer went at a split or a branch (playbook, customer_id, step_id,
    #: "arm <id>" | "then" | "else")
    routes: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: per ``becomes`` playbook: the customers whose condition holds now (customer_id,
    #: true_since, fired) — saved beside the state store, read back by the next run
    streaks: dict[str, pl.DataFrame] = field(default_factory=dict)
    #: the facts as the moment left them, until the messages are rendered
    facts: pl.DataFrame | None = field(default=None, repr=False)
    #: what the facts aggregated per customer, kept beside the state for the next run
    #: (``courtship.engine.carry``), until the plan is recorded
    aggregates: Any = field(default=None, repr=False)
    #: how many customers' aggregates were worked out (fewer than all: the last run's were
    #: carried on), and of how many
    aggregated: tuple[int, int] | None = None
    #: per edited playbook: how many waiting customers the edit moved to the step's new place
    #: and how many it let go (their step is gone), with why
    edits: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def sends(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "send"]

    @property
    def deferred(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "deferred"]

    @property
    def blocked(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "blocked"]

    @property
    def fallbacks(self) -> dict[str, int]:
        """Messages that go out on another channel than the one meant first, as
        ``"instagram → email": count`` (no consent or address there, or outside its window)."""
        counts: dict[str, int] = {}
        for d in self.sends:
            if d.wanted and d.channel and d.channel != d.wanted:
                key = f"{d.wanted} → {d.channel}"
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))


@functools.lru_cache(maxsize=64)
def iso(moment: dt.datetime) -> str:
    """An instant as the state store writes it: ISO 8601 in UTC."""
    return moment.astimezone(dt.UTC).isoformat()
