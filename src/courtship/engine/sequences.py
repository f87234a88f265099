"""Sequences: a playbook's steps, from where a customer is, up to the next message or ``wait``.

``set`` and ``tag`` change the customers' facts at once (later playbooks read them); ``notify``
tells a team; a ``send`` becomes a message the guards judge, and the sequence goes on past it
only once the message goes out (``after_guards``); a message the guards hold back waits at its
step, and one that can never go out ends the sequence (unless the step is ``optional``). A
``wait`` stores an enrollment that a later run resumes, unless the customer did what its
``unless`` names. Enrollments remember the playbook's version and their step by its stable name,
so an edit of the playbook moves them with their step, or lets them go when it is gone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from courtship.catalogue import Catalogue
from courtship.engine.facts import ROW, at_rows, rows_of_customers
from courtship.engine.plan import Decision, Plan, iso
from courtship.engine.triggers import event_filter
from courtship.experiments import variant_of
from courtship.playbook import Playbook, parse_duration
from courtship.sources import CustomerBase

#: Columns a batch of customers may carry besides customer_id, the row, the event and friend:
#: when their sequence started, since when its message is held back, and the keys it keeps.
STARTED, SINCE, KEY, DEDUP = "_started", "_since", "_key", "_dedup"
#: Since when a message sent ``at: best_hour`` waits for the customer's best hour.
BEST_FROM = "_best_from"
#: How long a held message waits for its chance unless its step says (``send.expires``).
DEFAULT_EXPIRY = "30d"


@dataclass
class Candidates:
    """The customers (``who``: customer_id, and the row, event and friend their trigger
    found, and what their sequence keeps) for whom one ``send`` step of a playbook was reached
    at this moment. ``stored``: they come from enrollments in the state store."""

    pb: Playbook
    step: int
    who: pl.DataFrame
    stored: bool = False
    moments: list[Any] | None = field(init=False)

    def __post_init__(self) -> None:
        # The event or calendar occurrence that started it, part of each message's key.
        self.moments = self.column("_event_at") or self.column("_occurrence")

    def column(self, name: str) -> list[Any] | None:
        return self.who.get_column(name).to_list() if name in self.who.columns else None


def run_steps(
    pb: Playbook,
    start: int,
    chosen: pl.DataFrame,
    now: dt.datetime,
    facts: pl.DataFrame,
    candidates: list[Candidates],
    plan: Plan,
    catalogue: Catalogue,
    *,
    stored: bool = False,
) -> pl.DataFrame:
    """Run steps of ``pb.flow`` from ``start`` for the ``chosen`` customers up to the next
    message (a batch of ``candidates``) or ``wait`` (an enrollment); returns the facts with
    what ``set`` and ``tag`` steps changed (later playbooks read them). A ``split`` sends each
    customer down their arm, a ``branch`` down ``then`` or ``else``: each part goes on alone."""
    ids = chosen.get_column("customer_id").to_list()
    flow = pb.flow
    index = start
    while index < len(flow):
        step = flow[index]
        if "goto" in step:  # the end of an arm or of a branch's then: on after it
            index = step["goto"]
            continue
        if "send" in step:
            candidates.append(Candidates(pb, index, chosen, stored))
            return facts
        if "split" in step or "branch" in step:
            ways = _split(pb, index, chosen, ids, now, plan) if "split" in step else None
            if ways is None:
                ways = _branch(pb, index, chosen, ids, now, facts, plan)
            for begin, part in ways:
                if part.height:
                    facts = run_steps(
                        pb, begin, part, now, facts, candidates, plan, catalogue, stored=stored
                    )
            return facts
        if "set" in step:
            facts = _set(step["set"], ids, chosen, now, facts, plan, catalogue)
        elif "tag" in step or "untag" in step:
            facts = _tag(step, ids, chosen, facts, plan)
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
            due = iso(now + parse_duration(step["wait"]))
            kept = {"waiting_since": iso(now), "at": "wait"}
            plan.changes.setdefault("enrollments", []).extend(
                _enrollment(pb, index, c, now, due, "waiting", kept) for c in chosen.to_dicts()
            )
            return facts
        index += 1
    if stored:  # the sequence is over: its enrollment ends
        plan.changes.setdefault("enrollments", []).extend(
            _enrollment(pb, len(flow) - 1, c, now, iso(now), "done", {}) for c in chosen.to_dicts()
        )
    return facts


def _split(
    pb: Playbook, index: int, chosen: pl.DataFrame, ids: list[str], now: dt.datetime, plan: Plan
) -> list[tuple[int, pl.DataFrame]]:
    """Each customer's arm of the split at ``index`` (by weight, from a hash of the customer,
    the playbook and the step: the same at every run), recorded as their assignment; the
    customers of each arm with where its steps begin."""
    step = pb.flow[index]
    step_id = pb.step_ids[index]
    arms = [arm for arm in step["split"] if isinstance(arm, dict)]
    names = [str(arm["id"]) for arm in arms]
    picked = [names.index(str(variant_of(pb.id, step_id, c, arms)["id"])) for c in ids]
    stamp = iso(now)
    plan.assigned.extend(
        (pb.id, c, step_id, names[k], stamp) for c, k in zip(ids, picked, strict=True)
    )
    plan.routes.extend(
        (pb.id, c, step_id, f"arm {names[k]}") for c, k in zip(ids, picked, strict=True)
    )
    column = pl.Series(picked, dtype=pl.UInt32())
    return [
        (begin, chosen.filter(column == number)) for number, begin in enumerate(step["_starts"])
    ]


def _branch(
    pb: Playbook,
    index: int,
    chosen: pl.DataFrame,
    ids: list[str],
    now: dt.datetime,
    facts: pl.DataFrame,
    plan: Plan,
) -> list[tuple[int, pl.DataFrame]]:
    """The customers the branch's condition holds for now (its ``then``) and the others (its
    ``else``, or on after it), each with where their steps begin."""
    from courtship.engine.audience import among
    from courtship.engine.conditions import to_expression

    step = pb.flow[index]
    condition = to_expression(step["branch"]["if"], dict(facts.schema), now).fill_null(False)
    holds = among(facts, rows_of(facts, chosen), condition).fill_null(False)
    step_id = pb.step_ids[index]
    plan.routes.extend(
        (pb.id, c, step_id, "then" if yes else "else")
        for c, yes in zip(ids, holds.to_list(), strict=True)
    )
    return [(step["_then"], chosen.filter(holds)), (step["_else"], chosen.filter(~holds))]


def _set(
    step: dict[str, Any],
    ids: list[str],
    chosen: pl.DataFrame,
    now: dt.datetime,
    facts: pl.DataFrame,
    plan: Plan,
    catalogue: Catalogue,
) -> pl.DataFrame:
    name, value = step["fact"], step["value"]
    text = (
        iso(now) if value == "now" else json.dumps(value) if not isinstance(value, str) else value
    )
    kind = catalogue.facts.get(name)
    type_name = kind.type if kind else ("datetime" if value == "now" else "string")
    plan.changes.setdefault("facts", []).extend((c, name, text, type_name, iso(now)) for c in ids)
    literal = now if value == "now" else value
    dtype = facts.schema[name] if name in facts.columns else None
    values = pl.Series(name, [literal] * len(ids))
    return _patched(facts, rows_of(facts, chosen), name, values, dtype)


def _tag(
    step: dict[str, Any], ids: list[str], chosen: pl.DataFrame, facts: pl.DataFrame, plan: Plan
) -> pl.DataFrame:
    tag = step.get("tag") or step["untag"]
    key = "tags" if "tag" in step else "untags"
    present = int(key == "tags")
    plan.changes.setdefault("tags", []).extend((c, tag, present) for c in ids)
    rows = rows_of(facts, chosen)
    tags = facts.get_column("tags").gather(rows).fill_null([]).to_frame()
    updated = tags.select(
        pl.concat_list("tags", pl.lit([tag])).list.unique().list.sort()
        if key == "tags"
        else pl.col("tags").list.set_difference(pl.lit([tag]))
    ).to_series()
    return _patched(facts, rows, "tags", updated, facts.schema["tags"])


def _enrollment(
    pb: Playbook,
    index: int,
    context: dict[str, Any],
    now: dt.datetime,
    due: str,
    status: str,
    kept: dict[str, Any],
) -> tuple[Any, ...]:
    """An enrollments row: the customer at step ``index`` of ``pb`` (named, and in this version
    of the playbook), in their sequence that started at ``context[STARTED]`` (else now)."""
    plain = _plain(context)
    started = plain.pop(STARTED, None) or iso(now)
    plain |= {"version": pb.version, "step_id": pb.step_ids[index]} | kept
    return (pb.id, plain["customer_id"], started, index, due, status, json.dumps(plain))


def after_guards(
    decisions: Iterable[Decision],
    now: dt.datetime,
    facts: pl.DataFrame,
    candidates: list[Candidates],
    plan: Plan,
    catalogue: Catalogue,
) -> pl.DataFrame:
    """Each sequence after its message was judged: past a message that goes out (or an
    optional one that cannot), on to the next steps; a held message waits at its step, due
    when the guard allows; a message that can never go out ends a stored sequence."""
    by_batch: dict[int, tuple[Candidates, list[int], list[Decision]]] = {}
    for decision in decisions:
        if decision.origin is None:
            continue
        batch, row = decision.origin
        entry = by_batch.setdefault(id(batch), (batch, [], []))
        step = batch.pb.flow[batch.step]["send"]
        if decision.status == "send" or (
            decision.status == "blocked" and step.get("optional") is True
        ):
            entry[1].append(row)
        elif decision.status == "deferred":
            entry[2].append(decision)
        elif batch.stored:
            context = batch.who.row(row, named=True)
            plan.changes.setdefault("enrollments", []).append(
                _enrollment(
                    batch.pb,
                    batch.step,
                    context,
                    now,
                    iso(now),
                    "ended",
                    {"guard": decision.guard, "reason": decision.reason},
                )
            )
    for batch, rows, held in by_batch.values():
        for decision in held:
            _hold(batch, decision, now, plan)
        if rows:
            # the message is behind them: what it kept (since when held, its keys) goes too
            who = batch.who[sorted(set(rows))].drop(SINCE, KEY, DEDUP, BEST_FROM, strict=False)
            facts = run_steps(
                batch.pb,
                batch.step + 1,
                who,
                now,
                facts,
                candidates,
                plan,
                catalogue,
                stored=batch.stored,
            )
    return facts


def _hold(batch: Candidates, decision: Decision, now: dt.datetime, plan: Plan) -> None:
    """A held message waits at its step until it is due, with its keys and since when."""
    assert decision.origin is not None and decision.due_at is not None
    context = batch.who.row(decision.origin[1], named=True)
    kept = {
        "at": "send",
        SINCE: iso(decision.held_since or now),
        KEY: decision.key,
        DEDUP: decision.dedup_key,
        "guard": decision.guard,
        "reason": decision.reason,
    }
    if decision.best_from is not None:
        kept[BEST_FROM] = iso(decision.best_from)
    plan.changes.setdefault("enrollments", []).append(
        _enrollment(batch.pb, batch.step, context, now, iso(decision.due_at), "waiting", kept)
    )


def resume(
    due: list[dict[str, Any]],
    base: CustomerBase,
    now: dt.datetime,
    facts: pl.DataFrame,
    candidates: list[Candidates],
    plan: Plan,
    playbooks: Mapping[str, Playbook],
    catalogue: Catalogue,
) -> None:
    """Carry on the sequences that are due: after a wait (unless the customer did what ends
    it), or at a message that was held back, which the guards judge again. Sequences at the
    same step of the same playbook carry on together, as one batch."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for enrollment in due:
        pb = playbooks.get(enrollment["playbook"])
        index = None if pb is None else _where(pb, enrollment)
        if pb is None or index is None:
            continue
        context = dict(enrollment["context"])
        context |= {
            "customer_id": enrollment["customer_id"],
            STARTED: iso(enrollment["started_at"]),
        }
        groups.setdefault((pb.id, index), []).append(context)
    keep = (
        "customer_id",
        "friend_id",
        "_event_at",
        "_occurrence",
        STARTED,
        SINCE,
        KEY,
        DEDUP,
        BEST_FROM,
    )
    batches: list[tuple[Playbook, int, list[dict[str, Any]]]] = []
    for (pb_id, index), contexts in groups.items():
        pb, step = playbooks[pb_id], playbooks[pb_id].flow[index]
        start = index
        if "wait" in step:
            back = _came_back(step.get("unless"), contexts, base, now)
            for context in contexts:
                if context["customer_id"] in back:
                    plan.changes.setdefault("enrollments", []).append(
                        _enrollment(pb, index, context, now, iso(now), "exited", {})
                    )
            contexts = [c for c in contexts if c["customer_id"] not in back]
            start = index + 1
        if contexts:
            batches.append((pb, start, contexts))
    if not batches:
        return
    # Everyone's row in the facts, found at once for all the batches (the facts searched for
    # these customers first: a join would hash every customer's id).
    who = pl.DataFrame(
        [
            {k: c.get(k) for k in keep} | {"_batch": n}
            for n, (*_, cs) in enumerate(batches)
            for c in cs
        ],
        schema={k: pl.String() for k in keep} | {"_batch": pl.UInt32()},
    )
    found = rows_of_customers(facts, who.get_column("customer_id"))
    who = who.join(found, on="customer_id", how="left", maintain_order="left")
    for number, (pb, start, _) in enumerate(batches):
        mine = who.filter(pl.col("_batch") == number).drop("_batch")
        run_steps(pb, start, mine, now, facts, candidates, plan, catalogue, stored=True)


