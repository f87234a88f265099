"""The engine: at moment ``now``, what do we say to whom, on which channel, in which tone — and
for everyone else, why not?

One evaluation (``Engine.plan``) runs in this order, each part column-wise over the whole base:

1. facts for every customer at ``now`` (:mod:`courtship.engine.facts`);
2. playbooks in dependency order (:class:`~courtship.graph.PlaybookGraph`); for each, the customers
   its trigger selects in the window ``(since, now]``, then its audience, then its limits; the
   steps before the first ``wait`` become decisions, a ``wait`` becomes an enrollment that resumes
   later (``unless`` an event ends it);
3. the guards, in this documented order: consent → personalization (a name) → quiet hours (defer)
   → cadence → caps and priority/suppression → dedup keys. Transactional playbooks skip cadence and
   caps, never consent;
4. the surviving sends are rendered from their template in the customer's tone.

Nothing here reads a clock: ``now`` is an argument, so a moment is reproducible.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from courtship.catalogue import PREFERRED, TONES, Catalogue, builtin_catalogue
from courtship.engine.calendar import anniversary_mask, schedule_mask
from courtship.engine.conditions import to_expression
from courtship.engine.facts import (
    FACT_DTYPES,
    ROW,
    FactHistory,
    customer_file_mark,
    no_cycle_collection,
    plugin_fact_columns,
)
from courtship.graph import PlaybookGraph
from courtship.playbook import Playbook, declare_set_facts, facts_in, parse_duration
from courtship.project import Project
from courtship.sources import CustomerBase
from courtship.state import StateStore
from courtship.templates import Compiled, compiled, environment, variants

INSTAGRAM_WINDOW_HOURS = 24
#: The column of a saved streak that marks the customer file it was numbered against.
MARK = "_file"
CHANNEL_ADDRESS = {"email": "email", "sms": "phone", "instagram": "instagram_id"}

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
def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


class Engine:
    """Evaluates playbooks against a customer base at a moment, with a state store."""

    def __init__(
        self,
        playbooks: Sequence[Playbook],
        project: Project,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.project = project
        self.catalogue = (catalogue or builtin_catalogue()).copy()
        declare_set_facts(list(playbooks), self.catalogue)
        self.graph = PlaybookGraph(playbooks)
        self.playbooks = {pb.id: pb for pb in playbooks if pb.enabled}
        self.order = [pb_id for pb_id in self.graph.order() if pb_id in self.playbooks]

    # ── the moment ────────────────────────────────────────────────────────
    def plan(
        self, base: CustomerBase, now: dt.datetime, state: StateStore, *, trace: str | None = None
    ) -> Plan:
        """Decide everything for moment ``now`` and render the messages; records nothing.
        ``trace`` keeps one customer's reasons for every playbook (what ``explain`` prints)."""
        plan = self.decide(base, now, state, trace=trace)
        self.render(plan)
        return plan

    def decide(
        self, base: CustomerBase, now: dt.datetime, state: StateStore, *, trace: str | None = None
    ) -> Plan:
        """Facts, triggers, audiences, limits, steps and guards for moment ``now``: who hears
        what, on which channel, in which tone, and why not. The texts are left to ``render``."""
        with no_cycle_collection():
            return self._decide(base, now, state, trace)

    def _decide(
        self, base: CustomerBase, now: dt.datetime, state: StateStore, trace: str | None
    ) -> Plan:
        now = now.astimezone(dt.UTC)
        last = state.last_run()
        since = last if last is not None and last <= now else now - self.project.lookback
        plan = Plan(now=now, since=since)
        sends = state.sends()
        history = FactHistory(
            base,
            sends=sends.select("customer_id", "at", "channel", "playbook", "category"),
            set_facts=state.set_facts(),
            set_tags=state.set_tags(),
            default_timezone=self.project.timezone,
        )
        facts = self._completed(history.at(now))
        schema = dict(facts.schema)
        if trace is not None:
            rows = facts.filter(pl.col("customer_id") == trace).to_dicts()
            plan.customer_facts = rows[0] if rows else None
        fired_state = state.fired()
        active = state.active_enrollments()
        events = (
            base.events.filter((pl.col("at") > since) & (pl.col("at") <= now))
            .with_columns(pl.col("customer_id").cast(pl.String()))
            .join(facts.select("customer_id", ROW), on="customer_id")
        )
        base_mark = customer_file_mark(base)
        streaks = {
            pb_id: state.load_streaks(pb_id, last) if last is not None else None
            for pb_id in self.order
            if "becomes" in self.playbooks[pb_id].trigger
        }
        past = self._past_truths(
            [self.playbooks[pb_id] for pb_id, saved in streaks.items() if saved is None],
            history,
            now,
            since,
        )
        candidates: list[_Candidates] = []
        stamp = _iso(now)

        for pb_id in self.order:
            pb = self.playbooks[pb_id]
            triggered = self._triggered(
                pb, facts, schema, events, now, since, streaks.get(pb_id), past, plan, base_mark
            )
            if pb.audience:
                audience = to_expression(pb.audience, schema, now).fill_null(False)
                within = _among(facts, triggered.get_column(ROW), audience)
            else:
                within = pl.Series([True] * triggered.height, dtype=pl.Boolean())
            chosen = triggered.with_columns(within.alias("_in"))
            if trace is not None:
                mine = chosen.filter(pl.col("customer_id") == trace)
                plan.traces[pb_id] = {
                    "triggered": mine.height > 0,
                    "audience": bool(mine.get_column("_in").any()),
                }
            chosen = chosen.filter(pl.col("_in")).drop("_in")
            chosen = self._limits(pb, chosen, fired_state, active, now, plan, trace)
            ids = chosen["customer_id"].to_list()
            plan.fired[pb_id] = ids
            if not ids:
                continue
            plan.changes.setdefault("fired", []).extend((pb_id, c, stamp) for c in ids)
            facts = self._run_steps(pb, 0, chosen, now, facts, candidates, plan)

        for enrollment in state.due_enrollments(now):
            self._resume(enrollment, base, now, facts, candidates, plan)

        plan.decisions = self._guard(candidates, facts, state, sends, now)
        plan.facts = facts
        return plan

    def render(self, plan: Plan) -> None:
        """Write every message a plan decided from its template, in the recipient's tone; a
        template that fails blocks its message with the reason."""
        if plan.facts is not None:
            with no_cycle_collection():
                self._render(plan, plan.facts)
            plan.facts = None

    def _completed(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The facts as conditions read them: every catalogue fact a column (facts no one has
        set yet are null), facts plugins declare cast from the customer data's text to their
        type, each customer's local now, and the row number."""
        missing = [
            pl.lit(None, dtype=FACT_DTYPES[spec.type]).alias(name)
            for name, spec in self.catalogue.facts.items()
            if name not in frame.columns
        ]
        missing += plugin_fact_columns(frame, self.catalogue)
        return frame.with_columns(
            *missing,
            pl.col("local_date").dt.combine(pl.col("local_time")).alias("_local_now"),
            pl.int_range(pl.len(), dtype=pl.UInt32()).alias(ROW),
        )

    def _past_truths(
        self,
        playbooks: list[Playbook],
        history: FactHistory,
        now: dt.datetime,
        since: dt.datetime,
    ) -> dict[tuple[str, dt.datetime], pl.Series]:
        """For ``becomes`` playbooks with no streaks from the last run (a first run, or one
        after a crash): whether each condition held at the earlier moments the data must tell
        (``since - for``, and ``now - for``), per customer row. Each moment's facts are read
        once, for all these playbooks, and only the facts their conditions read."""
        wanted: dict[dt.datetime, list[Playbook]] = {}
        for pb in playbooks:
            hold = parse_duration(pb.trigger["for"]) if "for" in pb.trigger else dt.timedelta(0)
            for moment in {since - hold, now - hold} - {now}:
                wanted.setdefault(moment, []).append(pb)
        truths: dict[tuple[str, dt.datetime], pl.Series] = {}
        for moment, readers in sorted(wanted.items()):
            read = set().union(*(facts_in(pb.trigger["becomes"]) for pb in readers))
            facts = self._completed(history.before(moment, now, read & set(self.catalogue.facts)))
            schema = dict(facts.schema)
            answers = facts.select(
                to_expression(pb.trigger["becomes"], schema, moment).fill_null(False).alias(pb.id)
                for pb in readers
            )
            for pb in readers:
                truths[(pb.id, moment)] = answers.get_column(pb.id)
        return truths

    def record(self, plan: Plan, state: StateStore) -> None:
        """Make a plan happen exactly once: its sends enter the outbox (deferred ones with the
        moment they are due), and its firings, enrollments and facts enter the state store, in
        one transaction. Recording the same plan twice changes nothing."""
        changes = dict(plan.changes)
        changes["sends"] = [
            (
                d.key,
                d.recipient_id,
                d.playbook,
                d.channel,
                d.category,
                d.tone,
                d.dedup_key,
                _iso(plan.now),
                _iso(d.due_at or plan.now),
                "pending" if d.status == "send" else "deferred",
                d.subject,
                d.text,
                json.dumps(d.channels),
                json.dumps(d.addresses),
                d.hours_since_last_inbound,
                d.unsubscribe_url,
                d.max_segments,
                0,
                None,
                None,
            )
            for d in plan.decisions
            if d.status != "blocked"
        ]
        changes["sends"] += [
            (
                note["key"],
                note["customer"],
                note["playbook"],
                "team",
                "transactional",
                "direct",
                None,
                _iso(plan.now),
                _iso(plan.now),
                "pending",
                note["subject"],
                note["text"],
                json.dumps(["team"]),
                json.dumps({"team": note["team"]}),
                None,
                None,
                None,
                0,
                None,
                None,
            )
            for note in plan.notifications
        ]
        state.record(plan.now, changes)
        state.save_streaks(plan.now, plan.streaks)

    # ── triggers ──────────────────────────────────────────────────────────
    def _triggered(
        self,
        pb: Playbook,
        facts: pl.DataFrame,
        schema: dict[str, pl.DataType],
        events: pl.DataFrame,
        now: dt.datetime,
        since: dt.datetime,
        previous: pl.DataFrame | None,
        past: dict[tuple[str, dt.datetime], pl.Series],
        plan: Plan,
        base_mark: int,
    ) -> pl.DataFrame:
        """The rows and customer_id (+ event context) of the customers the trigger selects in
        (since, now]."""
        trigger = pb.trigger
        if "event" in trigger:
            chosen = events.filter(pl.col("type") == trigger["event"])
            if "where" in trigger:
                chosen = chosen.filter(_event_filter(trigger["where"], chosen.schema))
            return (
                chosen.sort("at")
                .group_by(ROW, maintain_order=True)
                .last()
                .select(ROW, "customer_id", pl.col("at").alias("_event_at"), "friend_id")
            )
        if "anniversary" in trigger:
            mask = anniversary_mask(trigger, facts, now, since)
            return facts.select(ROW, "customer_id").filter(mask)
        if "schedule" in trigger:
            mask = schedule_mask(trigger, facts, now, since)
            return facts.select(ROW, "customer_id").filter(mask)
        condition = to_expression(trigger["becomes"], schema, now).fill_null(False)
        hold = parse_duration(trigger["for"]) if "for" in trigger else dt.timedelta(0)
        current = facts.select(ROW, "customer_id", condition.alias("_true"))
        if previous is None:

            def truth(moment: dt.datetime) -> pl.Series:
                return past[(pb.id, moment)] if moment < now else current.get_column("_true")

            before, held = truth(since - hold), truth(now - hold)
            streak = self._streaks_from_data(current, before, held, now, since, hold)
        else:
            streak = self._streaks_from_state(current, previous, hold, now, base_mark)
        plan.streaks[pb.id] = streak.select(
            "customer_id", ROW, "true_since", "fired", pl.lit(base_mark, pl.UInt64()).alias(MARK)
        )
        return streak.filter(pl.col("_fires")).select(ROW, "customer_id")

    @staticmethod
    def _streaks_from_state(
        current: pl.DataFrame,
        previous: pl.DataFrame,
        hold: dt.timedelta,
        now: dt.datetime,
        base_mark: int,
    ) -> pl.DataFrame:
        """The streaks of the last run carried on: a condition true now and not then began
        now; it fires once it has held for ``for`` (at once without), once per streak.
        Streaks saved from the same customer file (same ids in the same order: its mark) are
        matched by row number; otherwise by customer id."""
        same_file = (
            MARK in previous.columns
            and ROW in previous.columns
            and previous.height > 0
            and previous.get_column(MARK)[0] == base_mark
        )
        key = ROW if same_file else "customer_id"
        previous = previous.select(key, "true_since", "fired")
        frame = current.filter(pl.col("_true")).join(
            previous.cast({ROW: pl.UInt32()}) if same_file else previous,
            on=key,
            how="left",
            maintain_order="left",
        )
        frame = frame.with_columns(
            pl.col("true_since").fill_null(pl.lit(now).dt.cast_time_unit("us")),
            pl.col("fired").fill_null(False),
        )
        ready = pl.col("true_since") <= now - hold
        return frame.with_columns(_fires=ready & ~pl.col("fired")).with_columns(
            fired=pl.col("fired") | pl.col("_fires")
        )

    @staticmethod
    def _streaks_from_data(
        current: pl.DataFrame,
        before: pl.Series,
        held: pl.Series,
        now: dt.datetime,
        since: dt.datetime,
        hold: dt.timedelta,
    ) -> pl.DataFrame:
        """With no streaks from the last run (a first run, or one after a crash), the past
        comes from the data: the condition *became* true if it was false at ``since - for``
        (``before``) and has held from ``now - for`` until now (``held``). A streak that began
        before the window is taken as already answered."""
        frame = current.with_columns(before.alias("_before"), held.alias("_held"))
        frame = frame.filter(pl.col("_true"))
        began = pl.when(pl.col("_held")).then(pl.lit(since - hold)).otherwise(pl.lit(now))
        return frame.with_columns(
            true_since=began.dt.cast_time_unit("us"),
            _fires=pl.col("_held") & ~pl.col("_before"),
        ).with_columns(fired=pl.col("_held"))

    # ── limits ────────────────────────────────────────────────────────────
    def _limits(
        self,
        pb: Playbook,
        chosen: pl.DataFrame,
        fired_state: pl.DataFrame,
        active: set[tuple[str, str]],
        now: dt.datetime,
        plan: Plan,
        trace: str | None,
    ) -> pl.DataFrame:
        limits = pb.limits
        history = fired_state.filter(pl.col("playbook") == pb.id).drop("playbook")
        chosen = chosen.join(history, on="customer_id", how="left")
        keep = pl.lit(True)
        if "once_every" in limits:
            keep = keep & (
                pl.col("last").is_null()
                | (pl.col("last") <= now - parse_duration(limits["once_every"]))
            )
        reentry = limits.get("reentry", "after_exit")
        if reentry == "never":
            keep = keep & pl.col("last").is_null()
        if "max_sends" in limits:
            keep = keep & (pl.col("times").fill_null(0) < limits["max_sends"])
        if reentry != "always" and active:
            busy = [c for p, c in active if p == pb.id]
            keep = keep & ~pl.col("customer_id").is_in(busy)
        kept = chosen.filter(keep)
        if trace is not None and pb.id in plan.traces:
            plan.traces[pb.id]["limits"] = kept.filter(pl.col("customer_id") == trace).height > 0
        return kept.drop("last", "times")

    # ── steps ─────────────────────────────────────────────────────────────
    def _run_steps(
        self,
        pb: Playbook,
        start: int,
        chosen: pl.DataFrame,
        now: dt.datetime,
        facts: pl.DataFrame,
        candidates: list[_Candidates],
        plan: Plan,
    ) -> pl.DataFrame:
        """Run steps from ``start`` up to the next wait for the ``chosen`` customers (their
        customer_id, and the row, event and friend a trigger found); returns the facts with
        what ``set`` and ``tag`` steps changed (later playbooks read them)."""
        ids = chosen.get_column("customer_id").to_list()
        for index in range(start, len(pb.respond)):
            step = pb.respond[index]
            if "send" in step:
                candidates.append(_Candidates(pb, index, chosen))
            elif "set" in step:
                name, value = step["set"]["fact"], step["set"]["value"]
                text = (
                    _iso(now)
                    if value == "now"
                    else json.dumps(value)
                    if not isinstance(value, str)
                    else value
                )
                kind = self.catalogue.facts.get(name)
                type_name = kind.type if kind else ("datetime" if value == "now" else "string")
                plan.changes.setdefault("facts", []).extend(
                    (c, name, text, type_name, _iso(now)) for c in ids
                )
                literal = now if value == "now" else value
                dtype = facts.schema[name] if name in facts.columns else None
                values = pl.Series(name, [literal] * len(ids))
                facts = _patched(facts, _rows(facts, chosen), name, values, dtype)
            elif "tag" in step or "untag" in step:
                tag = step.get("tag") or step["untag"]
                key = "tags" if "tag" in step else "untags"
                plan.changes.setdefault(key, []).extend((c, tag) for c in ids)
                rows = _rows(facts, chosen)
                tags = facts.get_column("tags").gather(rows).fill_null([]).to_frame()
                updated = tags.select(
                    pl.concat_list("tags", pl.lit([tag])).list.unique().list.sort()
                    if key == "tags"
                    else pl.col("tags").list.set_difference(pl.lit([tag]))
                ).to_series()
                facts = _patched(facts, rows, "tags", updated, facts.schema["tags"])
            elif "notify" in step:
                for customer in ids:
                    plan.notifications.append(
                        {
                            "team": step["notify"]["team"],
                            "playbook": pb.id,
                            "customer": customer,
                            "urgency": step["notify"].get("urgency", "normal"),
                            "template": step["notify"].get("template"),
                        }
                    )
            elif "wait" in step:
                due = now + parse_duration(step["wait"])
                plan.changes.setdefault("enrollments", []).extend(
                    (
                        pb.id,
                        c["customer_id"],
                        _iso(now),
                        index + 1,
                        _iso(due),
                        "waiting",
                        json.dumps(_plain(c) | {"waiting_since": _iso(now)}),
                    )
                    for c in chosen.to_dicts()
                )
                break
        return facts

    def _resume(
        self,
        enrollment: dict[str, Any],
        base: CustomerBase,
        now: dt.datetime,
        facts: pl.DataFrame,
        candidates: list[_Candidates],
        plan: Plan,
    ) -> None:
        pb = self.playbooks.get(enrollment["playbook"])
        if pb is None:
            return
        step_index = enrollment["step"]
        context = enrollment["context"]
        wait_step = pb.respond[step_index - 1] if step_index >= 1 else {}
        started = _iso(enrollment["started_at"])
        row = (pb.id, enrollment["customer_id"], started)
        unless = wait_step.get("unless")
        if unless:
            waited_from = dt.datetime.fromisoformat(context.get("waiting_since", started))
            happened = base.events.filter(
                (pl.col("customer_id") == enrollment["customer_id"])
                & (pl.col("type") == unless["event"])
                & (pl.col("at") > waited_from)
                & (pl.col("at") <= now)
            )
            if "where" in unless:
                happened = happened.filter(_event_filter(unless["where"], happened.schema))
            if happened.height:
                plan.changes.setdefault("enrollments", []).append(
                    (*row, step_index, _iso(now), "exited", json.dumps(context))
                )
                return
        plan.changes.setdefault("enrollments", []).append(
            (*row, step_index, _iso(now), "done", json.dumps(context))
        )
        context = {k: v for k, v in context.items() if k != "waiting_since"}
        context["customer_id"] = enrollment["customer_id"]
        who = pl.DataFrame(
            [context],
            schema_overrides={"customer_id": pl.String(), "friend_id": pl.String()},
        )
        self._run_steps(pb, step_index, who, now, facts, candidates, plan)

    # ── guards ────────────────────────────────────────────────────────────
    def _guard(
        self,
        candidates: list[_Candidates],
        facts: pl.DataFrame,
        state: StateStore,
        sends: pl.DataFrame,
        now: dt.datetime,
    ) -> list[Decision]:
        """The guards, column-wise over every message decided at this moment; then each
        message becomes a ``Decision`` with its channel, tone, status and reason."""
        if not candidates:
            return []
        cooling = self._cooldowns(sends, now)
        frame = self._guarded(candidates, facts, cooling, self._sends_last_week(sends, now), now)
        quiet_text = f"{REASONS['quiet-hours']} to {self.project.quiet_end:%H:%M} local"
        stamp = _iso(now)
        weekly = self.project.per_customer_per_week
        fixed = {
            "": "",
            "unknown-friend": "the friend is not a known customer",
            "instagram-only": f"{INSTAGRAM_TEXT}, and no other consented channel",
            "no-name": REASONS["no-name"],
            "quiet-hours": quiet_text,
            "cap": f"{REASONS['cap']}: {weekly} a week",
        }
        decided: list[Decision] = []
        columns = (
            "_group",
            "_at",
            "customer_id",
            "_recipient",
            "tone",
            "_usable",
            "_named",
            "_status",
            "_why",
            "_due",
            "hours_since_last_inbound",
            "cadence_days",
            "days_since_last_message",
            "email",
            "phone",
            "instagram_id",
        )
        for (
            group,
            at,
            customer,
            recipient,
            tone,
            usable,
            named,
            status,
            why,
            due,
            hours,
            cadence,
            last,
            *addresses,
        ) in zip(*(frame.get_column(c).to_list() for c in columns), strict=True):
            batch = candidates[group]
            pb, step = batch.pb, batch.pb.respond[batch.step]["send"]
            moment = batch.moments[at] if batch.moments is not None else None
            to_friend = step.get("to") == "friend"
            decision = Decision(
                customer_id=customer,
                playbook=pb.id,
                step=batch.step,
                category=pb.category,
                priority=pb.priority,
                channel=usable.split(",", 1)[0] if usable else None,
                tone=tone if tone in TONES else "direct",
                template=step["template"],
                status=status,
                to="friend" if to_friend else "customer",
                recipient_id=recipient or "",
                offer=step.get("offer"),
                due_at=due,
            )
            decision.key = hashlib.sha256(
                f"{pb.id}|{customer}|{recipient}|{batch.step}|{moment or stamp}".encode()
            ).hexdigest()[:24]
            decided.append(decision)
            if usable:
                channels = usable.split(",")
                decision.channels = channels
                decision.addresses = {
                    c: str(addresses[ADDRESS_PLACE[c]]) for c in channels if c in ADDRESS_PLACE
                }
                decision.hours_since_last_inbound = hours
                decision.max_segments = step.get("max_segments")
            if why in fixed:
                decision.reason = fixed[why]
            elif why == "no-consent":
                decision.reason = REASONS["no-consent"].format(channels=named or "none")
            elif why == "instagram":
                decision.reason = f"{INSTAGRAM_TEXT}; fell back to {decision.channel}"
            elif why == "cadence":
                decision.reason = REASONS["cadence"].format(cadence=cadence) + (
                    f"; the last was {last:.1f} days ago"
                )
            else:  # cooldown
                until, playbook = cooling[recipient]
                decision.reason = f"the cooldown after {playbook}, until {until:%Y-%m-%d %H:%M} UTC"

        self._priority(decided)
        dedup_seen = state.dedup_keys()
        dedup_keys: dict[str, str] = {}
        for decision in decided:
            if decision.status == "blocked":
                continue
            pb = self.playbooks[decision.playbook]
            if pb.dedup_key:
                if pb.id not in dedup_keys:  # the key reads only now and the playbook
                    dedup_keys[pb.id] = (
                        environment()
                        .from_string(pb.dedup_key)
                        .render(now=now, playbook={"id": pb.id, "title": pb.title})
                    )
                decision.dedup_key = dedup_keys[pb.id]
                if (decision.recipient_id, decision.dedup_key) in dedup_seen:
                    decision.status, decision.reason = "blocked", REASONS["duplicate"]
                    continue
                dedup_seen.add((decision.recipient_id, decision.dedup_key))
        return decided

    def _guarded(
        self,
        candidates: list[_Candidates],
        facts: pl.DataFrame,
        cooling: dict[str, tuple[dt.datetime, str]],
        sent: dict[str, int],
        now: dt.datetime,
    ) -> pl.DataFrame:
        """One row per message decided, in the order decided, with its recipient's facts and
        what the guards say: the usable channels (consented, with an address; Instagram
        only within its window), ``_status`` (send, deferred, blocked), ``_why`` (a reason
        code, see ``_guard``) and ``_due`` (the end of quiet hours)."""
        people = facts.select(
            "customer_id",
            "first_name",
            "tone",
            "preferred_channel",
            "cadence_days",
            "days_since_last_message",
            "local_time",
            "_local_now",
            "email",
            "phone",
            "instagram_id",
            "hours_since_last_inbound",
            *(c for c in facts.columns if c.startswith("consent_")),
        )
        friends = {
            f
            for batch in candidates
            if batch.pb.respond[batch.step]["send"].get("to") == "friend"
            and "friend_id" in batch.who.columns
            for f in batch.who.get_column("friend_id").drop_nulls().to_list()
        }
        rows_of_friends = dict(
            facts.select("customer_id", ROW)
            .filter(
                pl.col("customer_id").is_in(pl.Series(list(friends), dtype=pl.String()).implode())
            )
            .iter_rows()
        )
        wanted: list[list[str]] = []
        parts = []
        for number, batch in enumerate(candidates):
            step = batch.pb.respond[batch.step]["send"]
            wanted.append([step["channel"], *step.get("fallback", [])])
            who = batch.who
            if step.get("to") == "friend":
                friend = (
                    who.get_column("friend_id").cast(pl.String())
                    if "friend_id" in who.columns
                    else pl.Series([None] * who.height, dtype=pl.String())
                )
                recipient = friend.alias("_recipient")
                person = friend.replace_strict(
                    rows_of_friends, default=None, return_dtype=pl.UInt32()
                )
            else:
                recipient = who.get_column("customer_id").alias("_recipient")
                person = _rows(facts, who)
            parts.append(
                pl.DataFrame(
                    {
                        "_group": pl.Series([number] * who.height, dtype=pl.UInt32()),
                        "_at": pl.Series(range(who.height), dtype=pl.UInt32()),
                        "_transactional": [batch.pb.category == "transactional"] * who.height,
                        "_playbook": [batch.pb.id] * who.height,
                        "_customer": who.get_column("customer_id").cast(pl.String()),
                        "_recipient": recipient,
                        "_person": person.cast(pl.UInt32()),
                    }
                )
            )
        frame = pl.concat(parts)
        known = frame.get_column("_person").is_not_null()
        found = people[frame.get_column("_person").fill_null(0)]
        found = found.with_columns(pl.when(known).then(pl.all()).otherwise(None).name.keep())
        frame = pl.concat([frame, found.drop("customer_id")], how="horizontal").rename(
            {"_customer": "customer_id"}
        )

        # 1. consent, channel by channel: preferred first, then the fallbacks in order.
        names = {c for w in wanted for c in w if c != PREFERRED}
        names |= set(frame.get_column("preferred_channel").drop_nulls().unique().to_list())
        group = pl.col("_group")
        tries = []
        for place in range(max(len(w) for w in wanted)):
            name = group.replace_strict(
                {g: w[place] for g, w in enumerate(wanted) if len(w) > place},
                default=None,
                return_dtype=pl.String(),
            )
            channel = pl.when(name == PREFERRED).then(pl.col("preferred_channel")).otherwise(name)
            tries.append(channel)
        frame = frame.with_columns(
            pl.concat_list(tries).list.drop_nulls().alias("_tried")
        ).with_columns(
            pl.col("_tried")
            .list.eval(pl.element().filter(pl.element() != ""))
            .list.join(", ")
            .alias("_named"),
            pl.concat_list(
                pl.when(_consented(tried, names, frame.columns)).then(tried) for tried in tries
            )
            .list.drop_nulls()
            .list.unique(maintain_order=True)
            .alias("_consented"),
        )
        # Instagram answers only within 24 hours of the customer's last message to us.
        hours = pl.col("hours_since_last_inbound")
        outside = pl.col("_consented").list.contains("instagram") & (
            hours.is_null() | (hours > INSTAGRAM_WINDOW_HOURS)
        )
        frame = frame.with_columns(
            pl.when(outside)
            .then(pl.col("_consented").list.eval(pl.element().filter(pl.element() != "instagram")))
            .otherwise(pl.col("_consented"))
            .alias("_usable"),
            outside.alias("_outside"),
        )
        # 3. quiet hours: deferred to their end, never dropped
        start, end = self.project.quiet_start, self.project.quiet_end
        local = pl.col("local_time")
        quiet = (
            ((local >= start) | (local < end)) if start > end else (local >= start) & (local < end)
        )
        local_now = pl.col("_local_now")
        resume = local_now.dt.date().dt.combine(end)
        resume = pl.when(resume <= local_now).then(resume + dt.timedelta(days=1)).otherwise(resume)
        due = (pl.lit(now) + (resume - local_now)).dt.convert_time_zone("UTC")
        # 4. cadence, cooldowns, the weekly cap: marketing only
        cadence, last = pl.col("cadence_days"), pl.col("days_since_last_message")
        too_soon = cadence.is_not_null() & (cadence != 0) & last.is_not_null() & (last < cadence)
        cooler = pl.col("_recipient").replace_strict(
            {c: pb for c, (_, pb) in cooling.items()}, default=None, return_dtype=pl.String()
        )
        cooled = cooler.is_not_null() & (cooler != pl.col("_playbook"))
        weekly = self.project.per_customer_per_week
        capped = (
            pl.col("_recipient").replace_strict(sent, default=0, return_dtype=pl.Int64()) >= weekly
            if weekly
            else pl.lit(False)
        )
        marketing = ~pl.col("_transactional")
        usable = pl.col("_usable").list.len() > 0
        named = pl.col("first_name").fill_null("").str.strip_chars() != ""
        reached_quiet = known & usable & named
        why = (
            pl.when(~known)
            .then(pl.lit("unknown-friend"))
            .when(pl.col("_consented").list.len() == 0)
            .then(pl.lit("no-consent"))
            .when(~usable)
            .then(pl.lit("instagram-only"))
            .when(~named)
            .then(pl.lit("no-name"))
            .when(marketing & too_soon)
            .then(pl.lit("cadence"))
            .when(marketing & cooled)
            .then(pl.lit("cooldown"))
            .when(marketing & capped)
            .then(pl.lit("cap"))
            .when(quiet)
            .then(pl.lit("quiet-hours"))
            .when(pl.col("_outside"))
            .then(pl.lit("instagram"))
            .otherwise(pl.lit(""))
        )
        return frame.with_columns(why.alias("_why")).with_columns(
            pl.when(pl.col("_why").is_in(["", "instagram"]))
            .then(pl.lit("send"))
            .when(pl.col("_why") == "quiet-hours")
            .then(pl.lit("deferred"))
            .otherwise(pl.lit("blocked"))
            .alias("_status"),
            pl.when(reached_quiet & quiet).then(due).alias("_due"),
            pl.when(known & usable).then(pl.col("_usable").list.join(",")).alias("_usable"),
        )

    def _priority(self, decided: list[Decision]) -> None:
        """One marketing message per customer per moment (``caps.per_moment``): the highest
        priority wins, and a winner silences the playbooks it suppresses."""
        per_moment = self.project.per_moment
        live = [d for d in decided if d.status != "blocked" and d.category == "marketing"]
        live.sort(key=lambda d: (d.recipient_id, -d.priority, d.playbook, d.step))
        winners: dict[str, list[Decision]] = {}
        for decision in live:
            won = winners.setdefault(decision.recipient_id, [])
            silencers = [
                w for w in won if decision.playbook in self.playbooks[w.playbook].suppresses
            ]
            if silencers:
                decision.status = "blocked"
                decision.reason = REASONS["suppressed"].format(winner=silencers[0].playbook)
            elif len({w.playbook for w in won} - {decision.playbook}) >= per_moment:
                decision.status = "blocked"
                decision.reason = REASONS["priority"].format(winner=won[0].playbook)
            else:
                won.append(decision)
        per_channel = self.project.per_channel
        if per_channel:
            used: dict[str, int] = {}
            for decision in sorted(live, key=lambda d: (-d.priority, d.recipient_id)):
                if decision.status == "blocked" or decision.channel not in per_channel:
                    continue
                used[decision.channel] = used.get(decision.channel, 0) + 1
                if used[decision.channel] > per_channel[decision.channel]:
                    decision.status = "blocked"
                    decision.reason = (
                        f"{REASONS['cap']}: {per_channel[decision.channel]} on "
                        f"{decision.channel} per moment"
                    )

    def _render_note(
        self, note: dict[str, Any], person: dict[str, Any], now: dt.datetime, shelf: _Shelf
    ) -> None:
        """A team notification: its template (``NAME.md``) or a one-line summary."""
        pb = self.playbooks[note["playbook"]]
        note["key"] = hashlib.sha256(
            f"team|{note['team']}|{pb.id}|{note['customer']}|{_iso(now)}".encode()
        ).hexdigest()[:24]
        note["subject"] = f"[{note['urgency']}] {pb.title}: {note['customer']}"
        note["text"] = _note_text(note, person)
        files = shelf.variants(pb, note["template"]) if note["template"] else {}
        file = files.get("") or next(iter(files.values()), None)
        if file is None:
            return
        template = shelf.compiled(file)
        context = {k: v for k, v in person.items() if k in template.file.variables}
        context.update(
            offer=dict.fromkeys(OFFER_FIELDS),
            friend={"first_name": None},
            brand=self.project.brand,
            playbook={"id": pb.id, "title": pb.title},
            now=now,
            unsubscribe_url=None,
        )
        try:
            note["text"] = template.render(context)[1]
        except Exception as error:
            note["text"] += f" (template {file.name} failed: {error})"

    def _cooldowns(
        self, sends: pl.DataFrame, now: dt.datetime
    ) -> dict[str, tuple[dt.datetime, str]]:
        """customer → (until, playbook) for marketing playbooks with ``limits.cooldown`` that
        messaged the customer recently: no other marketing playbook speaks to them until then."""
        cooldowns = {
            pb.id: parse_duration(pb.limits["cooldown"])
            for pb in self.playbooks.values()
            if "cooldown" in pb.limits
        }
        if not cooldowns:
            return {}
        sends = sends.filter(pl.col("playbook").is_in(list(cooldowns)))
        until: dict[str, tuple[dt.datetime, str]] = {}
        for customer, playbook, at in sends.select("customer_id", "playbook", "at").iter_rows():
            end = at + cooldowns[playbook]
            if end > now and (customer not in until or end > until[customer][0]):
                until[customer] = (end, playbook)
        return until

    @staticmethod
    def _sends_last_week(sends: pl.DataFrame, now: dt.datetime) -> dict[str, int]:
        sends = sends.filter(
            (pl.col("category") == "marketing") & (pl.col("at") > now - dt.timedelta(days=7))
        )
        counts = sends.group_by("customer_id").len()
        return dict(zip(counts["customer_id"].to_list(), counts["len"].to_list(), strict=True))

    # ── rendering ─────────────────────────────────────────────────────────
    def _render(self, plan: Plan, facts: pl.DataFrame) -> None:
        todo = [d for d in plan.decisions if d.status != "blocked"]
        wanted = {d.recipient_id for d in todo} | {d.customer_id for d in todo}
        wanted |= {note["customer"] for note in plan.notifications}
        if not wanted:
            return
        shelf = _Shelf()
        chosen: list[tuple[Decision, Path | None]] = []
        for decision in todo:
            files = shelf.variants(self.playbooks[decision.playbook], decision.template)
            chosen.append((decision, files.get(decision.tone) or files.get("")))
        # Only the facts some template reads are read out of the frame, once per person.
        read = {"customer_id", "first_name", "last_name"}
        for _, file in chosen:
            if file is not None:
                read |= set(shelf.compiled(file).file.variables)
        for note in plan.notifications:
            files = shelf.variants(self.playbooks[note["playbook"]], note["template"] or "")
            for file in files.values():
                read |= set(shelf.compiled(file).file.variables)
        columns = [c for c in facts.columns if c in read and not c.startswith("_")]
        people = {
            r["customer_id"]: r
            for r in facts.select(columns)
            .filter(pl.col("customer_id").is_in(pl.Series(list(wanted)).implode()))
            .iter_rows(named=True)
        }
        for note in plan.notifications:
            self._render_note(note, people.get(note["customer"], {}), plan.now, shelf)
        base_url = self.project.brand.get("url") or ""
        for decision, file in chosen:
            pb = self.playbooks[decision.playbook]
            if file is None:
                decision.status, decision.reason = "blocked", "template file missing"
                continue
            template = shelf.compiled(file)
            person = people[decision.recipient_id]
            other = people.get(
                decision.customer_id if decision.to == "friend" else decision.recipient_id
            )
            context = {k: v for k, v in person.items() if k in template.file.variables}
            decision.unsubscribe_url = (
                f"{base_url}/unsubscribe?c={decision.recipient_id}" if base_url else None
            )
            context.update(
                offer=_offer(decision, plan.now),
                friend={"first_name": (other or {}).get("first_name")},
                brand=self.project.brand,
                playbook={"id": pb.id, "title": pb.title},
                now=plan.now,
                unsubscribe_url=decision.unsubscribe_url,
            )
            try:
                decision.subject, decision.text = template.render(context)
            except Exception as error:
                decision.status = "blocked"
                decision.reason = f"template {file.name} failed to render: {error}"


class _Shelf:
    """The template files of one plan, found and compiled once each."""

    def __init__(self) -> None:
        self._variants: dict[tuple[str, str], dict[str, Path]] = {}
        self._compiled: dict[Path, Compiled] = {}

    def variants(self, pb: Playbook, name: str) -> dict[str, Path]:
        key = (pb.id, name)
        if key not in self._variants:
            self._variants[key] = variants(_templates_folder(pb), name) if name else {}
        return self._variants[key]

    def compiled(self, file: Path) -> Compiled:
        if file not in self._compiled:
            self._compiled[file] = compiled(file)
        return self._compiled[file]


INSTAGRAM_TEXT = "instagram: outside the 24-hour messaging window"
#: The place of each channel's address among the address columns ``_guard`` reads.
ADDRESS_PLACE = {"email": 0, "sms": 1, "instagram": 2}


@dataclass
class _Candidates:
    """The customers (``who``: customer_id, and the row, event and friend their trigger
    found) for whom one ``send`` step of a playbook was reached at this moment."""

    pb: Playbook
    step: int
    who: pl.DataFrame
    moments: list[Any] | None = field(init=False)

    def __post_init__(self) -> None:
        # The event that started it, part of each message's idempotency key.
        at = "_event_at"
        self.moments = self.who.get_column(at).to_list() if at in self.who.columns else None


def _consented(channel: pl.Expr, names: set[str], columns: list[str]) -> pl.Expr:
    """The customer consented to ``channel`` (a per-row channel name) and has its address."""
    ok = pl.lit(False)
    for name in sorted(names):
        consent = f"consent_{name}"
        if consent not in columns:
            continue
        given = pl.col(consent).fill_null(False).cast(pl.Boolean(), strict=False)
        address = CHANNEL_ADDRESS.get(name)
        if address is not None:
            given = given & pl.col(address).is_not_null() & (pl.col(address) != "")
        ok = pl.when(channel == name).then(given).otherwise(ok)
    return ok.fill_null(False)


def _note_text(note: dict[str, Any], person: dict[str, Any]) -> str:
    name = " ".join(filter(None, [person.get("first_name"), person.get("last_name")]))
    return (
        f"{note['playbook']} asks {note['team']} to look after {name or 'a customer'} "
        f"({note['customer']}), urgency {note['urgency']}."
    )


def _templates_folder(pb: Playbook) -> Path:
    return _folder_beside(pb.document.path)


@functools.lru_cache(maxsize=1024)
def _folder_beside(path: str) -> Path:
    return Path(path).parent / "templates"


OFFER_FIELDS = ("percent_off", "amount_off", "gift", "free_shipping", "code", "expires_on")


def _offer(decision: Decision, now: dt.datetime) -> dict[str, Any]:
    """The offer as templates see it: every field present, None where it does not apply."""
    offer: dict[str, Any] = dict.fromkeys(OFFER_FIELDS) | dict(decision.offer or {})
    if not decision.offer:
        return offer
    prefix = offer.get("code_prefix", "GIFT")
    digest = hashlib.sha256(f"{decision.key}".encode()).hexdigest()[:6].upper()
    offer["code"] = f"{prefix}-{digest}"
    if "valid_for" in offer:
        offer["expires_on"] = (now + parse_duration(offer["valid_for"])).date().isoformat()
    return offer


def _plain(context: dict[str, Any]) -> dict[str, Any]:
    """A context as the state store keeps it: instants as text, without the row number (rows
    are numbered anew at every run)."""
    return {
        k: (_iso(v) if isinstance(v, dt.datetime) else v) for k, v in context.items() if k != ROW
    }


def _among(facts: pl.DataFrame, rows: pl.Series, condition: pl.Expr) -> pl.Series:
    """A condition (a row-by-row expression) for the customers at ``rows``: over just their
    rows, and just the columns it reads, when they are few; else over all and picked."""
    columns = list(dict.fromkeys(condition.meta.root_names()))
    if columns and len(rows) * 8 < facts.height:
        return facts.select(columns)[rows].select(condition).to_series()
    return facts.select(condition).to_series().gather(rows)


def _rows(facts: pl.DataFrame, who: pl.DataFrame) -> pl.Series:
    """The facts rows of these customers: carried from a trigger, or looked up for a sequence
    resumed from the state store."""
    if ROW in who.columns and not who.get_column(ROW).has_nulls():
        return who.get_column(ROW).cast(pl.UInt32())
    ids = who.get_column("customer_id").cast(pl.String())
    found = facts.select("customer_id", ROW).filter(pl.col("customer_id").is_in(ids.implode()))
    return ids.to_frame().join(found, on="customer_id", maintain_order="left").get_column(ROW)


def _patched(
    facts: pl.DataFrame,
    rows: pl.Series,
    name: str,
    values: pl.Series,
    dtype: pl.DataType | None,
) -> pl.DataFrame:
    """``facts`` with column ``name`` holding ``values`` at ``rows`` (a new column is null
    elsewhere), without rewriting the other rows: a step changes a few customers of many."""
    if dtype is not None:
        values = values.cast(dtype)
    # Where each row's new value is among ``values`` (null: unchanged); the last one wins.
    place = pl.repeat(None, facts.height, dtype=pl.UInt32(), eager=True)
    place.scatter(rows.cast(pl.UInt32()), pl.int_range(len(rows), dtype=pl.UInt32(), eager=True))
    old = pl.col(name) if name in facts.columns else pl.lit(None, values.dtype)
    return facts.with_columns(
        pl.when(place.is_not_null()).then(values.gather(place)).otherwise(old).alias(name)
    )


def _event_filter(condition: dict[str, Any], schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """An event ``where:`` filter as a polars expression over event columns of these types.

    A value is compared in its field's type: a number field takes whole numbers and fractions
    alike (``in: [10, 12.5]`` on ``amount``). A value of another kind (text for a number, a
    number for text, yes/no for anything but yes/no, a fraction for a whole-number field) equals
    nothing in the field: ``eq`` and ``in`` are false, ``ne`` and ``not_in`` true, and ``gt``,
    ``gte``, ``lt``, ``lte`` hold between numbers only. An event without the field fails every
    test but ``exists: false``."""
    if "all" in condition:
        return pl.all_horizontal([_event_filter(c, schema) for c in condition["all"]])
    if "any" in condition:
        return pl.any_horizontal([_event_filter(c, schema) for c in condition["any"]])
    if "not" in condition:
        return ~_event_filter(condition["not"], schema)
    name = condition["field"]
    if name not in schema:
        return pl.lit(condition.get("exists") is False)
    column, dtype = pl.col(name), schema[name]
    op, value = next((k, v) for k, v in condition.items() if k != "field")
    if op == "exists":
        return column.is_not_null() if value else column.is_null()
    if op in ORDER:
        if not (dtype.is_numeric() and _is_number(value)):
            return pl.lit(False)
        test = ORDER[op](column, value)
    elif op in ("eq", "ne"):
        same = _as_type(value, dtype)
        test = pl.lit(False) if same is None else column == pl.lit(same[0], dtype)
        test = test if op == "eq" else ~test
    else:
        listed = [same[0] for same in (_as_type(v, dtype) for v in value) if same is not None]
        test = column.is_in(pl.Series(listed, dtype=dtype).implode())
        test = test if op == "in" else ~test
    return test.fill_null(False) & column.is_not_null()


#: The order tests of an event filter.
ORDER: dict[str, Callable[[pl.Expr, float], pl.Expr]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _is_number(value: Any) -> bool:
    """A whole number or a fraction, not yes/no (which Python counts as 1 and 0)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_type(value: Any, dtype: pl.DataType) -> tuple[Any] | None:
    """``value`` as a value of a field of type ``dtype`` (in a 1-tuple), or None when no value
    of that field can equal it: text for a number field, 12.5 or 10**30 for a whole-number one."""
    if isinstance(value, bool):
        return (value,) if dtype == pl.Boolean() else None
    if isinstance(value, str):
        if dtype == pl.String() or dtype == pl.Categorical():
            return (value,)
        if isinstance(dtype, pl.Enum) and value in dtype.categories:
            return (value,)
        return None
    if not (_is_number(value) and dtype.is_numeric()):
        return None
    if dtype.is_integer():
        if isinstance(value, float) and not value.is_integer():
            return None
        value = int(value)
    try:
        return (pl.Series([value], dtype=dtype).item(),)
    except (TypeError, OverflowError, pl.exceptions.PolarsError):
        return None
