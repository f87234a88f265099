"""The facts engine: every fact of the catalogue, for the whole customer base, at a moment ``now``.

Everything is column-wise. What does not depend on the moment is done once per loaded base and
kept with it: events numbered by their customer's row and sorted in customer order
(``event_rows``), referrals numbered the same way (``referral_rows``), the referral graph as a
table of its edges (``referral_graph``). A moment's facts are then passes over sorted rows,
joined back onto the customers by row number. Work that depends on a time zone or a persona is
done once per zone or persona (there are few), never once per customer. ``FactHistory`` gives
the facts at now and, for ``becomes`` on a first run, at earlier moments of the same plan.

What each fact means is in ``docs/data.md`` ("How facts are computed at now"), and the
decisions taken where it left room in its last section, "Facts engine".
"""

from __future__ import annotations

import gc
from calendar import isleap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property, partial
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import polars as pl
from polars.lazyframe.group_by import LazyGroupBy

from courtship.catalogue import Catalogue, builtin_catalogue
from courtship.engine.carry import Aggregates, carry_on, kept_aggregates, moved, patched
from courtship.learn import Learning
from courtship.learn.churn import CHURN_FACTS, CHURN_INPUTS, churn_risk
from courtship.learn.facts import LEARNED_FACTS, LEARNING_INPUTS, learned_facts
from courtship.learn.preferences import (
    PREFERENCE_FACTS,
    PREFERENCE_INPUTS,
    activity_hours,
    answered_messages,
    preference_facts,
)
from courtship.sources import (
    CUSTOMER_SCHEMA,
    EVENT_SCHEMA,
    UTC_DATETIME,
    CustomerBase,
    check_other_columns,
    fact_from_text,
    is_time_zone,
    type_declared_facts,
)

#: The polars type of each catalogue type.
FACT_DTYPES: dict[str, pl.DataType] = {
    "number": pl.Float64(),
    "integer": pl.Int64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "datetime": UTC_DATETIME,
    "list": pl.List(pl.String()),
    "string": pl.String(),
    "enum": pl.String(),
}

#: Columns next to the facts: the customer's local calendar and clock at ``now``.
LOCAL_COLUMNS: dict[str, pl.DataType] = {
    "local_date": pl.Date(),
    "local_time": pl.Time(),
    "utc_offset_minutes": pl.Int32(),
}

#: The event types the engine reads; every other type is left to triggers and filters.
EVENT_KINDS: tuple[str, ...] = (
    "order",
    "visit",
    "inbound_message",
    "reply",
    "referral",
    "sent",
    "signup",
)
KIND = pl.Enum(EVENT_KINDS)
#: The events' columns the engine reads, as it holds them: the channel as a category (4 bytes
#: an event, not 16: the index lives through the whole run).
EVENT_COLUMNS: dict[str, pl.DataType] = {
    name: EVENT_SCHEMA[name]
    for name in ("customer_id", "type", "at", "channel", "amount", "friend_id")
} | {"channel": pl.Categorical()}
AT_RISK_STAGES: tuple[str, ...] = ("at-risk", "lapsed", "churned")
ORDER_WINDOW = timedelta(days=90)
MESSAGE_WINDOW = timedelta(days=30)
#: The counting windows of the aggregates, by kind of event.
WINDOWS: dict[str, timedelta] = {"order": ORDER_WINDOW, "sent": MESSAGE_WINDOW}
MICROSECONDS_PER_DAY = 86_400_000_000
MICROSECONDS_PER_HOUR = 3_600_000_000
#: Columns holding a day and an hour in µs on every row. Polars divides by a constant through
#: its reciprocal, one unit in the last place off (9e9 / 8.64e10 gives 0.10416666666666666);
#: dividing column by column is exact, and a fact compared with ``eq`` must be exact.
DAY, HOUR = "_day_us", "_hour_us"
#: The birth year that means "year unknown".
UNKNOWN_YEAR = 1900

#: The customer's row number: the key every per-customer result is joined on.
ROW = "_row"
#: The number of the customer's local date among the distinct local dates at ``now``.
TODAY = "_today"
#: What ``set`` steps recorded: one row per customer and fact, the latest value.
LATEST_SCHEMA: dict[str, pl.DataType] = {
    ROW: pl.UInt32(),
    "customer_id": pl.String(),
    "fact": pl.String(),
    "value": pl.String(),
    "type": pl.String(),
}
#: Facts computed from other facts, once those are known.
RHYTHM_FACTS: tuple[str, ...] = (
    "lapse_ratio",
    "persona_order_interval",
    "persona_lapse_ratio",
    "mean_lapse_ratio",
    "persona_mean_order_interval",
    "persona_mean_lapse_ratio",
)
#: The learned facts fitted on the whole base (the default).
WHOLE_BASE = Learning()
#: The facts rhythm facts are computed from.
RHYTHM_INPUTS: frozenset[str] = frozenset(
    {"persona", "usual_order_interval", "mean_order_interval", "days_since_last_order"}
)
#: Instants (µs since the epoch) whose local date is a fact.
LOCAL_DATE_OF: dict[str, str] = {
    "first_order_at": "first_order_date",
    "last_order_at": "last_order_date",
    "first_signup_at": "first_signup_date",
}


class SharedFacts(Protocol):
    """What spans customers, computed once over the whole base, for a base that is one part of
    it (``courtship.engine.partitions``): the part computes its own customers' facts and asks
    here for what depends on other customers, giving what it would compute them from."""

    def friends(
        self, moment: datetime, referrals: pl.DataFrame, customers: pl.DataFrame, ordered: pl.Series
    ) -> pl.DataFrame:
        """The referral facts of the part's customers (as :func:`_friends`), from its
        :func:`referral_rows`, its customer file and the rows of its customers with an order."""
        ...

    def medians(
        self, moment: datetime, interval: str, values: pl.Series, personas: _Personas
    ) -> pl.Series:
        """Each of the part's customers' persona's median of ``interval`` over the whole base
        (as :func:`_persona_medians` for the whole base)."""
        ...

    def models(self, moment: datetime, triples: pl.DataFrame) -> dict[str, Any]:
        """The BG/NBD models of the whole base, from the part's grouped histories."""
        ...

    def priors(self, moment: datetime, kind: str, counts: pl.DataFrame) -> pl.DataFrame:
        """The personas' counts the learned preferences' prior is made of, over the whole
        base, from the part's (see :data:`courtship.learn.preferences.Priors`)."""
        ...

    def churn(self, moment: datetime, rows: pl.DataFrame) -> Any:
        """The churn model of the whole base at ``moment`` (or None), from the part's
        :func:`courtship.learn.churn.training_rows`."""
        ...


def facts_schema() -> dict[str, pl.DataType]:
    """The columns ``compute_facts`` returns (before facts set by playbooks), with their types."""
    schema = {name: FACT_DTYPES[spec.type] for name, spec in builtin_catalogue().facts.items()}
    schema.update(LOCAL_COLUMNS)
    return schema


def compute_facts(
    base: CustomerBase,
    now: datetime,
    *,
    sends: pl.DataFrame | None = None,
    set_facts: pl.DataFrame | None = None,
    set_tags: pl.DataFrame | None = None,
    default_timezone: str = "UTC",
    learning: Learning | None = WHOLE_BASE,
    churn_days: int | None = None,
    preferences: bool = False,
) -> pl.DataFrame:
    """Every fact for every customer at ``now``: one row per customer, in the customers' order.

    ``sends`` are Courtship's own sends (customer_id, at, channel, playbook, category); they
    count with ``sent`` events. ``set_facts`` (customer_id, fact, value, type, optionally at:
    the latest wins) and ``set_tags`` (customer_id, tag, present) are what playbooks recorded: they
    override or extend the customer file before anything is derived from it, and override
    derived facts (or add new ones) after. A naive ``now`` is taken as UTC. Only events and
    sends at or before ``now`` count. Raises ``ValueError`` for an unknown time zone or a set
    value that is not of its fact's type.
    """
    history = FactHistory(
        base,
        sends=sends,
        set_facts=set_facts,
        set_tags=set_tags,
        default_timezone=default_timezone,
        learning=learning,
        churn_days=churn_days,
        preferences=preferences,
    )
    return history.at(now)


