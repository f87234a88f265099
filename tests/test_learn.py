"""BG/NBD: the published CDNOW figures recovered, the facts the engine gives from it, per
persona, kept with the base."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from courtship.engine.facts import compute_facts
from courtship.learn import Learning
from courtship.learn.bgnbd import FitError, fit, log_likelihood
from courtship.learn.facts import MIN_CUSTOMERS, histories
from courtship.sources import CustomerBase

DATA = Path(__file__).parent / "data" / "cdnow_calibration.csv"
#: The end of the calibration period: 39 weeks from 1 January 1997.
END = dt.datetime(1997, 9, 30, 23, 0, tzinfo=dt.UTC)
#: Fader, Hardie & Lee (2005), section 5: the estimates on the CDNOW sample (weeks).
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4


def cdnow_base() -> CustomerBase:
    """The CDNOW purchases to 1997-09-30 as the engine reads them: one order per row, at noon."""
    rows = pl.read_csv(DATA, schema={"customer_id": pl.String(), "date": pl.Date()})
    events = rows.select(
        "customer_id",
        pl.lit("order").alias("type"),
        pl.col("date").dt.combine(dt.time(12)).dt.replace_time_zone("UTC").alias("at"),
        pl.lit(10.0).alias("amount"),
    )
    customers = rows.select(pl.col("customer_id").unique(maintain_order=True))
    return CustomerBase(customers, events)


@pytest.fixture(scope="module")
def cdnow() -> tuple[CustomerBase, pl.DataFrame]:
    base = cdnow_base()
    return base, compute_facts(base, END)


def weekly(facts: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    days = histories(facts, Learning()).drop_nulls("x")
    x, t_x, T = (days.get_column(c).to_numpy() for c in ("x", "t_x", "T"))
    return x, t_x / 7, T / 7


def test_the_cdnow_sample_recovers_the_published_estimates(cdnow):
    _, facts = cdnow
    assert facts.height == 2357
    x, t_x, T = weekly(facts)
    # Repeat purchases count purchase days: several orders on one day are one purchase.
    assert int(x.sum()) == 2457 and T.max() == pytest.approx(272 / 7)
    model = fit(x, t_x, T)
    fitted = {"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b}
    assert {name: round(value, 3) for name, value in fitted.items()} == PUBLISHED
    assert round(model.log_likelihood, 1) == PUBLISHED_LL
    assert model.customers == 2357


def test_the_likelihood_at_the_published_estimates_is_the_published_one(cdnow):
    x, t_x, T = weekly(cdnow[1])
    assert log_likelihood(list(PUBLISHED.values()), x, t_x, T) == pytest.approx(
        PUBLISHED_LL, abs=0.05
    )


def test_the_engine_facts_are_the_weekly_models_predictions(cdnow):
    """The engine fits in days: alpha is seven times the weekly one, r, a and b the same, and
    p_alive and the 90-day expectation are what the weekly model says of the same customers."""
    _, facts = cdnow
    x, t_x, T = weekly(facts)
    model = fit(x, t_x, T)
    in_days = next(iter(cdnow[0].__dict__["_bgnbd_fits"].values()))[""]
    assert in_days.alpha == pytest.approx(7 * model.alpha, rel=1e-4)
    for name in ("r", "a", "b"):
        assert getattr(in_days, name) == pytest.approx(getattr(model, name), rel=1e-4)
    alive = facts.get_column("p_alive").to_numpy()
    expected = facts.get_column("expected_orders_90d").to_numpy()
    assert alive == pytest.approx(model.p_alive(x, t_x, T), rel=1e-4)
    assert expected == pytest.approx(model.expected_purchases(90 / 7, x, t_x, T), rel=1e-4)
    # One purchase day: alive (nobody leaves before buying again); more are judged by recency.
    assert np.all(alive[x == 0] == 1.0) and np.all((alive > 0) & (alive <= 1))
    # Customer 00004, the first of Hardie's data: two repeat purchases, the last in week
    # 30.43 of 38.86.
    first = facts.row(0, named=True)
    assert (first["customer_id"], first["purchase_days_count"]) == ("00004", 3)
    assert first["p_alive"] == pytest.approx(0.7266, abs=1e-3)


def test_the_gradient_is_exact(cdnow):
    from courtship.learn.bgnbd import _Histories, _value_and_gradient

    x, t_x, T = weekly(cdnow[1])
    h = _Histories(x, t_x, T, np.ones_like(x) / x.size)
    at = np.log([0.3, 5.0, 0.9, 2.0])
    _, gradient = _value_and_gradient(at, h)
    step = 1e-6
    for i in range(4):
        up, down = at.copy(), at.copy()
        up[i] += step
        down[i] -= step
        numeric = (_value_and_gradient(up, h)[0] - _value_and_gradient(down, h)[0]) / (2 * step)
        assert gradient[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def simulate(n: int, r: float, alpha: float, a: float, b: float, span: float, seed: int):
    """Histories drawn from BG/NBD itself over ``span`` days (all customers start at 0)."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1 / alpha, n)
    leave = rng.beta(a, b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        now = 0.0
        while True:
            now += rng.exponential(1 / rate[i])
            if now > span:
                break
            x[i] += 1
            t_x[i] = now
            if rng.random() < leave[i]:
                break
    return x, np.floor(t_x), np.full(n, span)


def test_a_simulated_base_gives_back_its_parameters():
    x, t_x, T = simulate(8000, 0.8, 40.0, 0.6, 3.0, 365.0, seed=7)
    model = fit(x, t_x, T)
    assert model.r == pytest.approx(0.8, rel=0.15)
    assert model.alpha == pytest.approx(40.0, rel=0.2)
    assert model.a == pytest.approx(0.6, rel=0.3)
    assert model.b == pytest.approx(3.0, rel=0.4)


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        ([], [], [], "no customer has an order"),
        ([1], [5], [3], "t_x <= T"),
        ([0], [2], [3], "t_x = 0 without a repeat purchase"),
        ([-1], [0], [3], "0 <= t_x"),
        ([np.nan], [0], [3], "finite"),
    ],
)
def test_histories_that_cannot_be_are_refused(x, t_x, T, message):
    with pytest.raises(FitError, match=message):
        fit(x, t_x, T)


