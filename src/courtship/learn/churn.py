"""``churn_risk``: the probability that a customer orders nothing in the next H days, learned
from the base's own past.

The engine's own facts at ``now - H`` (recency, frequency, money, rhythm, the persona's rhythm,
``p_alive``) are the features; whether each customer then ordered in the H days up to ``now`` is
the label. A standardised logistic regression (scikit-learn) fitted on them is applied to the
same facts at ``now``. Only customers with an order at the moment judged are judged: the others
have no history, and a null ``churn_risk``.

The back-test (:func:`back_test`, what ``courtship model`` prints) does the same one horizon
earlier: trained at ``now - 2H``, it predicts what happened between ``now - H`` and ``now``, and
its ROC AUC stands beside that of ``1 - p_alive`` and of plain recency on the same customers.

scikit-learn is imported only when a model is fitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:  # numpy is imported when the model is fitted
    import numpy as np

#: The facts the model reads, with what each says, in the order the model card prints them.
FEATURES: dict[str, str] = {
    "days_since_last_order": "recency",
    "days_since_first_order": "tenure",
    "purchase_days_count": "frequency",
    "orders_last_90d": "recent frequency",
    "total_spent": "money",
    "average_order_value": "basket",
    "mean_order_interval": "rhythm",
    "mean_lapse_ratio": "lateness for them",
    "persona_mean_lapse_ratio": "lateness for their persona",
    "p_alive": "BG/NBD",
}
#: Features read on a log scale (days, counts, money: a long tail).
LOGGED = frozenset(FEATURES) - {"p_alive"}
#: The facts a churn model reads at a moment: its features and the orders count of the label.
CHURN_INPUTS: frozenset[str] = frozenset({*FEATURES, "orders_count"})
#: The learned fact this module computes.
CHURN_FACTS: tuple[str, ...] = ("churn_risk",)
HORIZON_DAYS = 90
#: Fewer customers with an order than this, or fewer of either outcome, are too few to learn.
MIN_CUSTOMERS = 20
MIN_OF_EACH = 5
#: Models kept per base: a plan's moment and its rewinds.
KEPT_MODELS = 8


class ChurnError(ValueError):
    """The base's past cannot teach a churn model (too few customers, or a single outcome)."""


@dataclass(frozen=True)
class ChurnModel:
    """A fitted churn model: what it was trained on and each feature's standardised weight
    (positive: more of it, more risk)."""

    horizon_days: int
    trained_on: int
    churned: int
    weights: dict[str, float]
    intercept: float
    pipeline: Any
    fill: dict[str, float]

    def risk(self, facts: pl.DataFrame) -> pl.Series:
        """``churn_risk`` of every customer of ``facts`` (in order), null without an order."""
        import numpy as np

        matrix, judged = _matrix(facts, self.fill)
        risk = np.full(facts.height, np.nan)
        if judged.any():
            risk[judged] = self.pipeline.predict_proba(matrix[judged])[:, 1]
        return pl.Series("churn_risk", risk).fill_nan(None)


def fit(then: pl.DataFrame, later: pl.DataFrame, horizon_days: int = HORIZON_DAYS) -> ChurnModel:
    """The churn model learned from the facts ``then`` and ``later`` (H days after, the same
    customers in the same order): customers with an order ``then``, labelled churned when their
    ``orders_count`` did not grow by ``later``. Raises :class:`ChurnError` when there are too
    few customers, or too few of one outcome, to learn from."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    churned, judged = outcome(then, later)
    customers = int(judged.sum())
    if customers < MIN_CUSTOMERS:
        raise ChurnError(
            f"{customers} customers had an order {horizon_days} days before: too few to learn"
            f" from (at least {MIN_CUSTOMERS})"
        )
    labels = churned[judged]
    gone = int(labels.sum())
    if min(gone, customers - gone) < MIN_OF_EACH:
        raise ChurnError(
            f"of {customers} customers with an order, {gone} ordered nothing in the next"
            f" {horizon_days} days and {customers - gone} ordered: a model needs at least"
            f" {MIN_OF_EACH} of each"
        )
    raw, _ = _matrix(then, None)
    raw = raw[judged]
    fill = {}
    for k, name in enumerate(FEATURES):
        column = raw[:, k]
        known = column[np.isfinite(column)]
        fill[name] = float(np.median(known)) if known.size else 0.0
    matrix, _ = _matrix(then, fill)
    pipeline = make_pipeline(
        StandardScaler(), LogisticRegression(solver="newton-cholesky", max_iter=200)
    )
    pipeline.fit(matrix[judged], labels)
    regression = pipeline[-1]
    return ChurnModel(
        horizon_days=horizon_days,
        trained_on=customers,
        churned=gone,
        weights={n: float(w) for n, w in zip(FEATURES, regression.coef_[0], strict=True)},
        intercept=float(regression.intercept_[0]),
        pipeline=pipeline,
        fill=fill,
    )


def outcome(then: pl.DataFrame, later: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per customer: whether they ordered nothing between the two moments, and whether they
    are judged at all (had an order ``then``)."""
    before = then.get_column("orders_count").fill_null(0).to_numpy()
    after = later.get_column("orders_count").fill_null(0).to_numpy()
    return after <= before, before > 0


