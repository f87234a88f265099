"""Sequences: a playbook's steps, from where a customer is, up to the next ``wait``.

``send`` steps become the messages the guards judge; ``set`` and ``tag`` change the customers'
facts at once (later playbooks read them); ``notify`` tells a team; ``wait`` stores an
enrollment that a later run resumes, unless the customer did what its ``unless`` names.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from courtship.catalogue import Catalogue
from courtship.engine.facts import ROW
from courtship.engine.plan import Plan, iso
from courtship.engine.triggers import event_filter
from courtship.playbook import Playbook, parse_duration
from courtship.sources import CustomerBase


@dataclass
class Candidates:
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


def run_steps(
    pb: Playbook,
    start: int,
    chosen: pl.DataFrame,
    now: dt.datetime,
    facts: pl.DataFrame,
    candidates: list[Candidates],
    plan: Plan,
    catalogue: Catalogue,
) -> pl.DataFrame:
    """Run steps from ``start`` up to the next wait for the ``chosen`` customers (their
    customer_id, and the row, event and friend a trigger found); returns the facts with
    what ``set`` and ``tag`` steps changed (later playbooks read them)."""
    ids = chosen.get_column("customer_id").to_list()
    for index in range(start, len(pb.respond)):
        step = pb.respond[index]
        if "send" in step:
            candidates.append(Candidates(pb, index, chosen))
        elif "set" in step:
            name, value = step["set"]["fact"], step["set"]["value"]
            text = (
                iso(now)
                if value == "now"
                else json.dumps(value)
                if not isinstance(value, str)
                else value
            )
            kind = catalogue.facts.get(name)
            type_name = kind.type if kind else ("datetime" if value == "now" else "string")
            plan.changes.setdefault("facts", []).extend(
                (c, name, text, type_name, iso(now)) for c in ids
            )
            literal = now if value == "now" else value
            dtype = facts.schema[name] if name in facts.columns else None
            values = pl.Series(name, [literal] * len(ids))
            facts = _patched(facts, rows_of(facts, chosen), name, values, dtype)
        elif "tag" in step or "untag" in step:
            tag = step.get("tag") or step["untag"]
            key = "tags" if "tag" in step else "untags"
            plan.changes.setdefault(key, []).extend((c, tag) for c in ids)
            rows = rows_of(facts, chosen)
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
                    iso(now),
                    index + 1,
                    iso(due),
                    "waiting",
                    json.dumps(_plain(c) | {"waiting_since": iso(now)}),
                )
                for c in chosen.to_dicts()
            )
            break
    return facts


def resume(
    enrollment: dict[str, Any],
    base: CustomerBase,
    now: dt.datetime,
    facts: pl.DataFrame,
    candidates: list[Candidates],
    plan: Plan,
    playbooks: Mapping[str, Playbook],
    catalogue: Catalogue,
) -> None:
    """Carry on a sequence whose wait is over, unless the customer did what ends it."""
    pb = playbooks.get(enrollment["playbook"])
    if pb is None:
        return
    step_index = enrollment["step"]
    context = enrollment["context"]
    wait_step = pb.respond[step_index - 1] if step_index >= 1 else {}
    started = iso(enrollment["started_at"])
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
            happened = happened.filter(event_filter(unless["where"], happened.schema))
        if happened.height:
            plan.changes.setdefault("enrollments", []).append(
                (*row, step_index, iso(now), "exited", json.dumps(context))
            )
            return
    plan.changes.setdefault("enrollments", []).append(
        (*row, step_index, iso(now), "done", json.dumps(context))
    )
    context = {k: v for k, v in context.items() if k != "waiting_since"}
    context["customer_id"] = enrollment["customer_id"]
    who = pl.DataFrame(
        [context],
        schema_overrides={"customer_id": pl.String(), "friend_id": pl.String()},
    )
    run_steps(pb, step_index, who, now, facts, candidates, plan, catalogue)


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