def _no_preferences(height: int) -> pl.DataFrame:
    """The learned preferences of ``height`` customers when no playbook reads them: null."""
    return pl.DataFrame(
        {name: pl.Series([None] * height) for name in PREFERENCE_FACTS},
        schema={n: FACT_DTYPES[builtin_catalogue().facts[n].type] for n in PREFERENCE_FACTS},
    )


class FactHistory:
    """The facts of one customer base, at ``now`` and at moments before it.

    Everything that does not depend on the moment is done once: the customer file with what
    playbooks set, and every event numbered with its customer's row (kept on the base, see
    :func:`event_rows`). ``at(now)`` computes every fact; ``before(moment, facts)`` then gives
    the facts a ``becomes`` trigger reads at an earlier moment without aggregating the whole
    history again: only the customers something happened to between that moment and now (or
    whose 30- and 90-day windows lost an event) are aggregated anew; everyone else's
    aggregates are the same as at now, read at the earlier moment.
    """

    def __init__(
        self,
        base: CustomerBase,
        *,
        sends: pl.DataFrame | None = None,
        set_facts: pl.DataFrame | None = None,
        set_tags: pl.DataFrame | None = None,
        default_timezone: str = "UTC",
        learning: Learning | None = WHOLE_BASE,
        churn_days: int | None = None,
        preferences: bool = False,
        shared: SharedFacts | None = None,
        carried: Aggregates | None = None,
        keep: bool = False,
    ) -> None:
        if not is_time_zone(default_timezone):
            raise ValueError(
                f"default time zone {default_timezone!r} is not a known IANA time zone"
            )
        self.base = base
        #: what spans customers, when this base is one part of a larger one
        self.shared = shared
        #: how the learned facts are fitted; None leaves them out (no playbook reads them)
        self.learning = learning
        #: the horizon of ``churn_risk`` in days; None leaves it out (no playbook reads it).
        #: It reads ``p_alive``: only with ``learning``.
        self.churn_days = churn_days if learning is not None else None
        #: whether to learn ``best_channel`` and ``suggested_cadence_days`` (with learning)
        self.preferences = preferences
        customers = _customer_file(base, default_timezone)
        #: the customer file's other columns (text, or typed as the facts plugins declare),
        #: put beside the facts as they are: never read to compute one
        self.others = _other_columns(base)
        self.ids = customers.select("customer_id", ROW)
        self.latest = _latest_set_facts(set_facts, self.ids)
        self.customers = _extend_customer_file(
            customers, self.latest, set_tags, self.ids, default_timezone
        )
        self.zones = _Zones(self.customers.get_column("timezone"))
        self.personas = _Personas(self.customers.get_column("persona").cast(pl.String()))
        _check_events(base.events, "events")
        rows = event_rows(base)
        #: the aggregates of the last run, to carry on (``courtship.engine.carry``), and
        #: whether to keep this run's for the next (``kept``, after ``at``)
        self.carried, self.keep = carried, keep
        self.kept: Aggregates | None = None
        #: the events, and Courtship's sends numbered as the events, each in customer order
        self.numbered, self.sent = rows, pl.DataFrame(schema=rows.schema)
        if sends is not None and sends.height:
            _check_events(sends.with_columns(type=pl.lit("sent")), "sends")
            self.sent = _in_customer_order(_numbered(_events(sends, "sent"), self.ids))
        #: per moment computed by ``at``: the per-row aggregates facts are derived from
        self._derived: dict[datetime, pl.DataFrame] = {}
        self._recent_events: tuple[int, pl.DataFrame] | None = None
        self._changed_events: tuple[int, pl.DataFrame] | None = None

    @cached_property
    def events(self) -> pl.DataFrame:
        """The events and the sends merged, in customer order and time order: only when read
        (the learned preferences); the facts read ``both``."""
        merged = self.numbered.merge_sorted(self.sent, key=ROW) if self.sent.height else None
        return self.numbered if merged is None else merged.with_columns(pl.col(ROW).set_sorted())

    def both(self) -> pl.LazyFrame:
        """The events, then the sends (each in customer order, not the two together)."""
        return pl.concat([self.numbered.lazy(), self.sent.lazy()])

    def at(self, now: datetime) -> pl.DataFrame:
        """Every fact for every customer at ``now`` (see :func:`compute_facts`)."""
        now = _utc(now)
        customers = self.customers
        zones, calendar = _zone_columns(self.zones, now)
        derived = carry_on(self, now) if self.carried is not None else None
        if derived is None:
            derived = self._aggregated(self.both(), customers.select(ROW, "timezone"), now)
        if self.keep:
            self.kept = kept_aggregates(self, now, derived)
        ordered = derived.get_column("orders_count").is_not_null().arg_true().cast(pl.UInt32())
        if self.shared is not None:
            friends = self.shared.friends(now, referral_rows(self.base), customers, ordered)
        else:
            links = _referral_links(referral_rows(self.base), now)
            friends = _friends(links, _friend_counts(self.base, now), customers, ordered)
        derived = at_rows(derived, friends)
        self._derived[now] = derived
        facts = self._with_churn(self._facts(derived, zones, calendar, now, None), now, now)
        return self._with_preferences(facts, now)

    def _aggregated(
        self, events: pl.DataFrame | pl.LazyFrame, rows: pl.DataFrame, now: datetime
    ) -> pl.DataFrame:
        """The aggregates at ``now`` of the customers at ``rows`` (``ROW``, sorted, and
        their time zone) from ``events`` (theirs, at least), with the local dates of their
        instants. Per-customer results are aligned with the rows (joins on sorted row numbers):
        customer columns are never copied through a join."""
        queries = _activity_queries(events.lazy(), now)
        for part in _activity(*pl.collect_all(queries), now, self.zones):
            rows = rows.join(part, on=ROW, how="left", maintain_order="left")
        return rows.join(_local_dates(rows), on=ROW, how="left", maintain_order="left")

    def before(self, moment: datetime, now: datetime, facts: set[str]) -> pl.DataFrame:
        """The ``facts`` named (and the local columns) for every customer at ``moment``, an
        earlier moment than ``now``, for which ``at(now)`` has run. Facts not named are
        left out."""
        moment, now = _utc(moment), _utc(now)
        asked = set(facts) - {"customer_id", *LOCAL_COLUMNS}
        if moment >= now:
            return self.at(moment).select("customer_id", *asked, *LOCAL_COLUMNS)
        churns = self.learning is not None and bool(asked & set(CHURN_FACTS))
        prefers = self.learning is not None and bool(asked & set(PREFERENCE_FACTS))
        facts = set(asked)
        if churns and self.churn_days is not None:
            facts |= CHURN_INPUTS
        if prefers and self.preferences:
            facts |= PREFERENCE_INPUTS
        derived = self._derived[now]
        moment_us, now_us = _epoch_us(moment), _epoch_us(now)
        # Who an aggregate can differ for: an event after the moment, or an event leaving a
        # counting window between the two moments.
        changed = (
            self._recent(moment)
            .lazy()
            .filter(moved(moment_us, now_us, WINDOWS))
            .select(ROW)
            .unique()
            .sort(ROW)
            .collect()
        )
        events = self._events_of(changed.get_column(ROW), moment_us)
        rows = changed.with_columns(pl.col(ROW).set_sorted()).join(
            derived.select(ROW, "timezone"), on=ROW, maintain_order="left"
        )
        redone = self._aggregated(events, rows, moment).drop("timezone")
        # The changed customers' aggregates replace theirs. Lazily: only the columns the
        # facts asked for read are replaced (polars drops the rest from the query).
        derived = patched(derived, redone)
        if facts & FRIEND_FACTS:  # the referral graph as it was at the moment
            links = _referral_links(referral_rows(self.base), moment)
            ordered = derived.filter(pl.col("orders_count") > 0).select(ROW).collect()
            friends = (
                self.shared.friends(moment, referral_rows(self.base), self.customers, ordered[ROW])
                if self.shared is not None
                else _friends(
                    links, _friend_counts(self.base, moment), self.customers, ordered[ROW]
                )
            )
            derived = derived.drop(*(c for c in friends.columns if c != ROW)).join(
                friends.lazy(), on=ROW, how="left", maintain_order="left"
            )
        zones, calendar = _zone_columns(self.zones, moment)
        past = self._facts(derived, zones, calendar, moment, facts)
        if not (churns or prefers):
            return past
        if churns:
            past = self._with_churn(past, moment, now)
        if prefers:
            past = self._with_preferences(past, moment)
        return past.select("customer_id", *(n for n in past.columns if n in asked), *LOCAL_COLUMNS)

    def answered(self, moment: datetime) -> pl.DataFrame:
        """Every message up to ``moment``, whether the customer answered it within 48 hours
        (see :mod:`courtship.learn.preferences`)."""
        return answered_messages(self.events, self._clicks(), _epoch_us(_utc(moment)))

    def _clicks(self) -> pl.DataFrame:
        """The customers' ``click`` events: ``_row`` and ``at`` (µs)."""
        return (
            self.base.events.lazy()
            .filter(pl.col("type") == "click")
            .select(pl.col("customer_id").cast(pl.String()), pl.col("at").dt.epoch("us"))
            .join(self.ids.lazy(), on="customer_id")
            .select(ROW, "at")
            .collect()
        )

    def activity(self, moment: datetime) -> pl.DataFrame:
        """Per customer and local hour, their orders, clicks and messages to us up to
        ``moment`` (see :func:`courtship.learn.preferences.activity_hours`)."""
        zones = self.customers.select(ROW, "timezone")
        return activity_hours(self.events, self._clicks(), zones, _epoch_us(_utc(moment)))

    def _with_preferences(self, facts: pl.DataFrame, moment: datetime) -> pl.DataFrame:
        """``facts`` with the learned preferences in their catalogue place (with learning);
        null when not asked for."""
        if self.learning is None:
            return facts
        if self.preferences:
            numbered = facts.with_row_index(ROW) if ROW not in facts.columns else facts
            priors = None if self.shared is None else partial(self.shared.priors, moment)
            learned = preference_facts(
                numbered, self.answered(moment), self.activity(moment), priors
            )
        else:
            learned = _no_preferences(facts.height)
        for name in PREFERENCE_FACTS:
            facts = _in_place(facts, learned.get_column(name))
        return facts

    def _with_churn(self, facts: pl.DataFrame, moment: datetime, now: datetime) -> pl.DataFrame:
        """``facts`` (at ``moment``) with ``churn_risk`` in its catalogue place: a model fitted
        on the facts at ``moment - H`` and what happened up to ``moment`` (see
        :mod:`courtship.learn.churn`); null when not asked for, left out without learning."""
        if self.learning is None:
            return facts
        if self.churn_days is None:
            risk = pl.Series("churn_risk", [None] * facts.height, dtype=pl.Float64())
        else:
            then = self.before(moment - timedelta(days=self.churn_days), now, set(CHURN_INPUTS))
            model_of = None if self.shared is None else partial(self.shared.churn, moment)
            risk = churn_risk(then, facts, self.churn_days, self.base.__dict__, model_of)
        return _in_place(facts, risk)

    def _events_of(self, rows: pl.Series, moment_us: int) -> pl.DataFrame:
        """All events of the customers at ``rows``, the customers changed since ``moment``.
        Those of a more recent moment are among those of an earlier one, so the events found
        for the earliest moment asked are kept and searched again."""
        kept = self._changed_events
        source = kept[1].lazy() if kept is not None and kept[0] <= moment_us else self.both()
        flags = pl.zeros(self.customers.height, pl.Boolean(), eager=True)
        flags.scatter(rows, True)
        events = source.filter(pl.lit(flags).gather(pl.col(ROW))).collect()
        if kept is None or kept[0] > moment_us:
            self._changed_events = (moment_us, events)
        return events

    def _recent(self, moment: datetime) -> pl.DataFrame:
        """The events that can make a customer's facts at ``moment`` differ from now: those
        after ``moment`` less the longest counting window. Kept for later (more recent)
        moments of the same plan."""
        cutoff = _epoch_us(moment) - _us(max(ORDER_WINDOW, MESSAGE_WINDOW))
        if self._recent_events is None or self._recent_events[0] > cutoff:
            recent = self.both().filter(pl.col("at") >= cutoff).collect()
            self._recent_events = (cutoff, recent)
        return self._recent_events[1]

    def _facts(
        self,
        derived: pl.DataFrame | pl.LazyFrame,
        zones: pl.DataFrame,
        calendar: pl.DataFrame,
        now: datetime,
        only: set[str] | None,
    ) -> pl.DataFrame:
        expressions = _fact_expressions(now, calendar)
        if only is not None:
            wanted = {"customer_id", ROW, *only, *LOCAL_COLUMNS}
            if only & set(RHYTHM_FACTS):
                wanted |= RHYTHM_INPUTS
            if only & set(LEARNED_FACTS) and self.learning is not None:
                wanted |= LEARNING_INPUTS
            expressions = [e for e in expressions if e.meta.output_name() in wanted]
        if isinstance(derived, pl.LazyFrame):  # only what these facts read is worked out
            used = {ROW, "timezone"}.union(*(e.meta.root_names() for e in expressions))
            derived = derived.select(c for c in derived.collect_schema() if c in used).collect()
        units = pl.DataFrame(
            [
                pl.repeat(MICROSECONDS_PER_DAY, zones.height, dtype=pl.Int64(), eager=True).alias(
                    DAY
                ),
                pl.repeat(MICROSECONDS_PER_HOUR, zones.height, dtype=pl.Int64(), eager=True).alias(
                    HOUR
                ),
            ]
        )
        frame = pl.concat(
            [self.customers, derived.drop(ROW, "timezone"), zones, units], how="horizontal"
        )
        # in one piece, as the rhythm's columns beside them: no step puts pieces together
        facts = frame.lazy().select(expressions).collect(engine="in-memory")
        if only is None or only & set(RHYTHM_FACTS):
            medians = None if self.shared is None else partial(self.shared.medians, now)
            facts = facts.with_columns(_rhythm(facts, self.personas, medians))
        if self.learning is not None and (only is None or only & set(LEARNED_FACTS)):
            fitter = None if self.shared is None else partial(self.shared.models, now)
            learned = learned_facts(facts, self.learning, self.base.__dict__, fitter)
            facts = pl.concat([facts, learned], how="horizontal")
        names = [name for name in facts_schema() if name in facts.columns]
        facts = facts.select(ROW, *names)
        others = [n for n in self.others.columns if only is None or n in only]
        if others:
            facts = pl.concat([facts, self.others.select(others)], how="horizontal")
        facts = _override_derived_facts(facts, self.latest)
        if only is not None:
            facts = facts.select(
                "customer_id", *(n for n in facts.columns if n in only), *LOCAL_COLUMNS
            )
            return facts
        return facts.drop(ROW)


