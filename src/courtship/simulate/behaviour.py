"""A simple, seeded model of how customers respond (``courtship simulate --behaviour``).

After each moment, every customer who received at least one message in it (a team
notification does not count) draws, in customer order, from one random generator seeded with
``seed``:

- with probability ``answer`` they write back: an ``inbound_message`` event on the channel of
  their first message;
- with probability ``buy`` they order: an ``order`` event, of the median order amount of the
  base (40 when it has no order), on the ``web`` channel; ``uplift`` plants an effect to
  measure (``courtship results``): a customer who received a message of template ``T`` at this
  moment orders with probability ``buy + uplift[T]`` instead (the largest uplift of their
  messages' templates, at most 1);
- with probability ``refer`` they refer a friend: a ``referral`` event whose friend is another
  customer of the base drawn at random (the model adds no customers).

Each event happens at a random instant within the step after the moment, so the next moment's
triggers see it. Nobody else does anything: customers drift, because time passes and their
facts (``days_since_last_order``, ``lapse_ratio``…) grow.

Journey stages move with it: an order makes a ``new``, ``onboarding``, ``at-risk``, ``lapsed`` or
``churned`` customer ``active``; a referral makes an ``active`` or ``loyal`` customer an
``advocate``; and a customer whose last order becomes ``at_risk_after`` days old during the
simulation goes from ``active``, ``loyal`` or ``advocate`` to ``at-risk``, at ``lapsed_after``
days to ``lapsed``, at ``churned_after`` days to ``churned`` (never upwards). Without
``--behaviour`` the base does not change: the stages are the customer file's.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from courtship.sources import CustomerBase

#: Stages from the most engaged down; drift only moves a customer down this list.
DRIFT = (("at-risk", "at_risk_after"), ("lapsed", "lapsed_after"), ("churned", "churned_after"))
ABOVE = {
    "at-risk": ("active", "loyal", "advocate"),
    "lapsed": ("active", "loyal", "advocate", "at-risk"),
    "churned": ("active", "loyal", "advocate", "at-risk", "lapsed"),
}
BUYING_MAKES_ACTIVE = ("new", "onboarding", "at-risk", "lapsed", "churned")
REFERRING_MAKES_ADVOCATE = ("active", "loyal")
ANSWER_CHANNELS = ("email", "sms", "instagram")


@dataclass(frozen=True)
class Behaviour:
    """The model's rates (per customer reached in a moment) and its seed."""

    answer: float = 0.10
    buy: float = 0.05
    refer: float = 0.02
    seed: int = 1
    at_risk_after: float = 45.0
    lapsed_after: float = 90.0
    churned_after: float = 180.0
    #: template → the extra chance to order of a customer who received it at a moment
    uplift: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("answer", "buy", "refer"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value}: a probability is between 0 and 1")
        for template, value in self.uplift.items():
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"uplift {template}={value}: an uplift is between -1 and 1")


