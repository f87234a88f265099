"""Facts a plugin declares (``register_facts``) read from columns of the customer data: a CSV
file, a JSON Lines file, a SQLite table. The values reach conditions and templates typed as
declared; a value that is not of its type is an error naming the file, the line, the column
and the fact."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

import courtship
from courtship.catalogue import FactSpec
from courtship.cli import app
from courtship.engine import Engine
from courtship.plugins import Registry, installed
from courtship.project import Project
from courtship.sources import (
    CustomerBase,
    SourceError,
    empty_events,
    normalise_customers,
    read_customers_csv,
    read_source,
)
from courtship.state import StateStore
from courtship.templates import environment

AT = "2026-11-23T15:00:00Z"  # a Monday
NOW = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
runner = CliRunner()
#: What the playbook says to the one customer its audience (on plugin facts) selects.
ADA = "Hi Ada, you have 1200 points (north, score 4.5, since 2021-03-04)."

HEADER = "customer_id,first_name,email,timezone,consent_email"
EXTRA = "loyalty_points,vip,crm_score,crm_since,crm_seen_at,crm_segment,crm_tier"
ROWS = [
    "c-001,Ada,ada@example.org,Europe/London,true,1200,yes,4.5,2021-03-04,"
    "2026-11-20T10:15:00Z,north,gold",
    "c-002,Ben,ben@example.org,Europe/London,true,300,no,1.25,2024-01-31,"
    "2026-11-22T08:00:00+01:00,south,silver",
    "c-003,Cy,cy@example.org,Europe/London,true,,,,,,,",
]


class CRMPlugin:
    """A plugin that declares facts its users keep as columns of their customer file."""

    @courtship.hookimpl
    def register_facts(self, register: Any) -> None:
        register(FactSpec(name="loyalty_points", type="integer", description="Points."))
        register(FactSpec(name="vip", type="boolean", description="A VIP."))
        register(FactSpec(name="crm_score", type="number", description="The CRM's score."))
        register(FactSpec(name="crm_since", type="date", description="In the CRM since."))
        register(FactSpec(name="crm_seen_at", type="datetime", description="Last seen."))
        register(FactSpec(name="crm_segment", type="string", description="The segment."))
        register(
            FactSpec(
                name="crm_tier",
                type="enum",
                values=("gold", "silver"),
                description="The tier.",
            )
        )


@pytest.fixture
def crm() -> Iterator[Registry]:
    """The installed plugins (the file and SQL sources among them) and the CRM plugin."""
    installed.cache_clear()
    environment.cache_clear()
    registry = installed()
    registry.pm.register(CRMPlugin(), name="crm")
    try:
        yield installed()
    finally:
        registry.pm.unregister(name="crm")
        installed.cache_clear()
        environment.cache_clear()


def write_csv(path: Path, rows: list[str], header: str = f"{HEADER},{EXTRA}") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def write_project(root: Path, customers: str) -> Path:
    """A project whose one playbook reads plugin facts in its audience and its template."""
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "templates" / "points.md").write_text(
        "Hi {{ first_name }}, you have {{ loyalty_points }} points "
        "({{ crm_segment }}, score {{ crm_score }}, since {{ crm_since }}).\n"
    )
    (root / "playbooks" / "points.yaml").write_text(
        textwrap.dedent(
            """\
            id: points
            title: Points
            stage: loyal
            category: marketing
            trigger: {schedule: {every: 1w, days: [mon]}}
            audience:
              all:
                - {fact: loyalty_points, gte: 1000}
                - {fact: vip, eq: true}
                - {fact: crm_score, gt: 4}
                - {fact: crm_since, lt: "2022-01-01"}
                - {fact: crm_seen_at, within: 7d}
                - {fact: crm_tier, eq: gold}
            respond:
              - send: {channel: email, template: points}
            """
        )
    )
    (root / "courtship.yaml").write_text(
        f"playbooks: playbooks\n{customers}timezone: UTC\nlookback: 24h\n"
    )
    return root


def plan(root: Path) -> Any:
    return runner.invoke(app, ["plan", "--at", AT, "--project", str(root), "-f", "json"])


def sent_to(result: Any) -> dict[str, str]:
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    return {send["recipient"]: send["text"] for send in payload["sends"]}


# ── the CSV file ─────────────────────────────────────────────────────────


def test_csv_columns_are_read_as_the_declared_types(tmp_path: Path, crm: Registry) -> None:
    customers = read_customers_csv(write_csv(tmp_path / "c.csv", ROWS), facts=crm.facts())
    assert customers.select(EXTRA.split(",")).schema == pl.Schema(
        {
            "loyalty_points": pl.Int64(),
            "vip": pl.Boolean(),
            "crm_score": pl.Float64(),
            "crm_since": pl.Date(),
            "crm_seen_at": pl.Datetime("us", "UTC"),
            "crm_segment": pl.String(),
            "crm_tier": pl.String(),
        }
    )
    ben = customers.row(1, named=True)
    assert {name: ben[name] for name in EXTRA.split(",")} == {
        "loyalty_points": 300,
        "vip": False,
        "crm_score": 1.25,
        "crm_since": dt.date(2024, 1, 31),
        "crm_seen_at": dt.datetime(2026, 11, 22, 7, 0, tzinfo=dt.UTC),
        "crm_segment": "south",
        "crm_tier": "silver",
    }
    assert customers.row(2, named=True)["loyalty_points"] is None


def test_without_the_facts_other_columns_stay_text(tmp_path: Path) -> None:
    customers = read_customers_csv(write_csv(tmp_path / "c.csv", ROWS))
    assert customers.get_column("loyalty_points").to_list() == ["1200", "300", None]


def test_csv_facts_reach_the_condition_and_the_template(tmp_path: Path, crm: Registry) -> None:
    write_csv(tmp_path / "customers.csv", ROWS)
    sends = sent_to(plan(write_project(tmp_path, "customers: customers.csv\n")))
    assert sends == {"c-001": ADA}


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("loyalty_points", "lots", "'lots' is not a whole number"),
        ("loyalty_points", "12.5", "'12.5' is not a whole number"),
        ("vip", "maybe", "'maybe' is not true or false"),
        ("crm_score", "high", "'high' is not a number"),
        ("crm_since", "2021-02-30", "'2021-02-30' is not a date (YYYY-MM-DD)"),
        ("crm_seen_at", "2026-11-20T10:15:00", "is not a date and time with a zone (ISO 8601)"),
        ("crm_tier", "bronze", "'bronze' is not one of gold, silver"),
    ],
)
def test_a_bad_value_names_file_line_column_and_fact(
    tmp_path: Path, crm: Registry, column: str, value: str, message: str
) -> None:
    names = EXTRA.split(",")
    cells = [""] * len(names)
    cells[names.index(column)] = value
    bad = f"c-009,Dee,dee@example.org,UTC,true,{','.join(cells)}"
    path = write_csv(tmp_path / "customers.csv", [ROWS[0], "", bad, ROWS[1]])
    with pytest.raises(SourceError) as caught:
        read_customers_csv(path, facts=crm.facts())
    error = caught.value
    assert (error.path, error.line, error.field) == (path, 4, column)  # the blank line counts
    assert f"{message} (fact {column}, declared by plugin crm)" in str(error)
    assert str(error).startswith(f"{path}:4: {column}: ")
    assert "or empty the cell" in error.hint


def test_the_earliest_bad_line_is_reported(tmp_path: Path, crm: Registry) -> None:
    rows = [*ROWS, ROWS[0].replace("c-001", "c-004").replace(",yes,", ",perhaps,")]
    rows[1] = rows[1].replace(",300,", ",lots,")
    with pytest.raises(SourceError) as caught:
        read_customers_csv(write_csv(tmp_path / "c.csv", rows), facts=crm.facts())
    assert (caught.value.line, caught.value.field) == (3, "loyalty_points")


def test_plan_reports_a_bad_value_without_a_traceback(tmp_path: Path, crm: Registry) -> None:
    write_csv(tmp_path / "customers.csv", [ROWS[0], ROWS[1].replace(",300,", ",lots,")])
    result = plan(write_project(tmp_path, "customers: customers.csv\n"))
    assert result.exit_code == 1
    assert (
        "customers.csv:3: loyalty_points: 'lots' is not a whole number "
        "(fact loyalty_points, declared by plugin crm); write a whole number such as 1200, "
        "or empty the cell"
    ) in result.stderr
    assert "Traceback" not in result.output


def test_a_column_named_like_a_computed_fact_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["c-001,Ada,a@b.c,UTC,true,7"], f"{HEADER},orders_count")
    with pytest.raises(SourceError) as caught:
        read_customers_csv(path)
    assert (caught.value.line, caught.value.field) == (1, "orders_count")
    assert "named like a fact Courtship computes" in str(caught.value)


# ── JSON Lines, through the jsonl source ─────────────────────────────────


def jsonl_rows() -> list[dict[str, Any]]:
    return [
        {
            "customer_id": "c-001",
            "first_name": "Ada",
            "email": "ada@example.org",
            "consent_email": True,
            "loyalty_points": 1200,
            "vip": True,
            "crm_score": 4.5,
            "crm_since": "2021-03-04",
            "crm_seen_at": "2026-11-20T10:15:00Z",
            "crm_segment": "north",
            "crm_tier": "gold",
        },
        {
            "customer_id": "c-002",
            "first_name": "Ben",
            "email": "ben@example.org",
            "consent_email": True,
            "loyalty_points": 300,
            "vip": True,
            "crm_score": 5,
            "crm_since": "2020-01-01",
            "crm_seen_at": "2026-11-20T10:15:00Z",
            "crm_tier": "gold",
        },
    ]


def test_jsonl_facts_reach_the_condition_and_the_template(tmp_path: Path, crm: Registry) -> None:
    (tmp_path / "customers.jsonl").write_text(
        "\n".join(json.dumps(row) for row in jsonl_rows()) + "\n"
    )
    sources = "sources:\n  customers: {type: jsonl, path: customers.jsonl}\n"
    sends = sent_to(plan(write_project(tmp_path, sources)))
    assert sends == {"c-001": ADA}


def test_jsonl_bad_value_names_the_line(tmp_path: Path, crm: Registry) -> None:
    rows = jsonl_rows()
    rows[1]["vip"] = "sometimes"
    lines = [json.dumps(rows[0]), "", json.dumps(rows[1])]
    (tmp_path / "customers.jsonl").write_text("\n".join(lines) + "\n")
    sources = "sources:\n  customers: {type: jsonl, path: customers.jsonl}\n"
    result = plan(write_project(tmp_path, sources))
    assert result.exit_code == 1
    assert (
        "customers.jsonl:3: vip: 'sometimes' is not true or false "
        "(fact vip, declared by plugin crm)"
    ) in result.stderr


# ── SQL, through the sql source on a SQLite file ─────────────────────────


def sqlite_shop(path: Path, points: Any = 1200) -> Path:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE customers (customer_id TEXT, first_name TEXT, email TEXT, "
            "consent_email BOOLEAN, loyalty_points INTEGER, vip BOOLEAN, crm_score REAL, "
            "crm_since DATE, crm_seen_at TEXT, crm_segment TEXT, crm_tier TEXT)"
        )
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("c-001", "Ada", "ada@example.org", 1, points, 1, 4.5, "2021-03-04",
                 "2026-11-20T10:15:00Z", "north", "gold"),
                ("c-002", "Ben", "ben@example.org", 1, 300, 1, 5.0, "2020-01-01",
                 "2026-11-20T10:15:00Z", None, "gold"),
            ],
        )  # fmt: skip
    db.close()
    return path


SQL_SOURCES = "sources:\n  customers: {type: sql, url: 'sqlite:///shop.db', table: customers}\n"


def test_sql_facts_reach_the_condition_and_the_template(tmp_path: Path, crm: Registry) -> None:
    sqlite_shop(tmp_path / "shop.db")
    sends = sent_to(plan(write_project(tmp_path, SQL_SOURCES)))
    assert sends == {"c-001": ADA}


def test_sql_bad_value_names_the_table_row_and_customer(tmp_path: Path, crm: Registry) -> None:
    sqlite_shop(tmp_path / "shop.db", points="lots")
    result = plan(write_project(tmp_path, SQL_SOURCES))
    assert result.exit_code == 1
    assert (
        "table customers: loyalty_points: 'lots' is not a whole number "
        "(fact loyalty_points, declared by plugin crm) (row 1, customer_id 'c-001')"
    ) in result.stderr


# ── sources that do not take the facts, and bases built by hand ──────────


class TextSource:
    """A third-party source whose ``read`` knows nothing of declared facts."""

    role = "customers"

    def __init__(self, points: str) -> None:
        self.points = points

    def read(self, since: dt.datetime | None = None) -> pl.DataFrame:
        return pl.DataFrame(
            {"customer_id": ["c-001", "c-002"], "loyalty_points": ["1200", self.points]}
        )


def test_a_source_without_facts_is_typed_after_reading(crm: Registry) -> None:
    frame = read_source(TextSource("300"), facts=crm.facts(), where="sources.customers (crm)")
    assert frame.get_column("loyalty_points").to_list() == [1200, 300]
    with pytest.raises(SourceError) as caught:
        read_source(TextSource("lots"), facts=crm.facts(), where="sources.customers (crm)")
    assert str(caught.value).startswith(
        "sources.customers (crm): loyalty_points: 'lots' is not a whole number "
        "(fact loyalty_points, declared by plugin crm) (row 2, customer_id 'c-002')"
    )


def engine_on(root: Path, registry: Registry) -> Engine:
    from courtship.validate import validate_paths

    write_project(root, "")
    report = validate_paths([root / "playbooks"], registry.catalogue())
    assert not report.errors, report.errors
    project = Project(root=root, playbooks=root / "playbooks")
    return Engine(report.valid_playbooks, project, registry.catalogue())


def test_a_base_built_by_hand_is_cast_by_the_engine(tmp_path: Path, crm: Registry) -> None:
    customers = read_customers_csv(write_csv(tmp_path / "c.csv", ROWS))  # text, no facts given
    plan = engine_on(tmp_path, crm).plan(
        CustomerBase(customers, empty_events()), NOW, StateStore(None)
    )
    assert [(d.customer_id, d.text) for d in plan.sends] == [("c-001", ADA)]


def test_a_bad_value_in_a_base_built_by_hand_is_an_error(tmp_path: Path, crm: Registry) -> None:
    rows = [ROWS[0], ROWS[1].replace(",no,", ",nah,")]
    customers = read_customers_csv(write_csv(tmp_path / "c.csv", rows))
    engine = engine_on(tmp_path, crm)
    with pytest.raises(SourceError) as caught:
        engine.plan(CustomerBase(customers, empty_events()), NOW, StateStore(None))
    assert "vip: 'nah' is not true or false (fact vip, declared by plugin crm)" in str(caught.value)
    assert "customer_id 'c-002'" in str(caught.value)


def test_a_database_timestamp_is_read_as_an_instant(crm: Registry) -> None:
    seen = [dt.datetime(2026, 11, 20, 10, 15), None]
    frame = pl.DataFrame(
        {
            "customer_id": ["c-001", "c-002"],
            "crm_seen_at": pl.Series(seen, dtype=pl.Datetime("us")),  # no zone: UTC
            "crm_since": pl.Series(seen, dtype=pl.Datetime("us", "Europe/Paris")).dt.date(),
        }
    )
    customers = normalise_customers(frame, where="table customers", facts=crm.facts())
    assert customers.get_column("crm_seen_at").to_list() == [
        dt.datetime(2026, 11, 20, 10, 15, tzinfo=dt.UTC),
        None,
    ]
    assert customers.get_column("crm_since").to_list() == [dt.date(2026, 11, 20), None]