def at_rows(frame: pl.DataFrame, part: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (a row per customer row, in row order) with the columns of ``part`` (``ROW``
    and others, a row at most once) written at its rows: over ``frame``'s own column of that
    name, or as a new column, null elsewhere. No join: each column is copied once."""
    rows = part.get_column(ROW)
    return frame.with_columns(
        (
            frame.get_column(name)
            if name in frame.columns
            else pl.repeat(None, frame.height, dtype=part.schema[name], eager=True)
        )
        .scatter(rows, part.get_column(name).cast(frame.schema.get(name, part.schema[name])))
        .alias(name)
        for name in part.columns
        if name != ROW
    )


def rows_of_customers(facts: pl.DataFrame, ids: pl.Series) -> pl.DataFrame:
    """``customer_id`` and ``ROW`` of the facts of the customers ``ids`` names: the facts are
    searched for those ids, where a join onto them would hash every customer's id."""
    wanted = ids.cast(pl.String()).unique().implode()
    return facts.select("customer_id", ROW).filter(pl.col("customer_id").is_in(wanted))


def _in_place(facts: pl.DataFrame, column: pl.Series) -> pl.DataFrame:
    """``facts`` with ``column`` after the catalogue facts before it."""
    names = list(facts_schema())
    earlier = [n for n in names[: names.index(column.name)] if n in facts.columns]
    place = facts.columns.index(earlier[-1]) + 1 if earlier else facts.width
    return facts.insert_column(place, column)


#: Facts read from the referral graph.
FRIEND_FACTS: set[str] = {
    "friends_count",
    "referrals_count",
    "referrals_converted",
    "referred_by",
    "days_since_last_referral",
    "friends_at_risk",
}


def event_rows(base: CustomerBase) -> pl.DataFrame:
    """The base's events the engine reads, each with its customer's row number: ``_row``, kind
    (an enum of ``EVENT_KINDS``), at (µs since the epoch, UTC), channel, amount.

    Numbering 10 million events by customer is the most expensive step of reading facts and
    does not depend on the moment, so it is done once per loaded base and kept with it (until
    its customers or events are replaced). Events of customers not in the file are left out.
    """
    kept = base.__dict__.get("_event_rows")
    if kept is not None and kept[0] is base.customers and kept[1] is base.events:
        return kept[2]
    _check_events(base.events, "events")
    customers = base.customers.select(pl.col("customer_id").cast(pl.String())).with_row_index(ROW)
    rows = _in_customer_order(_numbered(_events(base.events, None), customers))
    base.__dict__["_event_rows"] = (base.customers, base.events, rows)
    return rows


def with_more_events(base: CustomerBase, more: pl.DataFrame) -> CustomerBase:
    """``base`` with the events ``more`` after its own (the messages customers sent through
    ``courtship serve``, a few against millions), typed as its own, and with what was built
    of its loading-time index carried on rather than built again: the events numbered by
    customer (:func:`event_rows`) redone for the customers of ``more`` alone, the referrals
    kept (``more`` holds none), and the index's mark kept. The aggregates carried from the
    last run tell who ``more`` changed by their fingerprint, which counts ``more`` with the
    sends (:func:`heard_rows`, ``courtship.engine.carry``)."""
    schema = base.events.schema
    more = more.with_columns(pl.col(n).cast(schema[n]) for n in more.columns if n in schema)
    events = pl.concat([base.events, more], how="diagonal_relaxed")
    grown = CustomerBase(base.customers, events)
    kept = base.__dict__
    for name in ("_file_mark", "_ids_checked"):  # of the customers alone
        if name in kept:
            grown.__dict__[name] = kept[name]

    def built(name: str) -> Any:
        found = kept.get(name)
        if found is not None and found[0] is base.customers and found[1] is base.events:
            return found[2]
        return None

    _check_events(more, "events")
    own = event_rows(base)  # kept with the base when read, else built now (and kept)
    customers = base.customers.select(pl.col("customer_id").cast(pl.String())).with_row_index(ROW)
    heard = _in_customer_order(_numbered(_events(more, None), customers))
    grown.__dict__["_event_rows"] = (base.customers, events, _with_rows_of(own, heard, base))
    grown.__dict__["_heard_rows"] = (base.customers, events, (own, heard))
    if not more.get_column("type").cast(pl.String()).eq("referral").any():
        for name in ("_referral_rows", "_referral_graph"):
            if (found := built(name)) is not None:
                grown.__dict__[name] = (base.customers, events, found)
    if (mark := built("_index_mark")) is not None:
        grown.__dict__["_index_mark"] = (base.customers, events, mark)
    return grown


def heard_rows(base: CustomerBase) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """For a base that :func:`with_more_events` made: its own events numbered by customer
    (those of its index) and the events it was given, numbered the same way; else None."""
    kept = base.__dict__.get("_heard_rows")
    if kept is not None and kept[0] is base.customers and kept[1] is base.events:
        return kept[2]
    return None


def _with_rows_of(rows: pl.DataFrame, numbered: pl.DataFrame, base: CustomerBase) -> pl.DataFrame:
    """The events numbered by customer (``rows``, in customer order) with ``numbered`` (more
    events, numbered the same way) among them: the events of their customers put in order
    again with theirs, everyone else's kept where they are, as :func:`event_rows` of the whole
    would number them."""
    if not numbered.height:
        return rows
    heard = numbered.get_column(ROW).unique().sort()
    if heard.len() > _HEARD_SLICED:  # many customers: filtered out, then merged back in
        flags = pl.zeros(base.customers.height, pl.Boolean(), eager=True)
        flags.scatter(heard, True)
        theirs = pl.lit(flags).gather(pl.col(ROW))
        redone = _in_customer_order(pl.concat([rows.filter(theirs), numbered]))
        merged = rows.filter(~theirs).merge_sorted(redone, key=ROW)
        return merged.with_columns(pl.col(ROW).set_sorted())
    # Few: each one's events found by where their row begins and ends, the others' taken as
    # the slices between them; the whole is these slices, nothing copied (put together in
    # one piece, 250 MB at 10 M events, it cost more than the pieces do later).
    numbers = rows.get_column(ROW)
    begins = numbers.search_sorted(heard, side="left").to_list()
    ends = numbers.search_sorted(heard, side="right").to_list()
    theirs = [rows.slice(b, e - b) for b, e in zip(begins, ends, strict=True)]
    redone = _in_customer_order(pl.concat([*theirs, numbered]))
    starts = redone.get_column(ROW).search_sorted(heard, side="left").to_list()
    pieces, kept_to = [], 0
    for begin, end, start, stop in zip(begins, ends, starts, [*starts[1:], None], strict=True):
        pieces += [
            rows.slice(kept_to, begin - kept_to),
            redone.slice(start, (stop or redone.height) - start),
        ]
        kept_to = end
    pieces.append(rows.slice(kept_to))
    return pl.concat(pieces, rechunk=False).with_columns(pl.col(ROW).set_sorted())


#: Up to this many customers heard from, their events are put in by slices (see above).
_HEARD_SLICED = 2_000


def customer_file_mark(base: CustomerBase) -> int:
    """A number that changes when the customer ids or their order change: state saved by row
    number (``becomes`` streaks) is read by row number only from the same file."""
    kept = base.__dict__.get("_file_mark")
    if kept is not None and kept[0] is base.customers:
        return kept[1]
    ids = base.customers.select(
        pl.concat_str(
            pl.col("customer_id").cast(pl.String()),
            pl.int_range(pl.len()).cast(pl.String()),
            separator="|",
        )
        .hash(seed=20261123)
        .floordiv(1 << 24)
        .sum()
        .alias("mark")
    )
    mark = (int(ids.item() or 0) * 1_000_003 + base.customers.height) % (1 << 63)
    base.__dict__["_file_mark"] = (base.customers, mark)
    return mark


def _numbered(events: pl.LazyFrame, ids: pl.DataFrame) -> pl.DataFrame:
    return (
        events.join(ids.lazy(), on="customer_id", how="inner")
        .select(ROW, "kind", "at", "channel", "amount")
        .collect()
    )


def _in_customer_order(events: pl.DataFrame) -> pl.DataFrame:
    """Events sorted by customer row, then time, then channel (the tie-break of "the latest
    message"): every customer's orders and messages are then consecutive and in time order,
    and stay so through any filter, so aggregating them needs no sort."""
    return events.sort(ROW, "at", "channel", maintain_order=True).with_columns(
        pl.col(ROW).set_sorted()
    )


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused while hundreds of thousands of small objects are made
    (graph nodes, decisions): it would walk them again and again as they are made (two thirds
    of the time of building the referral graph), and none of them forms a cycle. Reference
    counting still frees everything; the collector resumes, as it was, afterwards."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ── the customer file ────────────────────────────────────────────────────


def _customer_file(base: CustomerBase, default_timezone: str) -> pl.DataFrame:
    """The customer columns with their types (missing ones null), a row number, a time zone.
    The ids are checked once per loaded customer file."""
    customers = base.customers
    if "customer_id" not in customers.columns:
        raise ValueError("the customers have no customer_id column")
    frame = customers.select(
        (pl.col(name).cast(dtype) if name in customers.columns else pl.lit(None, dtype).alias(name))
        for name, dtype in CUSTOMER_SCHEMA.items()
    )
    checked = base.__dict__.get("_ids_checked")
    if checked is None or checked is not customers:
        ids = frame.get_column("customer_id")
        if ids.null_count() or ids.n_unique() != frame.height:
            raise ValueError("every customer needs a customer_id, and customer ids must be unique")
        base.__dict__["_ids_checked"] = customers
    frame = frame.with_columns(pl.col("timezone").fill_null(default_timezone))
    return frame.with_row_index(ROW)


def _other_columns(base: CustomerBase) -> pl.DataFrame:
    """The customer table's columns beyond :data:`CUSTOMER_SCHEMA`, but those whose names
    begin with ``_`` (the engine's own). One named like a computed fact is an error."""
    customers = base.customers
    names = [n for n in customers.columns if n not in CUSTOMER_SCHEMA and not n.startswith("_")]
    check_other_columns(names)
    return customers.select(names)


def plugin_fact_columns(frame: pl.DataFrame, catalogue: Catalogue) -> list[pl.Expr]:
    """The columns of ``frame`` (the facts) holding facts plugins declared but not of their
    type (customers not read through a source that knew the facts), as their type: text read
    as the customer file's is; a text that is not of the type raises ``SourceError`` (a
    ``ValueError``) naming the customer, the column and the fact."""
    declared = {
        name: spec
        for name, spec in catalogue.facts.items()
        if spec.source != "core"
        and not spec.source.startswith("playbook ")
        and name in frame.columns
        and frame.schema[name] != FACT_DTYPES[spec.type]
    }
    if not declared:
        return []
    text = [name for name in declared if frame.schema[name] == pl.String()]
    typed = type_declared_facts(frame.select("customer_id", *text), declared)
    return [
        pl.lit(typed.get_column(name))
        if name in text
        else pl.col(name).cast(FACT_DTYPES[spec.type], strict=False)
        for name, spec in declared.items()
    ]


def _check_events(events: pl.DataFrame, name: str) -> None:
    """The columns every event table has: customer_id, type and at (a datetime)."""
    missing = [column for column in ("customer_id", "type", "at") if column not in events.columns]
    if missing:
        raise ValueError(f"the {name} have no {', '.join(missing)} column")
    if not isinstance(events.schema["at"], pl.Datetime):
        raise ValueError(f"the {name}' at column is {events.schema['at']}, not a datetime")


# ── facts set by playbooks ───────────────────────────────────────────────


def _latest_set_facts(set_facts: pl.DataFrame | None, ids: pl.DataFrame) -> pl.DataFrame:
    """One row per (customer, fact): the latest value, typed by the catalogue or its own type."""
    if set_facts is None or set_facts.is_empty():
        return pl.DataFrame(schema=LATEST_SCHEMA)
    frame = set_facts.with_columns(pl.col("customer_id", "fact", "value").cast(pl.String()))
    if "type" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String()).alias("type"))
    if "at" in frame.columns:
        frame = frame.sort("at", nulls_last=False, maintain_order=True)
    if frame.get_column("fact").is_in(["customer_id", *LOCAL_COLUMNS]).any():
        raise ValueError("customer_id, local_date, local_time and utc_offset_minutes are not set")
    catalogue = builtin_catalogue().facts
    unknown_types = (
        frame.filter(~pl.col("fact").is_in(list(catalogue)))
        .filter(~pl.col("type").is_in(list(FACT_DTYPES)) | pl.col("type").is_null())
        .get_column("type")
        .unique()
        .to_list()
    )
    if unknown_types:
        raise ValueError(f"set facts have unknown types {unknown_types}; use {list(FACT_DTYPES)}")
    # A fact keeps one type: the catalogue's, or the latest one a playbook recorded.
    types = frame.group_by("fact").agg(pl.col("type").last().alias("fact_type"))
    types = types.with_columns(
        pl.col("fact")
        .replace_strict(
            {name: spec.type for name, spec in catalogue.items()},
            default=pl.col("fact_type"),
            return_dtype=pl.String(),
        )
        .alias("fact_type")
    )
    return (
        frame.unique(subset=["customer_id", "fact"], keep="last", maintain_order=True)
        .join(ids, on="customer_id", how="inner")
        .join(types.rename({"fact_type": "type"}), on="fact", how="left")
        .select(ROW, "customer_id", "fact", "value", "type")
        .sort(ROW, "fact")
    )