def _where(pb: Playbook, enrollment: dict[str, Any]) -> int | None:
    """The step a stored enrollment is at in the playbook as it is now: found by its name
    (an enrollment from before steps had names is at the step after its wait)."""
    step_id = enrollment["context"].get("step_id")
    if step_id is None:
        index = enrollment["step"] - 1
        return index if 0 <= index < len(pb.flow) else None
    return pb.step_index(step_id)


def _came_back(
    unless: dict[str, Any] | None,
    contexts: list[dict[str, Any]],
    base: CustomerBase,
    now: dt.datetime,
) -> set[str]:
    """The customers who did what the wait's ``unless`` names since their wait began."""
    if not unless or not contexts:
        return set()
    began = pl.DataFrame(
        {
            "customer_id": [c["customer_id"] for c in contexts],
            "_from": [
                dt.datetime.fromisoformat(c.get("waiting_since") or c[STARTED]) for c in contexts
            ],
        },
        schema={"customer_id": pl.String(), "_from": pl.Datetime("us", "UTC")},
    )
    happened = base.events.filter(
        (pl.col("type") == unless["event"])
        & pl.col("customer_id").cast(pl.String()).is_in(began.get_column("customer_id").implode())
        & (pl.col("at") <= now)
    )
    if "where" in unless:
        happened = happened.filter(event_filter(unless["where"], happened.schema))
    happened = happened.with_columns(pl.col("customer_id").cast(pl.String())).join(
        began, on="customer_id"
    )
    return set(happened.filter(pl.col("at") > pl.col("_from")).get_column("customer_id"))


