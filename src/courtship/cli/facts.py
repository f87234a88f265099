"""``courtship facts --at T``: the facts the engine computes at a moment, one row per customer.

What an analyst reads into a notebook (``--format parquet --output facts.parquet``) and how a
marketer checks a threshold before writing it (``--fact mean_lapse_ratio --format csv``). The
facts are those conditions read: the catalogue's, the facts plugins and the project's
``attributes:`` declare, those playbooks set, and each customer's local date and time. Records
nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from courtship.cli.common import fail, parse_moment
from courtship.findings import ExitCode

if TYPE_CHECKING:
    import polars as pl

FORMATS = ("csv", "json", "parquet")


def select(facts: pl.DataFrame, customers: list[str], names: list[str]) -> pl.DataFrame:
    """The rows of ``customers`` (all when empty) and the columns ``names`` (all when empty),
    ``customer_id`` first. An unknown customer or fact is a usage error with a hint."""
    import polars as pl

    from courtship.schema import did_you_mean

    known = [name for name in facts.columns if name != "customer_id"]
    for name in names:
        if name not in known and name != "customer_id":
            hint = did_you_mean(name, known) or "see docs/reference/facts.md"
            raise fail(f"no fact '{name}'; {hint}", ExitCode.USAGE)
    if customers:
        ids = facts.get_column("customer_id").to_list()
        present = set(ids)
        for customer in customers:
            if customer not in present:
                hint = did_you_mean(customer, ids)
                raise fail(
                    f"no customer '{customer}'" + (f"; {hint}" if hint else ""), ExitCode.USAGE
                )
        facts = facts.filter(pl.col("customer_id").is_in(customers))
    wanted = [name for name in dict.fromkeys(names) if name != "customer_id"] or known
    return facts.select("customer_id", *wanted)


def as_csv(facts: pl.DataFrame) -> str:
    """CSV as the customer file writes it: a list is its items joined by ``;``."""
    import polars as pl

    flat = facts.with_columns(
        pl.col(name).list.join(";")
        for name, dtype in facts.schema.items()
        if isinstance(dtype, pl.List)
    )
    return flat.write_csv()


def as_json(facts: pl.DataFrame) -> str:
    """A JSON array, one object per customer; dates and times in ISO 8601."""

    def plain(value: Any) -> Any:
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()
        raise TypeError(f"{value!r} is not JSON")

    return json.dumps(facts.to_dicts(), indent=2, default=plain) + "\n"


def command(
    at: Annotated[str, typer.Option("--at", help="The moment, ISO 8601 with a zone.")],
    customer: Annotated[
        list[str] | None,
        typer.Option("--customer", "-c", help="Only this customer (repeat for more)."),
    ] = None,
    fact: Annotated[
        list[str] | None,
        typer.Option("--fact", help="Only this fact (repeat for more; customer_id comes first)."),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="csv, json or parquet (parquet needs --output).")
    ] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
) -> None:
    """Every fact of every customer at moment AT, one row per customer, customer_id first
    (records nothing)."""
    if output_format not in FORMATS:
        raise fail(f"unknown format '{output_format}'; choose {', '.join(FORMATS)}", ExitCode.USAGE)
    if output_format == "parquet" and output is None:
        raise fail("parquet is binary: write it to a file with --output FILE", ExitCode.USAGE)
    from courtship.cli.common import load, open_state
    from courtship.learn.churn import CHURN_FACTS
    from courtship.learn.facts import LEARNED_FACTS
    from courtship.learn.preferences import PREFERENCE_FACTS

    moment = parse_moment(at)
    loaded = load(project, quiet=True)
    state = open_state(loaded.project, dry_run=True)
    names = list(fact or [])
    try:
        churn = not names or bool(set(names) & set(CHURN_FACTS))
        prefer = not names or bool(set(names) & set(PREFERENCE_FACTS))
        learn = churn or prefer or bool(set(names) & set(LEARNED_FACTS))
        facts = loaded.engine.facts(
            loaded.base, moment, state, learn=learn, churn=churn, prefer=prefer
        )
    except ValueError as error:
        raise fail(str(error)) from None
    finally:
        state.close()
    chosen = select(facts, list(customer or []), names)
    if output is None:
        sys.stdout.write(as_csv(chosen) if output_format == "csv" else as_json(chosen))
        return
    try:
        if output_format == "parquet":
            chosen.write_parquet(output)
        else:
            text = as_csv(chosen) if output_format == "csv" else as_json(chosen)
            output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise fail(f"cannot write {output}: {error.strerror or error}", ExitCode.USAGE) from None
