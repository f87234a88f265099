"""Learned preferences: which channel a customer answers on (``best_channel``), how often
they would like to hear from us (``suggested_cadence_days``) and at what local hour they are
about (``best_hour``).

A message (a ``sent`` event, or one of Courtship's own sends) is *answered* when the customer
writes to us (``inbound_message``), clicks (a ``click`` event) or orders within 48 hours after
it. Their *activity* is what they do of their own: orders, clicks and messages to us, each at
its local hour in the customer's time zone. Everything is counted column-wise over the
customers' events up to the moment.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

#: The persona's counts of the whole base, from those of these customers (``"channel"``:
#: ``persona``, ``channel``, ``_persona_answered``; ``"hour"``: ``persona``, ``hour``,
#: ``events``): when they are one part of a larger base (``courtship.engine.partitions``).
Priors = Callable[[str, pl.DataFrame], pl.DataFrame]

#: The learned preference facts, in catalogue order.
PREFERENCE_FACTS: tuple[str, ...] = ("best_channel", "suggested_cadence_days", "best_hour")
#: The facts (besides the events) they are computed from.
PREFERENCE_INPUTS: frozenset[str] = frozenset(
    {"persona", "consent_email", "consent_sms", "consent_instagram"}
)
#: The channels a customer consents to, each with its consent fact.
CONSENTED: dict[str, str] = {
    "email": "consent_email",
    "sms": "consent_sms",
    "instagram": "consent_instagram",
}
ANSWER_WITHIN_US = 48 * 3_600_000_000
DAY_US = 86_400_000_000
#: Fewer messages than this say nothing about a cadence.
MIN_MESSAGES = 3
MAX_CADENCE_DAYS = 365
#: The most their persona's preference weighs: half an answer (or half an event), so one
#: event of their own outweighs it and it decides only ties and customers without history.
PRIOR_WEIGHT = 0.5
#: The events that say when a customer is about (besides ``click`` events).
ACTIVITY_KINDS: tuple[str, ...] = ("order", "inbound_message")
ROW = "_row"


def answered_messages(events: pl.DataFrame, clicks: pl.DataFrame, now_us: int) -> pl.DataFrame:
    """Every message up to ``now_us`` (µs): ``_row``, ``at``, ``channel``, ``answered``.

    ``events`` are the engine's numbered events (``_row``, ``kind``, ``at`` in µs, ``channel``);
    ``clicks`` the customers' ``click`` events (``_row``, ``at`` in µs)."""
    upto = pl.col("at") <= now_us
    messages = (
        events.lazy()
        .filter(upto & (pl.col("kind") == "sent") & pl.col("channel").is_not_null())
        .select(ROW, "at", pl.col("channel").cast(pl.String()))
    )
    answers = pl.concat(
        [
            events.lazy()
            .filter(upto & pl.col("kind").is_in(["inbound_message", "order"]))
            .select(ROW, "at"),
            clicks.lazy().filter(upto).select(ROW, "at"),
        ]
    ).select(pl.col(ROW).cast(pl.UInt32()), pl.col("at").alias("_answer_at"), "at")
    joined = (
        messages.sort("at")
        .join_asof(
            answers.sort("at"),
            on="at",
            by=ROW,
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,  # sorted by instant; each customer's answers in order
        )
        .with_columns(
            answered=(pl.col("_answer_at") - pl.col("at") <= ANSWER_WITHIN_US)
            & (pl.col("_answer_at") <= now_us)
        )
        .with_columns(pl.col("answered").fill_null(False))
        .drop("_answer_at")
    )
    return joined.collect()


def by_channel(messages: pl.DataFrame) -> pl.DataFrame:
    """Per customer and channel: ``messages`` and ``answered`` (how many of them)."""
    return messages.group_by(ROW, "channel").agg(
        pl.len().alias("messages"), pl.col("answered").sum().alias("answered")
    )