def reconcile(
    waiting: list[dict[str, Any]], playbooks: Mapping[str, Playbook], now: dt.datetime, plan: Plan
) -> set[tuple[str, str, str]]:
    """Enrollments whose playbook changed since they began waiting: moved with their step to
    its new place, or let go (their step, or the playbook, is gone) with the reason recorded.
    Returns the enrollments let go (playbook, customer, started)."""
    gone: set[tuple[str, str, str]] = set()
    for enrollment in waiting:
        context = enrollment["context"]
        version = context.get("version")
        pb = playbooks.get(enrollment["playbook"])
        if pb is not None and version in (None, pb.version):
            continue
        counts = plan.edits.setdefault(enrollment["playbook"], {"moved": 0, "let_go": 0})
        index = None if pb is None else _where(pb, enrollment)
        if index is not None:  # its step is still there: it waits on, in this version
            counts["moved"] += index != enrollment["step"]
            plan.changes.setdefault("enrollments", []).append(
                (
                    pb.id,
                    enrollment["customer_id"],
                    iso(enrollment["started_at"]),
                    index,
                    iso(enrollment["due_at"]),
                    "waiting",
                    json.dumps(context | {"version": pb.version, "step_id": pb.step_ids[index]}),
                )
            )
            continue
        counts["let_go"] += 1
        why = (
            "the playbook was removed or disabled"
            if pb is None
            else f"the playbook changed: its step {context.get('step_id')} is gone"
        )
        started = iso(enrollment["started_at"])
        plan.changes.setdefault("enrollments", []).append(
            (
                enrollment["playbook"],
                enrollment["customer_id"],
                started,
                enrollment["step"],
                iso(now),
                "left",
                json.dumps(context | {"reason": why}),
            )
        )
        gone.add((enrollment["playbook"], enrollment["customer_id"], started))
    return gone


