"""The learned facts of a whole base, column-wise: ``p_alive`` and ``expected_orders_90d``
from a BG/NBD model (:mod:`courtship.learn.bgnbd`) fitted on the base at the moment.

Time is counted in the customer's local days, as the rhythm facts count it: ``x`` is
``purchase_days_count - 1`` (purchase days after the first), ``t_x`` the days from the first
purchase day to the last, ``T`` the days from the first purchase day to today. Customers
without an order have no history to judge: their learned facts are null.

Histories are grouped: customers with the same ``(x, t_x, T)`` (and persona, when fitted per
persona) share one likelihood term and one prediction. Per persona, each fit starts from the
whole base fitted on a sample of its histories, and the whole base's full model is fitted only
for a persona too small to have its own. A fit is kept with the base, under a
fingerprint of the histories it was fitted on, so a later call at the same moment (``explain``
after ``plan``, the ``becomes`` rewinds of a plan) fits nothing again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from courtship.learn import Learning

if TYPE_CHECKING:  # scipy is imported when a model is fitted, not when the engine starts
    from courtship.learn.bgnbd import BGNBD

#: The learned facts, in catalogue order.
LEARNED_FACTS: tuple[str, ...] = ("p_alive", "expected_orders_90d")
#: The facts (besides ``local_date``) the learned facts are computed from.
LEARNING_INPUTS: frozenset[str] = frozenset(
    {"persona", "purchase_days_count", "first_order_date", "last_order_date"}
)
HORIZON_DAYS = 90
#: Fewer customers with an order than this are too few to fit four parameters on: their
#: learned facts are null (a persona this small is judged by the whole base's model).
MIN_CUSTOMERS = 20
#: Fits kept per base: a plan's moment and its rewinds.
KEPT_FITS = 16
_GROUP = "_group"


def histories(facts: pl.DataFrame, learning: Learning) -> pl.DataFrame:
    """Per customer (in order): the BG/NBD group, ``x``, ``t_x`` and ``T`` in days, null
    without an order."""
    days = pl.col("purchase_days_count").cast(pl.Float64())
    first = pl.col("first_order_date")
    group = pl.col("persona").cast(pl.String()) if learning.per_persona else pl.lit("")
    return facts.select(
        group.fill_null("").alias(_GROUP),
        pl.when(days >= 1).then(days - 1).alias("x"),
        pl.when(days >= 1).then((pl.col("last_order_date") - first).dt.total_days()).alias("t_x"),
        pl.when(days >= 1).then((pl.col("local_date") - first).dt.total_days()).alias("T"),
    ).with_columns(pl.col("t_x", "T").cast(pl.Float64()))


def learned_facts(
    facts: pl.DataFrame,
    learning: Learning,
    keep: dict[str, Any],
    fitter: Callable[[pl.DataFrame], dict[str, BGNBD | None]] | None = None,
) -> pl.DataFrame:
    """``p_alive`` and ``expected_orders_90d`` for every customer of ``facts`` (which hold
    ``LEARNING_INPUTS`` and ``local_date``), in order. ``keep`` is where fits are kept (the
    base's own dictionary); ``fitter``: gives the models of these grouped histories instead
    (those of the whole base, when ``facts`` are a part of it)."""
    rows, key = _keyed(histories(facts, learning))
    if key == [_KEY]:  # one number per history: grouped and joined back several times faster
        names = sorted(rows.get_column(_GROUP).unique().to_list())
        code = pl.col(_KEY)
        triples = (
            rows.drop_nulls(_KEY)
            .group_by(_KEY)
            .agg(pl.len().alias("_count"))
            .sort(_KEY)
            .select(
                _KEY,
                (code // _GROUP_UNIT)
                .replace_strict(dict(enumerate(names)), return_dtype=pl.String())
                .alias(_GROUP),
                *(
                    (code // unit % _UNIT).cast(pl.Float64()).alias(name)
                    for name, unit in (("x", _X_UNIT), ("t_x", _UNIT), ("T", 1))
                ),
                "_count",
            )
        )
    else:
        triples = rows.drop_nulls("x").group_by(*key).agg(pl.len().alias("_count")).sort(*key)
    grouped = triples.drop(_KEY, strict=False)
    models = _fits(grouped, learning, keep) if fitter is None else fitter(grouped)
    parts = []
    for (name,), part in triples.partition_by(_GROUP, as_dict=True).items():
        model = models.get(name)
        x, t_x, T = (part.get_column(c).to_numpy() for c in ("x", "t_x", "T"))
        if model is None:
            import numpy as np

            alive = expected = np.full(part.height, np.nan)
        else:
            alive = model.p_alive(x, t_x, T)
            expected = model.expected_purchases(HORIZON_DAYS, x, t_x, T)
        parts.append(part.with_columns(p_alive=alive, expected_orders_90d=expected))
    schema = {"p_alive": pl.Float64(), "expected_orders_90d": pl.Float64()}
    predicted = pl.concat(
        [
            triples.clear()
            .drop("_count")
            .with_columns(**{n: pl.lit(None, t) for n, t in schema.items()})
        ]
        + [p.drop("_count") for p in parts]
    ).with_columns(
        pl.when(pl.col(name).is_finite()).then(pl.col(name)).alias(name) for name in LEARNED_FACTS
    )
    return (
        rows.select(*key)
        .join(predicted.select(*key, *LEARNED_FACTS), on=key, how="left", maintain_order="left")
        .select(*LEARNED_FACTS)
    )


#: A history as one number when its days fit: group * 2^48 + x * 2^32 + t_x * 2^16 + T.
_KEY = "_history"
_UNIT = 1 << 16
_X_UNIT = 1 << 32
_GROUP_UNIT = 1 << 48


def _keyed(rows: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """``rows`` with each history as one number (``_KEY``, null without an order) when every
    ``x``, ``t_x`` and ``T`` is a whole number of days from 0 to 65535 and the groups are
    fewer than 32768; else as they are. Returns them with the columns that name a history."""
    four = [_GROUP, "x", "t_x", "T"]
    days = rows.select("x", "t_x", "T").drop_nulls()
    bounds = days.select(
        pl.min_horizontal(pl.all().min()).alias("low"),
        pl.max_horizontal(pl.all().max()).alias("high"),
        pl.any_horizontal((pl.all() != pl.all().round()).any()).alias("fractions"),
    ).row(0)
    groups = rows.get_column(_GROUP).n_unique()
    low, high, fractions = bounds
    if fractions or groups >= 1 << 15 or (low is not None and (low < 0 or high >= _UNIT)):
        return rows, four
    names = sorted(rows.get_column(_GROUP).unique().to_list())
    if not names:  # no customer: nothing to group
        return rows, four
    code = pl.col(_GROUP).replace_strict(
        {n: i for i, n in enumerate(names)}, return_dtype=pl.Int64()
    )
    history = (
        code * _GROUP_UNIT
        + pl.col("x").cast(pl.Int64()) * _X_UNIT
        + pl.col("t_x").cast(pl.Int64()) * _UNIT
        + pl.col("T").cast(pl.Int64())
    )
    return rows.with_columns(history.alias(_KEY)), [_KEY]


def fits(triples: pl.DataFrame, learning: Learning) -> dict[str, BGNBD | None]:
    """The models of the grouped histories of parts of a base, added up: the fit of the
    whole base."""
    whole = (
        triples.group_by(_GROUP, "x", "t_x", "T")
        .agg(pl.col("_count").sum().cast(pl.UInt32()))
        .sort(_GROUP, "x", "t_x", "T")
    )
    return _fits(whole, learning, {})


def _fits(
    triples: pl.DataFrame, learning: Learning, keep: dict[str, Any]
) -> dict[str, BGNBD | None]:
    """The model of each group of ``triples``: fitted, or kept from an earlier call."""
    mark = (learning, triples.height, int(triples.hash_rows(seed=20261201).sum() or 0))
    kept: dict[Any, dict[str, BGNBD | None]] = keep.setdefault("_bgnbd_fits", {})
    if mark in kept:
        return kept[mark]
    if learning.per_persona:
        # Each persona's fit starts from a rough fit of the whole base (on a sample of its
        # histories); the whole base's own model is fitted only for a persona that needs it
        # (too few customers, or a fit that fails).
        start = _rough(triples)
        whole: list[BGNBD | None] = []

        def fallback() -> BGNBD | None:
            if not whole:
                whole.append(_fit(triples))
            return whole[0]

        models: dict[str, BGNBD | None] = {
            name: _fit(part, start) or fallback()
            for (name,), part in triples.partition_by(_GROUP, as_dict=True).items()
        }
    else:
        models = {"": _fit(triples)}
    if len(kept) >= KEPT_FITS:
        kept.pop(next(iter(kept)))
    kept[mark] = models
    return models


def _rough(triples: pl.DataFrame) -> BGNBD | None:
    """A start for the personas' fits: the whole base fitted on a sample of its histories."""
    from courtship.learn.bgnbd import rough_fit

    if triples.get_column("_count").sum() < MIN_CUSTOMERS:
        return None
    x, t_x, T, counts = (triples.get_column(c).to_numpy() for c in ("x", "t_x", "T", "_count"))
    return rough_fit(x, t_x, T, counts)


def _fit(triples: pl.DataFrame, start: BGNBD | None = None) -> BGNBD | None:
    """The BG/NBD model of these grouped histories (starting from ``start``, when given); None
    when there are too few or the fit fails."""
    from courtship.learn.bgnbd import FitError, fit

    if triples.get_column("_count").sum() < MIN_CUSTOMERS:
        return None
    x, t_x, T, counts = (triples.get_column(c).to_numpy() for c in ("x", "t_x", "T", "_count"))
    try:
        return fit(x, t_x, T, weights=counts, start=start)
    except FitError:
        return None
