"""``churn_risk`` and ``courtship model``: a churn score learned from the base's own past.

A planted base where churn is predictable from rhythm, not from recency alone: weekly and
two-monthly buyers, some of whom stop for good. A two-monthly buyer's month of silence is
nothing; a weekly buyer's is the end. The learned score ranks who orders nothing in the next
90 days far better than chance, and better than days since the last order.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from courtship.cli import app
from courtship.engine.facts import FactHistory
from courtship.intake import read_base
from courtship.learn.churn import ChurnError, fit
from courtship.plugins import installed
from courtship.project import load_project

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-23T15:00:00Z"
NOW = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
runner = CliRunner()

PLAYBOOK = """\
id: likely-to-leave
title: Likely to leave
stage: at-risk
category: marketing
trigger: {schedule: {every: 1d}, at: "10:00"}
audience: {fact: churn_risk, gt: 0.5}
respond:
  - send: {channel: email, template: hello}
"""


def planted(root: Path, customers: int = 400, seed: int = 12) -> Path:
    """A project whose base has weekly and two-monthly buyers since early 2025; 45% of them
    stop for good in the last 300 days."""
    rng = random.Random(seed)
    start = dt.datetime(2025, 1, 6, 12, 0, tzinfo=dt.UTC)
    rows = ["customer_id,first_name,email,consent_email,persona"]
    events = []
    for k in range(customers):
        cid = f"c{k:04d}"
        pace = 7 if k % 2 else 60
        rows.append(f"{cid},Ann,{cid}@example.org,true,{'weekly' if pace == 7 else 'seasonal'}")
        first = start + dt.timedelta(days=rng.uniform(0, 60))
        # Those who stop, stop in the last 300 days: a long silence alone tells them less.
        leaves = rng.random() < 0.45
        stop = NOW - dt.timedelta(days=rng.uniform(0, 300)) if leaves else NOW
        day = first
        while day <= stop:
            at = day.strftime("%Y-%m-%dT%H:%M:%SZ")
            events.append(json.dumps({"customer_id": cid, "type": "order", "at": at, "amount": 30}))
            day += dt.timedelta(days=pace * rng.uniform(0.9, 1.1))
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "likely-to-leave.yaml").write_text(PLAYBOOK)
    (root / "playbooks" / "templates" / "hello.md").write_text("Hi {{ first_name }}!\n")
    (root / "customers.csv").write_text("\n".join(rows) + "\n")
    (root / "events.jsonl").write_text("\n".join(events) + "\n")
    (root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state.sqlite\n"
    )
    return root


def model(root: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["model", "--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def base_root(tmp_path_factory):
    return planted(tmp_path_factory.mktemp("planted"))


def test_the_back_test_ranks_churn_well_above_chance_and_above_recency(base_root):
    code, out, err = model(base_root, "--at", AT, "--format", "json")
    assert code == 0, err
    card = json.loads(out)
    auc = card["back_test"]["auc"]
    assert auc["churn_risk"] > 0.9
    assert auc["churn_risk"] > auc["recency"] + 0.02
    assert card["horizon_days"] == 90
    assert card["moments"] == {
        "trained": "2026-05-27T15:00:00Z",
        "tested": "2026-08-25T15:00:00Z",
        "now": AT,
    }
    weights = card["model"]["weights"]
    # Lateness for their own rhythm says churn; a long silence alone says less.
    assert weights["mean_lapse_ratio"] > 0
    assert abs(weights["mean_lapse_ratio"]) > abs(weights["days_since_last_order"])
    assert card["back_test"]["tested_on"] == card["model"]["trained_on"]


def test_churn_risk_is_the_model_applied_to_the_facts_at_now(base_root):
    project = load_project(base_root)
    base = read_base(project, installed(), dry_run=True)
    history = FactHistory(base, churn_days=90)
    facts = history.at(NOW)
    risk = facts.get_column("churn_risk")
    ordered = facts.get_column("orders_count") > 0
    assert risk.filter(ordered).null_count() == 0
    assert risk.filter(~ordered).null_count() == (~ordered).sum()
    assert risk.drop_nulls().is_between(0, 1).all()
    # The same model, fitted by hand on the engine's facts 90 days before.
    then = FactHistory(base).at(NOW - dt.timedelta(days=90))
    by_hand = fit(then, facts).risk(facts)
    assert risk.equals(by_hand, null_equal=True)
    # A weekly buyer gone quiet for a month is at risk; a seasonal one is not.
    late = facts.filter(
        (pl.col("persona") == "weekly") & (pl.col("days_since_last_order") > 30)
    ).get_column("churn_risk")
    early = facts.filter(
        (pl.col("persona") == "seasonal") & (pl.col("days_since_last_order") < 40)
    ).get_column("churn_risk")
    assert late.min() > early.max()


def test_churn_risk_at_an_earlier_moment_equals_the_one_computed_there(base_root):
    project = load_project(base_root)
    base = read_base(project, installed(), dry_run=True)
    history = FactHistory(base, churn_days=90)
    history.at(NOW)
    moment = NOW - dt.timedelta(days=10)
    past = history.before(moment, NOW, {"churn_risk"})
    assert past.columns == [
        "customer_id",
        "churn_risk",
        "local_date",
        "local_time",
        "utc_offset_minutes",
    ]
    fresh = FactHistory(base, churn_days=90).at(moment)
    assert past.get_column("churn_risk").equals(fresh.get_column("churn_risk"), null_equal=True)


def test_a_playbook_reads_churn_risk_like_any_fact(base_root):
    result = runner.invoke(
        app,
        [
            "facts",
            "--at",
            AT,
            "--project",
            str(base_root),
            "--fact",
            "churn_risk",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    risky = {
        row["customer_id"]
        for row in json.loads(result.stdout)
        if row["churn_risk"] is not None and row["churn_risk"] > 0.5
    }
    assert 20 < len(risky) < 400
    result = runner.invoke(app, ["plan", "--at", AT, "--project", str(base_root), "-f", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    items = [*plan["sends"], *plan["deferred"], *plan["blocked"]]
    fired = {item["customer"] for item in items if item["playbook"] == "likely-to-leave"}
    assert fired == risky


def test_the_engine_fits_churn_only_when_a_playbook_reads_it(base_root, tmp_path):
    from courtship.cli.common import load

    assert load(base_root, quiet=True).engine.churns is True
    other = planted(tmp_path / "other", customers=30)
    (other / "playbooks" / "likely-to-leave.yaml").write_text(
        PLAYBOOK.replace("churn_risk, gt: 0.5", "p_alive, lt: 0.5")
    )
    loaded = load(other, quiet=True)
    assert loaded.engine.churns is False and loaded.engine.learns is True


def test_the_model_card_in_text_on_the_bundled_base():
    code, out, err = model(ROOT, "--at", AT)
    assert code == 0, err
    assert "Back-test on this base" in out
    for label in ("churn_risk (this model)", "1 - p_alive (BG/NBD)", "recency (days since"):
        line = next(line for line in out.splitlines() if label in line)
        assert 0.5 < float(line.split()[-1]) <= 1
    assert "logistic regression on standardised features (scikit-learn)" in out
    assert "days_since_last_order" in out and "p_alive" in out


def test_a_base_too_small_is_a_clear_message(tmp_path):
    root = planted(tmp_path, customers=12)
    code, out, err = model(root, "--at", AT)
    assert code == 1 and out == ""
    assert "cannot back-test churn_risk on this base:" in err
    assert "too few to learn from" in err
    assert "Traceback" not in err


def test_a_single_outcome_is_a_clear_message(tmp_path):
    # Everyone buys weekly and nobody stops: nobody ever goes 90 days without an order.
    root = planted(tmp_path, customers=60)
    events = [
        json.dumps(
            {
                "customer_id": f"c{k:04d}",
                "type": "order",
                "at": (NOW - dt.timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "amount": 10,
            }
        )
        for k in range(60)
        for d in range(1, 400, 7)
    ]
    (root / "events.jsonl").write_text("\n".join(events) + "\n")
    code, _, err = model(root, "--at", AT)
    assert code == 1
    assert "0 ordered nothing in the next 90 days" in err
    assert "at least 5 of each" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--horizon", "90"], "--horizon '90' is not a whole number of days"),
        (["--horizon", "12h"], "--horizon '12h' is not a whole number of days"),
        (["--format", "xml"], "unknown format 'xml'; choose text, json"),
        (["--at", "yesterday"], "is not a moment"),
    ],
)
def test_bad_options_are_usage_errors(base_root, args, message):
    code, _, err = model(base_root, *args)
    assert code == 2
    assert message in err


def test_the_moment_defaults_to_the_latest_event(base_root):
    code, out, err = model(base_root, "--format", "json", "--horizon", "8w")
    assert code == 0, err
    card = json.loads(out)
    latest = max(
        json.loads(line)["at"] for line in (base_root / "events.jsonl").read_text().splitlines()
    )
    assert card["at"] == latest
    assert card["horizon_days"] == 56


def test_fit_refuses_too_few_customers():
    facts = pl.DataFrame({"orders_count": [1, 2, 0]}).with_columns(
        *(pl.lit(None, pl.Float64()).alias(n) for n in ("days_since_last_order",))
    )
    with pytest.raises(ChurnError, match="2 customers had an order 90 days before"):
        fit(facts, facts)


def test_the_horizon_is_a_project_setting_for_the_fact_and_the_card(tmp_path):
    """``learning: {churn_horizon: 8w}``: churn_risk looks 56 days ahead, learned from the
    facts 56 days back, and ``courtship model`` (without --horizon) back-tests that horizon."""
    from courtship.engine.facts import compute_facts
    from courtship.sources import CustomerBase, read_customers_csv, read_events_jsonl

    root = planted(tmp_path, customers=200)
    with (root / "courtship.yaml").open("a") as project:
        project.write("learning: {churn_horizon: 8w}\n")
    code, out, err = model(root, "--at", AT, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["horizon_days"] == 56
    result = runner.invoke(
        app,
        ["facts", "--project", str(root), "--at", AT, "--fact", "churn_risk", "-f", "json"],
    )
    assert result.exit_code == 0, result.output
    listed = {row["customer_id"]: row["churn_risk"] for row in json.loads(result.stdout)}
    base = CustomerBase(
        read_customers_csv(root / "customers.csv"), read_events_jsonl(root / "events.jsonl")
    )
    moment = dt.datetime.fromisoformat(AT.replace("Z", "+00:00"))
    expected = {}
    for days in (56, 90):
        facts = compute_facts(base, moment, churn_days=days)
        expected[days] = dict(facts.select("customer_id", "churn_risk").iter_rows())
    assert expected[56] != expected[90]
    assert listed == pytest.approx(expected[56])
