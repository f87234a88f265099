"""Benchmark: fitting BG/NBD (``p_alive``, ``expected_orders_90d``) on 1,000,000 customers.

The base is ``bench_engine.generate_base`` (fixed seed; ~10 events a customer, orders among
them). The facts are computed once without the learned facts; then, with a fresh cache each
time, it times (medians over repetitions) ``courtship.learn.facts.learned_facts`` on them —
grouping the histories into distinct (x, t_x, T), the maximum-likelihood fit, the predictions
for every customer — for one model of the whole base and one per persona, and the fit alone.
Target: the learned facts in under 5 s, with one model of the whole base and with one per
persona.

Then ``churn_risk`` (:mod:`courtship.learn.churn`): the engine's facts at now - 90 days (the
extra facts it needs, ``FactHistory.before`` after ``at(now)``), the logistic regression's fit
on them, scoring every customer at now, and the back-test of ``courtship model`` (the facts at
now - 180 days too, two fits and three AUCs). Target: fit and scoring in under 10 s. And the
learned preferences (``best_channel``, ``suggested_cadence_days``: every message and whether it
was answered within 48 hours; ``best_hour``: every order, click and message at its local
hour). Results go to ``bench/results/learn-<customers>.json`` (git-ignored).

    .venv/bin/python bench/bench_learn.py             # 1,000,000 customers
    .venv/bin/python bench/bench_learn.py --quick     # 100,000 customers
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import DEFAULT_NOW, generate_base

from courtship.engine.facts import FactHistory, compute_facts
from courtship.learn import Learning
from courtship.learn.bgnbd import fit
from courtship.learn.churn import CHURN_INPUTS, back_test
from courtship.learn.churn import fit as fit_churn
from courtship.learn.facts import histories, learned_facts
from courtship.learn.preferences import preference_facts

TARGET_S = 5.0
CHURN_TARGET_S = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 customers")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.customers = 100_000
    now = dt.datetime.fromisoformat(DEFAULT_NOW).astimezone(dt.UTC)
    base = generate_base(args.customers, args.seed, now)
    start = time.perf_counter()
    facts = compute_facts(base, now, learning=None)
    facts_s = time.perf_counter() - start
    rows = histories(facts, Learning()).drop_nulls("x")
    triples = rows.group_by("x", "t_x", "T").len()
    results: dict[str, object] = {
        "customers": args.customers,
        "with_orders": rows.height,
        "distinct_histories": triples.height,
        "facts_without_learning_s": round(facts_s, 2),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }

    def timed(task) -> tuple[float, object]:
        times, value = [], None
        for _ in range(args.repeat):
            start = time.perf_counter()
            value = task()
            times.append(time.perf_counter() - start)
        return statistics.median(times), value

    whole_s, learned = timed(lambda: learned_facts(facts, Learning(), {}))
    persona_s, _ = timed(lambda: learned_facts(facts, Learning(per_persona=True), {}))
    x, t_x, T = (triples.get_column(c).to_numpy() for c in ("x", "t_x", "T"))
    counts = triples.get_column("len").to_numpy()
    fit_s, model = timed(lambda: fit(x, t_x, T, weights=counts))
    kept: dict[str, object] = {}
    learned_facts(facts, Learning(), kept)
    start = time.perf_counter()
    learned_facts(facts, Learning(), kept)
    cached_s = time.perf_counter() - start
    results |= {
        "learned_facts_whole_base_s": round(whole_s, 3),
        "learned_facts_per_persona_s": round(persona_s, 3),
        "fit_alone_s": round(fit_s, 3),
        "learned_facts_cached_s": round(cached_s, 3),
        "model": {k: getattr(model, k) for k in ("r", "alpha", "a", "b", "log_likelihood")},
        "p_alive_mean": learned.get_column("p_alive").mean(),  # type: ignore[union-attr]
        "target_s": TARGET_S,
    }
    results |= churn(base, now, args.repeat)
    print(json.dumps(results, indent=2))
    out = Path(__file__).parent / "results" / f"learn-{args.customers}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    churn_s = results["churn_fit_s"] + results["churn_score_s"]  # type: ignore[operator]
    met = whole_s <= TARGET_S and persona_s <= TARGET_S and churn_s <= CHURN_TARGET_S
    return 0 if met else 1


def churn(base, now: dt.datetime, repeat: int) -> dict[str, object]:
    """The cost of ``churn_risk`` and of its back-test on ``base`` at ``now``."""
    start = time.perf_counter()
    import sklearn.linear_model  # noqa: F401  (once per process: timed apart)

    import_s = time.perf_counter() - start
    history = FactHistory(base)
    start = time.perf_counter()
    facts = history.at(now)
    at_now_s = time.perf_counter() - start
    horizon = dt.timedelta(days=90)
    start = time.perf_counter()
    then = history.before(now - horizon, now, set(CHURN_INPUTS))
    then_s = time.perf_counter() - start
    fits, scores = [], []
    for _ in range(max(2, repeat // 2)):
        start = time.perf_counter()
        model = fit_churn(then, facts)
        fits.append(time.perf_counter() - start)
        start = time.perf_counter()
        risk = model.risk(facts)
        scores.append(time.perf_counter() - start)
    start = time.perf_counter()
    learned = preference_facts(
        facts.with_row_index("_row"), history.answered(now), history.activity(now)
    )
    preferences_s = time.perf_counter() - start
    start = time.perf_counter()
    earlier = history.before(now - 2 * horizon, now, set(CHURN_INPUTS))
    card = back_test(earlier, then, facts, 90)
    card_s = time.perf_counter() - start
    return {
        "sklearn_import_s": round(import_s, 2),
        "facts_at_now_with_bgnbd_s": round(at_now_s, 2),
        "churn_facts_at_now_minus_90d_s": round(then_s, 2),
        "churn_fit_s": round(statistics.median(fits), 2),
        "churn_score_s": round(statistics.median(scores), 2),
        "churn_back_test_s": round(card_s, 2),
        "churn_trained_on": model.trained_on,
        "churn_scored": int(risk.is_not_null().sum()),
        "churn_auc": card["back_test"]["auc"],
        "churn_target_s": CHURN_TARGET_S,
        "preferences_s": round(preferences_s, 2),
        "best_channel_known": int(learned.get_column("best_channel").is_not_null().sum()),
        "best_hour_known": int(learned.get_column("best_hour").is_not_null().sum()),
    }


if __name__ == "__main__":
    raise SystemExit(main())
