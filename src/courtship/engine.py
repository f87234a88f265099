"""The engine: at moment ``now``, what do we say to whom, on which channel, in which tone — and
for everyone else, why not?

One evaluation (``Engine.plan``) runs in this order, each part column-wise over the whole base:

1. facts for every customer at ``now`` (:mod:`courtship.facts`);
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
import hashlib
import json
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from courtship.catalogue import PREFERRED, TONES, Catalogue, builtin_catalogue
from courtship.conditions import to_expression
from courtship.facts import FACT_DTYPES, ROW, FactHistory
from courtship.graph import PlaybookGraph
from courtship.playbook import Playbook, facts_in
from courtship.project import Project
from courtship.sources import CustomerBase
from courtship.state import StateStore
from courtship.templates import compiled, environment, variants
from courtship.validate import declare_set_facts, parse_duration

INSTAGRAM_WINDOW_HOURS = 24
CHANNEL_ADDRESS = {"email": "email", "sms": "phone", "instagram": "instagram_id"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

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


@dataclass
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

    @property
    def sends(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "send"]

    @property
    def deferred(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "deferred"]

    @property
    def blocked(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "blocked"]


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
        """Decide everything for moment ``now``; records nothing. ``trace`` keeps one customer's
        reasons for every playbook (what ``explain`` prints)."""
        now = now.astimezone(dt.UTC)
        last = state.last_run()
        since = last if last is not None and last <= now else now - self.project.lookback
        plan = Plan(now=now, since=since)
        history = FactHistory(
            base,
            sends=state.sends().select("customer_id", "at", "channel", "playbook", "category"),
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
        candidates: list[dict[str, Any]] = []

        for pb_id in self.order:
            pb = self.playbooks[pb_id]
            triggered = self._triggered(
                pb, facts, schema, events, now, since, streaks.get(pb_id), past, plan
            )
            if pb.audience:
                audience = to_expression(pb.audience, schema, now).fill_null(False)
                within = facts.select(audience).to_series().gather(triggered.get_column(ROW))
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
            plan.changes.setdefault("fired", []).extend((pb_id, c, _iso(now)) for c in ids)
            contexts = chosen.to_dicts()
            facts = self._run_steps(pb, 0, contexts, now, facts, candidates, plan)

        for enrollment in state.due_enrollments(now):
            self._resume(enrollment, base, now, facts, candidates, plan)

        plan.decisions = self._guard(candidates, facts, state, now)
        self._render(plan, facts)
        return plan

    def _completed(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The facts as conditions read them: every catalogue fact a column (facts no one has
        set yet are null), facts plugins declare cast from the customer data's text to their
        type, each customer's local now, and the row number."""
        missing = [
            pl.lit(None, dtype=FACT_DTYPES[spec.type]).alias(name)
            for name, spec in self.catalogue.facts.items()
            if name not in frame.columns
        ]
        missing += [
            pl.col(name).cast(FACT_DTYPES[spec.type], strict=False)
            for name, spec in self.catalogue.facts.items()
            if spec.source not in ("core",)
            and not spec.source.startswith("playbook ")
            and spec.type != "list"
            and name in frame.columns
            and frame.schema[name] != FACT_DTYPES[spec.type]
        ]
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
    ) -> pl.DataFrame:
        """The rows and customer_id (+ event context) of the customers the trigger selects in
        (since, now]."""
        trigger = pb.trigger
        window = now - since
        if "event" in trigger:
            chosen = events.filter(pl.col("type") == trigger["event"])
            if "where" in trigger:
                chosen = chosen.filter(_event_filter(trigger["where"], chosen.columns))
            return (
                chosen.sort("at")
                .group_by(ROW, maintain_order=True)
                .last()
                .select(ROW, "customer_id", pl.col("at").alias("_event_at"), "friend_id")
            )
        if "anniversary" in trigger:
            day = pl.col(trigger["anniversary"])
            offset = parse_duration(trigger.get("offset", "0d"))
            at = dt.time.fromisoformat(trigger.get("at", "00:00"))
            local_now = pl.col("_local_now")
            local_since = local_now - window
            hits = []
            # This year's anniversary, last year's and next year's: a window or an offset can
            # reach across New Year.
            for shift in (-1, 0, 1):
                moment = _anniversary(day, pl.col("local_date").dt.year() + shift, at) + offset
                hits.append((moment > local_since) & (moment <= local_now))
            mask = pl.any_horizontal(hits).fill_null(False)
            return facts.filter(mask).select(ROW, "customer_id")
        if "schedule" in trigger:
            return facts.filter(self._schedule_mask(trigger, window, now)).select(
                ROW, "customer_id"
            )
        condition = to_expression(trigger["becomes"], schema, now).fill_null(False)
        hold = parse_duration(trigger["for"]) if "for" in trigger else dt.timedelta(0)
        current = facts.select(ROW, "customer_id", condition.alias("_true"))
        if previous is None:

            def truth(moment: dt.datetime) -> pl.Series:
                return past[(pb.id, moment)] if moment < now else current.get_column("_true")

            before, held = truth(since - hold), truth(now - hold)
            streak = self._streaks_from_data(current, before, held, now, since, hold)
        else:
            streak = self._streaks_from_state(current, previous, hold, now)
        plan.streaks[pb.id] = streak.select("customer_id", "true_since", "fired")
        return streak.filter(pl.col("_fires")).select(ROW, "customer_id")

    @staticmethod
    def _streaks_from_state(
        current: pl.DataFrame, previous: pl.DataFrame, hold: dt.timedelta, now: dt.datetime
    ) -> pl.DataFrame:
        """The streaks of the last run carried on: a condition true now and not then began
        now; it fires once it has held for ``for`` (at once without), once per streak."""
        frame = current.filter(pl.col("_true")).join(
            previous, on="customer_id", how="left", maintain_order="left"
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

    def _schedule_mask(
        self, trigger: dict[str, Any], window: dt.timedelta, now: dt.datetime
    ) -> pl.Expr:
        schedule = trigger["schedule"]
        every = parse_duration(schedule["every"])
        at = dt.time.fromisoformat(trigger.get("at", "00:00"))
        days = schedule.get("days") or (["mon"] if every == dt.timedelta(weeks=1) else WEEKDAYS)
        weekdays = [WEEKDAYS.index(d) + 1 for d in days]  # polars: Monday is 1
        local_now: pl.Expr = pl.col("_local_now")
        local_date: pl.Expr = pl.col("local_date")
        if schedule.get("timezone"):  # one clock for everyone, not each customer's own
            there = now.astimezone(zoneinfo.ZoneInfo(schedule["timezone"])).replace(tzinfo=None)
            local_now = pl.lit(there).dt.cast_time_unit("us")
            local_date = pl.lit(there.date())
        local_since = local_now - window
        hits = []
        for days_back in range(0, max(2, window.days + 2)):
            date = local_date - dt.timedelta(days=days_back)
            on_day = date.dt.weekday().is_in(weekdays)
            if every >= dt.timedelta(days=1) and every != dt.timedelta(weeks=1):
                epoch_days = (date - dt.date(1970, 1, 1)).dt.total_days()
                on_day = on_day & (epoch_days % every.days == 0)
            step = every if every < dt.timedelta(days=1) else dt.timedelta(days=1)
            moments = max(1, int(dt.timedelta(days=1) / step))
            for k in range(moments):
                moment = date.dt.combine(at) + step * k
                hits.append(on_day & (moment > local_since) & (moment <= local_now))
        return pl.any_horizontal(hits).fill_null(False)

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
        contexts: list[dict[str, Any]],
        now: dt.datetime,
        facts: pl.DataFrame,
        candidates: list[dict[str, Any]],
        plan: Plan,
    ) -> pl.DataFrame:
        """Run steps from ``start`` up to the next wait for these customers; returns the facts
        with what ``set`` and ``tag`` steps changed (later playbooks read them)."""
        ids = [c["customer_id"] for c in contexts]
        for index in range(start, len(pb.respond)):
            step = pb.respond[index]
            if "send" in step:
                for context in contexts:
                    candidates.append({"playbook": pb, "step": index, **context})
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
                values = pl.Series(name, [literal] * len(contexts))
                facts = _patched(facts, _rows(facts, contexts), name, values, dtype)
            elif "tag" in step or "untag" in step:
                tag = step.get("tag") or step["untag"]
                key = "tags" if "tag" in step else "untags"
                plan.changes.setdefault(key, []).extend((c, tag) for c in ids)
                rows = _rows(facts, contexts)
                tags = facts.get_column("tags").gather(rows).fill_null([]).to_frame()
                updated = tags.select(
                    pl.concat_list("tags", pl.lit([tag])).list.unique().list.sort()
                    if key == "tags"
                    else pl.col("tags").list.set_difference(pl.lit([tag]))
                ).to_series()
                facts = _patched(facts, rows, "tags", updated, facts.schema["tags"])
            elif "notify" in step:
                for context in contexts:
                    plan.notifications.append(
                        {
                            "team": step["notify"]["team"],
                            "playbook": pb.id,
                            "customer": context["customer_id"],
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
                    for c in contexts
                )
                break
        return facts

    def _resume(
        self,
        enrollment: dict[str, Any],
        base: CustomerBase,
        now: dt.datetime,
        facts: pl.DataFrame,
        candidates: list[dict[str, Any]],
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
                happened = happened.filter(_event_filter(unless["where"], happened.columns))
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
        self._run_steps(pb, step_index, [context], now, facts, candidates, plan)

    # ── guards ────────────────────────────────────────────────────────────
    def _guard(
        self,
        candidates: list[dict[str, Any]],
        facts: pl.DataFrame,
        state: StateStore,
        now: dt.datetime,
    ) -> list[Decision]:
        if not candidates:
            return []
        rows = facts.select(
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
            "consent_email",
            "consent_sms",
            "consent_instagram",
        )
        wanted = {c["customer_id"] for c in candidates} | {
            c["friend_id"] for c in candidates if c.get("friend_id")
        }
        rows = rows.filter(pl.col("customer_id").is_in(list(wanted)))
        by_customer = {r["customer_id"]: r for r in rows.iter_rows(named=True)}
        decided: list[Decision] = []
        dedup_seen = state.dedup_keys()
        quiet_start, quiet_end = self.project.quiet_start, self.project.quiet_end
        sent_this_week = self._sends_last_week(state, now)
        cooling = self._cooldowns(state, now)

        for candidate in candidates:
            pb: Playbook = candidate["playbook"]
            step = pb.respond[candidate["step"]]["send"]
            to_friend = step.get("to") == "friend"
            recipient_id = candidate.get("friend_id") if to_friend else candidate["customer_id"]
            person = by_customer.get(recipient_id or "")
            tone = (person or {}).get("tone") or "direct"
            decision = Decision(
                customer_id=candidate["customer_id"],
                playbook=pb.id,
                step=candidate["step"],
                category=pb.category,
                priority=pb.priority,
                channel=None,
                tone=tone if tone in TONES else "direct",
                template=step["template"],
                status="send",
                to="friend" if to_friend else "customer",
                recipient_id=recipient_id or "",
                offer=step.get("offer"),
            )
            decision.key = hashlib.sha256(
                f"{pb.id}|{decision.customer_id}|{recipient_id}|{decision.step}|"
                f"{candidate.get('_event_at') or _iso(now)}".encode()
            ).hexdigest()[:24]
            decided.append(decision)
            if person is None:
                decision.status, decision.reason = "blocked", "the friend is not a known customer"
                continue
            # 1. consent, channel by channel: preferred first, then the fallbacks in order.
            wanted = [step["channel"], *step.get("fallback", [])]
            channels = [person["preferred_channel"] if c == PREFERRED else c for c in wanted]
            usable = list(
                dict.fromkeys(
                    c
                    for c in channels
                    if c
                    and person.get(f"consent_{c}")
                    and person.get(CHANNEL_ADDRESS.get(c, ""), "x")
                )
            )
            if not usable:
                decision.status = "blocked"
                decision.reason = REASONS["no-consent"].format(
                    channels=", ".join(c for c in channels if c) or "none"
                )
                continue
            # Instagram answers only within 24 hours of the customer's last message to us.
            hours = person.get("hours_since_last_inbound")
            if "instagram" in usable and (hours is None or hours > INSTAGRAM_WINDOW_HOURS):
                usable.remove("instagram")
                decision.reason = "instagram: outside the 24-hour messaging window"
                if not usable:
                    decision.status = "blocked"
                    decision.reason += ", and no other consented channel"
                    continue
                decision.reason += f"; fell back to {usable[0]}"
            decision.channel = usable[0]
            decision.channels = usable
            decision.addresses = {
                c: str(person.get(CHANNEL_ADDRESS[c])) for c in usable if c in CHANNEL_ADDRESS
            }
            decision.hours_since_last_inbound = person.get("hours_since_last_inbound")
            decision.max_segments = step.get("max_segments")
            # 2. personalization
            if not (person.get("first_name") or "").strip():
                decision.status, decision.reason = "blocked", REASONS["no-name"]
                continue
            # 3. quiet hours: deferred to their end, never dropped
            local = person["local_time"]
            quiet = (
                (local >= quiet_start or local < quiet_end)
                if quiet_start > quiet_end
                else quiet_start <= local < quiet_end
            )
            if quiet:
                local_now: dt.datetime = person["_local_now"]
                resume = dt.datetime.combine(local_now.date(), quiet_end)
                if resume <= local_now:
                    resume += dt.timedelta(days=1)
                decision.status = "deferred"
                decision.due_at = now + (resume - local_now)
                decision.reason = f"{REASONS['quiet-hours']} to {quiet_end:%H:%M} local"
            if pb.category == "transactional":
                continue
            # 4. cadence
            cadence, last = person["cadence_days"], person["days_since_last_message"]
            if cadence and last is not None and last < cadence:
                decision.status = "blocked"
                decision.reason = REASONS["cadence"].format(cadence=cadence) + (
                    f"; the last was {last:.1f} days ago"
                )
                continue
            cooler = cooling.get(decision.recipient_id)
            if cooler is not None and cooler[1] != pb.id:
                decision.status = "blocked"
                decision.reason = (
                    f"the cooldown after {cooler[1]}, until {cooler[0]:%Y-%m-%d %H:%M} UTC"
                )
                continue
            weekly = self.project.per_customer_per_week
            if weekly and sent_this_week.get(decision.recipient_id, 0) >= weekly:
                decision.status, decision.reason = "blocked", f"{REASONS['cap']}: {weekly} a week"

        self._priority(decided)
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

    def _render_note(self, note: dict[str, Any], person: dict[str, Any], now: dt.datetime) -> None:
        """A team notification: its template (``NAME.md``) or a one-line summary."""
        pb = self.playbooks[note["playbook"]]
        note["key"] = hashlib.sha256(
            f"team|{note['team']}|{pb.id}|{note['customer']}|{_iso(now)}".encode()
        ).hexdigest()[:24]
        note["subject"] = f"[{note['urgency']}] {pb.title}: {note['customer']}"
        note["text"] = _note_text(note, person)
        files = variants(_templates_folder(pb), note["template"]) if note["template"] else {}
        file = files.get("") or next(iter(files.values()), None)
        if file is None:
            return
        context = {k: v for k, v in person.items() if not k.startswith("_")}
        context.update(
            offer=dict.fromkeys(OFFER_FIELDS),
            friend={"first_name": None},
            brand=self.project.brand,
            playbook={"id": pb.id, "title": pb.title},
            now=now,
            unsubscribe_url=None,
        )
        try:
            note["text"] = compiled(file).render(context)[1]
        except Exception as error:
            note["text"] += f" (template {file.name} failed: {error})"

    def _cooldowns(self, state: StateStore, now: dt.datetime) -> dict[str, tuple[dt.datetime, str]]:
        """customer → (until, playbook) for marketing playbooks with ``limits.cooldown`` that
        messaged the customer recently: no other marketing playbook speaks to them until then."""
        cooldowns = {
            pb.id: parse_duration(pb.limits["cooldown"])
            for pb in self.playbooks.values()
            if "cooldown" in pb.limits
        }
        if not cooldowns:
            return {}
        sends = state.sends().filter(pl.col("playbook").is_in(list(cooldowns)))
        until: dict[str, tuple[dt.datetime, str]] = {}
        for customer, playbook, at in sends.select("customer_id", "playbook", "at").iter_rows():
            end = at + cooldowns[playbook]
            if end > now and (customer not in until or end > until[customer][0]):
                until[customer] = (end, playbook)
        return until

    @staticmethod
    def _sends_last_week(state: StateStore, now: dt.datetime) -> dict[str, int]:
        sends = state.sends().filter(
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
        people = {
            r["customer_id"]: r
            for r in facts.filter(pl.col("customer_id").is_in(list(wanted))).iter_rows(named=True)
        }
        for note in plan.notifications:
            self._render_note(note, people.get(note["customer"], {}), plan.now)
        template_files: dict[tuple[str, str], dict[str, Path]] = {}
        for decision in todo:
            pb = self.playbooks[decision.playbook]
            found = (pb.id, decision.template)
            if found not in template_files:
                template_files[found] = variants(_templates_folder(pb), decision.template)
            files = template_files[found]
            file = files.get(decision.tone) or files.get("")
            if file is None:
                decision.status, decision.reason = "blocked", "template file missing"
                continue
            person = people[decision.recipient_id]
            other = people.get(
                decision.customer_id if decision.to == "friend" else decision.recipient_id
            )
            context = {k: v for k, v in person.items() if not k.startswith("_")}
            base_url = self.project.brand.get("url") or ""
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
                decision.subject, decision.text = compiled(file).render(context)
            except Exception as error:
                decision.status = "blocked"
                decision.reason = f"template {file.name} failed to render: {error}"


def _note_text(note: dict[str, Any], person: dict[str, Any]) -> str:
    name = " ".join(filter(None, [person.get("first_name"), person.get("last_name")]))
    return (
        f"{note['playbook']} asks {note['team']} to look after {name or 'a customer'} "
        f"({note['customer']}), urgency {note['urgency']}."
    )


def _anniversary(day: pl.Expr, year: pl.Expr, at: dt.time) -> pl.Expr:
    """The local moment of the anniversary of ``day`` in ``year``; 29 February is 28 February
    in other years."""
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month, dom = day.dt.month(), day.dt.day()
    dom = pl.when((month == 2) & (dom == 29) & ~leap).then(28).otherwise(dom)
    return pl.date(year, month, dom).dt.combine(at)


def _templates_folder(pb: Playbook) -> Path:
    return Path(pb.document.path).parent / "templates"


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


def _rows(facts: pl.DataFrame, contexts: list[dict[str, Any]]) -> pl.Series:
    """The facts rows of these customers: carried by contexts from a trigger, looked up for a
    sequence resumed from the state store."""
    if all(ROW in c for c in contexts):
        return pl.Series(ROW, [c[ROW] for c in contexts], dtype=pl.UInt32())
    ids = pl.Series([c["customer_id"] for c in contexts], dtype=pl.String())
    found = facts.select("customer_id", ROW).filter(pl.col("customer_id").is_in(ids.implode()))
    return pl.DataFrame({"customer_id": ids}).join(found, on="customer_id").get_column(ROW)


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
    patch = pl.DataFrame(
        {ROW: rows.cast(pl.UInt32()), "_value": values, "_hit": [True] * len(rows)}
    ).unique(ROW, keep="last", maintain_order=True)
    placed = facts.select(ROW).join(patch, on=ROW, how="left", maintain_order="left")
    hit = placed.get_column("_hit").is_not_null()
    old = pl.col(name) if name in facts.columns else pl.lit(None, values.dtype)
    return facts.with_columns(
        pl.when(hit).then(placed.get_column("_value")).otherwise(old).alias(name)
    )


def _event_filter(condition: dict[str, Any], columns: list[str]) -> pl.Expr:
    """An event ``where:`` filter as a polars expression over event columns."""
    if "all" in condition:
        return pl.all_horizontal([_event_filter(c, columns) for c in condition["all"]])
    if "any" in condition:
        return pl.any_horizontal([_event_filter(c, columns) for c in condition["any"]])
    if "not" in condition:
        return ~_event_filter(condition["not"], columns)
    name = condition["field"]
    if name not in columns:
        return pl.lit(condition.get("exists") is False)
    column = pl.col(name)
    op, value = next((k, v) for k, v in condition.items() if k != "field")
    expr = {
        "eq": lambda: column == value,
        "ne": lambda: column != value,
        "gt": lambda: column > value,
        "gte": lambda: column >= value,
        "lt": lambda: column < value,
        "lte": lambda: column <= value,
        "in": lambda: column.is_in(value),
        "not_in": lambda: ~column.is_in(value),
        "exists": lambda: column.is_not_null() if value else column.is_null(),
    }[op]()
    return expr.fill_null(False)
