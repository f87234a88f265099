"""A reference evaluator: one customer at a time, in plain Python, deliberately simple.

The engine (:mod:`courtship.engine.facts`, :mod:`courtship.engine`) works column-wise with polars
for speed. This module says the same thing the slow, obvious way, straight from ``docs/data.md`` and
``docs/engine.md``, with the standard library only (``zoneinfo`` for local dates,
``statistics.median``), so property tests can check that both agree on random customers, events
and playbooks (``tests/test_agreement.py``). It is not used to run anything.

Shapes, as the engine reads them:

- a customer is a dict of the customer-file columns (``birthday`` a ``date``, ``tags`` a list,
  a missing value ``None``);
- an event is a dict with ``customer_id``, ``type``, ``at`` (an aware ``datetime``) and any other
  field (``channel``, ``amount``, ``friend_id``, …);
- facts are a dict: every catalogue fact, plus ``local_date``, ``local_time`` and
  ``utc_offset_minutes``.
"""

from __future__ import annotations

import datetime as dt
import statistics
from calendar import isleap
from collections.abc import Callable, Iterable, Mapping
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from courtship.catalogue import builtin_catalogue
from courtship.engine.conditions import check
from courtship.playbook import Playbook, parse_duration

Facts = dict[str, Any]

#: The customer file's columns (docs/data.md), which are facts as they are.
PROFILE = (
    "customer_id", "first_name", "last_name", "email", "phone", "instagram_id", "timezone",
    "language", "city", "persona", "birthday", "signup_date", "stage", "tags",
    "preferred_channel", "cadence_days", "tone", "consent_email", "consent_sms",
    "consent_instagram",
)  # fmt: skip
AT_RISK = ("at-risk", "lapsed", "churned")
UNKNOWN_YEAR = 1900
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MICROSECOND = dt.timedelta(microseconds=1)
WEEK = dt.timedelta(weeks=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ── dates ────────────────────────────────────────────────────────────────


def anniversary(day: dt.date, year: int) -> dt.date:
    """``day``'s anniversary in ``year``; 29 February is 28 February in other years."""
    if (day.month, day.day) == (2, 29) and not isleap(year):
        return dt.date(year, 2, 28)
    return day.replace(year=year)


def whole_years(since: dt.date, today: dt.date) -> int:
    """Whole years from ``since`` to ``today``: one more on each anniversary."""
    years = today.year - since.year
    return years - 1 if anniversary(since, today.year) > today else years


def days_until(day: dt.date, today: dt.date) -> int:
    """Days from ``today`` to the next anniversary of ``day`` (0 on the day itself)."""
    this_year = anniversary(day, today.year)
    next_one = this_year if this_year >= today else anniversary(day, today.year + 1)
    return (next_one - today).days


def _instant(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant of a local wall-clock time (the earlier one when it happens twice)."""
    return wall.replace(tzinfo=zone).astimezone(dt.UTC)


# ── facts of one customer ────────────────────────────────────────────────


def usual_order_interval(events: Iterable[Mapping[str, Any]], now: dt.datetime) -> float | None:
    """The median gap in days between consecutive orders at or before ``now`` (two at least)."""
    times = sorted(e["at"] for e in events if e["type"] == "order" and e["at"] <= now)
    gaps = [(later - earlier) // MICROSECOND for earlier, later in pairwise(times)]
    return statistics.median(gaps) / (DAY // MICROSECOND) if gaps else None


def customer_facts(
    customer: Mapping[str, Any],
    events: list[Mapping[str, Any]],
    now: dt.datetime,
    *,
    friends: Mapping[str, Any] | None = None,
    persona_intervals: Mapping[str, float] | None = None,
    default_timezone: str = "UTC",
) -> Facts:
    """Every fact of one customer at ``now``, from their own ``events``.

    ``friends`` are this customer's referral facts (``referral_facts``) and ``persona_intervals``
    the median ``usual_order_interval`` of each persona: both need the whole base.
    """
    now = now.astimezone(dt.UTC)
    facts: Facts = {name: customer.get(name) for name in PROFILE}
    facts["timezone"] = zone_name = customer.get("timezone") or default_timezone
    zone = ZoneInfo(zone_name)
    local = now.astimezone(zone)
    today = local.date()
    past = sorted((e for e in events if e["at"] <= now), key=lambda e: e["at"])

    def of(kind: str) -> list[Mapping[str, Any]]:
        return [e for e in past if e["type"] == kind]

    def local_day(moment: dt.datetime) -> dt.date:
        return moment.astimezone(zone).date()

    def since(moment: dt.datetime | None, unit: dt.timedelta = DAY) -> float | None:
        return None if moment is None else (now - moment) / unit

    # Orders.
    orders = of("order")
    count = len(orders)
    total = sum((float(o["amount"]) for o in orders if o.get("amount") is not None), 0.0)
    last_order = orders[-1]["at"] if orders else None
    facts |= {
        "orders_count": count,
        "total_spent": total,
        "average_order_value": total / count if count else None,
        "first_order_date": local_day(orders[0]["at"]) if orders else None,
        "last_order_date": local_day(last_order) if last_order else None,
        "days_since_last_order": since(last_order),
        "orders_last_90d": sum(1 for o in orders if o["at"] >= now - 90 * DAY),
    }
    visits = of("visit")
    facts["days_since_last_visit"] = since(visits[-1]["at"] if visits else None)

    # Signup: the file's date, else the local day of the first signup event.
    signups = of("signup")
    signup = customer.get("signup_date") or (local_day(signups[0]["at"]) if signups else None)
    joined = signup is not None and signup <= today
    facts["signup_date"] = signup
    facts["days_since_signup"] = float((today - signup).days) if joined else None
    facts["customer_years"] = whole_years(signup, today) if joined else None

    # Rhythm: lateness against the customer's own interval and their persona's.
    interval = usual_order_interval(past, now)
    persona = customer.get("persona")
    baseline = (persona_intervals or {}).get(persona) if persona is not None else None
    late = facts["days_since_last_order"]
    facts |= {
        "usual_order_interval": interval,
        "lapse_ratio": late / interval if late is not None and interval else None,
        "persona_order_interval": baseline,
        "persona_lapse_ratio": late / baseline if late is not None and baseline else None,
    }

    # Birthday.
    birthday = customer.get("birthday")
    known_age = birthday is not None and birthday <= today and birthday.year != UNKNOWN_YEAR
    until = days_until(birthday, today) if birthday is not None else None
    facts["age"] = whole_years(birthday, today) if known_age else None
    facts["days_until_birthday"] = until
    facts["is_birthday_today"] = None if until is None else until == 0

    # Conversations: inbound messages after our latest reply wait for an answer.
    replies = of("reply")
    last_reply = replies[-1]["at"] if replies else None
    inbound = of("inbound_message")
    waiting = [m for m in inbound if last_reply is None or m["at"] > last_reply]
    # At the same instant, the channel that sorts last (a known one before none).
    latest = max(
        inbound,
        key=lambda m: (m["at"], m.get("channel") is not None, m.get("channel") or ""),
        default=None,
    )
    sent = of("sent")
    facts |= {
        "unanswered_inbound_hours": since(waiting[0]["at"], HOUR) if waiting else 0.0,
        "unanswered_inbound_count": len(waiting),
        "last_inbound_channel": latest.get("channel") if latest else None,
        "hours_since_last_inbound": since(latest["at"], HOUR) if latest else None,
        "days_since_last_message": since(sent[-1]["at"] if sent else None),
        "messages_sent_30d": sum(1 for s in sent if s["at"] >= now - 30 * DAY),
    }

    facts |= {
        "friends_count": 0,
        "referrals_count": 0,
        "referrals_converted": 0,
        "referred_by": None,
        "days_since_last_referral": None,
        "friends_at_risk": 0,
        **(friends or {}),
    }
    offset = local.utcoffset() or dt.timedelta(0)
    ordered = {name: facts[name] for name in builtin_catalogue().facts}
    return ordered | {
        "local_date": today,
        "local_time": local.time().replace(tzinfo=None),
        "utc_offset_minutes": int(offset.total_seconds() // 60),
    }


# ── the whole base ───────────────────────────────────────────────────────


def referral_facts(
    customers: list[Mapping[str, Any]], events: list[Mapping[str, Any]], now: dt.datetime
) -> dict[str, Facts]:
    """The friends facts of every customer: referrals at or before ``now`` form a graph.

    A referral without a friend, of oneself, or by someone who is not a customer is ignored;
    a pair counts once. A friend who is not a customer is a friend, never converted or at risk.
    """
    known = {c["customer_id"]: c for c in customers}
    ordered = {e["customer_id"] for e in events if e["type"] == "order" and e["at"] <= now}
    pairs: dict[tuple[str, str], list[dt.datetime]] = {}
    for event in events:
        referrer, friend = event["customer_id"], event.get("friend_id")
        if event["type"] != "referral" or event["at"] > now or referrer not in known:
            continue
        if friend is not None and friend != referrer:
            pairs.setdefault((referrer, friend), []).append(event["at"])
    out: dict[str, Facts] = {}
    for cid in known:
        referred = {f: times for (r, f), times in pairs.items() if r == cid}
        referrers = {r: min(times) for (r, f), times in pairs.items() if f == cid}
        friends = set(referred) | set(referrers)
        last = max((max(times) for times in referred.values()), default=None)
        out[cid] = {
            "friends_count": len(friends),
            "referrals_count": len(referred),
            "referrals_converted": sum(1 for f in referred if f in known and f in ordered),
            "referred_by": min(referrers, key=lambda r: (referrers[r], r)) if referrers else None,
            "days_since_last_referral": (now - last) / DAY if last else None,
            "friends_at_risk": sum(
                1 for f in friends if f in known and known[f].get("stage") in AT_RISK
            ),
        }
    return out


def reference_facts(
    customers: list[Mapping[str, Any]],
    events: list[Mapping[str, Any]],
    now: dt.datetime,
    *,
    default_timezone: str = "UTC",
) -> dict[str, Facts]:
    """Every fact of every customer at ``now``, by customer id. Events of ids that are not
    customers are ignored."""
    now = now.astimezone(dt.UTC)
    mine: dict[str, list[Mapping[str, Any]]] = {c["customer_id"]: [] for c in customers}
    for event in events:
        if event["customer_id"] in mine:
            mine[event["customer_id"]].append(event)
    by_persona: dict[str, list[float]] = {}
    for customer in customers:
        interval = usual_order_interval(mine[customer["customer_id"]], now)
        if customer.get("persona") is not None and interval is not None:
            by_persona.setdefault(customer["persona"], []).append(interval)
    intervals = {persona: statistics.median(values) for persona, values in by_persona.items()}
    friends = referral_facts(customers, events, now)
    return {
        c["customer_id"]: customer_facts(
            c,
            mine[c["customer_id"]],
            now,
            friends=friends[c["customer_id"]],
            persona_intervals=intervals,
            default_timezone=default_timezone,
        )
        for c in customers
    }


# ── triggers and audience, one customer, on a first run ──────────────────


def reference_selection(
    playbook: Playbook,
    facts: Mapping[str, Any],
    events: list[Mapping[str, Any]],
    now: dt.datetime,
    since: dt.datetime,
    *,
    previous_facts_at: Callable[[dt.datetime], Mapping[str, Any]] | None = None,
) -> bool:
    """Whether ``playbook`` selects this customer in ``(since, now]`` on a first run (no state):
    its trigger fires and its audience holds. ``facts`` are the customer's at ``now``, ``events``
    theirs; ``previous_facts_at(moment)`` gives their facts at an earlier moment (``becomes``)."""
    now, since = now.astimezone(dt.UTC), since.astimezone(dt.UTC)
    trigger = playbook.trigger
    if "event" in trigger:
        fired = any(
            e["type"] == trigger["event"]
            and since < e["at"] <= now
            and event_passes(trigger.get("where"), e)
            for e in events
        )
    elif "anniversary" in trigger:
        fired = _anniversary_fires(trigger, facts, now, since)
    elif "schedule" in trigger:
        fired = _schedule_fires(trigger, facts, now, since)
    else:
        fired = _becomes_fires(trigger, facts, now, since, previous_facts_at)
    return fired and (playbook.audience is None or check(playbook.audience, facts, now).passed)


def event_passes(condition: Mapping[str, Any] | None, event: Mapping[str, Any]) -> bool:
    """An event ``where:`` filter; a test of a missing field is false, except ``exists: false``.
    Values of different kinds (text, number, yes/no) are never equal, and only numbers are
    ordered: ``{field: channel, gt: 3}`` is false, ``{field: amount, ne: "x"}`` true."""
    if condition is None:
        return True
    if "all" in condition:
        return all(event_passes(c, event) for c in condition["all"])
    if "any" in condition:
        return any(event_passes(c, event) for c in condition["any"])
    if "not" in condition:
        return not event_passes(condition["not"], event)
    actual = event.get(condition["field"])
    op, value = next((k, v) for k, v in condition.items() if k != "field")
    if op == "exists":
        return (actual is not None) == value
    if actual is None:
        return False

    def equal(listed: Any) -> bool:
        return _kind(actual) == _kind(listed) and actual == listed

    def ordered(test: Callable[[], bool]) -> Callable[[], bool]:
        return lambda: _kind(actual) == _kind(value) == "number" and test()

    tests: dict[str, Callable[[], bool]] = {
        "eq": lambda: equal(value),
        "ne": lambda: not equal(value),
        "gt": ordered(lambda: actual > value),
        "gte": ordered(lambda: actual >= value),
        "lt": ordered(lambda: actual < value),
        "lte": ordered(lambda: actual <= value),
        "in": lambda: any(equal(listed) for listed in value),
        "not_in": lambda: not any(equal(listed) for listed in value),
    }
    return tests[op]()


def _kind(value: Any) -> str:
    """What a value is, as event filters compare: text, a number (whole or not), yes/no."""
    if isinstance(value, bool):
        return "yes/no"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _anniversary_fires(
    trigger: Mapping[str, Any], facts: Mapping[str, Any], now: dt.datetime, since: dt.datetime
) -> bool:
    """The date's anniversary at ``at`` local time, moved by ``offset`` on the local clock,
    falls in ``(since, now]``, in the customer's time zone."""
    day = facts.get(trigger["anniversary"])
    if day is None:
        return False
    zone = ZoneInfo(facts["timezone"])
    offset = parse_duration(trigger.get("offset", "0d"))
    at = dt.time.fromisoformat(trigger.get("at", "00:00"))
    first, last = (since - offset).year - 1, (now - offset).year + 1
    for year in range(max(first, dt.MINYEAR), min(last, dt.MAXYEAR) + 1):
        moment = _instant(dt.datetime.combine(anniversary(day, year), at) + offset, zone)
        if since < moment <= now:
            return True
    return False


def _schedule_fires(
    trigger: Mapping[str, Any], facts: Mapping[str, Any], now: dt.datetime, since: dt.datetime
) -> bool:
    """A scheduled local time falls in ``(since, now]``: the times of day ``at + k * every``
    (every a day or more: ``at`` only), on the listed weekdays (default: every day; whole
    weeks: Monday) of the scheduled days, in the schedule's time zone or else the
    customer's."""
    schedule = trigger["schedule"]
    zone = ZoneInfo(schedule.get("timezone") or facts["timezone"])
    every = parse_duration(schedule["every"])
    at = dt.datetime.combine(dt.date.min, dt.time.fromisoformat(trigger.get("at", "00:00")))
    weeks = every.days // 7 if every.days >= 7 and every.days % 7 == 0 and not every.seconds else 0
    days = schedule.get("days") or (["mon"] if weeks else WEEKDAYS)
    per_day = DAY // every if every < DAY else 1
    times = sorted({(at + k * every).time() for k in range(per_day)})

    def on_schedule(day: dt.date) -> bool:
        """Every n weeks: the n-th weeks from Monday 5 January 1970; every n days: the n-th
        days from 1 January 1970."""
        if weeks:
            return (day - dt.date(1970, 1, 5)).days // 7 % weeks == 0
        return (day - dt.date(1970, 1, 1)).days % max(1, every.days) == 0

    day = since.astimezone(zone).date() - DAY
    while day <= now.astimezone(zone).date() + DAY:
        if WEEKDAYS[day.weekday()] in days and on_schedule(day):
            for time in times:
                if since < _instant(dt.datetime.combine(day, time), zone) <= now:
                    return True
        day += DAY
    return False


def _becomes_fires(
    trigger: Mapping[str, Any],
    facts: Mapping[str, Any],
    now: dt.datetime,
    since: dt.datetime,
    previous_facts_at: Callable[[dt.datetime], Mapping[str, Any]] | None,
) -> bool:
    """On a first run the past is read from the data, as if the condition had been evaluated
    at ``since``: it fires when true now, and (with ``for``) already true ``for`` ago, and it
    was false when that streak would have been seen at ``since`` (``since - for``)."""
    if previous_facts_at is None:
        raise ValueError("becomes needs the facts of earlier moments on a first run")
    condition = trigger["becomes"]
    hold = parse_duration(trigger["for"]) if "for" in trigger else dt.timedelta(0)

    def true_at(moment: dt.datetime) -> bool:
        seen = facts if moment == now else previous_facts_at(moment)
        return check(condition, seen, moment).passed

    return true_at(now) and true_at(now - hold) and not true_at(since - hold)
