"""The reasoning lint uses is sound: whenever it says conditions can never all be true, no
customer makes them all true under the engine's own evaluation (``engine.conditions.check``);
and whenever a customer does, it says they can be (or that it could not decide)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from courtship.engine.conditions import check
from courtship.lint.solver import Domains, Verdict, satisfiable

NOW = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
DOMAINS = Domains(integers=frozenset({"count"}), enums={"stage": frozenset({"a", "b", "c"})})

counts = st.integers(min_value=0, max_value=6)
amounts = st.sampled_from([0, 0.5, 1, 2.5, 3, 4.75])
stages = st.sampled_from(["a", "b", "c"])
dates = st.sampled_from([NOW.date() - dt.timedelta(days=n) for n in (0, 3, 10, 45, 400)])


def number_leaf(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict]:
    single = st.tuples(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), values).map(
        lambda pair: {"fact": name, pair[0]: pair[1]}
    )
    between = st.tuples(values, values).map(lambda p: {"fact": name, "between": sorted(p)})
    listed = st.tuples(st.sampled_from(["in", "not_in"]), st.lists(values, min_size=1, max_size=3))
    return st.one_of(single, between, listed.map(lambda pair: {"fact": name, pair[0]: pair[1]}))


leaves = st.one_of(
    number_leaf("count", counts),
    number_leaf("amount", amounts),
    st.tuples(st.sampled_from(["eq", "ne"]), stages).map(lambda p: {"fact": "stage", p[0]: p[1]}),
    st.tuples(st.sampled_from(["in", "not_in"]), st.lists(stages, min_size=1, max_size=3)).map(
        lambda p: {"fact": "stage", p[0]: p[1]}
    ),
    st.booleans().map(lambda b: {"fact": "vip", "eq": b}),
    st.sampled_from(["vip", "new"]).map(lambda tag: {"tag": tag}),
    st.tuples(st.sampled_from(["count", "amount", "stage", "seen"]), st.booleans()).map(
        lambda p: {"fact": p[0], "exists": p[1]}
    ),
    st.sampled_from(["1d", "7d", "30d", "365d"]).map(lambda d: {"fact": "seen", "within": d}),
    st.sampled_from([NOW.date() - dt.timedelta(days=n) for n in (5, 50)]).map(
        lambda day: {"fact": "seen", "gt": day.isoformat()}
    ),
    st.just({"fact": "amount", "gt": {"fact": "count", "times": 2}}),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=8,
)
customers = st.fixed_dictionaries(
    {
        "count": st.none() | counts,
        "amount": st.none() | amounts,
        "stage": st.none() | stages,
        "vip": st.none() | st.booleans(),
        "seen": st.none() | dates,
        "tags": st.lists(st.sampled_from(["vip", "new"]), unique=True),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(conditions, min_size=1, max_size=2), customers)
def test_never_true_is_never_said_of_what_a_customer_meets(
    tests: list[dict], customer: dict
) -> None:
    meets = all(check(condition, customer, NOW).passed for condition in tests)
    if meets:
        assert satisfiable(*tests, domains=DOMAINS) is not Verdict.UNSAT, (tests, customer)
