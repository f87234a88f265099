"""``over-messaging``: the most messages one playbook can send one customer in a week.

The worst case is read from the playbook alone — its trigger, its limits and the waits of its
sequence — and compared with the weekly budget (``caps.per_customer_per_week``, else
:data:`~courtship.lint.registry.DEFAULT_WEEKLY_BUDGET`). Cadence, cooldowns and caps are not
counted: they are guards that hold messages back, and a customer may have no cadence, and the
cap only hides the problem by holding back other playbooks' messages. ``docs/rules.md``
(over-messaging) states the model.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from courtship.findings import Finding
from courtship.lint.registry import Library, place, rule
from courtship.playbook import Playbook, parse_duration

WEEK = dt.timedelta(weeks=1)
DAY = dt.timedelta(days=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EPOCH = dt.date(1970, 1, 1)
FIRST_MONDAY = dt.date(1970, 1, 5)


@dataclass
class Worst:
    """A playbook's worst week for one customer, and what makes it so."""

    messages: float  # math.inf when nothing bounds it
    reasons: list[str]


def _where(pb: Playbook, *parts: str | int) -> str:
    mark = pb.document.locate(parts)
    return f"{pb.path}:{mark.line}"


def _duration(text: object) -> dt.timedelta | None:
    try:
        return parse_duration(str(text)) if text is not None else None
    except ValueError:
        return None


def schedule_per_week(trigger: dict) -> int:
    """The most times a schedule fires in any seven days, as ``engine.calendar`` fires it."""
    schedule = trigger["schedule"]
    every = _duration(schedule.get("every")) or DAY
    weeks = every // WEEK if every >= WEEK and every % WEEK == dt.timedelta(0) else 0
    days = schedule.get("days") or (["mon"] if weeks else list(WEEKDAYS))
    weekdays = {WEEKDAYS.index(day) for day in days if day in WEEKDAYS}
    per_day = DAY // every if every < DAY else 1
    period = max(1, every.days)

    def scheduled(day: dt.date) -> bool:
        if day.weekday() not in weekdays:
            return False
        if weeks:
            return (day - FIRST_MONDAY).days // 7 % weeks == 0
        return (day - EPOCH).days % period == 0

    span = 7 * max(period, 7 * max(weeks, 1)) + 7  # every pattern repeats within it
    flags = [scheduled(EPOCH + k * DAY) for k in range(span + 7)]
    best = max(sum(flags[start : start + 7]) for start in range(span))
    return best * per_day


#: At most this many ways through a playbook's splits and branches are weighed.
MAX_PATHS = 256


def paths(steps: list[Any]) -> list[list[dict[str, Any]]]:
    """Every way through ``steps``: one list of steps per choice of a split's arm or a
    branch's side (at most ``MAX_PATHS``)."""
    ways: list[list[dict[str, Any]]] = [[]]
    for step in steps:
        if not isinstance(step, dict):
            continue
        if isinstance(step.get("split"), list):
            arms = [a.get("steps") for a in step["split"] if isinstance(a, dict)]
            options = [paths(arm) for arm in arms if isinstance(arm, list)]
        elif isinstance(step.get("branch"), dict):
            sides = [step["branch"].get("then"), step["branch"].get("else") or []]
            options = [paths(side) for side in sides if isinstance(side, list)]
        else:
            ways = [[*way, step] for way in ways]
            continue
        ways = [way + inner for way in ways for option in options for inner in option][:MAX_PATHS]
    return ways


def worst_week(pb: Playbook) -> Worst:
    """The most messages ``pb`` can send one customer in any seven days."""
    reasons: list[str] = []
    offsets: list[dt.timedelta] = []  # when each send to the customer comes, from the start
    in_a_week = 0
    for path in paths(pb.respond):  # a split's arms and a branch's sides: the worst of them
        elapsed = dt.timedelta(0)
        times: list[dt.timedelta] = []
        for step in path:
            if "wait" in step:
                elapsed += _duration(step["wait"]) or dt.timedelta(0)
            send = step.get("send")
            if isinstance(send, dict) and send.get("to", "customer") == "customer":
                times.append(elapsed)
        week = max(
            (sum(1 for t in times[i:] if t - start < WEEK) for i, start in enumerate(times)),
            default=0,
        )
        if (week, len(times)) > (in_a_week, len(offsets)):
            in_a_week, offsets = week, times
    if not offsets:
        return Worst(0, [])
    reasons.append(
        f"{len(offsets)} message(s) per entry, {in_a_week} within a week ({_where(pb, 'respond')})"
    )

    trigger = pb.trigger
    firings: float
    if "event" in trigger:
        firings = math.inf
        reasons.append(
            f"event: {trigger['event']} can happen any number of times ({_where(pb, 'trigger')})"
        )
    elif "schedule" in trigger:
        firings = schedule_per_week(trigger)
        reasons.append(f"the schedule fires {firings} time(s) a week ({_where(pb, 'trigger')})")
    else:
        firings = 1  # an anniversary once a year; becomes once per streak
        kind = "anniversary" if "anniversary" in trigger else "becomes"
        per = "year" if kind == "anniversary" else "streak"
        reasons.append(f"{kind}: once per {per} ({_where(pb, 'trigger')})")

    limits = pb.limits
    once_every = _duration(limits.get("once_every"))
    if once_every:
        allowed = math.ceil(WEEK / once_every)
        if allowed < firings:
            firings = allowed
            reasons.append(
                f"once_every: {limits['once_every']} allows {allowed} ({_where(pb, 'limits')})"
            )
    never = limits.get("reentry") == "never"
    if never and firings > 1:
        firings = 1
        reasons.append(f"reentry: never ({_where(pb, 'limits')})")
    # One entry at a time per customer: a week sees the entries that start in it, and one
    # still running from before when the sequence waits and may start again that soon.
    running = (
        1
        if elapsed > dt.timedelta(0)
        and not never
        and (once_every is None or once_every < elapsed + WEEK)
        else 0
    )
    messages = (firings + running) * in_a_week if firings != math.inf else math.inf
    max_sends = limits.get("max_sends")
    if isinstance(max_sends, int) and max_sends < messages:
        messages = max_sends
        reasons.append(f"max_sends: {max_sends} ({_where(pb, 'limits')})")
    return Worst(messages, reasons)


@rule("over-messaging")
def over_messaging(lib: Library) -> Iterator[Finding]:
    for pb in lib.enabled:
        if pb.category != "marketing":
            continue  # an answer to the customer: not counted against the marketing budget
        worst = worst_week(pb)
        if worst.messages <= lib.weekly_budget:
            continue
        count = "no limit" if worst.messages == math.inf else f"{worst.messages:g}"
        yield place(
            pb,
            ("trigger",),
            "over-messaging",
            f"'{pb.id}' can send one customer {count} messages in a week, over "
            f"{lib.weekly_budget} ({lib.budget_from}): " + "; ".join(worst.reasons),
            "add limits: once_every or max_sends, or space the sends with waits; cadence and "
            "caps only hold messages back, they do not make a playbook ask less",
            key=True,
        )
