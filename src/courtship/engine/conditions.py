"""Conditions, two ways with one meaning.

- :func:`to_expression` compiles a condition into one polars expression, evaluated column-wise
  over the whole customer base (the engine).
- :func:`check` evaluates it for one customer in plain Python and says which test decided
  (the reference, and what ``explain`` prints).

The meaning, shared by both: a test of a fact with no value (null) is false, except
``exists: false``; ``not`` turns false into true; ``all``/``any`` combine; a value may be another
fact, ``{fact: NAME, times: k, plus: c}``; dates compare with ``YYYY-MM-DD`` literals;
``within: 30d`` holds for a moment or date in the 30 days up to ``now`` (on the UTC date).
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from courtship.playbook import parse_duration

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _literal(value: Any) -> Any:
    """Date literals become dates; everything else stays as written."""
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return value
    return value


def _as_date(value: Any) -> Any:
    return value.date() if isinstance(value, dt.datetime) else value


# ── column-wise ──────────────────────────────────────────────────────────────


def to_expression(
    condition: Mapping[str, Any], schema: Mapping[str, pl.DataType], now: dt.datetime
) -> pl.Expr:
    """One boolean polars expression for ``condition``; never null."""
    if "all" in condition:
        return pl.all_horizontal([to_expression(c, schema, now) for c in condition["all"]])
    if "any" in condition:
        return pl.any_horizontal([to_expression(c, schema, now) for c in condition["any"]])
    if "not" in condition:
        return ~to_expression(condition["not"], schema, now)
    if "tag" in condition:
        return pl.col("tags").list.contains(pl.lit(condition["tag"])).fill_null(False)
    return _leaf_expression(condition, schema, now).fill_null(False)


def _is_temporal(dtype: pl.DataType | None) -> bool:
    return dtype is not None and (dtype == pl.Date or isinstance(dtype, pl.Datetime))


def _operand(value: Any, schema: Mapping[str, pl.DataType], dates: bool) -> pl.Expr:
    if isinstance(value, Mapping):
        expr = pl.col(value["fact"])
        if dates and isinstance(schema.get(value["fact"]), pl.Datetime):
            expr = expr.dt.date()
        if "times" in value:
            expr = expr * value["times"]
        if "plus" in value:
            expr = expr + value["plus"]
        return expr
    return pl.lit(_literal(value))


def _leaf_expression(
    leaf: Mapping[str, Any], schema: Mapping[str, pl.DataType], now: dt.datetime
) -> pl.Expr:
    name = leaf["fact"]
    dtype = schema.get(name)
    column = pl.col(name)
    op, value = next((k, v) for k, v in leaf.items() if k != "fact")
    if op == "exists":
        return column.is_not_null() if value else column.is_null()
    temporal = _is_temporal(dtype)
    if temporal and isinstance(dtype, pl.Datetime):
        column = column.dt.date()
    if op == "within":
        since = (now - parse_duration(value)).date()
        return (column >= since) & (column <= now.date())
    if op in _COMPARE:
        other = _operand(value, schema, temporal)
        return {
            "eq": column.eq,
            "ne": column.ne,
            "gt": column.gt,
            "gte": column.ge,
            "lt": column.lt,
            "lte": column.le,
        }[op](other)
    if op == "between":
        low, high = (_operand(v, schema, temporal) for v in value)
        return (column >= low) & (column <= high)
    if op in ("in", "not_in"):
        listed: Any = [_literal(v) for v in value]
        if dtype is not None and dtype.is_numeric():
            # Numbers compare by value, whole or not: [0, 0.5] holds for 0 and for 0.5.
            column, listed = column.cast(pl.Float64()), [float(v) for v in listed]
        members = column.is_in(listed)
        return members if op == "in" else ~members & column.is_not_null()
    if op == "contains":
        return column.list.contains(pl.lit(value))
    raise ValueError(f"unknown operator {op!r}")  # validation makes this unreachable


# ── one customer, in plain Python ────────────────────────────────────────────


@dataclass
class Outcome:
    """Whether a condition held for one customer, and the tests that decided it."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


def check(condition: Mapping[str, Any], facts: Mapping[str, Any], now: dt.datetime) -> Outcome:
    """Evaluate ``condition`` for one customer's ``facts`` (a row as a dict)."""
    if "all" in condition:
        outcomes = [check(c, facts, now) for c in condition["all"]]
        failed = [o for o in outcomes if not o.passed]
        if failed:
            return Outcome(False, [r for o in failed for r in o.reasons])
        return Outcome(True, [r for o in outcomes for r in o.reasons])
    if "any" in condition:
        outcomes = [check(c, facts, now) for c in condition["any"]]
        passed = [o for o in outcomes if o.passed]
        if passed:
            return Outcome(True, passed[0].reasons)
        return Outcome(False, ["none of: " + "; ".join(r for o in outcomes for r in o.reasons)])
    if "not" in condition:
        inner = check(condition["not"], facts, now)
        return Outcome(not inner.passed, [f"not ({'; '.join(inner.reasons)})"])
    if "tag" in condition:
        tags = facts.get("tags") or []
        has = condition["tag"] in tags
        return Outcome(has, [f"tag {condition['tag']}: {'present' if has else 'absent'}"])
    return _check_leaf(condition, facts, now)


def _resolve(value: Any, facts: Mapping[str, Any], dates: bool) -> Any:
    if isinstance(value, Mapping):
        other = facts.get(value["fact"])
        if other is None:
            return None
        if dates:
            return _as_date(other)
        if "times" in value:
            other = other * value["times"]
        if "plus" in value:
            other = other + value["plus"]
        return other
    return _literal(value)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if value is None:
        return "no value"
    return str(value)


def _check_leaf(leaf: Mapping[str, Any], facts: Mapping[str, Any], now: dt.datetime) -> Outcome:
    name = leaf["fact"]
    op, value = next((k, v) for k, v in leaf.items() if k != "fact")
    actual = facts.get(name)
    written = f"{name} {op} {value if not isinstance(value, Mapping) else _ref_text(value)}"
    if op == "exists":
        passed = (actual is not None) == bool(value)
        return Outcome(passed, [f"{written}: {name} is {_show(actual)}"])
    if actual is None:
        return Outcome(False, [f"{written}: {name} has no value"])
    temporal = isinstance(actual, dt.date)
    if temporal:
        actual = _as_date(actual)
    if op == "within":
        since = (now - parse_duration(value)).date()
        passed = since <= actual <= now.date()
    elif op in _COMPARE:
        other = _resolve(value, facts, temporal)
        passed = other is not None and _COMPARE[op](actual, other)
        if isinstance(value, Mapping):
            written += f" (= {_show(other)})"
    elif op == "between":
        low, high = (_resolve(v, facts, temporal) for v in value)
        passed = low is not None and high is not None and low <= actual <= high
    elif op in ("in", "not_in"):
        members = [_literal(v) for v in value]
        passed = (actual in members) == (op == "in")
    elif op == "contains":
        passed = value in actual
    else:  # pragma: no cover - validation makes this unreachable
        raise ValueError(f"unknown operator {op!r}")
    return Outcome(passed, [f"{written}: {name} is {_show(actual)}"])


def _ref_text(value: Mapping[str, Any]) -> str:
    text = value["fact"]
    if "times" in value:
        text += f" x {value['times']}"
    if "plus" in value:
        text += f" + {value['plus']}"
    return text
