"""Learned preferences: which channel a customer answers on (``best_channel``) and how often
they would like to hear from us (``suggested_cadence_days``).

A message (a ``sent`` event, or one of Courtship's own sends) is *answered* when the customer
writes to us (``inbound_message``), clicks (a ``click`` event) or orders within 48 hours after
it. Everything is counted column-wise over the customers' events up to the moment.
"""

from __future__ import annotations

import polars as pl

#: The learned preference facts, in catalogue order.
PREFERENCE_FACTS: tuple[str, ...] = ("best_channel", "suggested_cadence_days")
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


def preference_facts(facts: pl.DataFrame, messages: pl.DataFrame) -> pl.DataFrame:
    """``best_channel`` and ``suggested_cadence_days`` of every customer of ``facts`` (in
    order; ``facts`` hold ``_row`` and ``PREFERENCE_INPUTS``), from ``answered_messages``."""
    counts = by_channel(messages)
    people = facts.select(ROW, pl.col("persona").cast(pl.String()))
    persona = (
        counts.join(people, on=ROW)
        .group_by("persona", "channel")
        .agg(pl.col("answered").sum().alias("_persona_answered"))
        .with_columns(
            _prior=pl.col("_persona_answered")
            / pl.col("_persona_answered").max().over("persona").clip(lower_bound=1)
            * 0.5
        )
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
    return (
        facts.select(ROW)
        .join(scored, on=ROW, how="left", maintain_order="left")
        .join(cadence, on=ROW, how="left", maintain_order="left")
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