def _plain(context: dict[str, Any]) -> dict[str, Any]:
    """A context as the state store keeps it: instants as text, without the row number (rows
    are numbered anew at every run)."""
    return {
        k: (iso(v) if isinstance(v, dt.datetime) else v) for k, v in context.items() if k != ROW
    }


def rows_of(facts: pl.DataFrame, who: pl.DataFrame) -> pl.Series:
    """The facts rows of these customers: carried from a trigger, or looked up for a sequence
    resumed from the state store."""
    if ROW in who.columns and not who.get_column(ROW).has_nulls():
        return who.get_column(ROW).cast(pl.UInt32())
    ids = who.get_column("customer_id").cast(pl.String())
    found = rows_of_customers(facts, ids)
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
    rows = rows.cast(pl.UInt32())
    same_type = name not in facts.columns or facts.schema[name] == values.dtype
    if same_type and not values.dtype.is_nested() and not rows.has_nulls():
        # written at the rows, on a copy of the one column (a customer twice: the last wins)
        part = pl.DataFrame({ROW: rows, name: values}).unique(ROW, keep="last")
        return at_rows(facts, part)
    # Lists (tags) are not scattered: where each row's new value is among ``values`` (null:
    # unchanged); the last one wins.
    place = pl.repeat(None, facts.height, dtype=pl.UInt32(), eager=True)
    place.scatter(rows, pl.int_range(len(rows), dtype=pl.UInt32(), eager=True))
    old = pl.col(name) if name in facts.columns else pl.lit(None, values.dtype)
    return facts.with_columns(
        pl.when(place.is_not_null()).then(values.gather(place)).otherwise(old).alias(name)
    )
