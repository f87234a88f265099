"""One moment, in order: facts → triggers → audiences and limits → sequences → guards → plan.

Nothing here is a rule of its own: each step is a module of this package, and this one only
calls them in the order ``docs/engine.md`` gives. Nothing reads a clock: ``now`` is an argument,
so a moment is reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from courtship.catalogue import PREFERRED, Catalogue, builtin_catalogue
from courtship.engine import audience, consent, guards, render, sequences, triggers
from courtship.engine.facts import (
    FACT_DTYPES,
    ROW,
    FactHistory,
    customer_file_mark,
    no_cycle_collection,
    plugin_fact_columns,
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
from courtship.state import StateStore

__all__ = ["Decision", "Engine", "Plan"]


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

    # ── the moment ────────────────────────────────────────────────────────
    def _decide(
        self, base: CustomerBase, now: dt.datetime, state: StateStore, trace: str | None
    ) -> Plan:
        now = now.astimezone(dt.UTC)
        # What customers wrote to us through `courtship serve` counts with the events.
        base = consent.with_inbound(base, state.callbacks("inbound"))
        last = state.last_run()
        since = last if last is not None and last <= now else now - self.project.lookback
        plan = Plan(now=now, since=since)
        # A playbook whose template or dedup key fails now is disabled: its messages are held.
        fact_types = {name: spec.type for name, spec in self.catalogue.facts.items()}
        plan.disabled, keys = render.broken_playbooks(self.playbooks, self.project, now, fact_types)
        # What we said to customers (a team notification is not a message to the customer).
        sends = state.sends().filter(pl.col("channel") != "team")
        history = self._history(
            base, sends, state, learn=self.learns, churn=self.churns, prefer=self.prefers
        )
        # Consent as the customer file says, overridden by unsubscribes, STOPs and bounces.
        facts = consent.as_of(self._completed(history.at(now)), state.consent_changes(), now)
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
        past = triggers.past_truths(
            [self.playbooks[pb_id] for pb_id, saved in streaks.items() if saved is None],
            history,
            now,
            since,
            set(self.catalogue.facts),
            self._completed,
        )
        candidates: list[sequences.Candidates] = []
        stamp = iso(now)

        for pb_id in self.order:
            pb = self.playbooks[pb_id]
            # The last run's streaks, let go once carried on (plan.streaks has the new ones).
            previous = streaks.pop(pb_id, None)
            triggered = triggers.triggered(
                pb, facts, schema, events, now, since, previous, past, plan, base_mark
            )
            del previous
            within = audience.audience(pb, triggered, facts, now)
            chosen = triggered.with_columns(within.alias("_in"))
            if trace is not None:
                mine = chosen.filter(pl.col("customer_id") == trace)
                plan.traces[pb_id] = {
                    "triggered": mine.height > 0,
                    "audience": bool(mine.get_column("_in").any()),
                }
            chosen = chosen.filter(pl.col("_in")).drop("_in")
            chosen = audience.limits(pb, chosen, fired_state, active, now, plan, trace, sends)
            ids = chosen["customer_id"].to_list()
            plan.fired[pb_id] = ids
            if not ids:
                continue
            plan.changes.setdefault("fired", []).extend((pb_id, c, stamp) for c in ids)
            facts = sequences.run_steps(pb, 0, chosen, now, facts, candidates, plan, self.catalogue)

        waiting = state.waiting_enrollments()
        gone = sequences.reconcile(waiting, self.playbooks, now, plan)
        due = [
            e
            for e in waiting
            if e["due_at"] <= now
            and (e["playbook"], e["customer_id"], iso(e["started_at"])) not in gone
        ]
        sequences.resume(due, base, now, facts, candidates, plan, self.playbooks, self.catalogue)

        # The guards judge the messages reached; sequences go on past those that go out, to
        # their next message, which a further round judges, until none is reached.
        judge = guards.Judge(state, sends, now, self.project, self.playbooks)
        judge.broken, judge.dedup_keys = plan.disabled, keys
        while candidates:
            decided = judge.judge(candidates, facts)
            plan.decisions += decided
            candidates = []
            facts = sequences.after_guards(decided, now, facts, candidates, plan, self.catalogue)
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
    ) -> FactHistory:
        return FactHistory(
            base,
            sends=sends.select("customer_id", "at", "channel", "playbook", "category"),
            set_facts=state.set_facts(),
            set_tags=state.set_tags(),
            default_timezone=self.project.timezone,
            learning=self.project.learning if learn else None,
            churn_days=self.project.churn_horizon_days if churn else None,
            preferences=prefer,
        )

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