def activity_hours(
    events: pl.DataFrame, clicks: pl.DataFrame, zones: pl.DataFrame, now_us: int
) -> pl.DataFrame:
    """Per customer and local hour (0 to 23, in the customer's own time zone): ``events``,
    how many orders, clicks and messages to us happened then, up to ``now_us`` (µs).

    ``events`` and ``clicks`` as for :func:`answered_messages`; ``zones``: ``_row`` and
    ``timezone`` of every customer. Each instant is read with its zone's rules on its day
    (summer time included), one partition per distinct zone."""
    upto = pl.col("at") <= now_us
    acts = pl.concat(
        [
            events.lazy()
            .filter(upto & pl.col("kind").cast(pl.String()).is_in(list(ACTIVITY_KINDS)))
            .select(pl.col(ROW).cast(pl.UInt32()), "at"),
            clicks.lazy().filter(upto).select(pl.col(ROW).cast(pl.UInt32()), "at"),
        ]
    ).join(
        zones.lazy().select(pl.col(ROW).cast(pl.UInt32()), pl.col("timezone").cast(pl.String())),
        on=ROW,
    )
    done = acts.collect()
    parts = [pl.DataFrame(schema={ROW: pl.UInt32(), "hour": pl.Int8()})]
    for (zone,), part in done.partition_by("timezone", as_dict=True).items():
        parts.append(
            part.select(
                ROW,
                pl.from_epoch("at", time_unit="us")
                .dt.replace_time_zone("UTC")
                .dt.convert_time_zone(str(zone))
                .dt.hour()
                .cast(pl.Int8())
                .alias("hour"),
            )
        )
    return (
        pl.concat(parts)
        .group_by(ROW, "hour")
        .agg(pl.len().cast(pl.Int64()).alias("events"))
        .sort(ROW, "hour")
    )


def persona_hours(
    facts: pl.DataFrame, hours: pl.DataFrame, priors: Priors | None = None
) -> pl.DataFrame:
    """Per persona and local hour: ``events`` of all its customers, and ``_prior``, the
    weight of that hour as their persona's preference (``PRIOR_WEIGHT`` for its busiest).
    ``priors``: gives the whole base's counts from these customers' (see :data:`Priors`)."""
    people = facts.select(ROW, pl.col("persona").cast(pl.String()).fill_null(""))
    counted = hours.join(people, on=ROW).group_by("persona", "hour").agg(pl.col("events").sum())
    if priors is not None:
        counted = priors("hour", counted)
    return counted.with_columns(
        _prior=pl.col("events")
        / pl.col("events").max().over("persona").clip(lower_bound=1)
        * PRIOR_WEIGHT
    ).sort("persona", "hour")


def best_hours(facts: pl.DataFrame, hours: pl.DataFrame, priors: Priors | None = None) -> pl.Series:
    """``best_hour`` of every customer of ``facts`` (in order; ``_row`` and ``persona``): the
    local hour with the most of their own activity plus their persona's prior for it (at most
    half an event). So their own busiest hour wins, the persona's preference breaks its ties,
    and a customer without activity gets their persona's busiest hour; then the earliest."""
    prior = persona_hours(facts, hours, priors)
    people = facts.select(ROW, pl.col("persona").cast(pl.String()).fill_null(""))
    own = (
        hours.join(people, on=ROW)
        .filter(pl.col("events") == pl.col("events").max().over(ROW))
        .join(prior.select("persona", "hour", "_prior"), on=["persona", "hour"], how="left")
        .sort(ROW, pl.col("_prior").fill_null(0.0), "hour", descending=[False, True, False])
        .group_by(ROW, maintain_order=True)
        .first()
        .select(ROW, pl.col("hour").alias("_own"))
    )
    persona_best = (
        prior.sort("persona", "_prior", "hour", descending=[False, True, False])
        .group_by("persona", maintain_order=True)
        .first()
        .select("persona", pl.col("hour").alias("_persona"))
    )
    return (
        people.join(own, on=ROW, how="left", maintain_order="left")
        .join(persona_best, on="persona", how="left", maintain_order="left")
        .select(pl.coalesce("_own", "_persona").cast(pl.Int64()).alias("best_hour"))
        .to_series()
    )


def hour_evidence(
    facts: dict[str, object], hours: pl.DataFrame, personas: pl.DataFrame
) -> list[str]:
    """What one customer's ``best_hour`` was learned from, in words: their activity per local
    hour, their persona's busiest hours (the prior) and the result. ``facts``: the customer's
    facts (``_row``, ``persona``, ``best_hour``, ``timezone``); ``hours`` their rows of
    :func:`activity_hours`; ``personas`` :func:`persona_hours`."""
    persona = str(facts.get("persona") or "")
    mine = hours.sort(pl.col("events"), "hour", descending=[True, False])
    total = int(mine.get_column("events").sum()) if mine.height else 0
    zone = facts.get("timezone") or "their time zone"
    if total:
        counts = ", ".join(
            f"{r['hour']:02d}:00 ({r['events']})" for r in mine.iter_rows(named=True)
        )
        own = f"their activity by local hour ({zone}; orders, clicks, messages): {counts}"
    else:
        own = "no activity of their own yet (orders, clicks, messages): their persona's hour"
    group = personas.filter(pl.col("persona") == persona).sort(
        pl.col("events"), "hour", descending=[True, False]
    )
    if group.height:
        top = ", ".join(
            f"{r['hour']:02d}:00 ({r['events']})" for r in group.head(3).iter_rows(named=True)
        )
        prior = f"persona {persona or '(none)'} prior (weighs half an event at most): busiest {top}"
    else:
        prior = f"persona {persona or '(none)'}: no activity to go on"
    best = facts.get("best_hour")
    result = f"best_hour {int(best):02d}:00 local" if isinstance(best, int) else "best_hour (none)"
    return [own, prior, result]