class CustomerModel:
    """Applies a ``Behaviour`` to a customer base, moment after moment."""

    def __init__(self, behaviour: Behaviour, base: CustomerBase) -> None:
        self.behaviour = behaviour
        self.rng = random.Random(behaviour.seed)
        self.ids = base.customers.get_column("customer_id").cast(pl.String).to_list()
        orders = base.events.filter(pl.col("type") == "order")
        median = orders.get_column("amount").drop_nulls().median() if orders.height else None
        self.amount = float(median) if isinstance(median, int | float) else 40.0
        self.previous: dt.datetime | None = None

    def advance(
        self,
        base: CustomerBase,
        moment: dt.datetime,
        step: dt.timedelta,
        delivered: list[tuple[str, str, str, str]],
        received: Mapping[str, set[str]] | None = None,
    ) -> tuple[CustomerBase, Counter[str]]:
        """The base after the customers reached at ``moment`` responded, and what they did."""
        from courtship.sources import CustomerBase

        b = self.behaviour
        first_channel: dict[str, str] = {}
        for customer, _playbook, channel, _category in delivered:
            if channel != "team":
                first_channel.setdefault(customer, channel)
        events: list[dict[str, object]] = []
        did: Counter[str] = Counter()
        buyers: list[str] = []
        referrers: list[str] = []
        for customer in sorted(first_channel):
            if self.rng.random() < b.answer:
                channel = first_channel[customer]
                events.append(
                    self._event(customer, "inbound_message", moment, step)
                    | {"channel": channel if channel in ANSWER_CHANNELS else "email"}
                )
                did["answered"] += 1
            if self.rng.random() < self._buy(received.get(customer) if received else None):
                events.append(
                    self._event(customer, "order", moment, step)
                    | {"amount": self.amount, "channel": "web"}
                )
                buyers.append(customer)
                did["bought"] += 1
            if self.rng.random() < b.refer and len(self.ids) > 1:
                friend = customer
                while friend == customer:
                    friend = self.rng.choice(self.ids)
                events.append(
                    self._event(customer, "referral", moment, step) | {"friend_id": friend}
                )
                referrers.append(customer)
                did["referred"] += 1
        customers = self._stages(base, moment, buyers, referrers)
        all_events = base.events
        if events:
            fresh = pl.DataFrame(
                events, schema={k: v for k, v in base.events.schema.items() if k in EVENT_KEYS}
            )
            all_events = pl.concat([base.events, fresh], how="diagonal_relaxed")
        self.previous = moment
        if customers is base.customers and all_events is base.events:
            return base, did
        return CustomerBase(customers, all_events), did

    def _buy(self, templates: set[str] | None) -> float:
        """The chance to order of a customer who received messages of ``templates``."""
        uplift = self.behaviour.uplift
        extra = [uplift[t] for t in templates or () if t in uplift]
        return min(max(self.behaviour.buy + max(extra, default=0.0), 0.0), 1.0)

    def _event(
        self, customer: str, kind: str, moment: dt.datetime, step: dt.timedelta
    ) -> dict[str, object]:
        # in (moment, moment + step]: after this moment, seen by the next
        return {
            "customer_id": customer,
            "type": kind,
            "at": moment + step * (1 - self.rng.random()),
        }

    def _stages(
        self, base: CustomerBase, moment: dt.datetime, buyers: list[str], referrers: list[str]
    ) -> pl.DataFrame:
        customers = base.customers
        stage = pl.col("stage")
        if self.previous is not None:
            last = (
                base.events.filter(pl.col("type") == "order")
                .group_by(pl.col("customer_id").cast(pl.String))
                .agg(pl.col("at").max().alias("_last_order"))
            )
            now_days = (pl.lit(moment) - pl.col("_last_order")).dt.total_seconds() / 86_400
            then_days = (pl.lit(self.previous) - pl.col("_last_order")).dt.total_seconds() / 86_400
            customers = customers.join(last, on="customer_id", how="left")
            for target, setting in DRIFT:
                days = getattr(self.behaviour, setting)
                crossed = (then_days < days) & (now_days >= days) & stage.is_in(ABOVE[target])
                customers = customers.with_columns(
                    pl.when(crossed.fill_null(False))
                    .then(pl.lit(target))
                    .otherwise(stage)
                    .alias("stage")
                )
            customers = customers.drop("_last_order")
        if buyers:
            bought = pl.col("customer_id").is_in(buyers) & stage.is_in(BUYING_MAKES_ACTIVE)
            customers = customers.with_columns(
                pl.when(bought).then(pl.lit("active")).otherwise(stage).alias("stage")
            )
        if referrers:
            referred = pl.col("customer_id").is_in(referrers) & stage.is_in(
                REFERRING_MAKES_ADVOCATE
            )
            customers = customers.with_columns(
                pl.when(referred).then(pl.lit("advocate")).otherwise(stage).alias("stage")
            )
        if customers.equals(base.customers):
            return base.customers
        return customers.select(base.customers.columns).cast(dict(base.customers.schema))


EVENT_KEYS = ("customer_id", "type", "at", "channel", "amount", "friend_id")
