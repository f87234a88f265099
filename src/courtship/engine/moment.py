"""One moment, in order: facts → triggers → audiences and limits → sequences → guards → plan.

Nothing here is a rule of its own: each step is a module of this package, and this one only
calls them in the order ``docs/engine.md`` gives. Nothing reads a clock: ``now`` is an argument,
so a moment is reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from courtship.catalogue import PREFERRED, Catalogue, builtin_catalogue
from courtship.engine import audience, consent, guards, render, sequences, triggers
from courtship.engine.facts import (
    FACT_DTYPES,
    ROW,
    FactHistory,
    SharedFacts,
    customer_file_mark,
    no_cycle_collection,
    plugin_fact_columns,
    rows_of_customers,
)
from courtship.engine.outbox import outbox_rows
from courtship.engine.plan import Decision, Plan, iso
from courtship.engine.record import assignment_rows, decision_rows, keep_deciding_values
from courtship.graph import PlaybookGraph
from courtship.learn.churn import CHURN_FACTS
from courtship.learn.facts import LEARNED_FACTS
from courtship.learn.preferences import PREFERENCE_FACTS
from courtship.playbook import Playbook, declare_set_facts
from courtship.project import Project
from courtship.sources import CustomerBase
from courtship.state import StateError, StateStore

__all__ = ["Decision", "Engine", "Plan"]


@dataclass
class Reach:
    """A moment on its way to the guards: the facts (as ``set`` and ``tag`` steps leave them),
    what the triggers and limits read, and the messages reached so far."""

    base: CustomerBase
    plan: Plan
    facts: pl.DataFrame
    schema: dict[str, pl.DataType]
    events: pl.DataFrame
    sends: pl.DataFrame
    keys: dict[str, str]
    fired: pl.DataFrame
    active: set[tuple[str, str]]
    streaks: SavedStreaks
    past: dict[tuple[str, dt.datetime], pl.Series]
    mark: int
    trace: str | None
    candidates: list[sequences.Candidates] = field(default_factory=list)


class SavedStreaks:
    """The streaks the last run saved for ``becomes`` playbooks: which there are, each read
    when its playbook fires (``pop``) and let go once carried on, one at a time."""

    def __init__(
        self,
        state: StateStore | None,
        playbooks: list[str],
        last: dt.datetime | None,
        file_mark: int | None = None,
    ) -> None:
        self.state, self.last, self.file_mark = state, last, file_mark
        self.saved = {p for p in playbooks if state and last and state.has_streaks(p, last)}

    def pop(self, playbook: str, default: None = None) -> pl.DataFrame | None:
        if playbook not in self.saved or self.state is None or self.last is None:
            return default
        self.saved.discard(playbook)
        frame = self.state.load_streaks(playbook, self.last, file_mark=self.file_mark)
        if frame is None:  # damaged since it was found: put aside, the next run reads the data
            raise StateError(
                f"the saved streaks of {playbook} could not be read (they are put aside); run "
                "again: the next run reads the data instead"
            )
        return frame


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
        #: learned facts are fitted only when a playbook reads one
        read = set().union(*(pb.facts_read for pb in self.playbooks.values()))
        self.churns = bool(read & set(CHURN_FACTS))
        #: ``channel: preferred`` may mean the learned best_channel (``learning.preferred_channel``)
        self.learned_channel = project.preferred_channel == "learned" and any(
            isinstance(step.get("send"), dict) and step["send"].get("channel") == PREFERRED
            for pb in self.playbooks.values()
            for _, step in pb.steps()
        )
        self.prefers = bool(read & set(PREFERENCE_FACTS)) or self.learned_channel
        self.learns = bool(read & set(LEARNED_FACTS)) or self.churns or self.prefers

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

    def render(self, plan: Plan) -> None:
        """Write every message a plan decided from its template, in the recipient's tone; a
        template that fails blocks its message with the reason."""
        if plan.facts is not None:
            with no_cycle_collection():
                render.render(plan, plan.facts, self.project, self.playbooks)
                keep_deciding_values(plan, plan.facts, self.playbooks)
            plan.facts = None

    def record(self, plan: Plan, state: StateStore) -> None:
        """Make a plan happen exactly once: its sends enter the outbox (deferred ones with the
        moment they are due), and its firings, enrollments and facts enter the state store, in
        one transaction. Recording the same plan twice changes nothing."""
        state.record(
            plan.now,
            plan.changes,
            outbox_rows(plan),
            decision_rows(plan, self.playbooks),
            assignment_rows(plan),
        )
        state.save_streaks(plan.now, plan.streaks)
        state.save_aggregates(plan.aggregates)
        plan.aggregates = None

    # ── the moment ────────────────────────────────────────────────────────
    # In four parts, so a base evaluated in parts (``courtship.engine.partitions``) runs the
    # same code: what each customer reaches (``_reach``, ``_fire``, ``_resume``), then the
    # guards over every message reached (``_judged``).
    def _decide(
        self, base: CustomerBase, now: dt.datetime, state: StateStore, trace: str | None
    ) -> Plan:
        reach = self._reach(base, now, state, trace)
        for pb_id in self.order:
            self._fire(reach, pb_id)
        self._resume(reach, self._due(reach.plan, state.waiting_enrollments()))
        return self._judged(reach, state)

    def _since(self, now: dt.datetime, state: StateStore) -> Plan:
        """An empty plan for moment ``now``, counting events since the last run."""
        now = now.astimezone(dt.UTC)
        last = state.last_run()
        since = last if last is not None and last <= now else now - self.project.lookback
        return Plan(now=now, since=since)

    def _reach(
        self,
        base: CustomerBase,
        now: dt.datetime,
        state: StateStore,
        trace: str | None,
        shared: SharedFacts | None = None,
    ) -> Reach:
        """The facts at ``now`` and what the triggers read, before any playbook fires."""
        plan = self._since(now, state)
        now, since = plan.now, plan.since
        # What customers wrote to us through `courtship serve` counts with the events.
        base = consent.with_inbound(base, state.callbacks("inbound"))
        last = state.last_run()
        # A playbook whose template or dedup key fails now is disabled: its messages are held.
        fact_types = {name: spec.type for name, spec in self.catalogue.facts.items()}
        plan.disabled, keys = render.broken_playbooks(self.playbooks, self.project, now, fact_types)
        # What we said to customers (a team notification is not a message to the customer).
        sends = state.sends().filter(pl.col("channel") != "team")
        history = self._history(
            base,
            sends,
            state,
            learn=self.learns,
            churn=self.churns,
            prefer=self.prefers,
            shared=shared,
            carry=True,
        )
        # Consent as the customer file says, overridden by unsubscribes, STOPs and bounces.
        facts = consent.as_of(self._completed(history.at(now)), state.consent_changes(), now)
        plan.aggregates = history.kept
        everyone = history.customers.height
        plan.aggregated = (history.__dict__.get("aggregated", everyone), everyone)
        if trace is not None:
            rows = facts.filter(pl.col("customer_id") == trace).to_dicts()
            plan.customer_facts = rows[0] if rows else None
        events = base.events.filter((pl.col("at") > since) & (pl.col("at") <= now)).with_columns(
            pl.col("customer_id").cast(pl.String())
        )
        rows = rows_of_customers(facts, events.get_column("customer_id"))
        events = events.join(rows, on="customer_id")
        becomes = [pb_id for pb_id in self.order if "becomes" in self.playbooks[pb_id].trigger]
        mark = customer_file_mark(base)
        streaks = SavedStreaks(state, becomes, last, mark)
        past = triggers.past_truths(
            [self.playbooks[pb_id] for pb_id in becomes if pb_id not in streaks.saved],
            history,
            now,
            since,
            set(self.catalogue.facts),
            self._completed,
        )
        return Reach(
            base=base,
            plan=plan,
            facts=facts,
            schema=dict(facts.schema),
            events=events,
            sends=sends,
            keys=keys,
            fired=state.fired(),
            active=state.active_enrollments(),
            streaks=streaks,
            past=past,
            mark=mark,
            trace=trace,
        )

    def _fire(self, reach: Reach, pb_id: str) -> None:
        """One playbook: whom its trigger selects, its audience admits and its limits allow,
        taken through its steps up to their next message (a batch of candidates) or wait."""
        pb, plan, now, facts = self.playbooks[pb_id], reach.plan, reach.plan.now, reach.facts
        trace = reach.trace
        triggered = triggers.triggered(
            pb,
            facts,
            reach.schema,
            reach.events,
            now,
            plan.since,
            reach.streaks.pop(pb_id, None),  # the last run's, let go once carried on
            reach.past,
            plan,
            reach.mark,
        )
        within = audience.audience(pb, triggered, facts, now)
        chosen = triggered.with_columns(within.alias("_in"))
        if trace is not None:
            mine = chosen.filter(pl.col("customer_id") == trace)
            plan.traces[pb_id] = {
                "triggered": mine.height > 0,
                "audience": bool(mine.get_column("_in").any()),
            }
        chosen = chosen.filter(pl.col("_in")).drop("_in")
        chosen = audience.limits(
            pb, chosen, reach.fired, reach.active, now, plan, trace, reach.sends
        )
        ids = chosen["customer_id"].to_list()
        plan.fired[pb_id] = ids
        if not ids:
            return
        plan.changes.setdefault("fired", []).extend((pb_id, c, iso(now)) for c in ids)
        reach.facts = sequences.run_steps(
            pb, 0, chosen, now, facts, reach.candidates, plan, self.catalogue
        )

    def _due(self, plan: Plan, waiting: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The stored sequences due at this moment, once those an edit of their playbook let
        go are out (what the edits did goes in the plan)."""
        gone = sequences.reconcile(waiting, self.playbooks, plan.now, plan)
        return [
            e
            for e in waiting
            if e["due_at"] <= plan.now
            and (e["playbook"], e["customer_id"], iso(e["started_at"])) not in gone
        ]

    def _resume(self, reach: Reach, due: list[dict[str, Any]]) -> None:
        """The stored sequences that are due carry on, up to their next message or wait."""
        sequences.resume(
            due,
            reach.base,
            reach.plan.now,
            reach.facts,
            reach.candidates,
            reach.plan,
            self.playbooks,
            self.catalogue,
        )

    def _judged(self, reach: Reach, state: StateStore) -> Plan:
        """The guards judge the messages reached; sequences go on past those that go out, to
        their next message, which a further round judges, until none is reached."""
        plan, facts, candidates = reach.plan, reach.facts, reach.candidates
        judge = guards.Judge(state, reach.sends, plan.now, self.project, self.playbooks)
        judge.broken, judge.dedup_keys = plan.disabled, reach.keys
        while candidates:
            decided = judge.judge(candidates, facts)
            plan.decisions += decided
            candidates = []
            facts = sequences.after_guards(
                decided, plan.now, facts, candidates, plan, self.catalogue
            )
        plan.facts = facts
        return plan

    def facts(
        self,
        base: CustomerBase,
        now: dt.datetime,
        state: StateStore,
        *,
        learn: bool = True,
        churn: bool | None = None,
        prefer: bool | None = None,
    ) -> pl.DataFrame:
        """Every fact of every customer at ``now``, as conditions read them, one row per
        customer, ``customer_id`` first: what ``courtship facts`` prints. ``learn``: fit the
        learned facts (else they are null); ``churn``: ``churn_risk`` too, ``prefer``: the
        learned preferences too (default: as learn)."""
        sends = state.sends().filter(pl.col("channel") != "team")
        churn = learn if churn is None else churn
        prefer = learn if prefer is None else prefer
        with no_cycle_collection():
            history = self._history(base, sends, state, learn=learn, churn=churn, prefer=prefer)
            facts = self._completed(history.at(now.astimezone(dt.UTC)))
        return facts.drop(ROW, "_local_now")

    def fact_history(self, base: CustomerBase, state: StateStore) -> FactHistory:
        """The facts of ``base`` at any moment, as the engine computes them, with the
        BG/NBD learned facts and without ``churn_risk`` (what ``courtship model`` reads)."""
        sends = state.sends().filter(pl.col("channel") != "team")
        return self._history(base, sends, state, learn=True, churn=False, prefer=True)

    def _history(
        self,
        base: CustomerBase,
        sends: pl.DataFrame,
        state: StateStore,
        *,
        learn: bool,
        churn: bool,
        prefer: bool,
        shared: SharedFacts | None = None,
        carry: bool = False,
    ) -> FactHistory:
        # A moment carries on the last run's aggregates (the steady run), in one process.
        keep = carry and shared is None and state.keeps_aggregates
        carried = state.aggregates(customer_file_mark(base)) if keep else None
        return FactHistory(
            base,
            sends=sends.select("customer_id", "at", "channel", "playbook", "category"),
            set_facts=state.set_facts(),
            set_tags=state.set_tags(),
            default_timezone=self.project.timezone,
            learning=self.project.learning if learn else None,
            churn_days=self.project.churn_horizon_days if churn else None,
            preferences=prefer,
            shared=shared,
            carried=carried,
            keep=keep,
        )

    def _completed(self, frame: pl.DataFrame) -> pl.DataFrame:
        return completed(frame, self.catalogue)


def completed(frame: pl.DataFrame, catalogue: Catalogue) -> pl.DataFrame:
    """The facts as conditions read them: every catalogue fact a column (facts no one has
    set yet are null), facts plugins declare cast from the customer data's text to their
    type, each customer's local now, and the row number."""
    missing = [
        pl.lit(None, dtype=FACT_DTYPES[spec.type]).alias(name)
        for name, spec in catalogue.facts.items()
        if name not in frame.columns
    ]
    missing += plugin_fact_columns(frame, catalogue)
    return frame.with_columns(
        *missing,
        pl.col("local_date").dt.combine(pl.col("local_time")).alias("_local_now"),
        pl.int_range(pl.len(), dtype=pl.UInt32()).alias(ROW),
    )