def _extend_customer_file(
    customers: pl.DataFrame,
    latest: pl.DataFrame,
    set_tags: pl.DataFrame | None,
    ids: pl.DataFrame,
    default_timezone: str,
) -> pl.DataFrame:
    """Playbooks' ``set`` of customer-file columns, then their ``tag`` steps."""
    on_file = latest.filter(pl.col("fact").is_in(list(CUSTOMER_SCHEMA)))
    customers = _apply(customers, on_file)
    if "timezone" in on_file.get_column("fact").to_list():
        customers = customers.with_columns(pl.col("timezone").fill_null(default_timezone))
    if set_tags is None or set_tags.is_empty():
        return customers
    # What playbooks tagged (present) or untagged (not present), the last word on each tag;
    # an untag takes away a tag of the customer file too.
    changes = set_tags.select(
        pl.col("customer_id", "tag").cast(pl.String()),
        (
            pl.col("present").cast(pl.Boolean())
            if "present" in set_tags.columns
            else pl.lit(True).alias("present")
        ),
    ).drop_nulls()
    changed = (
        changes.join(ids, on="customer_id", how="inner")
        .group_by(ROW)
        .agg(
            pl.col("tag").filter(pl.col("present")).alias("_added"),
            pl.col("tag").filter(~pl.col("present")).alias("_removed"),
        )
    )
    tags = pl.col("tags").fill_null(pl.lit([], pl.List(pl.String())))
    return (
        customers.join(changed, on=ROW, how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("_added").is_not_null())
            .then(
                pl.concat_list(tags, pl.col("_added"))
                .list.set_difference(pl.col("_removed"))
                .list.unique()
                .list.sort()
            )
            .otherwise(pl.col("tags"))
            .alias("tags")
        )
        .drop("_added", "_removed")
    )