def auc(churned: np.ndarray, score: np.ndarray) -> float | None:
    """The ROC AUC of ``score`` for ``churned`` over the customers with a score; None when
    one outcome is missing among them."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    known = np.isfinite(score)
    if len(set(churned[known].tolist())) < 2:
        return None
    return float(roc_auc_score(churned[known], score[known]))


def back_test(
    at_2h: pl.DataFrame, at_h: pl.DataFrame, at_now: pl.DataFrame, horizon_days: int
) -> dict[str, Any]:
    """The model card's numbers: a model trained on ``at_2h`` → ``at_h`` predicting ``at_h`` →
    ``at_now``, with the AUC of its score, of ``1 - p_alive`` and of recency side by side; and
    the model trained on ``at_h`` → ``at_now`` that scores ``now``, with its weights."""
    import numpy as np

    past = fit(at_2h, at_h, horizon_days)
    churned, judged = outcome(at_h, at_now)
    labels = churned[judged]
    tested = at_h.filter(pl.Series(judged))
    score = past.risk(tested).to_numpy().astype(np.float64)
    alive = tested.get_column("p_alive").cast(pl.Float64()).fill_null(np.nan).to_numpy()
    recency = tested.get_column("days_since_last_order").fill_null(np.nan).to_numpy()
    current = fit(at_h, at_now, horizon_days)
    scored = current.risk(at_now)
    return {
        "horizon_days": horizon_days,
        "back_test": {
            "trained_on": past.trained_on,
            "trained_churned": past.churned,
            "tested_on": int(judged.sum()),
            "tested_churned": int(labels.sum()),
            "auc": {
                "churn_risk": auc(labels, score),
                "p_alive": auc(labels, 1 - alive),
                "recency": auc(labels, recency),
            },
        },
        "model": {
            "kind": "logistic regression on standardised features (scikit-learn)",
            "trained_on": current.trained_on,
            "trained_churned": current.churned,
            "weights": current.weights,
            "intercept": current.intercept,
            "scored": int(scored.is_not_null().sum()),
            "mean_churn_risk": scored.mean(),
        },
    }


def training_rows(then: pl.DataFrame, now: pl.DataFrame) -> pl.DataFrame:
    """What a churn model is fitted on, per customer in order: the features and
    ``orders_count`` at ``then``, and ``_orders_later``, their ``orders_count`` at ``now``.
    Those of the parts of a base, one after the other, are the whole base's."""
    return then.select(*FEATURES, "orders_count").with_columns(
        now.get_column("orders_count").alias("_orders_later")
    )


def fit_rows(rows: pl.DataFrame, horizon_days: int) -> ChurnModel | None:
    """The churn model of :func:`training_rows` (None when they cannot teach one)."""
    later = rows.select(pl.col("_orders_later").alias("orders_count"))
    try:
        return fit(rows.drop("_orders_later"), later, horizon_days)
    except ChurnError:
        return None


def churn_risk(
    then: pl.DataFrame,
    now: pl.DataFrame,
    horizon_days: int,
    keep: dict[str, Any],
    model_of: Callable[[pl.DataFrame], ChurnModel | None] | None = None,
) -> pl.Series:
    """``churn_risk`` at ``now`` from a model fitted on ``then`` (H days before) → ``now``;
    null for everyone when the base cannot teach one. ``keep``: where models are kept (the
    base's own dictionary), under a fingerprint of what they were fitted on. ``model_of``:
    gives the model from these customers' :func:`training_rows` instead (the whole base's,
    when they are a part of it)."""
    if model_of is not None:
        shared = model_of(training_rows(then, now))
        if shared is None:
            return pl.Series("churn_risk", [None] * now.height, dtype=pl.Float64())
        return shared.risk(now)
    columns = [*FEATURES, "orders_count"]
    mark = (
        horizon_days,
        then.height,
        int(then.select(columns).hash_rows(seed=20261201).sum() or 0),
        int(now.select("orders_count").hash_rows(seed=20261201).sum() or 0),
    )
    kept: dict[Any, ChurnModel | None] = keep.setdefault("_churn_models", {})
    if mark not in kept:
        try:
            model: ChurnModel | None = fit(then, now, horizon_days)
        except ChurnError:
            model = None
        if len(kept) >= KEPT_MODELS:
            kept.pop(next(iter(kept)))
        kept[mark] = model
    model = kept[mark]
    if model is None:
        return pl.Series("churn_risk", [None] * now.height, dtype=pl.Float64())
    return model.risk(now)


def _matrix(facts: pl.DataFrame, fill: dict[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """The features of every customer (log scale where :data:`LOGGED`), nulls filled with
    ``fill`` (left NaN without it), and who has an order."""
    import numpy as np

    columns = []
    for name in FEATURES:
        value = pl.col(name).cast(pl.Float64())
        if name in LOGGED:
            value = value.clip(lower_bound=0).log1p()
        if fill is not None:
            value = value.fill_null(fill[name]).fill_nan(fill[name])
        columns.append(value.alias(name))
    matrix = facts.select(columns).to_numpy().astype(np.float64)
    judged = facts.get_column("orders_count").fill_null(0).to_numpy() > 0
    return matrix, judged
