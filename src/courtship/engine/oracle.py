"""A reference evaluator: one customer at a time, in plain Python, deliberately simple.

The engine (:mod:`courtship.engine.facts`, :mod:`courtship.engine`) works column-wise with polars
for speed. This module says the same thing the slow, obvious way, straight from ``docs/data.md`` and
``docs/engine.md``, with the standard library only (``zoneinfo`` for local dates,
``statistics.median``), so property tests can check that both agree on random customers, events
and playbooks (``tests/engine/test_agreement.py``). It is not used to run anything.

The learned facts (``p_alive``, ``expected_orders_90d``: a BG/NBD model fitted on the whole base,
:mod:`courtship.learn`) are left out: a maximum-likelihood fit has no slow, obvious form, and
``tests/test_learn.py`` checks it against the published figures instead.

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
from dataclasses import dataclass, field
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


def mean_order_interval(
    first: dt.date | None, last: dt.date | None, purchase_days: int
) -> float | None:
    """The mean gap in days between purchase days: first to last, over one fewer than their
    number (two purchase days at least)."""
    if first is None or last is None or purchase_days < 2:
        return None
    return (last - first).days / (purchase_days - 1)


def customer_facts(
    customer: Mapping[str, Any],
    events: list[Mapping[str, Any]],
    now: dt.datetime,
    *,
    friends: Mapping[str, Any] | None = None,
    persona_intervals: Mapping[str, float] | None = None,
    persona_mean_intervals: Mapping[str, float] | None = None,
    default_timezone: str = "UTC",
) -> Facts:
    """Every fact of one customer at ``now``, from their own ``events``.

    ``friends`` are this customer's referral facts (``referral_facts``), ``persona_intervals``
    the median ``usual_order_interval`` of each persona and ``persona_mean_intervals`` the
    median ``mean_order_interval``: they need the whole base.
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
        "days_since_first_order": since(orders[0]["at"] if orders else None),
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
    # The same against the mean interval between distinct (local) purchase days.
    days = len({local_day(o["at"]) for o in orders})
    mean = mean_order_interval(facts["first_order_date"], facts["last_order_date"], days)
    mean_baseline = (persona_mean_intervals or {}).get(persona) if persona is not None else None
    facts |= {
        "purchase_days_count": days,
        "mean_order_interval": mean,
        "mean_lapse_ratio": late / mean if late is not None and mean else None,
        "persona_mean_order_interval": mean_baseline,
        "persona_mean_lapse_ratio": (
            late / mean_baseline if late is not None and mean_baseline else None
        ),
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
    ordered = {
        name: facts[name]
        for name, spec in builtin_catalogue().facts.items()
        if spec.group != "learned"
    }
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
    friends = referral_facts(customers, events, now)
    alone = {
        c["customer_id"]: customer_facts(
            c, mine[c["customer_id"]], now, default_timezone=default_timezone
        )
        for c in customers
    }

    def medians(fact: str) -> dict[str, float]:
        by_persona: dict[str, list[float]] = {}
        for customer in customers:
            value = alone[customer["customer_id"]][fact]
            if customer.get("persona") is not None and value is not None:
                by_persona.setdefault(customer["persona"], []).append(value)
        return {persona: statistics.median(values) for persona, values in by_persona.items()}

    intervals, means = medians("usual_order_interval"), medians("mean_order_interval")
    return {
        c["customer_id"]: customer_facts(
            c,
            mine[c["customer_id"]],
            now,
            friends=friends[c["customer_id"]],
            persona_intervals=intervals,
            persona_mean_intervals=means,
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


# ── the model: the engine across moments, one customer at a time ────────────
#
# The contract of docs/engine.md read the obvious way. ``Model.decide(now)`` works on a copy of
# the state and returns an ``Outcome``; ``Model.record(outcome)`` keeps it. Nothing here is
# column-wise and nothing is shared with ``courtship.engine.moment``.

MARKETING = "marketing"
INSTAGRAM_HOURS = 24
DEFAULT_EXPIRES = dt.timedelta(days=30)
ADDRESS_OF = {"email": "email", "sms": "phone", "instagram": "instagram_id"}


def step_ids(respond: list[Mapping[str, Any]]) -> list[str]:
    """The stable id of every step, in the order they are written (a split's arms after the
    split): its ``id:``, else derived from the step (``send:hello``, ``send:hello@friend``,
    ``set:fact``, ``tag:x``, ``untag:x``, ``notify:team``, ``wait:1d``, ``split``); a step in an
    arm is named after the split and the arm (``split/a/wait:1d``); a repeated derived id gets
    ``#2``, ``#3`` in order."""
    return [name for name, _, _ in _walk(respond)]


Address = tuple[int, ...]


def _walk(
    steps: list[Mapping[str, Any]],
    prefix: str = "",
    seen: dict[str, int] | None = None,
    address: Address = (),
) -> list[tuple[str, Address, Mapping[str, Any]]]:
    """(id, address, step) of every step: the address of a step in arm ``k`` of the split at
    ``(i,)`` is ``(i, k, j)``."""
    seen = {} if seen is None else seen
    out: list[tuple[str, Address, Mapping[str, Any]]] = []
    for index, step in enumerate(steps):
        here = (*address, index)
        if isinstance(step.get("id"), str):
            name = prefix + step["id"]
        else:
            if "send" in step:
                send = step["send"]
                base = f"send:{send['template']}" + (
                    "@friend" if send.get("to") == "friend" else ""
                )
            elif "set" in step:
                base = f"set:{step['set']['fact']}"
            elif "notify" in step:
                base = f"notify:{step['notify']['team']}"
            elif "split" in step:
                base = "split"
            else:
                kind = next(k for k in ("tag", "untag", "wait") if k in step)
                base = f"{kind}:{step[kind]}"
            base = prefix + base
            seen[base] = seen.get(base, 0) + 1
            name = base if seen[base] == 1 else f"{base}#{seen[base]}"
        out.append((name, here, step))
        for arm_index, arm in enumerate(step.get("split") or []):
            out += _walk(arm["steps"], f"{name}/{arm['id']}/", seen, (*here, arm_index))
    return out


def _steps_in(respond: list[Mapping[str, Any]], address: Address) -> list[Mapping[str, Any]]:
    """The list of steps the step at ``address`` is in."""
    if len(address) == 1:
        return respond
    split = _step_at(respond, address[:-2])
    return split["split"][address[-2]]["steps"]


def _step_at(respond: list[Mapping[str, Any]], address: Address) -> Mapping[str, Any]:
    return _steps_in(respond, address)[address[-1]]


def _next_address(respond: list[Mapping[str, Any]], address: Address) -> Address | None:
    """Where a sequence goes on after the step at ``address``: the next step of its list, or
    after the split whose arm ended (None: the sequence is over)."""
    if address[-1] + 1 < len(_steps_in(respond, address)):
        return (*address[:-1], address[-1] + 1)
    if len(address) == 1:
        return None
    return _next_address(respond, address[:-2])


def _address_of(respond: list[Mapping[str, Any]], step_id: str) -> Address | None:
    return next((where for name, where, _ in _walk(respond) if name == step_id), None)


def version_of(playbook: Playbook) -> str:
    """A playbook's version: a hash of its content."""
    import hashlib
    import json

    text = json.dumps(playbook.document.data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Sent:
    """A message that went out."""

    recipient: str
    customer_id: str
    playbook: str
    category: str
    channel: str
    at: dt.datetime
    dedup_key: str | None


@dataclass
class Enrollment:
    """A customer inside a sequence between moments: waiting after a ``wait`` step
    (``held`` None) or holding a deferred message at a ``send`` step."""

    playbook: str
    customer_id: str
    version: str
    step_id: str
    started_at: dt.datetime
    due_at: dt.datetime
    context: dict[str, Any]
    waiting_since: dt.datetime | None = None
    held: Held | None = None


@dataclass
class Held:
    """What a held message keeps from when it was first decided."""

    first_decided: dt.datetime
    dedup_key: str | None


class _Judging:
    """The model's guards (part of ``Model``): each message of a round, judged in order."""

    def _judge(
        self,
        messages: list[_Message],
        facts: Mapping[str, Facts],
        now: dt.datetime,
        state: ModelState,
        speakers: dict[str, list[str]],
        used: dict[str, int],
    ) -> list[tuple[_Message, ModelDecision]]:
        """One guard round: guards 1 to 10 on each message alone, then priority, suppression
        and the per-channel cap among the marketing messages left, counting who spoke and what
        each channel carried in earlier rounds of the moment.

        Each customer's messages go by priority (then playbook, then step); each pass takes
        every customer's next message that no speaker suppresses and that priority leaves room
        for, and gives the channels' caps to those messages held back longest (first decided),
        then highest priority, then recipient, then playbook. A message over its channel's
        cap is held for the next run and does not speak, so that customer's next message is
        taken in the next pass."""
        judged = [(m, self._guards(m, facts, now, state)) for m in messages]
        left = [
            (m, d)
            for m, d in judged
            if d.status == "send" and d.category == MARKETING and d.recipient is not None
        ]

        def rank(pair: tuple[_Message, ModelDecision]) -> tuple[Any, ...]:
            pb = self.playbooks[pair[0].playbook]
            place = step_ids(pb.respond).index(pair[0].step_id)
            return (pair[1].recipient, -pb.priority, pb.id, place)

        queues: dict[str, list[tuple[_Message, ModelDecision]]] = {}
        for pair in sorted(left, key=rank):
            queues.setdefault(pair[1].recipient or "", []).append(pair)
        while queues:
            picks = []
            for recipient in list(queues):
                queue, spoken = queues[recipient], speakers.setdefault(recipient, [])
                while queue and self._silenced(queue[0][1], spoken):
                    queue.pop(0)
                if queue:
                    picks.append(queue.pop(0))
                else:
                    del queues[recipient]
            picks.sort(
                key=lambda p: (
                    p[0].held.first_decided,
                    -self.playbooks[p[0].playbook].priority,
                    p[1].recipient,
                    p[0].playbook,
                )
            )
            for _, decision in picks:
                channel = decision.channel or ""
                cap = self.per_channel.get(channel)
                if cap is not None and used.get(channel, 0) >= cap:
                    decision.status, decision.guard = "deferred", "channel-cap"
                    decision.reason = f"{channel}: {cap} a moment"
                    decision.due_at = now + MICROSECOND
                    continue
                used[channel] = used.get(channel, 0) + 1
                if decision.playbook not in speakers[decision.recipient or ""]:
                    speakers[decision.recipient or ""].append(decision.playbook)
        return judged

    def _silenced(self, decision: ModelDecision, spoken: list[str]) -> bool:
        """Whether a playbook that spoke to this customer at this moment suppresses
        ``decision``, or ``caps.per_moment`` others did (then it is blocked, saying which)."""
        silencers = [p for p in spoken if decision.playbook in self.playbooks[p].suppresses]
        others = [p for p in spoken if p != decision.playbook]
        if silencers:
            decision.status, decision.guard = "blocked", "suppressed"
            decision.reason = f"suppressed by {silencers[0]}"
        elif len(others) >= self.per_moment:
            decision.status, decision.guard = "blocked", "priority"
            decision.reason = f"a higher-priority playbook ({others[0]}) speaks to them"
        else:
            return False
        return True

    def _guards(
        self, message: _Message, facts: Mapping[str, Facts], now: dt.datetime, state: ModelState
    ) -> ModelDecision:
        """Guards 1 to 10 for one message, in the contract's order; the first that objects
        decides."""
        pb = self.playbooks[message.playbook]
        where = _address_of(pb.respond, message.step_id)
        assert where is not None
        send = _step_at(pb.respond, where)["send"]
        recipient = message.recipient
        decision = ModelDecision(
            message.customer_id, recipient, pb.id, message.step_id, pb.category,
            "send", None, "", None, None, message.held.dedup_key,
            message.context.get("friend_id"),
        )  # fmt: skip

        def stop(status: str, guard: str, reason: str, due: dt.datetime | None = None) -> Any:
            decision.status, decision.guard, decision.reason = status, guard, reason
            decision.due_at = due
            return decision

        if recipient is None or recipient not in facts:
            return stop("blocked", "unknown-friend", "the friend is not a known customer")
        person = facts[recipient]
        wanted = [send["channel"], *send.get("fallback", [])]
        tried = [person.get("preferred_channel") if c == "preferred" else c for c in wanted]
        consented = list(
            dict.fromkeys(
                c
                for c in tried
                if c is not None
                and person.get(f"consent_{c}") is True
                and (person.get(ADDRESS_OF.get(c, ""), "") or "").strip() != ""
            )
        )
        if not consented:
            return stop("blocked", "no-consent", f"no consented channel among {tried}")
        hours = person.get("hours_since_last_inbound")
        outside = hours is None or hours > INSTAGRAM_HOURS
        usable = [c for c in consented if c != "instagram" or not outside]
        if not usable:
            return stop("blocked", "instagram-only", "instagram outside its 24-hour window")
        decision.channel = usable[0]
        # Instagram consented but out of its window: noted even when it was not the first.
        if "instagram" in consented and outside:
            decision.guard = "instagram"
            decision.reason = f"instagram outside its 24-hour window; fell back to {usable[0]}"
        if not (person.get("first_name") or "").strip():
            return stop("blocked", "no-name", "no first name")
        key = message.held.dedup_key
        if key is not None and any(
            s.recipient == recipient and s.dedup_key == key for s in state.sent
        ):
            return stop("blocked", "duplicate", "already sent with the same dedup key")
        expires = parse_duration(send.get("expires", "30d"))
        if now - message.held.first_decided > expires:
            return stop("blocked", "expired", f"held longer than {send.get('expires', '30d')}")
        zone = ZoneInfo(person["timezone"])
        end = self._quiet_end(now, zone)
        if end is not None:
            return stop("deferred", "quiet-hours", "quiet hours in their time zone", end)
        if pb.category != MARKETING:
            return decision
        # Cadence, cooldowns and the weekly cap read what was sent before this moment: the
        # contract counts a moment's earlier guard rounds for priority and dedup only.
        mine = [s for s in self.state.sent if s.recipient == recipient]
        cadence = person.get("cadence_days")
        if cadence and mine:
            last = max(s.at for s in mine)
            if (now - last) / DAY < cadence:
                return stop("deferred", "cadence", "their cadence", last + cadence * DAY)
        ends = [
            (s.at + parse_duration(self.playbooks[s.playbook].limits["cooldown"]), s.playbook)
            for s in mine
            if s.playbook in self.playbooks
            and s.playbook != pb.id
            and "cooldown" in self.playbooks[s.playbook].limits
        ]
        ends = [e for e in ends if e[0] > now]
        if ends:
            until, speaker = max(ends)
            return stop("deferred", "cooldown", f"the cooldown after {speaker}", until)
        week = sorted(s.at for s in mine if s.category == MARKETING and s.at > now - WEEK)
        if self.weekly is not None and len(week) >= self.weekly:
            due = week[len(week) - self.weekly] + WEEK
            return stop("deferred", "cap", f"{self.weekly} marketing messages a week", due)
        return decision

    def _quiet_end(self, now: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """The end of quiet hours (an instant) when the local time at ``now`` is inside them."""
        start, end = self.quiet
        local = now.astimezone(zone)
        time = local.time().replace(tzinfo=None)
        inside = (time >= start or time < end) if start > end else start <= time < end
        if not inside:
            return None
        wall = dt.datetime.combine(local.date(), end)
        if wall <= local.replace(tzinfo=None):
            wall += DAY
        return _instant(wall, zone)


class _Sequences:
    """The model's sequences (part of ``Model``): steps from where a customer is, and what
    happens after a message was judged."""

    def _advance(
        self,
        pb: Playbook,
        cid: str,
        start: Address | None,
        started_at: dt.datetime,
        context: dict[str, Any],
        now: dt.datetime,
        state: ModelState,
        messages: list[_Message],
        facts: Mapping[str, Facts] | None = None,
    ) -> None:
        """Run the steps of ``pb`` from ``start`` for one customer: ``set``, ``tag``,
        ``untag`` and ``notify`` at once (in ``facts`` too, when later playbooks of this
        moment read them), up to a ``wait`` (an enrollment) or a ``send`` (a message for the
        guards, the sequence going on only once it is sent)."""
        names = {where: name for name, where, _ in _walk(pb.respond)}
        where = start
        while where is not None:
            step = _step_at(pb.respond, where)
            if "split" in step:  # their arm, by weight, from a hash of them and the step
                from courtship.experiments import variant_of

                arms = step["split"]
                arm = variant_of(pb.id, names[where], cid, arms)
                where = (*where, arms.index(arm), 0)
                continue
            if "send" in step:
                to_friend = step["send"].get("to") == "friend"
                messages.append(
                    _Message(
                        pb.id,
                        cid,
                        names[where],
                        context.get("friend_id") if to_friend else cid,
                        started_at,
                        context,
                        Held(now, self._dedup_key(pb, now)),
                    )
                )
                return
            if "set" in step:
                value = step["set"]["value"]
                value = now if value == "now" else value
                state.facts.setdefault(cid, {})[step["set"]["fact"]] = value
                if facts is not None:
                    facts[cid][step["set"]["fact"]] = value  # type: ignore[index]
            elif "tag" in step or "untag" in step:
                tag = step.get("tag") or step["untag"]
                add, remove = (
                    (state.tags, state.untags)
                    if "tag" in step
                    else (
                        state.untags,
                        state.tags,
                    )
                )
                add.setdefault(cid, set()).add(tag)
                remove.setdefault(cid, set()).discard(tag)
                if facts is not None:
                    tags = set(facts[cid].get("tags") or [])
                    tags = tags | {tag} if "tag" in step else tags - {tag}
                    facts[cid]["tags"] = sorted(tags) or None  # type: ignore[index]
            elif "notify" in step:
                state.notifications.append((pb.id, cid, now))
            elif "wait" in step:
                state.enrollments.append(
                    Enrollment(
                        pb.id,
                        cid,
                        version_of(pb),
                        names[where],
                        started_at,
                        now + parse_duration(step["wait"]),
                        context,
                        waiting_since=now,
                    )
                )
                return
            where = _next_address(pb.respond, where)
        state.ended.append((pb.id, cid, now, "done"))

    @staticmethod
    def _dedup_key(pb: Playbook, now: dt.datetime) -> str | None:
        if pb.dedup_key is None:
            return None
        from courtship.templates import environment

        template = environment().from_string(pb.dedup_key)
        return template.render(now=now, playbook={"id": pb.id, "title": pb.title})

    def _resumed(self, now: dt.datetime, state: ModelState) -> list[_Message]:
        """Enrollments due at ``now``: a waiting customer goes on after the wait step (same
        id, current version) unless its ``unless`` event happened since the wait began; a held
        message is judged again. A step or playbook that is gone lets the customer go."""
        messages: list[_Message] = []
        due = sorted(
            (e for e in state.enrollments if e.due_at <= now),
            key=lambda e: (e.due_at, e.playbook, e.customer_id),
        )
        for enrollment in due:
            state.enrollments.remove(enrollment)
            pb = self.playbooks.get(enrollment.playbook)
            ids = step_ids(pb.respond) if pb is not None else []
            where = f"{enrollment.playbook}/{enrollment.customer_id}"
            if pb is None:
                state.ended.append((enrollment.playbook, enrollment.customer_id, now, "removed"))
                continue
            if enrollment.step_id not in ids:
                state.ended.append((pb.id, enrollment.customer_id, now, f"step gone: {where}"))
                continue
            where = _address_of(pb.respond, enrollment.step_id)
            assert where is not None
            if enrollment.held is not None:
                messages.append(
                    _Message(
                        pb.id,
                        enrollment.customer_id,
                        enrollment.step_id,
                        self._recipient(_step_at(pb.respond, where), enrollment),
                        enrollment.started_at,
                        enrollment.context,
                        enrollment.held,
                    )
                )
                continue
            unless = _step_at(pb.respond, where).get("unless")
            if unless is not None and any(
                e["customer_id"] == enrollment.customer_id
                and e["type"] == unless["event"]
                and enrollment.waiting_since is not None
                and enrollment.waiting_since < e["at"] <= now
                and event_passes(unless.get("where"), e)
                for e in self.events
            ):
                state.ended.append((pb.id, enrollment.customer_id, now, "unless"))
                continue
            self._advance(
                pb,
                enrollment.customer_id,
                _next_address(pb.respond, where),
                enrollment.started_at,
                enrollment.context,
                now,
                state,
                messages,
            )
        return messages

    @staticmethod
    def _recipient(step: Mapping[str, Any], enrollment: Enrollment) -> str | None:
        if "send" in step and step["send"].get("to") == "friend":
            return enrollment.context.get("friend_id")
        return enrollment.customer_id

    def _after(
        self,
        message: _Message,
        decision: ModelDecision,
        now: dt.datetime,
        state: ModelState,
        messages: list[_Message],
    ) -> None:
        """A sent message lets its sequence go on; a deferred one is held at its step; a
        blocked one ends the sequence unless the step is ``optional``."""
        pb = self.playbooks[message.playbook]
        where = _address_of(pb.respond, message.step_id)
        assert where is not None
        step = _step_at(pb.respond, where)
        if decision.status == "deferred":
            assert decision.due_at is not None
            state.enrollments.append(
                Enrollment(
                    pb.id,
                    message.customer_id,
                    version_of(pb),
                    message.step_id,
                    message.started_at,
                    decision.due_at,
                    message.context,
                    held=message.held,
                )
            )
            return
        if decision.status == "send":
            assert decision.recipient is not None and decision.channel is not None
            state.sent.append(
                Sent(
                    decision.recipient,
                    message.customer_id,
                    pb.id,
                    pb.category,
                    decision.channel,
                    now,
                    message.held.dedup_key,
                )
            )
        elif not step["send"].get("optional", False):
            reason = f"blocked: {decision.reason}"
            state.ended.append((pb.id, message.customer_id, now, reason))
            return
        self._advance(
            pb,
            message.customer_id,
            _next_address(pb.respond, where),
            message.started_at,
            message.context,
            now,
            state,
            messages,
        )

    # ── guards ─────────────────────────────────────────────────────────────


@dataclass
class ModelDecision:
    customer_id: str
    recipient: str | None
    playbook: str
    step_id: str
    category: str
    status: str  # send | deferred | blocked
    guard: str | None
    reason: str
    channel: str | None
    due_at: dt.datetime | None
    dedup_key: str | None = None
    #: The referral's friend (None outside referrals): ``friend`` in its templates.
    friend_id: str | None = None

    def key(self) -> tuple[Any, ...]:
        """What the model test compares with the engine's decision."""
        return (
            self.recipient,
            self.playbook,
            self.step_id,
            self.status,
            self.guard,
            self.channel,
            self.due_at,
        )


@dataclass
class ModelState:
    last_run: dt.datetime | None = None
    fired: dict[tuple[str, str], list[dt.datetime]] = field(default_factory=dict)
    enrollments: list[Enrollment] = field(default_factory=list)
    ended: list[tuple[str, str, dt.datetime, str]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, set[str]] = field(default_factory=dict)
    untags: dict[str, set[str]] = field(default_factory=dict)
    #: per becomes playbook: customer → [true_since, fired]
    streaks: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    notifications: list[tuple[str, str, dt.datetime]] = field(default_factory=list)


@dataclass
class Outcome:
    now: dt.datetime
    decisions: list[ModelDecision]
    state: ModelState


@dataclass
class _Message:
    """A message waiting for the guards at this moment."""

    playbook: str
    customer_id: str
    step_id: str
    recipient: str | None
    started_at: dt.datetime
    context: dict[str, Any]
    held: Held


class Model(_Sequences, _Judging):
    """The engine's contract across moments, per customer, in plain Python."""

    def __init__(
        self,
        customers: list[dict[str, Any]],
        events: list[dict[str, Any]],
        playbooks: list[Playbook],
        *,
        timezone: str = "UTC",
        lookback: dt.timedelta = dt.timedelta(hours=24),
        quiet: tuple[dt.time, dt.time] = (dt.time(21), dt.time(8)),
        per_moment: int = 1,
        per_customer_per_week: int | None = None,
        per_channel: Mapping[str, int] | None = None,
    ) -> None:
        self.customers, self.events = customers, events
        self.per_channel = dict(per_channel or {})
        self.timezone, self.lookback, self.quiet = timezone, lookback, quiet
        self.per_moment, self.weekly = per_moment, per_customer_per_week
        self.state = ModelState()
        self.set_playbooks(playbooks)

    def set_playbooks(self, playbooks: list[Playbook]) -> None:
        """The playbooks as they are now (after an edit: their new versions)."""
        from courtship.graph import PlaybookGraph

        self.playbooks = {pb.id: pb for pb in playbooks if pb.enabled}
        order = PlaybookGraph(list(playbooks)).order()
        self.order = [pb_id for pb_id in order if pb_id in self.playbooks]
        self.set_names = {name for pb in playbooks for name in pb.facts_set}

    def record(self, outcome: Outcome) -> None:
        self.state = outcome.state

    # ── facts ──────────────────────────────────────────────────────────────
    def facts_at(self, now: dt.datetime, state: ModelState) -> dict[str, Facts]:
        """Every customer's facts at ``now``: from the data and the messages sent, then what
        playbooks set and tagged."""
        sent = [
            {"customer_id": s.recipient, "type": "sent", "at": s.at, "channel": s.channel}
            for s in state.sent
        ]
        facts = reference_facts(
            self.customers, self.events + sent, now, default_timezone=self.timezone
        )
        for cid, mine in facts.items():
            for name in self.set_names:
                mine.setdefault(name, None)
            mine.update(state.facts.get(cid, {}))
            tags = set(mine.get("tags") or []) | state.tags.get(cid, set())
            mine["tags"] = sorted(tags - state.untags.get(cid, set())) or None
        return facts

    # ── the moment ─────────────────────────────────────────────────────────
    def decide(self, now: dt.datetime) -> Outcome:
        import copy

        now = now.astimezone(dt.UTC)
        state = copy.deepcopy(self.state)
        self._past: dict[dt.datetime, dict[str, Facts]] = {}
        last = state.last_run
        since = last if last is not None and last <= now else now - self.lookback
        facts = self.facts_at(now, state)
        active = {(e.playbook, e.customer_id) for e in state.enrollments}
        messages: list[_Message] = []
        for pb_id in self.order:
            pb = self.playbooks[pb_id]
            for cid, context in self._triggered(pb, facts, now, since, state):
                if pb.audience is not None and not check(pb.audience, facts[cid], now).passed:
                    continue
                if not self._within_limits(pb, cid, now, state, active):
                    continue
                state.fired.setdefault((pb_id, cid), []).append(now)
                self._advance(pb, cid, (0,), now, context, now, state, messages, facts)
        messages += self._resumed(now, state)
        decisions: list[ModelDecision] = []
        speakers: dict[str, list[str]] = {}
        used: dict[str, int] = {}
        while messages:
            judged = self._judge(messages, facts, now, state, speakers, used)
            messages = []
            for message, decision in judged:
                decisions.append(decision)
                self._after(message, decision, now, state, messages)
        state.last_run = now if last is None or now > last else last
        return Outcome(now, decisions, state)

    def _triggered(
        self,
        pb: Playbook,
        facts: Mapping[str, Facts],
        now: dt.datetime,
        since: dt.datetime,
        state: ModelState,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The customers the trigger selects in ``(since, now]``, each with the context of
        their trigger (the latest event's instant and friend)."""
        trigger, out = pb.trigger, []
        for customer in self.customers:
            cid = customer["customer_id"]
            if "event" in trigger:
                mine = [
                    (e["at"], index, e)
                    for index, e in enumerate(self.events)
                    if e["customer_id"] == cid
                    and e["type"] == trigger["event"]
                    and since < e["at"] <= now
                    and event_passes(trigger.get("where"), e)
                ]
                if mine:
                    at, _, latest = max(mine, key=lambda m: (m[0], m[1]))
                    out.append((cid, {"event_at": at, "friend_id": latest.get("friend_id")}))
            elif "anniversary" in trigger:
                if _anniversary_fires(trigger, facts[cid], now, since):
                    out.append((cid, {}))
            elif "schedule" in trigger:
                if _schedule_fires(trigger, facts[cid], now, since):
                    out.append((cid, {}))
            elif self._becomes(pb, cid, facts[cid], now, since, state):
                out.append((cid, {}))
        return out

    def _becomes(
        self,
        pb: Playbook,
        cid: str,
        facts: Facts,
        now: dt.datetime,
        since: dt.datetime,
        state: ModelState,
    ) -> bool:
        """True now and not when last evaluated (held ``for`` long enough), once per streak;
        the first time a playbook is evaluated, the past is read from the data."""
        trigger = pb.trigger
        hold = parse_duration(trigger["for"]) if "for" in trigger else dt.timedelta(0)
        first = pb.id not in self.state.streaks  # as recorded by the last moment
        streaks = state.streaks.setdefault(pb.id, {})
        true_now = check(trigger["becomes"], facts, now).passed
        previous = streaks.pop(cid, None)
        if not true_now:
            return False
        if first:

            def earlier(moment: dt.datetime) -> Facts:
                if moment not in self._past:
                    self._past[moment] = self.facts_at(moment, self.state)
                return self._past[moment][cid]

            held = hold == dt.timedelta(0) or _true_at(trigger, earlier, now - hold)
            before = _true_at(trigger, earlier, since - hold)
            streaks[cid] = [since - hold if held else now, held]
            return held and not before
        true_since, fired = previous if previous is not None else [now, False]
        fires = true_since <= now - hold and not fired
        streaks[cid] = [true_since, fired or fires]
        return fires

    def _within_limits(
        self,
        pb: Playbook,
        cid: str,
        now: dt.datetime,
        state: ModelState,
        active: set[tuple[str, str]],
    ) -> bool:
        limits = pb.limits
        fired = state.fired.get((pb.id, cid), [])
        every = parse_duration(limits["once_every"]) if "once_every" in limits else None
        if fired and every is not None and max(fired) > now - every:
            return False
        reentry = limits.get("reentry", "after_exit")
        if reentry == "never" and fired:
            return False
        if "max_sends" in limits:
            sent = sum(1 for s in state.sent if s.playbook == pb.id and s.recipient == cid)
            if sent >= limits["max_sends"]:
                return False
        return reentry == "always" or (pb.id, cid) not in active

    # ── sequences ──────────────────────────────────────────────────────────


def _true_at(
    trigger: Mapping[str, Any], facts_at: Callable[[dt.datetime], Facts], moment: dt.datetime
) -> bool:
    return check(trigger["becomes"], facts_at(moment), moment).passed