def _override_derived_facts(facts: pl.DataFrame, latest: pl.DataFrame) -> pl.DataFrame:
    """Playbooks' ``set`` of every other fact: derived facts overridden, new facts added."""
    return _apply(facts, latest.filter(~pl.col("fact").is_in(list(CUSTOMER_SCHEMA))))


def _apply(frame: pl.DataFrame, latest: pl.DataFrame) -> pl.DataFrame:
    """Override (or add) each fact in ``latest`` for the customers it names; null is a value."""
    facts = latest.select("fact", "type").unique(maintain_order=True).sort("fact").rows()
    for fact, kind in facts:
        dtype = FACT_DTYPES[kind]
        values = latest.filter(pl.col("fact") == fact).select(
            ROW, "customer_id", "value", _typed(pl.col("value"), kind).alias("typed")
        )
        bad = values.filter(pl.col("value").is_not_null() & pl.col("typed").is_null()).head(1)
        if bad.height:
            _, customer, value, _ = bad.row(0)
            raise ValueError(f"set fact {fact} of customer {customer}: {value!r} is not a {kind}")
        same_type = fact not in frame.columns or frame.schema[fact] == dtype
        if same_type and not dtype.is_nested():
            # a customer's value once (the latest): written at their rows, on a copy of the
            # one column, not joined
            frame = at_rows(
                frame, values.select(pl.col(ROW).cast(pl.UInt32()), pl.col("typed").alias(fact))
            )
            continue
        values = values.select(ROW, pl.col("typed").alias("_set"), pl.lit(True).alias("_present"))
        old = pl.col(fact)
        # The new values are joined onto the row numbers alone and put in as one column: a
        # join of the whole frame would copy every fact of every customer, once per set fact.
        given = frame.select(ROW).join(values, on=ROW, how="left", maintain_order="left")
        frame = frame.with_columns(
            pl.when(pl.lit(given.get_column("_present")))
            .then(pl.lit(given.get_column("_set")))
            .otherwise(old)
            .alias(fact)
        )
    return frame


def _typed(text: pl.Expr, kind: str) -> pl.Expr:
    """A fact value recorded as text, read as its type (null when it cannot be): as the
    customer file's text is, but a list may also be a JSON array."""
    if kind == "list":
        text = text.str.strip_chars()
        as_json = pl.when(text.str.starts_with("[")).then(text)
        return (
            pl.when(text.str.starts_with("["))
            .then(as_json.str.json_decode(pl.List(pl.String())))
            .otherwise(text.str.split(";"))
            .list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
            .list.unique()
            .list.sort()
        )
    return fact_from_text(text, kind)


