"""``courtship facts`` and the project file's ``attributes:`` and ``learning:``, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from courtship.cli import app
from courtship.project import ProjectError, load_project

AT = "2026-11-23T15:00:00Z"
LAPSE_RULE = """\
id: lapsed-regular
title: A regular gone quiet
stage: at-risk
category: marketing
trigger:
  becomes:
    all:
      - {fact: purchase_days_count, gte: 3}
      - {fact: mean_lapse_ratio, gt: 3}
audience: {fact: loyalty_tier, in: [silver, gold]}
respond:
  - send: {channel: email, template: hello}
"""
CUSTOMERS = """\
customer_id,first_name,email,consent_email,loyalty_tier,points,newsletter_since
c1,Maya,maya@example.org,true,gold,120.5,2024-01-02
c2,Ben,ben@example.org,true,bronze,3,
c3,Cleo,cleo@example.org,true,silver,,2025-06-30
"""
ATTRIBUTES = """\
attributes:
  loyalty_tier: {type: enum, values: [bronze, silver, gold], description: Loyalty programme tier}
  points: {type: number, unit: points}
  newsletter_since: {type: date}
"""


def order(cid: str, at: str) -> str:
    return json.dumps({"customer_id": cid, "type": "order", "at": at, "amount": 20})


def project(root: Path, extra: str = ATTRIBUTES, customers: str = CUSTOMERS) -> Path:
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "lapsed-regular.yaml").write_text(LAPSE_RULE)
    (root / "playbooks" / "templates" / "hello.md").write_text("Hi {{ first_name }}!\n")
    (root / "customers.csv").write_text(customers)
    events = [
        # Maya: three orders on one day, then two more days, 20 days apart; quiet since June.
        order("c1", "2026-05-01T09:00:00Z"),
        order("c1", "2026-05-01T10:00:00Z"),
        order("c1", "2026-05-01T11:00:00Z"),
        order("c1", "2026-05-21T09:00:00Z"),
        order("c1", "2026-06-10T09:00:00Z"),
        order("c2", "2026-11-01T09:00:00Z"),
    ]
    (root / "events.jsonl").write_text("\n".join(events) + "\n")
    (root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        "state: state.sqlite\n" + extra
    )
    return root


def facts(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["facts", "--at", AT, "--project", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def test_csv_of_chosen_facts_and_customers(tmp_path):
    code, out, _ = facts(
        project(tmp_path),
        "--fact",
        "purchase_days_count",
        "--fact",
        "mean_lapse_ratio",
        "--fact",
        "loyalty_tier",
        "--customer",
        "c1",
    )
    assert code == 0
    assert (
        out == "customer_id,purchase_days_count,mean_lapse_ratio,loyalty_tier\nc1,3,8.3125,gold\n"
    )


def test_every_fact_as_json_customer_id_first(tmp_path):
    code, out, _ = facts(project(tmp_path), "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [row["customer_id"] for row in rows] == ["c1", "c2", "c3"]
    assert next(iter(rows[0])) == "customer_id"
    maya = rows[0]
    assert maya["orders_count"] == 5 and maya["purchase_days_count"] == 3
    assert maya["mean_order_interval"] == 20.0 and maya["days_since_first_order"] > 200
    assert maya["points"] == 120.5 and maya["newsletter_since"] == "2024-01-02"
    assert maya["local_date"] == "2026-11-23"
    assert "p_alive" in maya  # three customers are too few to fit: null, but listed
    assert maya["p_alive"] is None


def test_parquet_to_a_file_keeps_the_types(tmp_path):
    out = tmp_path / "facts.parquet"
    code, _, _ = facts(project(tmp_path / "p"), "--format", "parquet", "--output", str(out))
    assert code == 0
    frame = pl.read_parquet(out)
    assert frame.columns[0] == "customer_id"
    assert frame.schema["points"] == pl.Float64()
    assert frame.schema["newsletter_since"] == pl.Date()
    assert frame.schema["purchase_days_count"] == pl.Int64()


def test_csv_to_a_file(tmp_path):
    out = tmp_path / "facts.csv"
    code, stdout, _ = facts(project(tmp_path / "p"), "--fact", "points", "--output", str(out))
    assert code == 0 and stdout == ""
    assert out.read_text() == "customer_id,points\nc1,120.5\nc2,3.0\nc3,\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--fact", "mean_lapse_ratoi"],
            "no fact 'mean_lapse_ratoi'; did you mean 'mean_lapse_ratio'?",
        ),
        (["--customer", "c11"], "no customer 'c11'; did you mean 'c1'?"),
        (["--format", "xlsx"], "unknown format 'xlsx'; choose csv, json, parquet"),
        (["--format", "parquet"], "parquet is binary: write it to a file with --output FILE"),
    ],
)
def test_usage_errors_say_what_to_write(tmp_path, args, message):
    code, out, err = facts(project(tmp_path), *args)
    assert code == 2 and out == ""
    assert message in err


@pytest.mark.parametrize("output_format", ["csv", "parquet"])
def test_an_output_file_that_cannot_be_written(tmp_path, output_format):
    missing = tmp_path / "no-such-folder" / "facts.out"
    code, _, err = facts(project(tmp_path / "p"), "-f", output_format, "--output", str(missing))
    assert code == 2
    assert f"cannot write {missing}" in err


def test_the_lapse_rule_of_the_docs_is_written_with_the_new_facts(tmp_path):
    root = project(tmp_path)
    result = CliRunner().invoke(app, ["validate", "--project", str(root)])
    assert result.exit_code == 0, result.stdout
    # 60 days after her last purchase day Maya is three mean intervals (20 days) late.
    moment = "2026-08-09T12:00:00Z"
    plan = CliRunner().invoke(
        app, ["plan", "--at", moment, "--project", str(root), "--format", "json"]
    )
    assert plan.exit_code == 0, plan.stderr
    assert '"c1"' in plan.stdout and '"c2"' not in plan.stdout


def test_an_attribute_compared_with_the_wrong_type_is_a_validation_error(tmp_path):
    root = project(tmp_path)
    (root / "playbooks" / "lapsed-regular.yaml").write_text(
        LAPSE_RULE.replace("{fact: loyalty_tier, in: [silver, gold]}", "{fact: points, gt: high}")
    )
    result = CliRunner().invoke(app, ["validate", "--project", str(root)])
    assert result.exit_code == 1
    assert "points" in result.stdout and "number" in result.stdout


def test_a_cell_not_of_its_attributes_type_names_its_line(tmp_path):
    root = project(tmp_path, customers=CUSTOMERS.replace("120.5", "lots"))
    code, _, err = facts(root)
    assert code == 1
    assert "customers.csv:2" in err and "points" in err


def test_an_attribute_the_customers_do_not_have(tmp_path):
    root = project(tmp_path, extra=ATTRIBUTES + "  point: {type: number}\n")
    code, _, err = facts(root)
    assert code == 1
    assert "courtship.yaml: attributes.point: the customers have no column point" in err
    assert "did you mean 'points'?" in err


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("  orders_count: {type: number}\n", "'orders_count' is already a fact Courtship knows"),
        ("  tier: {type: enum}\n", "attribute 'tier' is an enum without values"),
        (
            "  tier: {type: text, values: [a]}\n",
            "attribute 'tier' is a text: only an enum has values",
        ),
        ("  tier: {type: colour}\n", "'colour' is not a valid type; one of: text, string"),
    ],
)
def test_attributes_that_cannot_be(tmp_path, section, message):
    root = project(tmp_path, extra="attributes:\n" + section)
    with pytest.raises(ProjectError) as error:
        load_project(root)
    assert message in str(error.value)
    assert "courtship.yaml:6:" in str(error.value)  # the attribute's line


def test_the_learning_section(tmp_path):
    root = project(tmp_path, extra="learning: {bgnbd: {per_persona: true}}\n")
    assert load_project(root).learning.per_persona is True
    bad = project(tmp_path / "bad", extra="learning: {bgnbd: {per_persona: sometimes}}\n")
    with pytest.raises(ProjectError):
        load_project(bad)


def test_learned_facts_are_fitted_only_for_playbooks_that_read_them(tmp_path):
    from courtship.cli.common import load, open_state

    root = project(tmp_path)
    loaded = load(root, quiet=True)
    assert loaded.engine.learns is False
    (root / "playbooks" / "lapsed-regular.yaml").write_text(
        LAPSE_RULE.replace("{fact: loyalty_tier, in: [silver, gold]}", "{fact: p_alive, lt: 0.5}")
    )
    assert load(root, quiet=True).engine.learns is True
    state = open_state(loaded.project, dry_run=True)
    try:
        import datetime as dt

        moment = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)
        assert (
            loaded.engine.facts(loaded.base, moment, state, learn=False)["p_alive"].null_count()
            == 3
        )
    finally:
        state.close()


def test_a_plugin_fact_and_an_attribute_of_one_name(tmp_path):
    from courtship.catalogue import Catalogue, FactSpec
    from courtship.catalogue.attributes import attribute_facts, with_attributes

    plugin = Catalogue({"points": FactSpec("points", "integer", source="loyalty")})
    with pytest.raises(ValueError, match=r"attribute 'points' .* also a fact of plugin 'loyalty'"):
        with_attributes(plugin, attribute_facts({"points": {"type": "number"}}))


def test_templates_and_lint_know_the_projects_attributes(tmp_path, monkeypatch):
    root = project(tmp_path)
    (root / "playbooks" / "templates" / "hello.md").write_text(
        "Hi {{ first_name }}, you have {{ points }} points ({{ loyalty_tier }}).\n"
    )
    monkeypatch.chdir(root)  # lint reads the project here
    result = CliRunner().invoke(app, ["lint"])
    assert "points" not in result.stdout, result.stdout
    (root / "playbooks" / "templates" / "hello.md").write_text("Hi {{ pionts }}!\n")
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 1 and "pionts" in result.stdout


def test_attributes_of_a_customer_source(tmp_path):
    root = project(
        tmp_path,
        extra=ATTRIBUTES.replace("loyalty_tier:", "tier:")
        + "sources:\n  customers: {type: csv, path: customers.csv, columns: {tier: loyalty_tier}}\n"
        "  events: {type: jsonl, path: events.jsonl}\n",
    )
    text = (root / "courtship.yaml").read_text().replace("customers: customers.csv\n", "", 1)
    (root / "courtship.yaml").write_text(text.replace("events: events.jsonl\n", "", 1))
    (root / "playbooks" / "lapsed-regular.yaml").write_text(
        LAPSE_RULE.replace("fact: loyalty_tier", "fact: tier")
    )
    code, out, err = facts(root, "--fact", "tier", "--fact", "newsletter_since")
    assert code == 0, err
    assert out.splitlines() == [
        "customer_id,tier,newsletter_since",
        "c1,gold,2024-01-02",
        "c2,bronze,",
        "c3,silver,2025-06-30",
    ]
