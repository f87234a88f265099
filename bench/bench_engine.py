"""Benchmark: the engine on 1,000,000 customers and 50 playbooks, against its targets.

Generates, with a fixed seed and vectorised (numpy + polars, no Python loop per customer), a
synthetic customer base of the shapes in ``courtship.sources`` (``CUSTOMER_SCHEMA``,
``EVENT_SCHEMA``): ~15 time zones, personas, birthdays (29 February and unknown years among
them), consents, tags, and ~10 events a customer (orders with amounts, visits, inbound messages,
replies, referrals, sends, signups). Then 50 playbooks: the 15 bundled ones and 35 variations
of them (other ids, priorities, thresholds, facts, holds), written as YAML beside a copy of
``playbooks/templates`` and validated with ``courtship.validate.validate_paths`` (must be clean).

Then, in one run, with the input already in memory, it times (medians over repetitions):

- (A) ``Engine.decide(base, now, StateStore(None))``, the whole moment: facts, triggers,
  audiences, limits, steps and guards (target <= 5 s); then ``Engine.render`` of the messages
  it decided and ``Engine.plan`` (both) beside it; ``compute_facts`` alone; a breakdown of one
  plan (facts at now and at the earlier moments first-run ``becomes`` reads, guards,
  rendering). The events are numbered by customer row first, as loading a base does
  (``courtship.engine.facts.event_rows``, timed apart);
- (B) the engine's condition evaluation: the audience + ``becomes`` condition of every playbook
  compiled by ``courtship.engine.conditions.to_expression``, one ``facts.select`` of the
  boolean columns;
- (C) the hand-written polars lower bound: the same conditions as plain polars expressions
  (``&``, ``|``, ``~``, one ``fill_null`` at the top), same select; target B/C <= 2;
- (D) the plain-Python reference ``courtship.engine.conditions.check``, per customer, on a sample;
- (E) GoRules ZEN (compiled expressions, and one JDM decision with an expression node) and
  rule-engine (``rule_engine.Rule(text).matches``) on a sample, the conditions translated.

D and E are extrapolated to the whole base. Every evaluator's answers are compared with B's.
If a target is missed it profiles one plan (cProfile, and py-spy when installed) and prints the
hotspots. Results go to ``bench/results/engine-<customers>.json`` (git-ignored).

    .venv/bin/pip install -q -r bench/requirements.txt
    .venv/bin/python bench/bench_engine.py            # 1,000,000 customers
    .venv/bin/python bench/bench_engine.py --quick    # 100,000 customers, a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import datetime as dt
import gc
import json
import os
import platform
import pstats
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from courtship.engine import Engine
from courtship.engine.conditions import check, to_expression
from courtship.engine.facts import (
    FACT_DTYPES,
    FactHistory,
    compute_facts,
    event_rows,
    referral_graph,
)
from courtship.engine.guards import Judge
from courtship.playbook import parse_duration
from courtship.project import Project
from courtship.sources import CUSTOMER_SCHEMA, EVENT_SCHEMA, CustomerBase
from courtship.state import StateStore
from courtship.validate import validate_paths

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "playbooks"
RESULTS = ROOT / "bench" / "results"
SRC = str(ROOT / "src" / "courtship")

#: The moment evaluated: a Monday afternoon, as in tests/test_engine.py.
DEFAULT_NOW = "2026-11-23T15:00:00+00:00"
PLAN_TARGET_S = 5.0
RATIO_TARGET = 2.0
EPOCH = dt.date(1970, 1, 1)


# ── the customer base ─────────────────────────────────────────────────────

#: (IANA zone, weight, language, city): 15 zones, two with half-hour offsets, both hemispheres.
ZONES = [
    ("Europe/London", 14, "en-GB", "London"),
    ("Europe/Paris", 9, "fr-FR", "Paris"),
    ("Europe/Berlin", 9, "de-DE", "Berlin"),
    ("Europe/Madrid", 6, "es-ES", "Madrid"),
    ("America/New_York", 13, "en-US", "New York"),
    ("America/Chicago", 7, "en-US", "Chicago"),
    ("America/Denver", 3, "en-US", "Denver"),
    ("America/Los_Angeles", 9, "en-US", "Los Angeles"),
    ("America/Sao_Paulo", 6, "pt-BR", "São Paulo"),
    ("Asia/Tokyo", 6, "ja-JP", "Tokyo"),
    ("Asia/Kolkata", 5, "en-IN", "Mumbai"),
    ("Asia/Singapore", 3, "en-SG", "Singapore"),
    ("Australia/Sydney", 5, "en-AU", "Sydney"),
    ("Australia/Adelaide", 2, "en-AU", "Adelaide"),
    ("Pacific/Auckland", 3, "en-NZ", "Auckland"),
]
#: (persona, weight, usual days between orders)
PERSONAS = [
    ("coffee-regular", 18, 12),
    ("weekend-yogi", 14, 21),
    ("home-cook", 14, 16),
    ("new-parent", 10, 25),
    ("frequent-flyer", 10, 35),
    ("bargain-hunter", 14, 45),
    ("student", 10, 40),
    ("gift-shopper", 10, 95),
]
#: (stage, weight, days from the last activity to now: low, high, as multiples of the rhythm
#: for the buying stages)
STAGES = [
    ("new", 3),
    ("onboarding", 6),
    ("active", 34),
    ("loyal", 14),
    ("advocate", 4),
    ("at-risk", 14),
    ("lapsed", 13),
    ("churned", 12),
]
FIRST_NAMES = [
    *("Amelia", "Oliver", "Maya", "Noah", "Chloe", "Yui", "Lucas", "Sofia", "Mateo", "Aarav"),
    *("Isla", "Leo", "Emma", "Hugo", "Mia", "Jonas", "Lea", "Ren", "Ana", "Tom", "Zoe", "Kai"),
    *("Nora", "Omar", "Ines", "Felix", "Priya", "Sam", "Ava", "Luca"),
]
LAST_NAMES = [
    *("Hughes", "Tanaka", "Nguyen", "Fletcher", "Martin", "Müller", "Garcia", "Silva", "Sato"),
    *("Sharma", "Smith", "Rossi", "Dubois", "Kim", "Jones", "Costa", "Lee", "Patel", "Weber"),
    "Moreau",
]
TAGS = [  # (tag, share of customers)
    ("vip", 0.05),
    ("no-digest", 0.03),
    ("test-account", 0.002),
    ("advocate", 0.02),
    ("advocate-invited", 0.01),
    ("coffee", 0.15),
    ("yoga", 0.10),
    ("gifts", 0.10),
    ("travel", 0.08),
]
EVENT_TYPES = [  # (type, share of the events drawn; replies are made for inbound messages)
    ("order", 0.28),
    ("visit", 0.38),
    ("inbound_message", 0.08),
    ("reply", 0.0),
    ("referral", 0.02),
    ("sent", 0.24),
]
#: Inbound messages' channels; sends and replies use the first three.
INBOUND_CHANNELS = ["email", "sms", "instagram", "phone", "web"]
DAY_US = 86_400_000_000


def _pick(rng: np.random.Generator, n: int, weights: list[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.uint32)


def _gather(values: list[Any], codes: np.ndarray, dtype: pl.DataType | None = None) -> pl.Series:
    return pl.Series(values, dtype=dtype or pl.String()).gather(pl.Series(codes))


def _null_where(series: pl.Series, mask: np.ndarray) -> pl.Series:
    """``series`` with nulls where ``mask`` is true."""
    return series.to_frame("v").select(pl.when(~pl.Series(mask)).then(pl.col("v"))).to_series()


def generate_base(n: int, seed: int, now: dt.datetime) -> CustomerBase:
    """N customers and their events, vectorised; the same N and seed give the same base."""
    rng = np.random.default_rng(seed)
    now_us = (now - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    today = (now.date() - EPOCH).days
    index = pl.int_range(0, n, eager=True, dtype=pl.Int64)
    ids = ("c-" + index.cast(pl.String).str.zfill(7)).alias("customer_id")

    zone = _pick(rng, n, [z[1] for z in ZONES])
    persona = _pick(rng, n, [p[1] for p in PERSONAS])
    stage = _pick(rng, n, [s[1] for s in STAGES])
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_NAMES), n)
    first_name = _null_where(_gather(FIRST_NAMES, first), rng.random(n) < 0.03)
    last_name = _null_where(_gather(LAST_NAMES, last), rng.random(n) < 0.05)
    stem = (
        _gather(FIRST_NAMES, first).str.to_lowercase()
        + "."
        + _gather(LAST_NAMES, last).str.to_lowercase()
        + "."
        + index.cast(pl.String)
    )
    email = _null_where(stem + "@example.org", rng.random(n) < 0.05)
    phone = _null_where(
        "+4477009" + pl.Series(rng.integers(0, 10**6, n)).cast(pl.String).str.zfill(6),
        rng.random(n) < 0.4,
    )
    instagram = _null_where(
        "1784140" + pl.Series(rng.integers(0, 10**10, n)).cast(pl.String).str.zfill(10),
        rng.random(n) < 0.7,
    )
    timezone = _null_where(_gather([z[0] for z in ZONES], zone), rng.random(n) < 0.02)

    # Birthdays: any day of 1950-2007, 29 February for some, the year unknown (1900) for some.
    year = rng.integers(1950, 2008, n)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    doy = (rng.random(n) * np.where(leap, 366, 365)).astype(np.int64)
    jan1 = (np.array([f"{y}-01-01" for y in range(1950, 2008)], dtype="datetime64[D]")).astype(
        np.int64
    )[year - 1950]
    birthday = jan1 + doy
    feb29 = rng.random(n) < 0.003
    leap_years = np.array(
        [np.datetime64(f"{y}-02-29").astype(np.int64) for y in (1964, 1976, 1988, 1996, 2000)]
    )
    birthday = np.where(feb29, leap_years[rng.integers(0, len(leap_years), n)], birthday)
    unknown_year = rng.random(n) < 0.02
    md = pl.Series(birthday).cast(pl.Date)
    year_1900 = pl.date(1900, md.dt.month(), pl.min_horizontal(md.dt.day(), 28))
    birthdays = (
        pl.DataFrame({"b": md, "u": unknown_year})
        .select(pl.when(pl.col("u")).then(year_1900).otherwise(pl.col("b")))
        .to_series()
    )
    birthdays = _null_where(birthdays, rng.random(n) < 0.08)

    # Signup: most over eight years, a few in the last two weeks.
    recent = rng.random(n) < 0.03
    signup_age = np.where(recent, rng.integers(0, 14, n), rng.integers(14, 8 * 365, n))
    new_stage = np.isin(stage, [0, 1])
    signup_age = np.where(new_stage, rng.integers(0, 30, n), signup_age)
    signup = today - signup_age
    signup_dates = _null_where(pl.Series(signup).cast(pl.Date), rng.random(n) < 0.02)

    # Tags: (row, tag) pairs gathered into sorted lists; no tag at all is an empty cell (null).
    pairs = pl.concat(
        pl.DataFrame({"row": np.flatnonzero(rng.random(n) < share), "tag": tag})
        for tag, share in TAGS
    )
    tags = (
        index.to_frame("row")
        .join(
            pairs.sort("row", "tag").group_by("row", maintain_order=True).agg("tag"),
            on="row",
            how="left",
            maintain_order="left",
        )
        .get_column("tag")
    )

    preferred = _null_where(
        _gather(["email", "sms", "instagram"], _pick(rng, n, [55, 30, 15])), rng.random(n) < 0.02
    )
    cadence = _null_where(
        _gather([3, 7, 14, 30, 60], _pick(rng, n, [5, 20, 40, 25, 10]), pl.Int64()),
        rng.random(n) < 0.05,
    )
    tone = _null_where(
        _gather(["buddy", "direct", "salesy"], _pick(rng, n, [45, 40, 15])), rng.random(n) < 0.05
    )

    def consent(share: float) -> pl.Series:
        return _null_where(pl.Series(rng.random(n) < share), rng.random(n) < 0.02)

    customers = pl.DataFrame(
        {
            "customer_id": ids,
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "phone": phone,
            "instagram_id": instagram,
            "timezone": timezone,
            "language": _gather([z[2] for z in ZONES], zone),
            "city": _gather([z[3] for z in ZONES], zone),
            "persona": _gather([p[0] for p in PERSONAS], persona),
            "birthday": birthdays,
            "signup_date": signup_dates,
            "stage": _gather([s[0] for s in STAGES], stage),
            "tags": tags,
            "preferred_channel": preferred,
            "cadence_days": cadence,
            "tone": tone,
            "consent_email": consent(0.85),
            "consent_sms": consent(0.5),
            "consent_instagram": consent(0.3),
        }
    )
    assert customers.schema == pl.Schema(CUSTOMER_SCHEMA), customers.schema

    # ── events: ~9 a customer (replies follow inbound messages), plus one signup each ──
    activity = rng.gamma(3.0, 3.0, n)  # mean 9, some customers far busier than others
    counts = rng.poisson(activity)
    owner = np.repeat(np.arange(n), counts)
    m = owner.size
    kind = _pick(rng, m, [t[1] for t in EVENT_TYPES])
    interval = np.array([p[2] for p in PERSONAS], dtype=float)[persona] * rng.uniform(0.8, 2.5, n)
    # Days from the customer's latest activity to now, in their own rhythms, by stage.
    rhythms = [(0.0, 0.2), (0.0, 0.3), (0.0, 1.2), (0.0, 1.0), (0.0, 1.0), (1.8, 3.5),
               (3.5, 8.0), (8.0, 20.0)]  # fmt: skip
    low = np.array([r[0] for r in rhythms])[stage]
    high = np.array([r[1] for r in rhythms])[stage]
    quiet_days = interval * rng.uniform(low, high)
    signup_us = signup.astype(np.int64) * DAY_US + rng.integers(0, DAY_US, n)
    signup_us = np.minimum(signup_us, now_us - rng.integers(60_000_000, DAY_US, n))
    last_us = np.maximum(now_us - (quiet_days * DAY_US).astype(np.int64), signup_us)
    # Orders follow the customer's rhythm backwards from their latest activity (a guest may
    # have ordered before signing up); everything else falls between signup and then.
    order = kind == 0
    gaps = np.where(order, rng.gamma(4.0, 0.25, m) * interval[owner] * DAY_US, 0.0)
    total = np.cumsum(gaps)  # events are grouped by owner: the gap sum before each, per owner
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    before = np.concatenate(([0.0], total))[starts]
    within = total - np.repeat(before, counts) - gaps
    order_at = last_us[owner] - within.astype(np.int64)
    span = np.maximum(last_us - signup_us, 1)[owner]
    other_at = signup_us[owner] + (rng.random(m) * span).astype(np.int64)
    at = np.where(order, order_at, other_at)
    # Today's traffic: some inbound messages in the last two days.
    inbound = kind == 2
    fresh = inbound & (rng.random(m) < 0.03)
    at = np.where(fresh, now_us - rng.integers(0, 2 * DAY_US, m), at)
    at = np.minimum(at, now_us)
    # Most inbound messages get a reply, a few hours later (fewer of today's, so far).
    answered = inbound & (rng.random(m) < np.where(fresh, 0.5, 0.95))
    reply_at = at + (rng.exponential(3.0, m) * 3_600_000_000).astype(np.int64)
    answered &= reply_at <= now_us
    replies = np.flatnonzero(answered)
    owner = np.concatenate([owner, owner[replies]])
    kind = np.concatenate([kind, np.full(replies.size, 3, dtype=kind.dtype)])
    at = np.concatenate([at, reply_at[replies]])
    m = owner.size

    channel = np.full(m, -1)
    channel = np.where(kind == 2, rng.integers(0, len(INBOUND_CHANNELS), m), channel)
    channel = np.where((kind == 5) | (kind == 3), rng.integers(0, 3, m), channel)
    order = kind == 0
    amount = np.where(order, np.round(rng.lognormal(3.6, 0.7, m), 2), np.nan)
    referral = kind == 4
    friend = (
        pl.DataFrame({"row": rng.integers(0, n, m), "out": rng.random(m) < 0.3, "ref": referral})
        .select(
            pl.when(pl.col("ref") & pl.col("out"))
            .then("x-" + pl.col("row").cast(pl.String))
            .when(pl.col("ref"))
            .then("c-" + pl.col("row").cast(pl.String).str.zfill(7))
        )
        .to_series()
    )
    events = pl.DataFrame(
        {
            "customer_id": ids.gather(pl.Series(owner)),
            "type": _gather([t[0] for t in EVENT_TYPES], kind.astype(np.uint32)),
            "at": pl.Series(at).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "channel": _null_where(
                _gather(INBOUND_CHANNELS, np.maximum(channel, 0).astype(np.uint32)), channel < 0
            ),
            "amount": pl.Series(amount).fill_nan(None),
            "friend_id": friend,
        }
    )
    signups = pl.DataFrame(
        {
            "customer_id": ids,
            "type": pl.repeat("signup", n, eager=True),
            "at": pl.Series(signup_us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        }
    )
    events = (
        pl.concat([events, signups], how="diagonal_relaxed")
        .select(
            (pl.col(name) if name in events.columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in EVENT_SCHEMA.items()
        )
        .sort("at", maintain_order=True)
    )
    assert events.schema == pl.Schema(EVENT_SCHEMA), events.schema
    return CustomerBase(customers, events)


# ── the playbooks: 15 bundled + 35 variations ─────────────────────────────

#: A fact a variation may test instead, of the same kind (number for number).
FACT_SWAPS = {
    "orders_count": "orders_last_90d",
    "orders_last_90d": "orders_count",
    "days_since_last_order": "days_since_last_visit",
    "days_since_last_visit": "days_since_last_order",
    "lapse_ratio": "persona_lapse_ratio",
    "persona_lapse_ratio": "lapse_ratio",
    "referrals_count": "referrals_converted",
    "referrals_converted": "referrals_count",
    "total_spent": "average_order_value",
    "unanswered_inbound_count": "messages_sent_30d",
}
INTEGER_FACTS = {
    "orders_count",
    "orders_last_90d",
    "referrals_count",
    "referrals_converted",
    "unanswered_inbound_count",
    "messages_sent_30d",
    "customer_years",
    "cadence_days",
    "friends_count",
}
FACTORS = (0.5, 0.75, 1.5, 2.0, 3.0)
HOLDS = (None, "2d", "3d")  # the bundled playbooks' `for:`; more distinct holds = more facts


def _vary_condition(cond: Any, rng: random.Random) -> Any:
    """Another threshold (and sometimes another fact) for every numeric test of ``cond``."""
    if not isinstance(cond, dict):
        return cond
    if "all" in cond or "any" in cond:
        key = "all" if "all" in cond else "any"
        return {key: [_vary_condition(c, rng) for c in cond[key]]}
    if "not" in cond:
        return {"not": _vary_condition(cond["not"], rng)}
    if "fact" not in cond:
        return dict(cond)
    leaf = dict(cond)
    name = leaf["fact"]
    op = next(k for k in leaf if k != "fact")
    value = leaf[op]
    if name in FACT_SWAPS and rng.random() < 0.35:
        name = leaf["fact"] = FACT_SWAPS[name]
    factor = rng.choice(FACTORS)
    if op in ("gt", "gte", "lt", "lte") and isinstance(value, int | float):
        if not isinstance(value, bool) and value != 0:
            scaled = value * factor
            leaf[op] = max(1, round(scaled)) if name in INTEGER_FACTS else round(scaled, 2)
    elif op in ("gt", "gte", "lt", "lte") and isinstance(value, dict) and "times" in value:
        leaf[op] = {**value, "times": round(value["times"] * factor, 2)}
    elif op == "within":
        leaf[op] = f"{max(1, round(parse_duration(value).days * factor))}d"
    return leaf


def _variation(data: dict[str, Any], number: int, rng: random.Random) -> dict[str, Any]:
    varied = copy.deepcopy(data)
    varied["id"] = f"{data['id']}-v{number}"
    varied["title"] = f"{data['title']} (variation {number})"
    varied["priority"] = min(100, max(0, data.get("priority", 50) + rng.randint(-9, 9)))
    trigger = varied["trigger"]
    if "becomes" in trigger:
        trigger["becomes"] = _vary_condition(trigger["becomes"], rng)
        hold = rng.choice(HOLDS)
        trigger.pop("for", None)
        if hold:
            trigger["for"] = hold
    if "audience" in varied:
        varied["audience"] = _vary_condition(varied["audience"], rng)
    elif "becomes" not in trigger:  # so that every variation has a condition to evaluate
        varied["audience"] = {
            "all": [
                {"fact": "first_name", "exists": True},
                {"fact": "referrals_count", "lte": rng.choice((5, 10, 20))},
            ]
        }
    return varied


def write_playbooks(folder: Path, count: int, seed: int) -> list[Path]:
    """The bundled playbooks and ``count - 15`` variations of them, with the templates."""
    rng = random.Random(seed)
    shutil.copytree(BUNDLED / "templates", folder / "templates")
    sources = sorted(BUNDLED.glob("*.yaml"))
    files = []
    for source in sources:
        files.append(folder / source.name)
        shutil.copyfile(source, files[-1])
    bundled = [yaml.safe_load(source.read_text(encoding="utf-8")) for source in sources]
    for k in range(count - len(sources)):
        data = bundled[k % len(bundled)]
        varied = _variation(data, k // len(bundled) + 1, rng)
        files.append(folder / f"{varied['id']}.yaml")
        files[-1].write_text(
            yaml.safe_dump(varied, sort_keys=False, allow_unicode=True, width=100),
            encoding="utf-8",
        )
    return files


def rule_conditions(playbooks: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """Per playbook, its ``becomes`` condition and its audience, both (all:), as one condition.
    A playbook with neither (an event trigger, no audience) has no condition to evaluate."""
    rules = []
    for pb in sorted(playbooks, key=lambda p: p.id):
        parts = [c for c in (pb.trigger.get("becomes"), pb.audience) if c]
        if parts:
            rules.append((pb.id, parts[0] if len(parts) == 1 else {"all": parts}))
    return rules


# ── the same conditions, four more ways ───────────────────────────────────

_OPS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _is_date_text(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None


def hand_expression(
    cond: Mapping[str, Any], schema: Mapping[str, Any], now: dt.datetime
) -> pl.Expr:
    """(C) the condition as a person would write it in polars; null means false at the top."""

    def walk(c: Mapping[str, Any]) -> pl.Expr:
        if "all" in c:
            return reduce(lambda a, b: a & b, (walk(x) for x in c["all"]))
        if "any" in c:
            return reduce(lambda a, b: a | b, (walk(x) for x in c["any"]))
        if "not" in c:
            return ~walk(c["not"]).fill_null(False)
        if "tag" in c:
            return pl.col("tags").list.contains(c["tag"])
        name = c["fact"]
        op, value = next((k, v) for k, v in c.items() if k != "fact")
        column = pl.col(name)
        dated = isinstance(schema.get(name), pl.Datetime)
        if dated:
            column = column.dt.date()
        if op == "exists":
            return column.is_not_null() if value else column.is_null()
        if op == "within":
            return column.is_between((now - parse_duration(value)).date(), now.date())
        if op in ("in", "not_in"):
            members = column.is_in(value)
            return members if op == "in" else ~members
        if op == "contains":
            return column.list.contains(value)

        def operand(v: Any) -> Any:
            if isinstance(v, Mapping):
                other = pl.col(v["fact"])
                other = other * v["times"] if "times" in v else other
                return other + v["plus"] if "plus" in v else other
            return dt.date.fromisoformat(v) if _is_date_text(v) else v

        if op == "between":
            return column.is_between(operand(value[0]), operand(value[1]))
        right = operand(value)
        return {
            "eq": lambda: column == right,
            "ne": lambda: column != right,
            "gt": lambda: column > right,
            "gte": lambda: column >= right,
            "lt": lambda: column < right,
            "lte": lambda: column <= right,
        }[op]()

    return walk(cond).fill_null(False)


def text_expression(cond: Mapping[str, Any], now: dt.datetime) -> str:
    """(E) the condition in the common subset of ZEN's and rule-engine's languages.

    Dates and moments are numbers there: days since 1970-01-01 (a moment: its UTC date), in the
    contexts too. A test of a null is false: every test is guarded with ``!= null``."""

    def literal(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if _is_date_text(v):
            return str((dt.date.fromisoformat(v) - EPOCH).days)
        if isinstance(v, str):
            return json.dumps(v)
        return repr(v)

    def walk(c: Mapping[str, Any]) -> str:
        if "all" in c:
            return "(" + " and ".join(walk(x) for x in c["all"]) + ")"
        if "any" in c:
            return "(" + " or ".join(walk(x) for x in c["any"]) + ")"
        if "not" in c:
            return f"not {walk(c['not'])}"
        if "tag" in c:
            return f"(tags != null and {json.dumps(c['tag'])} in tags)"
        name = c["fact"]
        op, value = next((k, v) for k, v in c.items() if k != "fact")
        if op == "exists":
            return f"({name} {'!=' if value else '=='} null)"
        guards = [f"{name} != null"]

        def operand(v: Any) -> str:
            if not isinstance(v, Mapping):
                return literal(v)
            guards.append(f"{v['fact']} != null")
            text = v["fact"]
            text = f"{text} * {v['times']}" if "times" in v else text
            return f"{text} + {v['plus']}" if "plus" in v else text

        if op == "within":
            since = (now - parse_duration(value)).date()
            test = f"{name} >= {(since - EPOCH).days} and {name} <= {(now.date() - EPOCH).days}"
        elif op == "between":
            test = f"{name} >= {operand(value[0])} and {name} <= {operand(value[1])}"
        elif op in ("in", "not_in"):
            members = "[" + ", ".join(literal(v) for v in value) + "]"
            test = f"{name} in {members}" if op == "in" else f"not ({name} in {members})"
        elif op == "contains":
            test = f"{literal(value)} in {name}"
        else:
            test = f"{name} {_OPS[op]} {operand(value)}"
        return "(" + " and ".join([*guards, test]) + ")"

    return walk(cond)


def fact_names(cond: Any) -> set[str]:
    """Every fact a condition reads (tags for a tag test)."""
    if isinstance(cond, list):
        return set().union(*(fact_names(c) for c in cond))
    if not isinstance(cond, dict):
        return set()
    names = {"tags"} if "tag" in cond else set()
    if "fact" in cond:
        names.add(cond["fact"])
    for key, value in cond.items():
        if key != "fact":
            names |= fact_names(value)
    return names


def text_contexts(facts: pl.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """One dict per customer with the facts the conditions read; dates as days since 1970."""
    columns = []
    for name in names:
        dtype = facts.schema[name]
        if isinstance(dtype, pl.Datetime):
            columns.append((pl.col(name).dt.date() - EPOCH).dt.total_days().alias(name))
        elif dtype == pl.Date:
            columns.append((pl.col(name) - EPOCH).dt.total_days().alias(name))
        else:
            columns.append(pl.col(name))
    return facts.select(columns).to_dicts()


def zen_decision_content(texts: list[str]) -> str:
    """A JDM decision: input → one expression node with every condition → output."""
    nodes = [
        {"id": "input", "type": "inputNode", "name": "customer", "position": {"x": 0, "y": 0}},
        {
            "id": "rules",
            "type": "expressionNode",
            "name": "playbooks",
            "position": {"x": 300, "y": 0},
            "content": {
                "expressions": [
                    {"id": f"e{i}", "key": f"r{i}", "value": text} for i, text in enumerate(texts)
                ]
            },
        },
        {"id": "output", "type": "outputNode", "name": "decisions", "position": {"x": 600, "y": 0}},
    ]
    edges = [
        {"id": "a", "type": "edge", "sourceId": "input", "targetId": "rules"},
        {"id": "b", "type": "edge", "sourceId": "rules", "targetId": "output"},
    ]
    return json.dumps({"nodes": nodes, "edges": edges})


# ── timing, memory, the machine ───────────────────────────────────────────


def timed(function: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def peak_rss_mb() -> float:
    """The process's peak resident set so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil is in bench/requirements.txt
        return float("nan")


