"""Whether conditions can be true: decided by reasoning, never by sampling customers.

A condition (``all``/``any``/``not`` over tests of facts and tags) is put in negation normal
form, then in disjunctive normal form — a list of conjunctions of literals — with a bound on
its size. Each conjunction is decided fact by fact, with the engine's meaning of a test
(``courtship.engine.conditions``): a test of a fact without a value is false, so ``not`` of
a test holds for a customer without that fact.

- numbers and dates (``YYYY-MM-DD``) take intervals: ``gt``, ``gte``, ``lt``, ``lte``,
  ``between``, ``eq``, ``ne``, ``in``, ``not_in``;
- text and true/false take sets: ``eq``, ``ne``, ``in``, ``not_in``;
- ``within: 30d`` is an interval of the fact's age in days (a second axis of a date fact:
  a date fact tested both ways is left undecided);
- ``tag`` and ``contains`` are a yes/no each;
- ``exists`` says whether the fact has a value.

What the facts catalogue says of a fact narrows it further (:class:`Domains`): a whole-number
fact (``orders_count``) has no value strictly between 1 and 2, and an enum fact (``stage``) only
its listed values.

A test whose value is another fact (``{fact: usual_order_interval, times: 2}``) has no constant
bound: it is satisfiable alone, but a conjunction where its facts are also tested elsewhere is
left undecided (``UNKNOWN``), never guessed. So is anything beyond the size bound.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from courtship.playbook import parse_duration

#: The most conjunctions a condition's normal form may have before it is left undecided.
DNF_BOUND = 512


@dataclass(frozen=True)
class Domains:
    """What the catalogue says of facts: which are whole numbers, which take listed values."""

    integers: frozenset[str] = frozenset()
    enums: Mapping[str, frozenset[Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, catalogue: Any) -> Domains:
        facts = getattr(catalogue, "facts", {})
        return cls(
            frozenset(name for name, spec in facts.items() if spec.type == "integer"),
            {
                name: frozenset(spec.values)
                for name, spec in facts.items()
                if spec.type == "enum" and spec.values
            },
        )


class Verdict(enum.Enum):
    SAT = "can be true"
    UNSAT = "can never be true"
    UNKNOWN = "could not decide"


@dataclass(frozen=True)
class Literal:
    """One test, true (``positive``) or negated. ``key`` names what it constrains."""

    kind: str  # "value", "age", "exists", "flag", "opaque"
    fact: str
    op: str
    value: Any
    positive: bool = True
    refs: frozenset[str] = frozenset()

    def negated(self) -> Literal:
        return Literal(self.kind, self.fact, self.op, self.value, not self.positive, self.refs)


class TooBig(Exception):
    """The normal form would exceed :data:`DNF_BOUND`."""


# ── normal forms ─────────────────────────────────────────────────────────────

Conjunction = tuple[Literal, ...]


def dnf(condition: Mapping[str, Any], positive: bool = True) -> list[Conjunction]:
    """The condition as a disjunction of conjunctions; raises :class:`TooBig` past the bound."""
    if "not" in condition:
        return dnf(condition["not"], not positive)
    if "all" in condition or "any" in condition:
        children = condition.get("all", condition.get("any"))
        conjunctive = ("all" in condition) == positive  # De Morgan: not-any is all-not
        parts = [dnf(child, positive) for child in children]
        if conjunctive:
            return product(parts)
        out = [term for part in parts for term in part]
        if len(out) > DNF_BOUND:
            raise TooBig
        return out
    literal = leaf_literal(condition)
    return [(literal if positive else literal.negated(),)]


def product(parts: Iterable[list[Conjunction]]) -> list[Conjunction]:
    """Every way of taking one conjunction from each part, joined."""
    out: list[Conjunction] = [()]
    for part in parts:
        if len(out) * len(part) > DNF_BOUND:
            raise TooBig
        out = [left + right for left in out for right in part]
    return out


def _refs(value: Any) -> frozenset[str]:
    if isinstance(value, Mapping) and isinstance(value.get("fact"), str):
        return frozenset({value["fact"]})
    if isinstance(value, list):
        return frozenset().union(*(_refs(item) for item in value))
    return frozenset()


def leaf_literal(leaf: Mapping[str, Any]) -> Literal:
    if "tag" in leaf:
        return Literal("flag", "tags", "contains", str(leaf["tag"]))
    name = str(leaf.get("fact"))
    op, value = next(((k, v) for k, v in leaf.items() if k != "fact"), ("?", None))
    refs = _refs(value)
    if refs:
        return Literal("opaque", name, op, None, refs=refs | {name})
    if op == "exists":
        return Literal("exists", name, op, bool(value))
    if op == "contains":
        return Literal("flag", name, op, value)
    if op == "within":
        try:
            days = parse_duration(str(value)) / dt.timedelta(days=1)
        except ValueError:
            return Literal("opaque", name, op, None, refs=frozenset({name}))
        return Literal("age", name, "between", (0.0, days))
    return Literal("value", name, op, value)


# ── values of one fact ───────────────────────────────────────────────────────

Interval = tuple[float, bool, float, bool]  # low, low included, high, high included


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return float(dt.date.fromisoformat(value).toordinal())
        except ValueError:
            return None
    return None


def _intersect(left: list[Interval], right: list[Interval]) -> list[Interval]:
    out = []
    for lo1, lc1, hi1, hc1 in left:
        for lo2, lc2, hi2, hc2 in right:
            lo, lc = (lo1, lc1) if lo1 > lo2 else (lo2, lc2) if lo2 > lo1 else (lo1, lc1 and lc2)
            hi, hc = (hi1, hc1) if hi1 < hi2 else (hi2, hc2) if hi2 < hi1 else (hi1, hc1 and hc2)
            if lo < hi or (lo == hi and lc and hc and math.isfinite(lo)):
                out.append((lo, lc, hi, hc))
    return out


def _complement(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    low, low_in = -math.inf, False
    for lo, lc, hi, hc in sorted(intervals):
        if low < lo or (low == lo and low_in and not lc):
            out.append((low, low_in, lo, not lc))
        if hi > low or (hi == low and hc):
            low, low_in = hi, not hc
    if low < math.inf:
        out.append((low, low_in, math.inf, False))
    return out


_ALL: list[Interval] = [(-math.inf, False, math.inf, False)]


def _intervals(op: str, value: Any) -> list[Interval] | None:
    """The numbers ``op value`` holds for, or None when it is no numeric test."""
    if op == "between":
        low, high = (_number(v) for v in value) if isinstance(value, list) else (None, None)
        return (
            None
            if low is None or high is None
            else _intersect([(low, True, math.inf, False)], [(-math.inf, False, high, True)])
        )
    if op in ("in", "not_in"):
        numbers = [_number(v) for v in value] if isinstance(value, list) else [None]
        if any(n is None for n in numbers):
            return None
        points = [(n, True, n, True) for n in numbers if n is not None]
        return points if op == "in" else _complement(points)
    number = _number(value)
    if number is None:
        return None
    return {
        "eq": [(number, True, number, True)],
        "ne": _complement([(number, True, number, True)]),
        "gt": [(number, False, math.inf, False)],
        "gte": [(number, True, math.inf, False)],
        "lt": [(-math.inf, False, number, False)],
        "lte": [(-math.inf, False, number, True)],
    }.get(op)


def _members(op: str, value: Any) -> tuple[frozenset[Any], bool] | None:
    """(values, included): the text or true/false values a test holds for, as a set or its
    complement; None for a test these cannot decide (text in order)."""
    if op in ("eq", "ne"):
        return frozenset({value}), op == "eq"
    if op in ("in", "not_in") and isinstance(value, list):
        return frozenset(value), op == "in"
    return None


@dataclass
class _Fact:
    """What a conjunction allows for one fact: no value at all, and values on each axis."""

    null_ok: bool = True
    numbers: dict[str, list[Interval]] = field(default_factory=dict)  # "value" / "age" axes
    included: frozenset[Any] | None = None  # text values allowed (None: any)
    excluded: frozenset[Any] = frozenset()
    no_value_ok: bool = True  # False once a value is required on some axis
    values_ok: bool = True  # False once the fact must have no value
    undecided: bool = False

    def verdict(self, integer: bool = False, listed: frozenset[Any] | None = None) -> Verdict:
        if integer:
            self.numbers = {axis: _whole(spans) for axis, spans in self.numbers.items()}
        if listed is not None and not self.numbers:
            self.included = listed if self.included is None else self.included & listed
        has_values = self.values_ok and all(self.numbers.values())
        if self.included is not None:
            has_values = has_values and bool(self.included - self.excluded)
        if self.numbers and self.included is not None:
            has_values = False  # one fact is numbers or text, not both
        if self.null_ok:
            return Verdict.SAT
        if not has_values:
            return Verdict.UNSAT
        if self.undecided or len(self.numbers) > 1:
            return Verdict.UNKNOWN
        return Verdict.SAT


def _whole(intervals: list[Interval]) -> list[Interval]:
    """The intervals that hold a whole number."""
    out = []
    for lo, lc, hi, hc in intervals:
        if not math.isfinite(lo) or not math.isfinite(hi):
            out.append((lo, lc, hi, hc))
            continue
        first = math.ceil(lo) if lc else math.floor(lo) + 1
        if first < hi or (first == hi and hc):
            out.append((lo, lc, hi, hc))
    return out


def decide(conjunction: Conjunction, domains: Domains | None = None) -> Verdict:
    """Whether some customer can make every literal true at once."""
    facts: dict[str, _Fact] = {}
    flags: dict[tuple[str, Any], bool] = {}
    opaque_facts: list[frozenset[str]] = []
    for literal in conjunction:
        if literal.kind == "opaque":
            opaque_facts.append(literal.refs)
            continue
        if literal.kind == "flag":
            key = (literal.fact, literal.value)
            if flags.setdefault(key, literal.positive) != literal.positive:
                return Verdict.UNSAT
            continue
        fact = facts.setdefault(literal.fact, _Fact())
        if literal.kind == "exists":
            wants_value = literal.value == literal.positive
            if wants_value:
                fact.null_ok = False
            else:
                fact.values_ok = False
            continue
        axis = literal.kind  # "value" or "age"
        if literal.kind == "age":
            low, high = literal.value
            allowed: list[Interval] | None = [(low, True, high, True)]
        else:
            allowed = _intervals(literal.op, literal.value)
        members = None if allowed is not None else _members(literal.op, literal.value)
        if allowed is None and members is None:
            fact.undecided = True
            if literal.positive:
                fact.null_ok = False
            continue
        if literal.positive:
            fact.null_ok = False
        if allowed is not None:
            if not literal.positive:
                allowed = _complement(allowed)
            fact.numbers[axis] = _intersect(fact.numbers.get(axis, _ALL), allowed)
        elif members is not None:
            values, included = members
            if not literal.positive:
                included = not included
            if included:
                fact.included = values if fact.included is None else fact.included & values
            else:
                fact.excluded = fact.excluded | values
    domains = domains or Domains()
    verdicts = [
        fact.verdict(name in domains.integers, domains.enums.get(name))
        for name, fact in facts.items()
    ]
    if Verdict.UNSAT in verdicts:
        return Verdict.UNSAT
    tested = set(facts)
    for refs in opaque_facts:  # a comparison with another fact: free alone, unknown beside
        others = [r for r in opaque_facts if r is not refs and r & refs]
        if refs & tested or others:
            verdicts.append(Verdict.UNKNOWN)
    return Verdict.UNKNOWN if Verdict.UNKNOWN in verdicts else Verdict.SAT


def satisfiable(*conditions: Mapping[str, Any] | None, domains: Domains | None = None) -> Verdict:
    """Whether all the conditions can hold at once for one customer (None: no condition)."""
    try:
        terms = product(dnf(c) for c in conditions if c is not None)
    except TooBig:
        return Verdict.UNKNOWN
    verdicts = {decide(term, domains) for term in terms}
    if Verdict.SAT in verdicts:
        return Verdict.SAT
    if Verdict.UNKNOWN in verdicts:
        return Verdict.UNKNOWN
    return Verdict.UNSAT
