"""Delivery: the outbox in the state store, dispatched through channel plugins.

Every decided message is a row of the ``sends`` table, keyed by its idempotency key, before any
channel sees it (``Engine.record``). Dispatch then takes the rows that are due, a batch at a time
(at most ``StateStore.ACCEPTED_SLOTS``; ``StateStore.due_batches``: on PostgreSQL each worker
takes its own batches, so many share one outbox):

1. the channel's ``check`` may refuse (Instagram's 24-hour window, too many SMS segments), or the
   customer withdrew consent since the message was decided: the message falls back to the next
   channel the customer consented to, or fails with the reason;
2. the batch's rows are marked ``sending`` in one commit, then the channels send them: each
   channel by its :class:`Lane`, with ``workers`` at once (each worker its own channel instance,
   so no channel needs to be thread-safe) and its starts spaced by the channel's ``rate``;
3. a message a provider accepted is noted in its slot of ``<state>.sending`` at once, by the
   worker; ``delivered``, ``retry`` (timeouts, HTTP 429 and 5xx, SMTP 4xx; due again after an
   exponential backoff with jitter, or the provider's Retry-After if longer) and ``failed`` (and
   a retry past ``max_attempts``: it falls back, or records the provider's reason) are committed
   with the next batch's ``sending`` marks, in one transaction.

A run killed at any point resumes with the next run: rows still ``pending``, ``retry`` or
``sending`` are due, and what ``<state>.sending`` notes is recorded delivered first, so a batch
not yet committed sends nothing again. The one window no local bookkeeping can close is a
provider that accepted a message while the process died before its worker noted it: at most one
message per worker in flight is sent again (at least once); SMTP messages keep their
``Message-ID`` so mail clients merge the copy, and the outbox channel drops the repeated key
itself.

A full disk (the state store's, or the outbox folder's) stops dispatch with :class:`DiskFull`
before the next message is tried; what was accepted is in ``<state>.sending`` (space set aside
beforehand), so a commit that fails then loses nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

from courtship.channels import Channel, Delivery, Message
from courtship.engine.consent import withdrawn_for
from courtship.redaction import describe, redact
from courtship.state import NO_SPACE, DiskFull, OutboxBatch, StateError, StateStore

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


#: ``50/s``, ``100/m``, ``3600/h``: messages a channel may start per second, minute or hour.
RATE = re.compile(r"^([1-9][0-9]*)/([smh])$")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Rate:
    """At most ``count`` sends started per ``per`` (``s``, ``m`` or ``h``) on one channel."""

    count: int
    per: str = "s"

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = RATE.match(text.strip())
        if match is None:
            raise ValueError(f"'{text}' is no rate; write a count per s, m or h, such as 50/s")
        return cls(int(match[1]), match[2])

    @property
    def interval(self) -> float:
        """Seconds between two starts."""
        return _SECONDS[self.per] / self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.per}"


class Pace:
    """The starts of one channel's sends, across all its workers, at least ``rate.interval``
    apart: never more than the rate in any window, and no burst after an idle spell. (A send
    that starts late moves the next one later too: the rate is a ceiling, kept to within the
    clock's resolution.)"""

    def __init__(
        self,
        rate: Rate,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Wait for the next start, then return when it is (held while waiting, so the
        workers start one after the other)."""
        with self._lock:
            now = self.clock()
            while self._next is not None and now < self._next:
                self.sleep(self._next - now)
                now = self.clock()
            self._next = now + self.rate.interval
            return now


@dataclass(frozen=True)
class Lane:
    """How one channel is dispatched: ``workers`` sending at once (``build`` makes the channel
    instance of each worker past the first), their starts spaced by ``rate``."""

    workers: int = 1
    rate: Rate | None = None
    build: Callable[[], Channel] | None = None


class _Pool:
    """The workers of one channel: a thread each, each with its own channel instance."""

    def __init__(self, first: Channel, lane: Lane) -> None:
        self.instances: SimpleQueue[Channel] = SimpleQueue()
        self.instances.put(first)
        self.extra: list[Channel] = []
        if lane.build is not None:
            for _ in range(lane.workers - 1):
                channel = lane.build()
                self.extra.append(channel)
                self.instances.put(channel)
        self.executor = ThreadPoolExecutor(max_workers=1 + len(self.extra))

    def submit(self, send: Callable[[Channel], Delivery | DiskFull | None]) -> Future[Any]:
        def work() -> Delivery | DiskFull | None:
            channel = self.instances.get()
            try:
                return send(channel)
            finally:
                self.instances.put(channel)

        return self.executor.submit(work)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        for channel in self.extra:
            close = getattr(channel, "close", None)
            if callable(close):
                close()


@dataclass
class _Ready:
    """A message of the batch, checked and marked ``sending``, for its channel."""

    row: dict[str, Any]
    name: str
    channel: Channel
    message: Message
    attempt: int


class Dispatcher:
    """Sends the due rows of the outbox through ``channels`` (logical name → channel), each by
    its lane in ``lanes`` (one worker and no rate limit by default)."""

    def __init__(
        self,
        state: StateStore,
        channels: Mapping[str, Channel],
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        lanes: Mapping[str, Lane] | None = None,
    ) -> None:
        self.state = state
        self.channels = channels
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.lanes = dict(lanes or {})
        self.consent_changes: list[dict[str, Any]] = []
        self._paces = {name: Pace(lane.rate) for name, lane in self.lanes.items() if lane.rate}
        self._pools: dict[str, _Pool] = {}
        self._stop = threading.Event()  # a full disk: no worker starts another send

    def due(self, now: dt.datetime) -> list[dict[str, Any]]:
        return self.state.due_sends(now, DUE)

    def dispatch(
        self, now: dt.datetime, progress: Callable[[int, int], None] | None = None
    ) -> DispatchReport:
        report = DispatchReport()
        # An unsubscribe, a STOP or a bounce recorded since a message was decided stops it too.
        self.consent_changes = self.state.consent_changes()
        # a batch at a time: the whole outbox from SQLite, this worker's share from PostgreSQL
        batches = self.state.due_batches(now, DUE, StateStore.ACCEPTED_SLOTS)
        queue: deque[dict[str, Any]] = deque()
        batch = OutboxBatch()
        done = total = 0

        def finished() -> None:
            nonlocal done
            done += 1
            if progress:
                progress(done, total)

        try:
            while True:
                if not queue:
                    rows = next(batches, None)
                    if not rows:
                        break
                    queue.extend(rows)
                    total += len(rows)
                ready: list[_Ready] = []
                while queue and len(ready) < StateStore.ACCEPTED_SLOTS:
                    row = queue.popleft()
                    item = self._prepare(row, now, report, batch)
                    if item is None:
                        finished()
                        continue
                    batch.sending.append((row["key"], item.attempt))
                    ready.append(item)
                # the last batch's outcomes and this one's `sending`, before a channel sees it
                self._commit(batch)
                batch = OutboxBatch()
                full: DiskFull | None = None
                for item, delivery in zip(ready, self._send(ready), strict=True):
                    if isinstance(delivery, DiskFull) or delivery is None:
                        full = full or delivery  # left `sending`: due again next run
                        continue
                    if self._settle(item, delivery, now, report, batch):
                        queue.appendleft(item.row)  # its fallback channel, in the next batch
                    else:
                        finished()
                if full is not None:
                    self._commit(batch)
                    raise full
            self._commit(batch)
        finally:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
        return report

    def _commit(self, batch: OutboxBatch) -> None:
        if batch:
            self.state.commit_outbox(batch)
        self.state.forget_accepted()  # what they noted is committed now

    # ── one message ───────────────────────────────────────────────────────
    def _prepare(
        self, row: dict[str, Any], now: dt.datetime, report: DispatchReport, batch: OutboxBatch
    ) -> _Ready | None:
        """The message on the first channel that takes it, or None when it failed."""
        while True:  # a fallback tries the next channel at once
            name = row["channel"]
            channel = self.channels.get(name)
            message = self._message(row)
            if channel is None:
                refusal: str | None = f"no channel '{name}' is configured"
            else:
                refusal = self._withdrawn(message, now) or channel.check(message)
            if refusal is None:
                assert channel is not None
                return _Ready(row, name, channel, message, row["attempts"] + 1)
            if not self._fall_back(row, now, redact(f"{name}: {refusal}"), report, batch):
                return None

    def _send(self, ready: list[_Ready]) -> list[Delivery | DiskFull | None]:
        """Each message through its channel's lane; a worker notes what a provider accepted
        in the message's slot at once. None: not tried (the disk filled up first)."""
        outcomes: list[Any] = [None] * len(ready)
        for slot, item in enumerate(ready):
            lane = self.lanes.get(item.name)
            if lane is not None and lane.workers > 1:
                pool = self._pools.get(item.name)
                if pool is None:
                    pool = self._pools[item.name] = _Pool(item.channel, lane)
                outcomes[slot] = pool.submit(
                    lambda channel, item=item, slot=slot: self._attempt(channel, item, slot)
                )
            elif not self._stop.is_set():
                outcomes[slot] = self._attempt(item.channel, item, slot)
        return [
            outcome.result() if isinstance(outcome, Future) else outcome for outcome in outcomes
        ]

    def _attempt(self, channel: Channel, item: _Ready, slot: int) -> Delivery | DiskFull | None:
        if self._stop.is_set():
            return None
        pace = self._paces.get(item.name)
        if pace is not None:
            pace.wait()
        name = item.name
        try:
            delivery = channel.send(item.message)
        except OSError as error:
            if error.errno in NO_SPACE:  # not the message's fault: stop, resume next run
                self._stop.set()
                return DiskFull(f"the {name} channel cannot write ({error})")
            delivery = Delivery.retry(f"the {name} channel raised {error!r}")
        except Exception as error:
            delivery = Delivery.retry(f"the {name} channel raised {describe(error)}")
        if delivery.status == "delivered":  # kept even if the commits fail or the run dies
            try:
                self.state.note_accepted(item.message.key, delivery.provider_id, slot)
            except StateError:  # the store is out of reach: no worker starts another send
                self._stop.set()
                raise
        return delivery

    def _settle(
        self,
        item: _Ready,
        delivery: Delivery,
        now: dt.datetime,
        report: DispatchReport,
        batch: OutboxBatch,
    ) -> bool:
        """The outcome into ``batch``; True when the message falls back to another channel."""
        row, name, attempt = item.row, item.name, item.attempt
        batch.attempts.append((row["key"], attempt, now, name, delivery.status, delivery.reason))
        if delivery.status == "delivered":
            batch.delivered.append((row["key"], delivery.provider_id))
            report.delivered[name] += 1
            return False
        if delivery.status == "retry" and attempt < self.policy.max_attempts:
            due = now + self.policy.delay(attempt, delivery.retry_after, self.rng)
            batch.retries.append((row["key"], due, delivery.reason))
            report.retrying[name] += 1
            return False
        reason = delivery.reason
        if delivery.status == "retry":
            reason = f"gave up after {attempt} attempts: {reason}"
        if self._fall_back(row, now, f"{name}: {reason}", report, batch):
            row["attempts"] = 0
            return True
        return False

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
        self,
        row: dict[str, Any],
        now: dt.datetime,
        reason: str,
        report: DispatchReport,
        batch: OutboxBatch,
    ) -> bool:
        """Move the message to the next consented channel; False when there is none."""
        channels: list[str] = json.loads(row["channels"] or "[]")
        current = row["channel"]
        rest = channels[channels.index(current) + 1 :] if current in channels else []
        if rest:
            row["channel"] = rest[0]
            batch.moves.append((row["key"], rest[0], reason))
            report.fell_back[f"{current} → {rest[0]}"] += 1
            return True
        batch.failures.append((row["key"], reason))
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