def git_state() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes (others work alongside)."""

    def git(*command: str) -> str:
        done = subprocess.run(
            ["git", *command], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.rstrip()

    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "src_changes": git("status", "--short", "src"),
    }


def machine_load() -> dict[str, Any]:
    """Load averages, and the busiest other processes (a busy machine skews every figure)."""
    load = dict(zip(("1m", "5m", "15m"), (round(x, 2) for x in os.getloadavg()), strict=True))
    busy: list[str] = []
    try:
        import psutil

        procs = list(psutil.process_iter(["pid", "name"]))
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.cpu_percent(None)
        time.sleep(0.5)
        me = os.getpid()
        for proc in procs:
            try:
                share = proc.cpu_percent(None)
            except psutil.Error:
                continue
            if proc.pid != me and share >= 20:
                busy.append(f"{proc.info['name']}[{proc.pid}] {share:.0f}%")
    except ImportError:  # pragma: no cover
        pass
    return {"loadavg": load, "busy_processes": busy, "cpus": os.cpu_count()}


# ── the engine, whole and in parts ────────────────────────────────────────


def facts_frame(engine: Engine, base: CustomerBase, now: dt.datetime) -> pl.DataFrame:
    """The facts the engine evaluates conditions over: ``Engine.plan``'s ``facts_at(now)`` with
    an empty state (computed facts, then the facts playbooks set, null until they do)."""
    frame = compute_facts(base, now, default_timezone=engine.project.timezone)
    missing = [
        pl.lit(None, dtype=FACT_DTYPES[spec.type]).alias(name)
        for name, spec in engine.catalogue.facts.items()
        if name not in frame.columns
    ]
    return frame.with_columns(*missing)


def plan_breakdown(engine: Engine, base: CustomerBase, now: dt.datetime) -> dict[str, Any]:
    """One first-run plan with its parts timed: the facts at now, the facts at the earlier
    moments first-run ``becomes`` triggers read (and those moments), the guards, the
    rendering; and what it decided. The events' customer rows (``event_rows``) are built
    before, as loading the base does, and timed apart."""
    start = time.perf_counter()
    for kept in ("_event_rows", "_referral_rows", "_referral_graph"):
        base.__dict__.pop(kept, None)
    event_rows(base)
    referral_graph(base)  # and referral_rows
    index_s = time.perf_counter() - start
    spent: dict[str, float] = Counter()
    moments: list[str] = []
    originals = {
        "at": FactHistory.at,
        "before": FactHistory.before,
        "_guard": Judge.judge,
        "render": Engine.render,
    }

    def timing(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
                if name in ("at", "before"):
                    moments.append(args[1].isoformat())

        return wrapper

    FactHistory.at = timing("at", originals["at"])  # type: ignore[method-assign]
    FactHistory.before = timing("before", originals["before"])  # type: ignore[method-assign]
    Judge.judge = timing("_guard", originals["_guard"])  # type: ignore[method-assign]
    Engine.render = timing("render", originals["render"])  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        plan = engine.plan(base, now, StateStore(None))
        total = time.perf_counter() - start
    finally:
        FactHistory.at = originals["at"]  # type: ignore[method-assign]
        FactHistory.before = originals["before"]  # type: ignore[method-assign]
        Judge.judge = originals["_guard"]  # type: ignore[method-assign]
        Engine.render = originals["render"]  # type: ignore[method-assign]
    status = Counter(d.status for d in plan.decisions)
    facts_s = spent["at"] + spent["before"]
    return {
        "index_s": index_s,
        "total_s": total,
        "decide_s": total - spent["render"],
        "facts_now_s": spent["at"],
        "facts_past_s": spent["before"],
        "facts_calls": len(moments),
        "facts_moments": moments,
        "guard_s": spent["_guard"],
        "render_s": spent["render"],
        "rest_s": total - facts_s - spent["_guard"] - spent["render"],
        "fired": sum(len(ids) for ids in plan.fired.values()),
        "decisions": len(plan.decisions),
        "status": dict(status),
        "notifications": len(plan.notifications),
        "plan": plan,
    }


def profile_plan(engine: Engine, base: CustomerBase, now: dt.datetime, top: int) -> dict[str, Any]:
    """One plan under cProfile: the functions with the most cumulative and own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    engine.plan(base, now, StateStore(None))
    profiler.disable()
    stats = pstats.Stats(profiler)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(str(RESULTS / "plan.prof"))

    def where(key: tuple[str, int, str]) -> str:
        file, line, function = key
        try:
            file = str(Path(file).resolve().relative_to(ROOT))
        except ValueError:
            file = file.replace(str(Path(sys.prefix)), "<venv>")
        return f"{file}:{line} {function}"

    rows = [
        (key, tottime, cumtime, calls)
        for key, (_, calls, tottime, cumtime, _) in stats.stats.items()  # type: ignore[attr-defined]
    ]
    own = sorted(rows, key=lambda r: -r[1])[:top]
    ours = sorted(
        (r for r in rows if r[0][0].startswith(SRC) and r[0][2] != "plan"), key=lambda r: -r[2]
    )[:top]
    return {
        "by_own_time": [
            {"where": where(k), "own_s": round(t, 3), "cum_s": round(c, 3), "calls": n}
            for k, t, c, n in own
        ],
        "courtship_by_cumulative": [
            {"where": where(k), "own_s": round(t, 3), "cum_s": round(c, 3), "calls": n}
            for k, t, c, n in ours
        ],
    }


