"""Audiences and limits: of the customers a trigger selected, those the playbook's conditions
admit, then those its limits allow (``once_every``, ``reentry``, ``max_sends``, and no second
enrollment while one is active)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from courtship.engine.conditions import to_expression
from courtship.engine.facts import ROW
from courtship.engine.plan import Plan
from courtship.playbook import Playbook, parse_duration


def audience(
    pb: Playbook, triggered: pl.DataFrame, facts: pl.DataFrame, now: dt.datetime
) -> pl.Series:
    """Whether each triggered customer is in the playbook's audience (all are without one)."""
    if not pb.audience:
        return pl.Series([True] * triggered.height, dtype=pl.Boolean())
    condition = to_expression(pb.audience, dict(facts.schema), now).fill_null(False)
    return among(facts, triggered.get_column(ROW), condition)


def limits(
    pb: Playbook,
    chosen: pl.DataFrame,
    fired_state: pl.DataFrame,
    active: set[tuple[str, str]],
    now: dt.datetime,
    plan: Plan,
    trace: str | None,
    sends: pl.DataFrame,
) -> pl.DataFrame:
    """The chosen customers the playbook's limits allow: ``once_every`` and ``reentry`` read
    when it last fired for them, ``max_sends`` the messages it sent them, and a customer
    waiting in its sequence is not enrolled again (unless ``reentry: always``)."""
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
        sent = (
            sends.filter(pl.col("playbook") == pb.id)
            .group_by("customer_id")
            .agg(pl.len().cast(pl.Int64()).alias("_sent"))
        )
        chosen = chosen.join(sent, on="customer_id", how="left", maintain_order="left")
        keep = keep & (pl.col("_sent").fill_null(0) < limits["max_sends"])
    if reentry != "always" and active:
        busy = [c for p, c in active if p == pb.id]
        keep = keep & ~pl.col("customer_id").is_in(busy)
    kept = chosen.filter(keep)
    if trace is not None and pb.id in plan.traces:
        plan.traces[pb.id]["limits"] = kept.filter(pl.col("customer_id") == trace).height > 0
    return kept.drop("last", "times", "_sent", strict=False)


def among(facts: pl.DataFrame, rows: pl.Series, condition: pl.Expr) -> pl.Series:
    """A condition (a row-by-row expression) for the customers at ``rows``: over just their
    rows, and just the columns it reads, when they are few; else over all and picked."""
    columns = list(dict.fromkeys(condition.meta.root_names()))
    if columns and len(rows) * 8 < facts.height:
        return facts.select(columns)[rows].select(condition).to_series()
    return facts.select(condition).to_series().gather(rows)
