"""Experiments: who hears which variant of a message, who is held out of a playbook, who is in
the project's control group — each a hash of the customer (and the playbook), so the same
customer is in the same arm at every run — and what each arm achieved (``courtship results``).

The lift of a variant is the difference of its conversion rate and the baseline's (the
playbook's holdout, else the project's control group), with a 95 % interval by Newcombe's
hybrid score method (his method 10: from the two Wilson score intervals), which stays inside
[-1, 1] and behaves with few conversions, where the Wald interval does not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

#: The arm of a customer held out of a playbook, and of one in the project's control group.
HOLDOUT = "holdout"
CONTROL = "control"
#: The arm of a customer who received a message of a playbook without variants.
MESSAGE = "message"
#: The normal quantile of a two-sided 95 % interval.
Z95 = statistics.NormalDist().inv_cdf(0.975)


def _unit(*parts: str) -> float:
    """A number in [0, 1) that depends only on ``parts``: the same at every run."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_control_group(customer_id: str, control: float) -> bool:
    """Whether the customer is in the project's control group of share ``control``."""
    return control > 0 and _unit("control-group", customer_id) < control


def held_out(playbook: str, customer_id: str, holdout: float) -> bool:
    """Whether the customer is in the playbook's holdout of share ``holdout``."""
    return holdout > 0 and _unit("holdout", playbook, customer_id) < holdout


def variant_of(
    playbook: str, step_id: str, customer_id: str, variants: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any]:
    """The variant the customer gets, by weight (default 1), from a hash of the playbook, the
    step and the customer."""
    weights = [float(v.get("weight", 1)) for v in variants]
    point = _unit("variant", playbook, step_id, customer_id) * sum(weights)
    for variant, weight in zip(variants, weights, strict=True):
        if point < weight:
            return variant
        point -= weight
    return variants[-1]


# ── results ──────────────────────────────────────────────────────────────
def wilson(converted: int, reached: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    if reached == 0:
        return 0.0, 1.0
    p = converted / reached
    centre = p + z * z / (2 * reached)
    spread = z * math.sqrt(p * (1 - p) / reached + z * z / (4 * reached * reached))
    denominator = 1 + z * z / reached
    return (centre - spread) / denominator, (centre + spread) / denominator


def lift_interval(
    converted: int, reached: int, base_converted: int, base_reached: int, z: float = Z95
) -> tuple[float, float, float]:
    """(difference of rates, low, high): Newcombe's hybrid score interval for p1 - p2."""
    p1, p2 = converted / reached, base_converted / base_reached
    l1, u1 = wilson(converted, reached, z)
    l2, u2 = wilson(base_converted, base_reached, z)
    d = p1 - p2
    return (
        d,
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def results(
    playbook: str,
    goal: Mapping[str, Any] | None,
    assignments: pl.DataFrame,
    events: pl.DataFrame,
    within: dt.timedelta | None,
) -> dict[str, Any]:
    """What each arm of a playbook achieved: per arm, the customers reached (sent a message,
    or held out), those who converted (an event of the goal's type within ``within`` after
    their first assignment), the rate, and the lift against the baseline with its interval.
    ``assignments``: the state store's rows (playbook, customer_id, step_id, arm, at)."""
    # Per customer, their arm: held out (or in the control group) first, then a split's arm
    # or a variant, then a plain message; the earliest of these.
    rank = (
        pl.when(pl.col("arm").is_in([HOLDOUT, CONTROL]))
        .then(0)
        .when(pl.col("arm") == MESSAGE)
        .then(2)
        .otherwise(1)
    )
    mine = (
        assignments.filter(pl.col("playbook") == playbook)
        .with_columns(rank.alias("_rank"))
        .sort("_rank", "at", "step_id")
        .unique("customer_id", keep="first", maintain_order=True)
        .drop("_rank")
    )
    converted: set[str] = set()
    if goal is not None and within is not None and mine.height:
        hits = (
            events.filter(pl.col("type") == goal["event"])
            .select(pl.col("customer_id").cast(pl.String()), "at")
            .join(
                mine.select("customer_id", pl.col("at").cast(events.schema["at"]).alias("_from")),
                on="customer_id",
            )
            .filter((pl.col("at") > pl.col("_from")) & (pl.col("at") <= pl.col("_from") + within))
        )
        converted = set(hits.get_column("customer_id").to_list())
    arms: dict[str, list[int]] = {}
    for customer, arm in mine.select("customer_id", "arm").iter_rows():
        counts = arms.setdefault(arm, [0, 0])
        counts[0] += 1
        counts[1] += customer in converted
    baseline = next((b for b in (HOLDOUT, CONTROL) if arms.get(b, [0])[0] > 0), None)
    rows = []
    for arm in sorted(arms, key=lambda a: (a in (HOLDOUT, CONTROL), a)):
        reached, hit = arms[arm]
        row: dict[str, Any] = {
            "arm": arm,
            "reached": reached,
            "converted": hit if goal is not None else None,
            "rate": hit / reached if goal is not None else None,
            "lift": None,
            "low": None,
            "high": None,
        }
        if goal is not None and baseline is not None and arm not in (HOLDOUT, CONTROL):
            row["lift"], row["low"], row["high"] = lift_interval(
                hit, reached, *arms[baseline][::-1]
            )
        rows.append(row)
    return {
        "playbook": playbook,
        "goal": dict(goal) if goal is not None else None,
        "baseline": baseline,
        "interval": "95% Newcombe hybrid score (difference of proportions)",
        "arms": rows,
    }
