"""Delivery: the outbox in the state store, dispatched through channel plugins.

Every decided message is a row of the ``sends`` table, keyed by its idempotency key, before any
channel sees it (``Engine.record``). Dispatch then takes the rows that are due:

1. the channel's ``check`` may refuse (Instagram's 24-hour window, too many SMS segments): the
   message falls back to the next channel the customer consented to, or fails with the reason;
2. the row is marked ``sending`` (committed), then the channel sends it;
3. ``delivered`` is committed at once; ``retry`` (timeouts, HTTP 429 and 5xx, SMTP 4xx) is due
   again after an exponential backoff with jitter, or the provider's Retry-After if longer;
   ``failed`` (and a retry past ``max_attempts``) falls back, or records the provider's reason.

A run killed at any point resumes with the next run: rows still ``pending``, ``retry`` or
``sending`` are due. The one window no local bookkeeping can close is a provider that accepted a
message while the process died before committing ``delivered``: that message is sent again
(at least once); SMTP messages keep their ``Message-ID`` so mail clients merge the copy, and the
outbox channel drops the repeated key itself.

A full disk (the state store's, or the outbox folder's) stops dispatch with :class:`DiskFull`
before the next message is tried. A message a provider accepted is noted in space set aside
beforehand (``StateStore.note_accepted``) before ``delivered`` is committed, so a commit that
fails then loses nothing: the next run records it delivered and does not send it again.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from courtship.channels import Channel, Delivery, Message
from courtship.engine.consent import withdrawn_for
from courtship.redaction import describe, redact
from courtship.state import NO_SPACE, DiskFull, StateStore

DUE = ("pending", "deferred", "retry", "sending")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff: dt.timedelta = dt.timedelta(minutes=1)
    max_backoff: dt.timedelta = dt.timedelta(hours=6)
    jitter: float = 0.2  # ± this fraction of the backoff

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> dt.timedelta:
        """Backoff after ``attempts`` tries: backoff times 2^(attempts-1), capped, with
        jitter; never sooner than the provider's Retry-After, itself capped by
        ``max_backoff``."""
        base = min(self.backoff * 2 ** max(0, attempts - 1), self.max_backoff)
        jittered = base * (1 + rng.uniform(-self.jitter, self.jitter))
        # A provider's Retry-After counts up to max_backoff; one that is no number of
        # seconds (negative, infinite, not a number) is ignored.
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            wait = min(retry_after, self.max_backoff.total_seconds())
            jittered = max(jittered, dt.timedelta(seconds=wait))
        return jittered


@dataclass
class DispatchReport:
    delivered: Counter[str] = field(default_factory=Counter)
    retrying: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    fell_back: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": dict(self.delivered),
            "retrying": dict(self.retrying),
            "failed": dict(self.failed),
            "fell_back": dict(self.fell_back),
            "failures": self.failures,
        }


class Dispatcher:
    """Sends the due rows of the outbox through ``channels`` (logical name → channel)."""

    def __init__(
        self,
        state: StateStore,
        channels: Mapping[str, Channel],
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self.channels = channels
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.consent_changes: list[dict[str, Any]] = []

    def due(self, now: dt.datetime) -> list[dict[str, Any]]:
        return self.state.due_sends(now, DUE)

    def dispatch(
        self, now: dt.datetime, progress: Callable[[int, int], None] | None = None
    ) -> DispatchReport:
        report = DispatchReport()
        # An unsubscribe, a STOP or a bounce recorded since a message was decided stops it too.
        self.consent_changes = self.state.consent_changes()
        rows = self.due(now)
        for done, row in enumerate(rows, 1):
            self._one(row, now, report)
            if progress:
                progress(done, len(rows))
        return report

    # ── one message ───────────────────────────────────────────────────────
    def _one(self, row: dict[str, Any], now: dt.datetime, report: DispatchReport) -> None:
        while True:  # a fallback tries the next channel at once
            name = row["channel"]
            channel = self.channels.get(name)
            message = self._message(row)
            if channel is None:
                refusal: str | None = f"no channel '{name}' is configured"
            else:
                refusal = self._withdrawn(message, now) or channel.check(message)
            if refusal is not None:
                if self._fall_back(row, now, redact(f"{name}: {refusal}"), report):
                    continue
                return
            assert channel is not None
            attempt = row["attempts"] + 1
            self.state.mark_sending(row["key"], attempt)
            try:
                delivery = channel.send(message)
            except OSError as error:
                if error.errno in NO_SPACE:  # not the message's fault: stop, resume next run
                    raise DiskFull(f"the {name} channel cannot write ({error})") from None
                delivery = Delivery.retry(f"the {name} channel raised {error!r}")
            except Exception as error:
                delivery = Delivery.retry(f"the {name} channel raised {describe(error)}")
            if delivery.status == "delivered":  # kept even if the commits below fail
                self.state.note_accepted(row["key"], delivery.provider_id)
            self.state.log_attempt(row["key"], attempt, now, name, delivery.status, delivery.reason)
            if delivery.status == "delivered":
                self.state.mark_delivered(row["key"], delivery.provider_id)
                report.delivered[name] += 1
                return
            if delivery.status == "retry" and attempt < self.policy.max_attempts:
                due = now + self.policy.delay(attempt, delivery.retry_after, self.rng)
                self.state.mark_retry(row["key"], due, delivery.reason)
                report.retrying[name] += 1
                return
            reason = delivery.reason
            if delivery.status == "retry":
                reason = f"gave up after {attempt} attempts: {reason}"
            if self._fall_back(row, now, f"{name}: {reason}", report):
                row["attempts"] = 0
                continue
            return

    def _withdrawn(self, message: Message, now: dt.datetime) -> str | None:
        if not self.consent_changes:
            return None
        return withdrawn_for(
            self.consent_changes,
            message.customer_id,
            message.channel,
            message.to,
            marketing=message.is_marketing,
            now=now,
        )

    def _fall_back(
        self, row: dict[str, Any], now: dt.datetime, reason: str, report: DispatchReport
    ) -> bool:
        """Move the message to the next consented channel; False when there is none."""
        channels: list[str] = json.loads(row["channels"] or "[]")
        current = row["channel"]
        rest = channels[channels.index(current) + 1 :] if current in channels else []
        if rest:
            row["channel"] = rest[0]
            self.state.move_to_channel(row["key"], rest[0], reason)
            report.fell_back[f"{current} → {rest[0]}"] += 1
            return True
        self.state.mark_failed(row["key"], reason)
        report.failed[current] += 1
        report.failures.append(
            {"key": row["key"], "customer": row["customer_id"], "reason": reason}
        )
        return False

    @staticmethod
    def _message(row: dict[str, Any]) -> Message:
        addresses: dict[str, str] = json.loads(row["addresses"] or "{}")
        channel = row["channel"]
        return Message(
            key=row["key"],
            customer_id=row["customer_id"],
            playbook=row["playbook"],
            category=row["category"],
            channel=channel,
            to=addresses.get(channel, row["customer_id"]),
            subject=row["subject"] or "",
            text=row["text"] or "",
            tone=row["tone"] or "direct",
            hours_since_last_inbound=row["hours_since_last_inbound"],
            unsubscribe_url=row["unsubscribe_url"],
            max_segments=row["max_segments"],
        )