def two_personas() -> CustomerBase:
    """Frequent buyers who keep buying, occasional ones who stop: their own models differ."""
    frequent = simulate(300, 2.0, 20.0, 0.2, 8.0, 300.0, seed=1)
    occasional = simulate(300, 0.5, 60.0, 1.0, 1.5, 300.0, seed=2)
    start = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    ids, personas, events = [], [], []
    for persona, (xs, last, _) in (("frequent", frequent), ("occasional", occasional)):
        for i, (x, t_x) in enumerate(zip(xs, last, strict=True)):
            cid = f"{persona[0]}{i}"
            ids.append(cid)
            personas.append(persona)
            days = sorted({0.0, float(t_x), *np.linspace(0, t_x, int(x) + 1)[1:-1].round()})
            days = days[: int(x) + 1] if x else [0.0]
            events += [(cid, "order", start + dt.timedelta(days=d), 10.0) for d in days]
    customers = pl.DataFrame({"customer_id": ids, "persona": personas})
    frame = pl.DataFrame(
        events,
        schema={
            "customer_id": pl.String(),
            "type": pl.String(),
            "at": pl.Datetime("us", "UTC"),
            "amount": pl.Float64(),
        },
        orient="row",
    )
    return CustomerBase(customers, frame)


def test_one_model_per_persona():
    base = two_personas()
    now = dt.datetime(2026, 10, 28, 12, tzinfo=dt.UTC)
    whole = compute_facts(base, now)
    apart = compute_facts(base, now, learning=Learning(per_persona=True))
    fits = base.__dict__["_bgnbd_fits"]
    models = fits[next(k for k in fits if k[0].per_persona)]
    assert set(models) == {"frequent", "occasional"}
    assert models["frequent"].r != pytest.approx(models["occasional"].r, rel=0.1)
    assert not whole.get_column("p_alive").equals(apart.get_column("p_alive"))
    assert apart.get_column("p_alive").null_count() == 0


def test_a_persona_too_small_to_fit_is_judged_by_the_whole_base():
    base = two_personas()
    few = base.customers.with_columns(
        pl.when(pl.int_range(pl.len()) < MIN_CUSTOMERS - 1)
        .then(pl.lit("rare"))
        .otherwise(pl.col("persona"))
        .alias("persona")
    )
    base = CustomerBase(few, base.events)
    now = dt.datetime(2026, 10, 28, 12, tzinfo=dt.UTC)
    compute_facts(base, now, learning=Learning(per_persona=True))
    models = next(iter(base.__dict__["_bgnbd_fits"].values()))
    whole = fit(
        *(
            histories(compute_facts(base, now, learning=None), Learning())
            .drop_nulls("x")
            .get_column(c)
            .to_numpy()
            for c in ("x", "t_x", "T")
        )
    )
    assert models["rare"].r == pytest.approx(whole.r, rel=1e-6)
    assert models["frequent"].r != pytest.approx(whole.r, rel=1e-3)


def test_a_fit_is_kept_with_the_base_for_its_moment(cdnow):
    base, facts = cdnow
    fits = base.__dict__["_bgnbd_fits"]
    kept = dict(fits)
    again = compute_facts(base, END)
    assert base.__dict__["_bgnbd_fits"] == kept  # nothing fitted again
    assert again.get_column("p_alive").equals(facts.get_column("p_alive"))
    compute_facts(base, END + dt.timedelta(days=30))
    assert len(base.__dict__["_bgnbd_fits"]) == len(kept) + 1  # another moment, another fit


def test_histories_as_one_number_or_as_four_columns_give_the_same_facts(monkeypatch):
    """Days that do not fit a 64-bit history (beyond 65535 days) are grouped by their four
    columns: the learned facts are the same either way."""
    from courtship.learn import facts as learned

    base = two_personas()
    now = dt.datetime(2026, 10, 28, 12, tzinfo=dt.UTC)
    facts = compute_facts(base, now, learning=None)
    per_persona = Learning(per_persona=True)
    packed = learned.learned_facts(facts, per_persona, {})
    monkeypatch.setattr(learned, "_keyed", lambda rows: (rows, [learned._GROUP, "x", "t_x", "T"]))
    columns = learned.learned_facts(facts, per_persona, {})
    assert packed.equals(columns)
    assert packed.get_column("p_alive").null_count() < packed.height
    monkeypatch.undo()
    far = facts.with_columns(pl.col("first_order_date") - dt.timedelta(days=70_000))
    _, key = learned._keyed(learned.histories(far, per_persona))
    assert key == [learned._GROUP, "x", "t_x", "T"]  # T beyond 65535 days: four columns
