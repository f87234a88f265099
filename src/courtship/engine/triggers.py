"""Triggers: which customers a playbook's trigger selects in the window ``(since, now]``.

``event`` reads the events of the window (with its ``where`` filter), ``anniversary`` and
``schedule`` the calendar (:mod:`courtship.engine.calendar`), ``becomes`` the condition now
against its streaks: those saved by the last run, or, on a first run, the past read from the
data at ``since - for`` and ``now - for``.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl

from courtship.engine.calendar import anniversary_mask, schedule_mask
from courtship.engine.conditions import to_expression
from courtship.engine.facts import ROW, FactHistory
from courtship.engine.plan import Plan
from courtship.playbook import Playbook, facts_in, parse_duration
from courtship.state import STREAK_MARK

#: The column of a saved streak that marks the customer file it was numbered against.
MARK = STREAK_MARK


def triggered(
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
            chosen = chosen.filter(event_filter(trigger["where"], chosen.schema))
        # Each customer's latest such event, the customers in the customer file's order (as
        # for every trigger): a base evaluated in parts gives them in the same order.
        return (
            chosen.sort("at", maintain_order=True)
            .group_by(ROW)
            .last()
            .sort(ROW)
            .select(ROW, "customer_id", pl.col("at").alias("_event_at"), "friend_id")
        )
    if "anniversary" in trigger:
        mask = anniversary_mask(trigger, facts, now, since)
        # one chunk: polars 2.1 can panic formatting a column of a filtered, many-chunk frame
        chosen = facts.select(ROW, "customer_id", "_local_now").filter(mask).rechunk()
        return chosen.select(ROW, "customer_id", _occurrence(trigger, now))
    if "schedule" in trigger:
        mask = schedule_mask(trigger, facts, now, since)
        chosen = facts.select(ROW, "customer_id", "_local_now").filter(mask).rechunk().rechunk()
        return chosen.select(ROW, "customer_id", _occurrence(trigger, now))
    condition = to_expression(trigger["becomes"], schema, now).fill_null(False)
    hold = parse_duration(trigger["for"]) if "for" in trigger else dt.timedelta(0)
    current = facts.select(ROW, "customer_id", condition.alias("_true"))
    if previous is None:

        def truth(moment: dt.datetime) -> pl.Series:
            return past[(pb.id, moment)] if moment < now else current.get_column("_true")

        before, held = truth(since - hold), truth(now - hold)
        streak = _streaks_from_data(current, before, held, now, since, hold)
    else:
        streak = _streaks_from_state(current, previous, hold, now, base_mark)
    plan.streaks[pb.id] = streak.select(
        "customer_id", ROW, "true_since", "fired", pl.lit(base_mark, pl.UInt64()).alias(MARK)
    )
    return streak.filter(pl.col("_fires")).select(ROW, "customer_id")


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
    same_file = ROW in previous.columns and (
        "customer_id" not in previous.columns  # read by row: numbered against this very file
        or (
            MARK in previous.columns
            and previous.height > 0
            and previous.get_column(MARK)[0] == base_mark
        )
    )
    rows = previous.get_column(ROW).cast(pl.UInt32()) if same_file else None
    if rows is not None and _increasing_within(rows, current.height):
        # Row numbers of the same file, each once and in order (as saved): the streaks are
        # written at their rows, beside the condition now, not joined on them.
        height, since = current.height, previous.get_column("true_since")
        frame = current.with_columns(
            pl.repeat(None, height, dtype=since.dtype, eager=True)
            .scatter(rows, since)
            .alias("true_since"),
            pl.zeros(height, pl.Boolean(), eager=True)
            .scatter(rows, previous.get_column("fired"))
            .alias("fired"),
        ).filter(pl.col("_true"))
    else:
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


def _increasing_within(rows: pl.Series, height: int) -> bool:
    """Row numbers each at most once, in increasing order, all below ``height``."""
    if rows.is_empty():
        return True
    biggest = rows.max()
    if rows.null_count() or not isinstance(biggest, int) or biggest >= height:
        return False
    # each row above the one before it: compared in place, no column of differences made
    return bool((rows.slice(1) > rows.slice(0, rows.len() - 1)).all())


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


def _occurrence(trigger: Mapping[str, Any], now: dt.datetime) -> pl.Expr:
    """Which occurrence of a calendar trigger a run found (``_occurrence``), so a message's
    idempotency key comes from it, not from the run: runs at 10:05 and 10:10 that both see the
    10:00 schedule find the same one. An anniversary occurs once a year: its year (of the local
    day it falls on, before its offset and time); a schedule once per slot of ``every`` (a day
    for a day or more), counted on the local clock from ``at``."""
    at = dt.time.fromisoformat(trigger.get("at", "00:00"))
    start = dt.timedelta(hours=at.hour, minutes=at.minute)
    if "anniversary" in trigger:
        shift = start + parse_duration(trigger.get("offset", "0d"))
        day = pl.col("_local_now") - pl.lit(shift)
        return pl.format("anniversary:{}", day.dt.year()).alias("_occurrence")
    schedule = trigger["schedule"]
    slot = min(parse_duration(schedule["every"]), dt.timedelta(days=1))
    if schedule.get("timezone"):  # one clock for everyone: one occurrence
        from zoneinfo import ZoneInfo

        wall = now.astimezone(ZoneInfo(schedule["timezone"])).replace(tzinfo=None)
        number = (wall - start - dt.datetime(1970, 1, 1)) // slot
        return pl.lit(f"schedule:{number}", dtype=pl.String()).alias("_occurrence")
    since_start = (pl.col("_local_now") - pl.lit(start)).dt.epoch("us")
    number = since_start // (slot // dt.timedelta(microseconds=1))
    return pl.format("schedule:{}", number).alias("_occurrence")


def past_moments(
    playbooks: list[Playbook], now: dt.datetime, since: dt.datetime
) -> dict[dt.datetime, list[Playbook]]:
    """The earlier moments ``past_truths`` reads the facts at, with the playbooks that read
    each (``since - for`` and ``now - for`` of each ``becomes`` playbook)."""
    wanted: dict[dt.datetime, list[Playbook]] = {}
    for pb in playbooks:
        hold = parse_duration(pb.trigger["for"]) if "for" in pb.trigger else dt.timedelta(0)
        for moment in {since - hold, now - hold} - {now}:
            wanted.setdefault(moment, []).append(pb)
    return wanted


def past_truths(
    playbooks: list[Playbook],
    history: FactHistory,
    now: dt.datetime,
    since: dt.datetime,
    known: set[str],
    completed: Callable[[pl.DataFrame], pl.DataFrame],
) -> dict[tuple[str, dt.datetime], pl.Series]:
    """For ``becomes`` playbooks with no streaks from the last run (a first run, or one
    after a crash): whether each condition held at the earlier moments the data must tell
    (``since - for``, and ``now - for``), per customer row. Each moment's facts are read
    once, for all these playbooks, and only the facts their conditions read."""
    wanted = past_moments(playbooks, now, since)
    truths: dict[tuple[str, dt.datetime], pl.Series] = {}
    for moment, readers in sorted(wanted.items()):
        read = set().union(*(facts_in(pb.trigger["becomes"]) for pb in readers))
        facts = completed(history.before(moment, now, read & known))
        schema = dict(facts.schema)
        answers = facts.select(
            to_expression(pb.trigger["becomes"], schema, moment).fill_null(False).alias(pb.id)
            for pb in readers
        )
        for pb in readers:
            truths[(pb.id, moment)] = answers.get_column(pb.id)
    return truths


def event_filter(condition: dict[str, Any], schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """An event ``where:`` filter as a polars expression over event columns of these types.

    A value is compared in its field's type: a number field takes whole numbers and fractions
    alike (``in: [10, 12.5]`` on ``amount``). A value of another kind (text for a number, a
    number for text, yes/no for anything but yes/no, a fraction for a whole-number field) equals
    nothing in the field: ``eq`` and ``in`` are false, ``ne`` and ``not_in`` true, and ``gt``,
    ``gte``, ``lt``, ``lte`` hold between numbers only. An event without the field fails every
    test but ``exists: false``."""
    if "all" in condition:
        return pl.all_horizontal([event_filter(c, schema) for c in condition["all"]])
    if "any" in condition:
        return pl.any_horizontal([event_filter(c, schema) for c in condition["any"]])
    if "not" in condition:
        return ~event_filter(condition["not"], schema)
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