# ── events ───────────────────────────────────────────────────────────────


def _events(table: pl.DataFrame, kind: str | None) -> pl.LazyFrame:
    """The events of ``table`` the engine reads (``kind`` for all of them, when given), at any
    moment.

    Columns: customer_id, kind (an enum of ``EVENT_KINDS``), at (µs since the epoch, UTC),
    channel, amount, friend_id.
    """
    if kind is not None:
        table = table.with_columns(type=pl.lit(kind))
    return (
        table.lazy()
        .select(
            (
                _as_utc(pl.col(name), table.schema[name]).cast(dtype)
                if name in table.columns
                else pl.lit(None, dtype)
            ).alias(name)
            for name, dtype in EVENT_COLUMNS.items()
        )
        .with_columns(pl.col("type").cast(KIND, strict=False).alias("kind"))
        .filter(pl.col("kind").is_not_null())
        .select(
            "customer_id", "kind", pl.col("at").dt.epoch("us"), "channel", "amount", "friend_id"
        )
    )


def _as_utc(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return column.dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        return column.dt.convert_time_zone("UTC")
    return column


def _activity_queries(events: pl.LazyFrame, now: datetime) -> list[pl.LazyFrame]:
    """What the orders, visits, conversations and sends say, as queries to collect together.

    ``events`` are the events in customer order (see ``_in_customer_order``), then the sends
    (``FactHistory.both``): visits, signups, orders and inbound messages are each consecutive
    per customer and in time order, so their latest, counts, sums, gaps and "the latest" are
    cheap passes over sorted rows; sends are grouped.
    """
    now_us = _epoch_us(now)
    kind, at = pl.col("kind"), pl.col("at")
    events = events.filter(at <= now_us)

    def of(name: str) -> pl.LazyFrame:
        return events.filter(kind == name).with_columns(pl.col(ROW).set_sorted())

    def latest(name: str) -> LazyGroupBy:
        return of(name).group_by(ROW, maintain_order=True)

    visits = latest("visit").agg(at.max().alias("last_visit_at"))
    # ``sent`` events of the file and Courtship's sends: each in customer order, not together
    sends = (
        events.filter(kind == "sent")
        .group_by(ROW)
        .agg(
            at.max().alias("last_message_at"),
            (at >= now_us - _us(MESSAGE_WINDOW)).sum().alias("messages_sent_30d"),
        )
        .sort(ROW)
    )
    signups = latest("signup").agg(at.min().alias("first_signup_at"))
    orders = of("order").select(ROW, "at", "amount")
    replies = latest("reply").agg(at.max().alias("last_reply_at"))
    messages = of("inbound_message").select(ROW, "at", "channel")
    return [visits, sends, signups, orders, replies, messages]


def _activity(
    visits: pl.DataFrame,
    sends: pl.DataFrame,
    signups: pl.DataFrame,
    orders: pl.DataFrame,
    replies: pl.DataFrame,
    messages: pl.DataFrame,
    now: datetime,
    zones: _Zones,
) -> list[pl.DataFrame]:
    """Per customer row, in parts sorted by row: the collected ``_activity_queries``, with
    orders, gaps and waiting messages. Orders are summed in time order, so a total does not
    depend on how threads met."""
    at = pl.col("at")
    orders = orders.with_columns(pl.col(ROW).set_sorted())
    messages = messages.with_columns(pl.col(ROW).set_sorted())
    by_orders = orders.group_by(ROW, maintain_order=True).agg(
        pl.len().alias("orders_count"),
        pl.col("amount").sum().alias("total_spent"),
        at.first().alias("first_order_at"),
        at.last().alias("last_order_at"),
        (at >= _epoch_us(now) - _us(ORDER_WINDOW)).sum().alias("orders_last_90d"),
    )
    gap = pl.when(pl.col(ROW) == pl.col(ROW).shift(1)).then(at - at.shift(1))
    by_gaps = (
        orders.select(ROW, gap.alias("gap"))
        .drop_nulls("gap")
        .group_by(ROW, maintain_order=True)
        .agg(pl.col("gap").median().alias("order_gap_us"))
    )
    by_days = _purchase_days(orders, zones)
    # At the same instant, ties are broken by the channel's name (the sort above).
    by_latest = messages.group_by(ROW, maintain_order=True).agg(
        at.last().alias("last_inbound_at"), pl.col("channel").last().alias("last_inbound_channel")
    )
    # Inbound messages after our latest reply wait for an answer.
    by_waiting = (
        messages.join(replies, on=ROW, how="left", maintain_order="left")
        .filter(pl.col("last_reply_at").is_null() | (at > pl.col("last_reply_at")))
        .group_by(ROW, maintain_order=True)
        .agg(pl.len().alias("unanswered_inbound_count"), at.first().alias("oldest_waiting_at"))
    )
    parts = [visits, sends, signups, by_orders, by_gaps, by_days, by_latest, by_waiting]
    return [part.with_columns(pl.col(ROW).set_sorted()) for part in parts]


def _purchase_days(orders: pl.DataFrame, zones: _Zones) -> pl.DataFrame:
    """Per customer row (sorted): ``purchase_days_count``, the distinct local dates with an
    order, each order's date taken in its customer's time zone (one partition per zone)."""
    zone = pl.lit(zones.codes).gather(pl.col(ROW)).alias("_zone")
    parts = [pl.DataFrame(schema={ROW: pl.UInt32(), "purchase_days_count": pl.UInt32()})]
    for (code,), part in orders.select(ROW, "at", zone).partition_by("_zone", as_dict=True).items():
        name = zones.names[code]
        day = (
            pl.col("at").floordiv(MICROSECONDS_PER_DAY)  # in UTC, the day is a division
            if name in ("UTC", "Etc/UTC")
            else pl.col("at").cast(UTC_DATETIME).dt.convert_time_zone(name).dt.date()
        )
        parts.append(
            part.with_columns(pl.col(ROW).set_sorted())
            .group_by(ROW, maintain_order=True)
            .agg(day.n_unique().cast(pl.UInt32()).alias("purchase_days_count"))
        )
    return pl.concat(parts).sort(ROW)


# ── time zones ───────────────────────────────────────────────────────────


class _Zones:
    """The customers' time zones: the distinct names (checked) and each customer's number."""

    def __init__(self, zones: pl.Series) -> None:
        self.names: list[str] = sorted(zones.unique().to_list())
        unknown = [name for name in self.names if not is_time_zone(name)]
        if unknown:
            raise ValueError(f"unknown time zones {unknown}; use IANA names such as Europe/London")
        self.codes = zones.cast(pl.Enum(self.names)).to_physical()


def _zone_columns(zones: _Zones, now: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each customer's local date, wall-clock time and UTC offset at ``now``, and a calendar.

    Computed once per distinct time zone, then spread over the customers by zone number. The
    column ``_today`` numbers the distinct local dates: it is the key into the calendar (see
    ``_calendar``).
    """
    names = zones.names
    rows = []
    for name in names:
        local = now.astimezone(ZoneInfo(name))
        offset = local.utcoffset() or timedelta(0)
        rows.append((local.date(), local.time(), int(offset.total_seconds() // 60)))
    days = sorted({local_date for local_date, _, _ in rows})
    table = pl.DataFrame(
        [(*row, days.index(row[0])) for row in rows],
        schema={**LOCAL_COLUMNS, TODAY: pl.UInt32()},
        orient="row",
    )
    return table[zones.codes], _calendar(days)


def _calendar(days: list[date]) -> pl.DataFrame:
    """For each local date (by number) and each month and day of the year: how many days to
    that day's next anniversary, and whether this year's is still ahead.

    Row ``today * 416 + month * 32 + day`` (416 = 13 * 32). 29 February falls on 28 February
    in other years. A handful of local dates times 366 days, in Python; customers read it by index.
    """
    until: list[int | None] = []
    ahead: list[int | None] = []
    for today in days:
        for month in range(13):
            for day in range(32):
                this_year = _anniversary(today.year, month, day)
                if this_year is None:
                    until.append(None)
                    ahead.append(None)
                    continue
                next_one = (
                    this_year if this_year >= today else _anniversary(today.year + 1, month, day)
                )
                until.append((next_one - today).days if next_one else None)
                ahead.append(int(this_year > today))
    return pl.DataFrame(
        {"until": until, "ahead": ahead}, schema={"until": pl.Int64(), "ahead": pl.Int64()}
    )


def _anniversary(year: int, month: int, day: int) -> date | None:
    """``month``/``day`` in ``year`` (29 February is 28 February in other years), if it exists."""
    if month == 2 and day == 29 and not isleap(year):
        day = 28
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _local_dates(frame: pl.DataFrame) -> pl.DataFrame:
    """The local date of each instant of ``LOCAL_DATE_OF``, in each customer's own time zone.

    Offsets change over the years (summer time), so each instant is converted with its zone's
    rules, one partition per distinct zone.
    """
    instants = list(LOCAL_DATE_OF)
    dated = frame.select(ROW, "timezone", *instants).filter(
        pl.any_horizontal(pl.col(instants).is_not_null())
    )
    names = list(LOCAL_DATE_OF.values())
    parts = [pl.DataFrame(schema={ROW: pl.UInt32(), **dict.fromkeys(names, pl.Date())})]
    for (zone,), part in dated.partition_by("timezone", as_dict=True).items():
        parts.append(
            part.select(
                ROW,
                *(
                    pl.col(instant)
                    .cast(UTC_DATETIME)
                    .dt.convert_time_zone(str(zone))
                    .dt.date()
                    .alias(name)
                    for instant, name in LOCAL_DATE_OF.items()
                ),
            )
        )
    return pl.concat(parts).sort(ROW)


# ── friends ──────────────────────────────────────────────────────────────


def referral_rows(base: CustomerBase) -> pl.DataFrame:
    """Every referral of the base with everyone numbered, kept with the base like
    :func:`event_rows`: ``referrer`` (the referrer's row), ``referrer_id``, ``friend_id``,
    ``friend`` (the friend's row, or, for a friend who is not in the customer file, a number
    after the last row) and ``at`` (µs). A referral by someone who is not in the customer file
    is left out, as all their events are; so is one without a friend or of oneself."""
    kept = base.__dict__.get("_referral_rows")
    if kept is not None and kept[0] is base.customers and kept[1] is base.events:
        return kept[2]
    events = base.events
    if "friend_id" not in events.columns:
        events = events.with_columns(pl.lit(None, pl.String()).alias("friend_id"))
    customers = base.customers.select(pl.col("customer_id").cast(pl.String())).with_row_index(ROW)
    referrals = (
        events.lazy()
        .filter(pl.col("type") == "referral")
        .select(
            pl.col("customer_id", "friend_id").cast(pl.String()),
            _as_utc(pl.col("at"), events.schema["at"]).cast(UTC_DATETIME).dt.epoch("us"),
        )
        .filter(pl.col("friend_id").is_not_null(), pl.col("friend_id") != pl.col("customer_id"))
        # in the events' order, so friends outside the file are numbered the same every time
        .join(customers.lazy(), on="customer_id", maintain_order="left")
        .join(
            customers.lazy().rename({"customer_id": "friend_id", ROW: "_friend_row"}),
            on="friend_id",
            how="left",
            maintain_order="left",
        )
        .collect()
    )
    outsiders = (
        referrals.filter(pl.col("_friend_row").is_null())
        .select(pl.col("friend_id").unique(maintain_order=True))
        .with_row_index("_outsider")
    )
    rows = referrals.join(outsiders, on="friend_id", how="left", maintain_order="left").select(
        pl.col(ROW).cast(pl.Int64()).alias("referrer"),
        pl.col("customer_id").alias("referrer_id"),
        "friend_id",
        pl.coalesce(
            pl.col("_friend_row").cast(pl.Int64()),
            pl.col("_outsider").cast(pl.Int64()) + customers.height,
        ).alias("friend"),
        "at",
    )
    base.__dict__["_referral_rows"] = (base.customers, base.events, rows)
    return rows


def _referral_links(referrals: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Who referred whom by ``now`` (once per pair), numbered (see :func:`referral_rows`),
    with the first and latest referral (µs) of the pair."""
    return (
        referrals.filter(pl.col("at") <= _epoch_us(now))
        .group_by("referrer", "friend")
        .agg(
            pl.col("referrer_id", "friend_id").first(),
            pl.col("at").min().alias("first_at"),
            pl.col("at").max().alias("last_at"),
        )
    )


@dataclass
class ReferralGraph:
    """The referral graph: people (by their number in :func:`referral_rows`) are nodes, a pair
    who referred each other is an edge (``one`` < ``other``), with ``since``, the first referral
    between them (µs). Held as a table of edges: a degree at a moment is a count over it."""

    edges: pl.DataFrame
    #: the latest ``since`` (None without edges)
    latest: int | None
    #: each node's degree in the whole graph, once asked
    degrees: pl.DataFrame | None = None


def referral_graph(base: CustomerBase) -> ReferralGraph:
    """The referral graph of the base (see :class:`ReferralGraph`), built once and kept with it."""
    kept = base.__dict__.get("_referral_graph")
    if kept is not None and kept[0] is base.customers and kept[1] is base.events:
        return kept[2]
    graph = graph_of(referral_rows(base))
    base.__dict__["_referral_graph"] = (base.customers, base.events, graph)
    return graph


def graph_of(referrals: pl.DataFrame) -> ReferralGraph:
    """The referral graph of these :func:`referral_rows` (see :func:`referral_graph`)."""
    one, other = pl.min_horizontal("referrer", "friend"), pl.max_horizontal("referrer", "friend")
    edges = referrals.group_by(one.alias("one"), other.alias("other")).agg(
        pl.col("at").min().alias("since")
    )
    latest = edges.get_column("since").max()
    return ReferralGraph(edges, latest if isinstance(latest, int) else None)


def _friend_counts(base: CustomerBase, now: datetime) -> pl.DataFrame:
    """Each person's number of friends at ``now``: their degree in the referral graph, as it
    stood then (the whole graph when nobody was referred after ``now``, as in a live run)."""
    return degrees_at(referral_graph(base), now)


def degrees_at(graph: ReferralGraph, now: datetime) -> pl.DataFrame:
    """Each node's number of friends in ``graph`` at ``now`` (see :func:`_friend_counts`):
    nodes with at least one edge then, ``node`` and ``friends_count``."""
    whole = graph.latest is None or graph.latest <= _epoch_us(now)
    if whole and graph.degrees is not None:
        return graph.degrees
    edges = graph.edges if whole else graph.edges.filter(pl.col("since") <= _epoch_us(now))
    ends = pl.concat([edges.get_column("one"), edges.get_column("other")]).alias("node")
    counts = (
        ends.to_frame()
        .group_by("node")
        .agg(pl.len().cast(pl.Int64()).alias("friends_count"))
        .cast({"node": pl.Int64()})
    )
    if whole:
        graph.degrees = counts
    return counts


def _friends(
    links: pl.DataFrame, friends: pl.DataFrame, customers: pl.DataFrame, ordered: pl.Series
) -> pl.DataFrame:
    """Referral facts per customer row.

    ``links`` are the ``_referral_links``, ``friends`` the ``_friend_counts``; ``ordered``
    holds the rows of customers with at least one order. A friend who is not in the customer
    file counts as a friend, but never as converted or at risk: nothing is known about them.
    """
    at_risk_rows = (
        customers.select(ROW, "stage").filter(pl.col("stage").is_in(AT_RISK_STAGES)).get_column(ROW)
    )
    return friends_of(links, friends, customers.height, at_risk_rows, ordered)


def friends_of(
    links: pl.DataFrame,
    friends: pl.DataFrame,
    count: int,
    at_risk_rows: pl.Series,
    ordered: pl.Series,
) -> pl.DataFrame:
    """Referral facts per row of ``count`` customers: :func:`_friends`, with the rows of the
    customers at risk given (what a whole-base pass over parts of the base gathers)."""
    one, other = pl.min_horizontal("referrer", "friend"), pl.max_horizontal("referrer", "friend")
    # One query, collected once: the parts are small, and each collect costs as much as them.
    referrals = links.lazy()
    edges = referrals.select(one.alias("node"), other.alias("friend")).unique()

    def among(rows: pl.Series) -> pl.Expr:
        """Whether the person at node ``friend`` is a customer at one of these rows."""
        flags = pl.zeros(count, pl.Boolean(), eager=True)
        flags.scatter(rows, True)
        friend = pl.col("friend")
        return pl.when(friend < count).then(pl.lit(flags).gather(friend.clip(0, count - 1)))

    at_risk = (
        pl.concat([edges, edges.select(node="friend", friend="node")])
        .filter(among(at_risk_rows).fill_null(False))
        .group_by("node")
        .agg(pl.len().cast(pl.Int64()).alias("friends_at_risk"))
    )
    referred = (
        referrals.with_columns(among(ordered).fill_null(False).alias("friend"))
        .group_by(pl.col("referrer").alias("node"))
        .agg(
            pl.len().cast(pl.Int64()).alias("referrals_count"),
            pl.col("friend").sum().cast(pl.Int64()).alias("referrals_converted"),
            pl.col("last_at").max().alias("last_referral_at"),
        )
    )
    referred_by = referrals.group_by(pl.col("friend").alias("node")).agg(
        pl.col("referrer_id").sort_by("first_at", "referrer_id").first().alias("referred_by")
    )
    merged = friends.lazy()
    for part in (at_risk, referred, referred_by):
        merged = merged.join(part, on="node", how="left")
    return (
        merged.filter(pl.col("node") < count)
        .with_columns(pl.col("node").cast(pl.UInt32()).alias(ROW))
        .drop("node")
        .sort(ROW)
        .collect()
    )


# ── the facts ────────────────────────────────────────────────────────────


def _fact_expressions(now: datetime, calendar: pl.DataFrame) -> list[pl.Expr]:
    """Every fact but the rhythm baselines, in catalogue order, from the side-by-side frame."""
    now_us = _epoch_us(now)

    def days_since(column: str) -> pl.Expr:
        return (now_us - pl.col(column)) / pl.col(DAY)

    def hours_since(column: str) -> pl.Expr:
        return (now_us - pl.col(column)) / pl.col(HOUR)

    today = pl.col("local_date")
    orders = pl.col("orders_count").fill_null(0)
    purchase_days = pl.col("purchase_days_count").fill_null(0).cast(pl.Int64())
    signup = pl.coalesce(pl.col("signup_date"), pl.col("first_signup_date"))
    birthday = _Anniversary(pl.col("birthday"), calendar)
    joined = _Anniversary(signup, calendar)
    zero = pl.lit(0, pl.Int64())
    derived: dict[str, pl.Expr] = {
        "signup_date": signup,
        "orders_count": orders,
        "total_spent": pl.col("total_spent").fill_null(0.0),
        "average_order_value": pl.when(orders > 0).then(pl.col("total_spent") / orders),
        "first_order_date": pl.col("first_order_date"),
        "last_order_date": pl.col("last_order_date"),
        "days_since_last_order": days_since("last_order_at"),
        "days_since_first_order": days_since("first_order_at"),
        "days_since_signup": pl.when(signup <= today).then((today - signup).dt.total_days()),
        "orders_last_90d": pl.col("orders_last_90d").fill_null(0),
        "days_since_last_visit": days_since("last_visit_at"),
        "usual_order_interval": pl.when(orders >= 2).then(pl.col("order_gap_us") / pl.col(DAY)),
        "purchase_days_count": purchase_days,
        "mean_order_interval": pl.when(purchase_days >= 2).then(
            (pl.col("last_order_date") - pl.col("first_order_date")).dt.total_days()
            / (purchase_days - 1)
        ),
        "age": pl.when((pl.col("birthday") <= today) & (birthday.year != UNKNOWN_YEAR)).then(
            birthday.years
        ),
        "days_until_birthday": birthday.days_until_next,
        "is_birthday_today": birthday.days_until_next == 0,
        "customer_years": pl.when(signup <= today).then(joined.years),
        "unanswered_inbound_hours": hours_since("oldest_waiting_at").fill_null(0.0),
        "unanswered_inbound_count": pl.col("unanswered_inbound_count").fill_null(0),
        "last_inbound_channel": pl.col("last_inbound_channel"),
        "days_since_last_message": days_since("last_message_at"),
        "messages_sent_30d": pl.col("messages_sent_30d").fill_null(0),
        "hours_since_last_inbound": hours_since("last_inbound_at"),
        "friends_count": pl.col("friends_count").fill_null(zero),
        "referrals_count": pl.col("referrals_count").fill_null(zero),
        "referrals_converted": pl.col("referrals_converted").fill_null(zero),
        "referred_by": pl.col("referred_by"),
        "days_since_last_referral": days_since("last_referral_at"),
        "friends_at_risk": pl.col("friends_at_risk").fill_null(zero),
    }
    expressions = [pl.col(ROW)]
    for name, dtype in facts_schema().items():
        if name in (*RHYTHM_FACTS, *LEARNED_FACTS, *CHURN_FACTS, *PREFERENCE_FACTS):
            continue
        expressions.append(derived.get(name, pl.col(name)).cast(dtype).alias(name))
    return expressions


def _rhythm(
    facts: pl.DataFrame,
    personas: _Personas,
    medians: Callable[[str, pl.Series, _Personas], pl.Series] | None = None,
) -> list[pl.Expr]:
    """The customer's own rhythm and their persona's: lateness against the usual interval
    (a median of gaps between orders) and against the mean interval between purchase days.
    ``medians``: the personas' medians of the whole base, when ``facts`` are a part of it."""
    late = pl.col("days_since_last_order")
    out = []
    for interval, persona_interval, own, persona_ratio in (
        ("usual_order_interval", "persona_order_interval", "lapse_ratio", "persona_lapse_ratio"),
        (
            "mean_order_interval",
            "persona_mean_order_interval",
            "mean_lapse_ratio",
            "persona_mean_lapse_ratio",
        ),
    ):
        values = facts.get_column(interval)
        persona = pl.lit(
            _persona_medians(values, personas)
            if medians is None
            else medians(interval, values, personas)
        )
        out += [
            pl.when(pl.col(interval) > 0).then(late / pl.col(interval)).alias(own),
            persona.alias(persona_interval),
            pl.when(persona > 0).then(late / persona).alias(persona_ratio),
        ]
    return out


def _persona_medians(values: pl.Series, personas: _Personas) -> pl.Series:
    """Each customer's persona's median of ``values`` (nulls left out), null without a persona."""
    medians = (
        pl.DataFrame({"persona": personas.codes, "value": values})
        .drop_nulls()
        .group_by("persona")
        .agg(pl.col("value").median())
    )
    by_persona = pl.Series([None] * len(personas.names), dtype=pl.Float64())
    by_persona.scatter(medians.get_column("persona"), medians.get_column("value"))
    return by_persona.gather(personas.codes)


class _Personas:
    """The customers' personas, numbered once: persona medians are a pass over numbers."""

    def __init__(self, personas: pl.Series) -> None:
        self.names: list[str] = sorted(personas.drop_nulls().unique().to_list())
        self.codes = personas.cast(pl.Enum(self.names)).to_physical()

    def spread(self, medians: dict[str, float]) -> pl.Series:
        """Each customer's persona's value among ``medians`` (null without a persona)."""
        by_persona = pl.Series([medians.get(name) for name in self.names], dtype=pl.Float64())
        return by_persona.gather(self.codes)


class _Anniversary:
    """A date's yearly anniversary against each customer's local date, read from the calendar."""

    def __init__(self, since: pl.Expr, calendar: pl.DataFrame) -> None:
        month, day = since.dt.month().cast(pl.Int64()), since.dt.day().cast(pl.Int64())
        key = pl.col(TODAY).cast(pl.Int64()) * 416 + month * 32 + day
        self.year = since.dt.year()
        self.days_until_next = pl.lit(calendar.get_column("until")).gather(key)
        ahead = pl.lit(calendar.get_column("ahead")).gather(key)
        self.years = pl.col("local_date").dt.year() - self.year - ahead


def _epoch_us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _us(span: timedelta) -> int:
    return span // timedelta(microseconds=1)