def preference_facts(
    facts: pl.DataFrame,
    messages: pl.DataFrame,
    hours: pl.DataFrame | None = None,
    priors: Priors | None = None,
) -> pl.DataFrame:
    """``best_channel``, ``suggested_cadence_days`` and ``best_hour`` of every customer of
    ``facts`` (in order; ``facts`` hold ``_row`` and ``PREFERENCE_INPUTS``), from
    ``answered_messages`` and ``activity_hours`` (none: no activity). ``priors``: the
    personas' counts of the whole base, when ``facts`` are a part of it."""
    counts = by_channel(messages)
    people = facts.select(ROW, pl.col("persona").cast(pl.String()))
    answered = (
        counts.join(people, on=ROW)
        .group_by("persona", "channel")
        .agg(pl.col("answered").sum().alias("_persona_answered"))
    )
    if priors is not None:
        answered = priors("channel", answered)
    persona = answered.with_columns(
        _prior=pl.col("_persona_answered")
        / pl.col("_persona_answered").max().over("persona").clip(lower_bound=1)
        * 0.5
    )
    channels = pl.DataFrame({"channel": list(CONSENTED)})
    scored = (
        facts.select(ROW, pl.col("persona").cast(pl.String()), *CONSENTED.values())
        .join(channels, how="cross")
        .filter(
            pl.coalesce(
                *(
                    pl.when(pl.col("channel") == name).then(pl.col(flag))
                    for name, flag in CONSENTED.items()
                )
            ).fill_null(False)
        )
        .join(counts, on=[ROW, "channel"], how="left")
        .join(persona.select("persona", "channel", "_prior"), on=["persona", "channel"], how="left")
        .with_columns(_score=pl.col("answered").fill_null(0) + pl.col("_prior").fill_null(0.0))
        .filter(pl.col("_score") > 0)
        .sort(ROW, pl.col("_score"), pl.col("channel"), descending=[False, True, False])
        .group_by(ROW, maintain_order=True)
        .first()
        .select(ROW, pl.col("channel").alias("best_channel"))
    )
    totals = messages.group_by(ROW).agg(
        pl.len().alias("_n"),
        pl.col("answered").sum().alias("_answered"),
        ((pl.col("at").max() - pl.col("at").min()) / DAY_US).alias("_span"),
    )
    cadence = totals.select(
        ROW,
        pl.when((pl.col("_n") >= MIN_MESSAGES) & (pl.col("_answered") > 0))
        .then(
            (pl.col("_span") / (pl.col("_n") - 1) * pl.col("_n") / pl.col("_answered"))
            .round()
            .clip(1, MAX_CADENCE_DAYS)
            .cast(pl.Int64())
        )
        .alias("suggested_cadence_days"),
    )
    if hours is None:
        hours = pl.DataFrame(schema={ROW: pl.UInt32(), "hour": pl.Int8(), "events": pl.Int64()})
    return (
        facts.select(ROW)
        .join(scored, on=ROW, how="left", maintain_order="left")
        .join(cadence, on=ROW, how="left", maintain_order="left")
        .with_columns(best_hours(facts, hours, priors))
        .select(*PREFERENCE_FACTS)
    )


def evidence(messages: pl.DataFrame, row: int) -> list[str]:
    """What one customer's preferences were learned from, in words: per channel, how many
    messages they were sent and how many they answered within 48 hours."""
    mine = by_channel(messages.filter(pl.col(ROW) == row)).sort("channel")
    if not mine.height:
        return ["no message sent yet: their persona's channel, no cadence of their own"]
    return [
        f"{r['channel']}: answered {r['answered']} of {r['messages']} message"
        f"{'' if r['messages'] == 1 else 's'} within 48 h"
        for r in mine.iter_rows(named=True)
    ]
