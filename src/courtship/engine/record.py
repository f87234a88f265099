"""The record of a moment: every decision as the state store keeps it, with the playbook's
version and the values of the facts that decided, so ``explain`` and ``history`` answer from
what happened, not from a re-computation."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import polars as pl

from courtship.engine.plan import Plan, iso

if TYPE_CHECKING:
    from courtship.playbook import Playbook


def keep_deciding_values(plan: Plan, facts: pl.DataFrame, playbooks: dict[str, Playbook]) -> None:
    """Give each decision the values, at this moment, of the facts its playbook reads (its
    trigger's and audience's conditions, its anniversary): what decided it."""
    if not plan.decisions:
        return
    wanted = {
        pb_id: [name for name in playbooks[pb_id].facts_read if name in facts.columns]
        for pb_id in {d.playbook for d in plan.decisions}
        if pb_id in playbooks
    }
    columns = sorted({name for names in wanted.values() for name in names})
    if not columns:
        return
    people = pl.Series(list({d.customer_id for d in plan.decisions}), dtype=pl.String())
    rows = facts.filter(pl.col("customer_id").is_in(people.implode())).select(
        "customer_id", *columns
    )
    values = {row.pop("customer_id"): row for row in rows.to_dicts()}
    by_playbook: dict[str, list[Any]] = defaultdict(list)
    for decision in plan.decisions:
        by_playbook[decision.playbook].append(decision)
    for pb_id, decisions in by_playbook.items():
        names = wanted.get(pb_id, [])
        for decision in decisions:
            person = values.get(decision.customer_id, {})
            decision.decided_by = {name: _plain(person.get(name)) for name in names}


def decision_rows(plan: Plan, playbooks: dict[str, Playbook]) -> list[tuple[Any, ...]]:
    """The plan's decisions as rows of the ``decisions`` table (``state.DECISION_COLUMNS``)."""
    stamp = iso(plan.now)
    rows = []
    for d in plan.decisions:
        pb = playbooks.get(d.playbook)
        rows.append(
            (
                stamp,
                d.customer_id,
                d.recipient_id or d.customer_id,
                d.playbook,
                pb.version if pb is not None else "",
                d.step,
                d.step_id,
                d.category,
                d.template,
                d.to,
                d.wanted,
                d.channel,
                d.tone,
                d.status,
                d.guard,
                d.reason,
                iso(d.due_at) if d.due_at else None,
                d.key,
                json.dumps(d.decided_by, ensure_ascii=False, default=str),
            )
        )
    return rows


def assignment_rows(plan: Plan) -> list[tuple[str, str, str, str, str]]:
    """The experiments' arms the plan put customers in (a split's arm, sent a variant or a
    message, held out, in the control group), as rows of the ``assignments`` table:
    (playbook, customer_id, step_id, arm, at)."""
    stamp = iso(plan.now)
    return list(plan.assigned) + [
        (d.playbook, d.customer_id, d.step_id, d.arm, stamp)
        for d in plan.decisions
        if d.arm and (d.status == "send" or d.guard in ("holdout", "control-group"))
    ]


def _plain(value: Any) -> Any:
    """A fact's value as JSON keeps it: dates and instants as ISO 8601 text."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value