def spy_plan(engine: Engine, base: CustomerBase, now: dt.datetime, top: int) -> dict[str, Any]:
    """One plan sampled by py-spy (wall clock, the main thread, 100 samples a second).

    Three views of the samples: each charged to the deepest line of courtship's own code on the
    stack (so the time polars spends in native code lands on the line that asked for it); the
    courtship functions on the stack (inclusive); and the innermost Python frame (own time)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {"error": "py-spy is not installed"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = RESULTS / "plan-pyspy.txt"
    command = [spy, "record", "--pid", str(os.getpid()), "--rate", "100", "--format", "raw"]
    command += ["--output", str(output), "--idle", "--full-filenames", "--nonblocking"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(2.0)  # attach
    if proc.poll() is not None:
        return {"error": (proc.stderr.read() if proc.stderr else b"").decode()[-300:]}
    start = time.perf_counter()
    engine.plan(base, now, StateStore(None))
    seconds = time.perf_counter() - start
    proc.send_signal(2)  # SIGINT: py-spy writes its samples and exits
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": "py-spy did not stop"}
    frame = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
    lines: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0

    def short(file: str) -> str:
        if file.startswith(str(ROOT)):
            return str(Path(file).relative_to(ROOT))
        return re.sub(r"^.*/site-packages/", "<site-packages>/", file)

    for row in output.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = row.rpartition(" ")
        parsed = [m for m in map(frame.match, stack.split(";")) if m]
        if not any(
            m["function"] in ("plan", "Engine.plan")
            and m["file"].endswith("courtship/engine/moment.py")
            for m in parsed
        ):
            continue
        weight = int(count)
        total += weight
        ours = [m for m in parsed if m["file"].startswith(SRC)]
        if ours:
            deepest = ours[-1]
            lines[f"{short(deepest['file'])}:{deepest['line']} {deepest['function']}"] += weight
        for name in {f"{short(m['file'])} {m['function']}" for m in ours}:
            functions[name] += weight
        leaf = parsed[-1]
        own[f"{short(leaf['file'])}:{leaf['line']} {leaf['function']}"] += weight

    def listing(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {
                "where": where,
                "share": round(count / total, 4),
                "s": round(seconds * count / total, 2),
            }
            for where, count in counter.most_common(top)
        ]

    if not total:
        return {"error": f"no sample of the plan in {output}"}
    return {
        "plan_s": seconds,
        "samples": total,
        "lines": listing(lines),
        "functions": listing(functions),
        "own": listing(own),
    }


# ── the run ───────────────────────────────────────────────────────────────


def median(times: list[float]) -> float:
    return statistics.median(times) if times else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 customers: a smoke run")
    parser.add_argument("--playbooks", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--now", default=DEFAULT_NOW, help="the moment planned (ISO 8601)")
    parser.add_argument("--repeat", type=int, default=7, help="runs of B and C")
    parser.add_argument("--plan-repeat", type=int, default=3, help="runs of A and compute_facts")
    parser.add_argument(
        "--plan-budget", type=float, default=240, help="seconds for repeated plans (A, A2)"
    )
    parser.add_argument("--slow-repeat", type=int, default=3, help="runs of D and E")
    parser.add_argument("--sample", type=int, default=20_000, help="customers for D and ZEN")
    parser.add_argument("--rule-engine-sample", type=int, default=5_000)
    parser.add_argument("--top", type=int, default=15, help="lines of each profile listing")
    parser.add_argument("--no-steady", action="store_true", help="skip the next-hour plan (A2)")
    parser.add_argument("--profile", action="store_true", help="profile even if targets are met")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--cprofile", action="store_true", help="cProfile too, besides py-spy")
    args = parser.parse_args(argv)
    if args.quick:
        args.customers = 100_000
    now = dt.datetime.fromisoformat(args.now).astimezone(dt.UTC)
    results: dict[str, Any] = {
        "customers": args.customers,
        "now": now.isoformat(),
        "seed": args.seed,
        "python": platform.python_version(),
        "polars": pl.__version__,
        "platform": platform.platform(),
        "load_before": machine_load(),
        "git": git_state(),
    }
    print(f"machine: {os.cpu_count()} CPUs, load {results['load_before']['loadavg']}", end="")
    busy = results["load_before"]["busy_processes"]
    print(f", busy: {', '.join(busy)}" if busy else ", no other busy process")
    changed = results["git"]["src_changes"]
    print(f"courtship at {results['git']['commit'][:10]}" + (", src/ changed:" if changed else ""))
    if changed:
        print("  " + changed.replace("\n", "\n  "))

    # ── input ──
    start = time.perf_counter()
    base = generate_base(args.customers, args.seed, now)
    results["generate_s"] = round(time.perf_counter() - start, 2)
    results["events"] = base.events.height
    results["rss_after_input_mb"] = round(rss_mb())
    print(
        f"generated {args.customers:,} customers and {base.events.height:,} events "
        f"({base.events.height / args.customers:.1f} each) in {results['generate_s']} s, "
        f"RSS {results['rss_after_input_mb']:,} MB"
    )
    with tempfile.TemporaryDirectory(prefix="courtship-bench-") as tmp:
        root = Path(tmp)
        folder = root / "playbooks"
        folder.mkdir()
        files = write_playbooks(folder, args.playbooks, args.seed)
        report = validate_paths([folder])
        results["playbooks"] = len(report.playbooks)
        results["findings"] = [str(f) for f in report.findings]
        print(f"{len(files)} playbooks in {folder}: {len(report.findings)} findings")
        if report.findings:
            for finding in report.findings[:20]:
                print(f"  {finding}")
            print("the corpus must validate cleanly; stopping")
            return 2
        project = Project(root=root, playbooks=folder, per_customer_per_week=3)
        engine = Engine(report.playbooks, project)
        rules = rule_conditions(report.playbooks)
        results["rules"] = len(rules)
        code = measure(args, now, base, engine, rules, results)
    results["load_after"] = machine_load()
    results["peak_rss_mb"] = round(peak_rss_mb())
    print(f"peak RSS {results['peak_rss_mb']:,} MB; load after {results['load_after']['loadavg']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"engine-{args.customers}.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results: {out.relative_to(ROOT)}")
    return code


def measure(
    args: argparse.Namespace,
    now: dt.datetime,
    base: CustomerBase,
    engine: Engine,
    rules: list[tuple[str, dict[str, Any]]],
    results: dict[str, Any],
) -> int:
    n, r = args.customers, len(rules)

    def reps(seconds: float) -> int:
        """Runs of a plan that took ``seconds``: --plan-repeat, fewer when slow (at least 1)."""
        return max(1, min(args.plan_repeat, int(args.plan_budget // max(seconds, 1e-9))))

    rows: list[dict[str, Any]] = []  # the table

    def row(
        key: str, label: str, times: list[float], evals: int | None = None, **extra: Any
    ) -> None:
        entry = {
            "key": key,
            "label": label,
            "median_s": median(times),
            "min_s": min(times) if times else float("nan"),
            "runs": len(times),
            "times_s": [round(t, 4) for t in times],
            **extra,
        }
        if evals:
            entry["evals_per_s"] = evals / entry["median_s"]
            entry["extrapolated_s"] = n * r / entry["evals_per_s"]
        rows.append(entry)

    # ── (A) the whole plan, first run, and its parts ──
    print(f"(A) Engine.decide over {n:,} customers, {len(engine.playbooks)} playbooks ...")
    breakdown = plan_breakdown(engine, base, now)
    plan = breakdown.pop("plan")
    results["plan_breakdown"] = breakdown
    print(
        f"    events numbered by customer row (once per loaded base): "
        f"{breakdown['index_s']:.2f} s; one plan: {breakdown['total_s']:.1f} s"
    )
    more = reps(breakdown["total_s"])
    del plan  # one moment in memory at a time: each holds the facts of the whole base
    deciding: list[float] = []
    rendering: list[float] = []
    for _ in range(more):
        gc.collect()
        start = time.perf_counter()
        decided = engine.decide(base, now, StateStore(None))
        deciding.append(time.perf_counter() - start)
        start = time.perf_counter()
        engine.render(decided)
        rendering.append(time.perf_counter() - start)
        del decided
    row("A", "(A) Engine.decide, first run (StateStore(None))", deciding)
    row("A.render", "    Engine.render (the texts) after it", rendering)
    times, plan = timed(lambda: engine.plan(base, now, StateStore(None)), more)
    row("A.plan", "    Engine.plan = decide + render", [breakdown["total_s"], *times])
    times, _ = timed(
        lambda: compute_facts(base, now, default_timezone=engine.project.timezone),
        args.plan_repeat,
    )
    row("A.facts", "    compute_facts alone (one moment)", times)
    results["rss_after_plan_mb"] = round(peak_rss_mb())

    # ── (A2) the next hour, with the first run recorded ──
    if not args.no_steady:
        state = StateStore(None)
        start = time.perf_counter()
        engine.record(plan, state)
        results["record_first_plan_s"] = round(time.perf_counter() - start, 2)
        counts: dict[str, int] = {}
        for table in ("fired", "becomes", "enrollments", "sends"):
            with contextlib.suppress(sqlite3.Error, AssertionError):  # the schema moves on
                counts[table] = state.count(table)
        if getattr(plan, "streaks", None):  # becomes streaks kept beside the database
            counts["streaks"] = sum(frame.height for frame in plan.streaks.values())
        results["state_rows"] = counts
        later = now + dt.timedelta(hours=1)
        times, second = timed(lambda: engine.decide(base, later, state), 1)
        times += timed(lambda: engine.decide(base, later, state), reps(times[0]) - 1)[0]
        row("A2", "(A2) Engine.decide, the next hour (state recorded)", times)
        results["steady_plan"] = {
            "decisions": len(second.decisions),
            "status": dict(Counter(d.status for d in second.decisions)),
        }
        state.close()
    del plan

    # ── (B) and (C): the conditions over the facts frame ──
    facts = facts_frame(engine, base, now)
    schema = dict(facts.schema)

    def engine_select() -> pl.DataFrame:
        return facts.select(to_expression(c, schema, now).alias(name) for name, c in rules)

    def hand_select() -> pl.DataFrame:
        return facts.select(hand_expression(c, schema, now).alias(name) for name, c in rules)

    print(f"(B) to_expression and (C) hand-written polars: {r} conditions ...")
    times_b, chosen = timed(engine_select, args.repeat)
    times_c, hand = timed(hand_select, args.repeat)
    differ = {name: int((chosen[name] != hand[name]).sum()) for name, _ in rules}
    row("B", "(B) to_expression, one facts.select", times_b, n * r, mismatches=sum(differ.values()))
    row("C", "(C) hand-written polars, same select", times_c, n * r)
    results["true_share"] = {name: round(chosen[name].mean(), 4) for name, _ in rules}
    results["b_c_mismatches"] = {k: v for k, v in differ.items() if v}

    # ── (D) and (E): per customer, on a sample ──
    rng = np.random.default_rng(args.seed)
    size = min(args.sample, n)
    picked = np.sort(rng.choice(n, size=size, replace=False))
    sample = facts[picked]
    expected = chosen[picked].rows()
    conditions = [c for _, c in rules]

    def compare(answers: list[list[bool]]) -> int:
        return sum(
            a != e for got, want in zip(answers, expected, strict=False)
            for a, e in zip(got, want, strict=True)
        )  # fmt: skip

    print(f"(D) conditions.check on {size:,} customers ...")
    dicts = sample.to_dicts()
    times, answers = timed(
        lambda: [[check(c, one, now).passed for c in conditions] for one in dicts],
        args.slow_repeat,
    )
    row("D", "(D) conditions.check, plain Python", times, size * r, sample=size,
        mismatches=compare(answers))  # fmt: skip

    texts = [text_expression(c, now) for c in conditions]
    results["texts"] = dict(zip((name for name, _ in rules), texts, strict=True))
    names = sorted(set().union(*(fact_names(c) for c in conditions)))
    contexts = text_contexts(sample, names)
    try:
        import zen

        print(f"(E) ZEN on {size:,} customers ...")
        compiled = [zen.compile_expression(t) for t in texts]
        times, answers = timed(
            lambda: [[e.evaluate(ctx) for e in compiled] for ctx in contexts], args.slow_repeat
        )
        row("E.zen", "(E) zen compiled expressions", times, size * r, sample=size,
            mismatches=compare(answers))  # fmt: skip
        decision = zen.ZenEngine().create_decision(zen_decision_content(texts))
        times, outputs = timed(
            lambda: [decision.evaluate(ctx)["result"] for ctx in contexts], args.slow_repeat
        )
        answers = [[out[f"r{i}"] for i in range(r)] for out in outputs]
        row("E.zen-jdm", "(E) zen JDM decision, 1 expression node", times, size * r,
            sample=size, mismatches=compare(answers))  # fmt: skip
    except Exception as error:  # a comparison must not stop the benchmark
        results["zen_error"] = str(error)[:500]
        print(f"  zen failed: {str(error)[:200]}")
    try:
        import rule_engine

        small = min(args.rule_engine_sample, size)
        print(f"(E) rule-engine on {small:,} customers ...")
        compiled_rules = [rule_engine.Rule(t) for t in texts]
        few = contexts[:small]
        times, answers = timed(
            lambda: [[rule.matches(ctx) for rule in compiled_rules] for ctx in few],
            args.slow_repeat,
        )
        row("E.rule-engine", "(E) rule-engine Rule.matches", times, small * r, sample=small,
            mismatches=compare(answers))  # fmt: skip
    except Exception as error:
        results["rule_engine_error"] = str(error)[:500]
        print(f"  rule-engine failed: {str(error)[:200]}")
    results["rss_after_conditions_mb"] = round(peak_rss_mb())

    # ── the table and the targets ──
    by_key = {entry["key"]: entry for entry in rows}
    plan_s = by_key["A"]["median_s"]
    ratio = by_key["B"]["median_s"] / by_key["C"]["median_s"]
    results["table"] = rows
    results["targets"] = {
        "plan_s": plan_s,
        "plan_target_s": PLAN_TARGET_S,
        "plan_ok": plan_s <= PLAN_TARGET_S,
        "b_over_c": ratio,
        "ratio_target": RATIO_TARGET,
        "ratio_ok": ratio <= RATIO_TARGET,
    }
    print_table(rows, n, r, breakdown, results)
    ok = plan_s <= PLAN_TARGET_S and ratio <= RATIO_TARGET
    print(
        f"\ntarget (A) plan <= {PLAN_TARGET_S:.0f} s: {plan_s:.2f} s "
        f"{'MET' if plan_s <= PLAN_TARGET_S else 'MISSED'}; "
        f"target B/C <= {RATIO_TARGET:.0f}x: {ratio:.2f}x "
        f"{'MET' if ratio <= RATIO_TARGET else 'MISSED'}"
    )

    # ── hotspots ──
    if (not ok or args.profile) and not args.no_profile:
        if plan_s > PLAN_TARGET_S or args.profile:
            print("\nsampling one plan with py-spy (wall clock) ...")
            results["py_spy"] = spy_plan(engine, base, now, args.top)
            print_spy(results["py_spy"])
            if args.cprofile or "error" in results["py_spy"]:
                print(
                    "\nprofiling one plan (cProfile; its overhead inflates Python-heavy parts) ..."
                )
                results["profile"] = profile_plan(engine, base, now, args.top)
                print_profile(results["profile"])
        if ratio > RATIO_TARGET or args.profile:
            results["per_rule"] = per_rule(facts, schema, rules, now, args.top)
    return 0 if ok else 1


def per_rule(
    facts: pl.DataFrame,
    schema: dict[str, Any],
    rules: list[tuple[str, dict[str, Any]]],
    now: dt.datetime,
    top: int,
) -> list[dict[str, Any]]:
    """Each condition alone, engine vs hand-written: which ones cost the difference."""
    found = []
    for name, cond in rules:
        b, _ = timed(lambda c=cond: facts.select(to_expression(c, schema, now)), 5)
        c_, _ = timed(lambda c=cond: facts.select(hand_expression(c, schema, now)), 5)
        found.append({"rule": name, "b_s": median(b), "c_s": median(c_)})
    found.sort(key=lambda x: x["c_s"] - x["b_s"])
    print("\nper condition, engine (B) vs hand-written (C), the largest differences:")
    for item in sorted(found, key=lambda x: x["b_s"] - x["c_s"], reverse=True)[:top]:
        print(
            f"  {item['rule']:<40} B {item['b_s'] * 1e3:7.1f} ms  C {item['c_s'] * 1e3:7.1f} ms"
            f"  ({item['b_s'] / item['c_s']:.1f}x)"
        )
    return found


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 100 else f"{seconds:,.0f}"


def print_table(
    rows: list[dict[str, Any]],
    n: int,
    r: int,
    breakdown: dict[str, Any],
    results: dict[str, Any],
) -> None:
    print(f"\n{n:,} customers, {results['playbooks']} playbooks, {r} conditions (audience and")
    print("becomes of each playbook that has one), input in memory; medians of the runs")
    header = f"{'':<50} {'median s':>9} {'min s':>9} {'runs':>4} {'evals/s':>13} {'1M x rules':>11}"
    print(header)
    print("-" * len(header))
    for entry in rows:
        rate = f"{entry['evals_per_s']:,.0f}" if "evals_per_s" in entry else ""
        whole = (
            f"{entry['extrapolated_s'] * 1_000_000 / n:,.1f} s" if "evals_per_s" in entry else ""
        )
        print(
            f"{entry['label']:<50} {_fmt_s(entry['median_s']):>9} {_fmt_s(entry['min_s']):>9} "
            f"{entry['runs']:>4} {rate:>13} {whole:>11}"
        )
    print("evals/s: customer x condition evaluations a second; 1M x rules: the time for 1,000,000")
    print(
        f"customers x {r} conditions at that rate (D and E run on a sample, so it is extrapolated)"
    )
    for entry in rows:
        if entry.get("mismatches"):
            print(f"  ! {entry['label'].strip()}: {entry['mismatches']} answers differ from (B)")
    b = next(e for e in rows if e["key"] == "B")
    for entry in rows:
        if entry["key"] == "C":
            print(
                f"  B/C = {b['median_s'] / entry['median_s']:.2f}x (engine / hand-written polars)"
            )
        elif entry["key"].startswith(("D", "E")):
            slower = entry["extrapolated_s"] / b["extrapolated_s"]
            print(f"  {entry['label'][4:].strip()}: {slower:,.0f}x the time of (B) per evaluation")
    print(
        f"\none first-run plan, in parts: {breakdown['total_s']:.2f} s = facts at now "
        f"{breakdown['facts_now_s']:.2f} s + facts at earlier moments "
        f"{breakdown['facts_past_s']:.2f} s + guards {breakdown['guard_s']:.2f} s + triggers, "
        f"audiences, limits, steps {breakdown['rest_s']:.2f} s (= decide "
        f"{breakdown['decide_s']:.2f} s) + rendering {breakdown['render_s']:.2f} s"
    )
    print(
        f"  events numbered by customer row when the base is loaded: {breakdown['index_s']:.2f} s"
    )
    print(f"  facts computed at: {', '.join(breakdown['facts_moments'])}")
    print(
        f"  decided: {breakdown['fired']:,} firings, {breakdown['decisions']:,} decisions "
        f"{breakdown['status']}, {breakdown['notifications']:,} notifications"
    )
    if "steady_plan" in results:
        print(
            f"  next hour: recording the first plan took {results['record_first_plan_s']} s "
            f"(state rows {results['state_rows']}); it decided {results['steady_plan']['status']}"
        )


def print_profile(profile: dict[str, Any]) -> None:
    print("courtship functions by cumulative time (one plan):")
    for item in profile["courtship_by_cumulative"]:
        print(
            f"  {item['cum_s']:8.3f} s cum {item['own_s']:8.3f} s own {item['calls']:>9,}", end=""
        )
        print(f"  {item['where']}")
    print("all functions by own time:")
    for item in profile["by_own_time"]:
        print(
            f"  {item['own_s']:8.3f} s own {item['cum_s']:8.3f} s cum {item['calls']:>9,}", end=""
        )
        print(f"  {item['where']}")


def print_spy(spy: dict[str, Any]) -> None:
    if "error" in spy:
        print(f"  py-spy: {spy['error']}")
        return
    print(f"  {spy['samples']:,} samples over {spy['plan_s']:.1f} s of plan")
    for title, key in (
        ("charged to the deepest line of courtship's code (polars' native time included)", "lines"),
        ("courtship functions on the stack (inclusive)", "functions"),
        ("innermost Python frame (own time; a polars wrapper = native polars work)", "own"),
    ):
        print(f"  {title}:")
        for item in spy[key]:
            print(f"    {item['share'] * 100:5.1f} %  {item['s']:8.2f} s  {item['where']}")


if __name__ == "__main__":
    sys.exit(main())
