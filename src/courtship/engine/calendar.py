"""Calendar triggers: the customers whose anniversary or scheduled time comes round in the window.

An ``anniversary`` or a ``schedule`` names local times — a date's anniversary at ``at``, moved by
``offset`` on the local clock, or a schedule's ``at + k * every`` on its weekdays — and fires
when the *UTC instant* of one of them lies in the window ``(since, now]``. A local time becomes
an instant with the rules of its time zone on that day, summer time included, so a window that
spans a change of summer time neither misses a time nor counts one twice:

- a local time skipped by the change (02:30 on the night clocks go from 02:00 to 03:00) happens
  at that wall time in the old offset, an hour after 01:30 (as Python's ``zoneinfo`` reads it,
  ``fold=0``, and as calendars do);
- a local time that happens twice (01:30 on the night clocks go from 02:00 back to 01:00) counts
  once, the first time.

Nothing here loops over customers. What a calendar trigger means for a customer depends only on
their time zone (and, for an anniversary, the month and day of a date), and a base has few
distinct zones: each zone's answer is worked out once, in Python, then spread over the customers
by zone number with one gather.
"""

from __future__ import annotations

import datetime as dt
from calendar import isleap
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from courtship.playbook import parse_duration
from courtship.sources import is_time_zone

DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(weeks=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EPOCH = dt.date(1970, 1, 1)
FIRST_MONDAY = dt.date(1970, 1, 5)
#: A month and day as one number, ``month * 32 + day``; 13 * 32 numbers hold them all.
KEYS = 13 * 32
FEBRUARY_29 = 2 * 32 + 29


def anniversary_mask(
    trigger: Mapping[str, Any], facts: pl.DataFrame, now: dt.datetime, since: dt.datetime
) -> pl.Series:
    """Whose date's anniversary, at ``at`` local time and moved by ``offset`` on the local
    clock, falls in ``(since, now]``, in their own time zone: one boolean per facts row.

    The anniversary comes every year on the date's month and day, whatever its year (29
    February on 28 February in other years); ``offset`` may be any length, before or after.
    Per zone, the local days whose moment falls in the window give the months and days that
    fire there; a customer fires if their date's month and day is among their zone's. Only
    customers whose month and day is near the window's in some zone are looked at closer.
    """
    offset = parse_duration(trigger.get("offset", "0d"))
    at = dt.time.fromisoformat(trigger.get("at", "00:00"))
    # From the local midnight starting the anniversary to its moment.
    shift = dt.timedelta(hours=at.hour, minutes=at.minute) + offset
    keys = _month_days(facts.get_column(trigger["anniversary"]))
    nowhere = pl.repeat(False, facts.height, eager=True)
    try:  # any zone's days lie within two days of the UTC ones
        first = (since.astimezone(dt.UTC).replace(tzinfo=None) - shift).date() - 2 * DAY
        last = (now.astimezone(dt.UTC).replace(tzinfo=None) - shift).date() + 2 * DAY
        near = pl.Series(_keys_of_days(first, last), dtype=pl.UInt32())
        rows = keys.is_in(near.implode()).arg_true()
    except OverflowError:  # near the ends of the calendar: look at everyone
        rows = keys.is_not_null().arg_true()
    if rows.is_empty():
        return nowhere
    zones = facts.get_column("timezone").gather(rows)
    names = sorted(zones.drop_nulls().unique().to_list())
    fires = [False] * (len(names) * KEYS)
    for code, name in enumerate(names):
        for key in _anniversary_keys(name, shift, now, since):
            fires[code * KEYS + key] = True
    index = zones.cast(pl.Enum(names)).to_physical().cast(pl.UInt32()) * KEYS + keys.gather(rows)
    hits = pl.Series(fires, dtype=pl.Boolean()).gather(index).fill_null(False)
    return nowhere.scatter(rows.filter(hits), True)


def schedule_mask(
    trigger: Mapping[str, Any], facts: pl.DataFrame, now: dt.datetime, since: dt.datetime
) -> pl.Series:
    """Whose scheduled local time falls in ``(since, now]``: one boolean per facts row.

    The times of day are ``at + k * every`` (``every`` of a day or more: ``at`` only), each on
    a listed weekday (default: every day; ``1w``: Monday); a time past midnight belongs to the
    day it is written on, so a sub-day schedule's times all fall on their weekday. ``every`` of
    whole weeks (``1w``, ``2w``) fires on the listed weekdays (default: Monday) of every n-th
    week, counted from Monday 5 January 1970; of other whole days beyond one (``2d``), on the
    days counted from 1 January 1970 that are a multiple of n, if a listed weekday. The clock
    is the schedule's ``timezone``, one for everyone, or else each customer's own.
    """
    schedule = trigger["schedule"]
    every = parse_duration(schedule["every"])
    at = dt.time.fromisoformat(trigger.get("at", "00:00"))
    weeks = every // WEEK if every >= WEEK and every % WEEK == dt.timedelta(0) else 0
    days = schedule.get("days") or (["mon"] if weeks else list(WEEKDAYS))
    weekdays = {WEEKDAYS.index(day) for day in days}
    start = dt.timedelta(hours=at.hour, minutes=at.minute)
    per_day = DAY // every if every < DAY else 1
    times = sorted({(start + k * every) % DAY for k in range(per_day)})
    period = max(1, every.days)

    def scheduled(day: dt.date) -> bool:
        if day.weekday() not in weekdays:
            return False
        if weeks:  # every n weeks: the weeks counted from Monday 5 January 1970
            return (day - FIRST_MONDAY).days // 7 % weeks == 0
        return (day - EPOCH).days % period == 0

    if schedule.get("timezone"):  # one clock for everyone, not each customer's own
        fired = _schedule_fires(schedule["timezone"], scheduled, times, now, since)
        return pl.repeat(fired, facts.height, eager=True)
    # Any zone's local days lie within two days of the UTC ones: none scheduled, none fires.
    first, days_on = (since - 2 * DAY).date(), (now - since + 4 * DAY).days + 1
    if not any(scheduled(first + k * DAY) for k in range(min(days_on, 7 * period))):
        return pl.repeat(False, facts.height, eager=True)
    names = _zone_names(facts)
    fires = [_schedule_fires(name, scheduled, times, now, since) for name in names]
    if not any(fires):
        return pl.repeat(False, facts.height, eager=True)
    if all(fires) and facts.get_column("timezone").null_count() == 0:
        return pl.repeat(True, facts.height, eager=True)
    table = pl.Series(fires, dtype=pl.Boolean())
    return facts.select(pl.lit(table).gather(_zone_code(names)).fill_null(False)).to_series()


# ── one time zone ────────────────────────────────────────────────────────


def instant(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant of a local wall-clock time in ``zone``: a time skipped by a change of
    summer time in the old offset, one that happens twice the first time."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)


def _anniversary_keys(
    name: str, shift: dt.timedelta, now: dt.datetime, since: dt.datetime
) -> list[int]:
    """The months and days (as keys) whose anniversary fires in zone ``name``: those of the
    local days ``day`` whose moment, local midnight + ``shift``, falls in ``(since, now]``.

    The moments of consecutive days are a day apart, give or take a change of offset, so they
    only grow: the days that fire run from the first one after ``since`` to the last one at or
    before ``now``, each found a step or two from its local date.
    """
    if not is_time_zone(name):
        return []
    zone = ZoneInfo(name)

    def moment(day: dt.date) -> dt.datetime:
        return instant(dt.datetime.combine(day, dt.time()) + shift, zone)

    try:
        first = (since.astimezone(zone).replace(tzinfo=None) - shift).date()
        while moment(first - DAY) > since:
            first -= DAY
        while moment(first) <= since:
            first += DAY
        last = (now.astimezone(zone).replace(tzinfo=None) - shift).date()
        while moment(last + DAY) <= now:
            last += DAY
        while moment(last) > now:
            last -= DAY
    except OverflowError:  # an offset that reaches beyond the calendar
        return []
    return _keys_of_days(first, last)


def _keys_of_days(first: dt.date, last: dt.date) -> list[int]:
    """The months and days (as keys) whose anniversary is one of the days ``first`` to
    ``last``: 28 February of a common year is 29 February's too."""
    if (last - first).days >= 366:  # a year and a day: every month and day comes round
        return list(range(KEYS))
    keys = set()
    for ordinal in range(first.toordinal(), last.toordinal() + 1):
        day = dt.date.fromordinal(ordinal)
        keys.add(day.month * 32 + day.day)
        if (day.month, day.day) == (2, 28) and not isleap(day.year):
            keys.add(FEBRUARY_29)
    return sorted(keys)


def _schedule_fires(
    name: str,
    scheduled: Callable[[dt.date], bool],
    times: list[dt.timedelta],
    now: dt.datetime,
    since: dt.datetime,
) -> bool:
    """Whether a time of day of ``times``, on a local day that is ``scheduled``, has its
    instant in ``(since, now]`` in zone ``name``.

    A time written on day D happens on local day D, or D + 1 if a change of summer time skips
    it past midnight: only the days from the day before ``since``'s to ``now``'s can hold one,
    and on a day well inside the window every time counts.
    """
    if not is_time_zone(name):
        return False
    zone = ZoneInfo(name)
    first = since.astimezone(zone).date().toordinal()
    last = now.astimezone(zone).date().toordinal()
    for ordinal in range(max(first - 1, 1), last + 1):
        day = dt.date.fromordinal(ordinal)
        if not scheduled(day):
            continue
        if first < ordinal and ordinal + 1 < last:
            return True
        midnight = dt.datetime.combine(day, dt.time())
        if any(since < instant(midnight + time, zone) <= now for time in times):
            return True
    return False


# ── spread over the customers ───────────────────────────────────────────


def _month_days(days: pl.Series) -> pl.Series:
    """Each date's month and day as a key (null without a date), read from a table of the
    days between the earliest and the latest: cheaper than taking dates apart one by one."""
    days = days.cast(pl.Date(), strict=False)
    earliest, latest = days.min(), days.max()
    if not isinstance(earliest, dt.date) or not isinstance(latest, dt.date):
        return pl.repeat(None, len(days), dtype=pl.UInt32(), eager=True)
    calendar = pl.date_range(earliest, latest, eager=True)
    table = calendar.dt.month().cast(pl.UInt32()) * 32 + calendar.dt.day().cast(pl.UInt32())
    return table.gather(days.to_physical() - (earliest - EPOCH).days)


def _zone_names(facts: pl.DataFrame) -> list[str]:
    """The distinct time zones of the customers, in order: a zone's number is its place."""
    return sorted(facts.get_column("timezone").drop_nulls().unique().to_list())


def _zone_code(names: list[str]) -> pl.Expr:
    """Each customer's zone number among ``names`` (null without a zone)."""
    return pl.col("timezone").cast(pl.Enum(names)).to_physical().cast(pl.UInt32())
