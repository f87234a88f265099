"""What the commands that evaluate playbooks share: the project, the data, the engine, ``--at``."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from courtship.findings import ExitCode
from courtship.redaction import redact

if TYPE_CHECKING:  # the engine imports polars: only the commands that evaluate load it
    from courtship.engine import Engine
    from courtship.project import Project
    from courtship.sources import CustomerBase
    from courtship.state import StateStore
    from courtship.validate import Report


def fail(message: str, code: ExitCode = ExitCode.FINDINGS) -> typer.Exit:
    """Print ``message`` (every secret taken out) to stderr; the Exit to raise."""
    typer.secho(f"courtship: {redact(message)}", fg="red", err=True)
    return typer.Exit(code)


def project_or_fail(root: Path | None) -> Project:
    """The project file of ``root`` (default: here); its findings on stderr and exit 1 if wrong."""
    from courtship.project import ProjectError, load_project

    try:
        return load_project(root)
    except ProjectError as error:
        for finding in error.findings:
            typer.echo(str(finding), err=True)
        raise fail("the project file has errors", ExitCode.FINDINGS) from None


def close_channels(channels: Mapping[str, Any]) -> None:
    """Let every channel that holds a connection (an SMTP session, an HTTP client) close it."""
    for channel in channels.values():
        close = getattr(channel, "close", None)
        if callable(close):
            close()


def parse_moment(text: str) -> dt.datetime:
    """``--at``: an ISO 8601 moment with its time zone (``2026-11-23T15:00:00Z``)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            f"--at {text!r} is not a moment; write it like 2026-11-23T15:00:00Z", ExitCode.USAGE
        ) from None
    if moment.tzinfo is None:
        raise fail(
            f"--at {text} has no time zone; add Z for UTC or an offset such as +01:00",
            ExitCode.USAGE,
        )
    # Room on both sides for the longest lookback and lengths of time (a hundred years each).
    if not FIRST_MOMENT_YEAR <= moment.year <= LAST_MOMENT_YEAR:
        raise fail(
            f"--at {text} is too far from now for the calendar; give a year from "
            f"{FIRST_MOMENT_YEAR} to {LAST_MOMENT_YEAR}",
            ExitCode.USAGE,
        )
    return moment.astimezone(dt.UTC)


FIRST_MOMENT_YEAR, LAST_MOMENT_YEAR = 1000, 9000


@dataclass
class Loaded:
    project: Project
    report: Report
    engine: Engine
    base: CustomerBase | None


def load(
    root: Path | None, *, quiet: bool = False, dry_run: bool = True, executor: str = "process"
) -> Loaded:
    """Project file, playbooks (broken ones disabled with their reason), customers and events.
    With ``executor="dask"`` and customers in Parquet, the base is left to its parts to read
    (``base`` is None)."""
    from courtship.engine import Engine
    from courtship.intake import read_base
    from courtship.sources import SourceError
    from courtship.validate import discover, validate_files

    project = project_or_fail(root)
    files, missing = discover([project.playbooks])
    if missing or not files:
        raise fail(f"no playbooks in {project.playbooks}", ExitCode.USAGE)
    from courtship.catalogue.attributes import with_attributes
    from courtship.plugins import PluginError, installed

    try:
        catalogue = with_attributes(installed().catalogue(), project.attributes)
    except (PluginError, ValueError) as error:
        raise fail(str(error), ExitCode.USAGE) from None
    report = validate_files(files, catalogue)
    broken = sorted({f.path for f in report.errors})
    if broken and not quiet:
        for finding in report.errors:
            typer.echo(str(finding), err=True)
        typer.secho(
            f"courtship: {len(broken)} playbook file(s) with errors are disabled: "
            f"{', '.join(broken)}",
            fg="yellow",
            err=True,
        )
    if executor == "dask" and in_parts(project):
        return Loaded(project, report, Engine(report.valid_playbooks, project, catalogue), None)
    try:
        base = read_base(project, installed(), dry_run=dry_run)
    except SourceError as error:
        raise fail(str(error)) from None
    except FileNotFoundError as error:
        raise fail(f"no such file: {error.filename}", ExitCode.USAGE) from None
    engine = Engine(report.valid_playbooks, project, catalogue)
    return Loaded(project, report, engine, base)


def in_parts(project: Project) -> bool:
    """The project's customers are Parquet files that parts of the base read themselves."""
    from courtship.intake import file_format

    return (
        not project.sources
        and project.customers is not None
        and file_format(project.customers, "csv") == "parquet"
        and (project.events is None or file_format(project.events, "jsonl") == "parquet")
    )


#: ``--executor`` and ``--scheduler`` of the commands that evaluate playbooks.
EXECUTOR_HELP = "Where to decide: process (this one) or dask (a base in parts on a Dask cluster)."
SCHEDULER_HELP = "With --executor dask: the address of a Dask scheduler (default: a local cluster)."


@contextmanager
def evaluating(loaded: Loaded, executor: str, scheduler: str | None) -> Iterator[Any]:
    """What decides the moments: the engine, or the engine over the base in parts on Dask."""
    if executor not in ("process", "dask"):
        raise fail(f"unknown --executor '{executor}'; choose process or dask", ExitCode.USAGE)
    if executor == "process":
        if scheduler:
            raise fail("--scheduler needs --executor dask", ExitCode.USAGE)
        yield loaded.engine
        return
    from courtship.executors import ExecutorError

    try:
        from courtship.executors.dask import DaskExecutor, Partitioned

        cluster = DaskExecutor(scheduler)
    except ExecutorError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    from courtship.engine import partitions
    from courtship.plugins import installed
    from courtship.sources import SourceError

    project = loaded.project
    count = max(1, len(cluster.workers))

    def parts(base: CustomerBase | None) -> list[partitions.Part]:
        if base is not None:
            return partitions.split(base, count)
        assert project.customers is not None
        facts = installed().facts() | project.attributes
        return partitions.parquet_parts(project.customers, project.events, facts)

    try:
        yield Partitioned(loaded.engine, cluster, parts)
    except partitions.PartitionError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    except SourceError as error:  # a part's Parquet file
        raise fail(str(error)) from None
    finally:
        cluster.close()


def dask_summary(evaluator: Any) -> dict[str, Any] | None:
    """What a moment decided on Dask took: its parts, customers, and the peak memory (MiB) of
    the driver and of each worker."""
    report = getattr(evaluator, "report", None)
    if report is None or not report.peak_rss:
        return None
    return {
        "parts": report.parts,
        "customers": report.customers,
        "peak_memory_mib": {name: round(value / 2**20) for name, value in report.peak_rss.items()},
    }


def dask_line(summary: Mapping[str, Any]) -> str:
    """``dask_summary`` in words."""
    mib = ", ".join(f"{name} {value} MiB" for name, value in summary["peak_memory_mib"].items())
    return f"dask: {summary['parts']} part(s), {summary['customers']} customers; peak memory: {mib}"


def open_state(project: Project, *, dry_run: bool) -> StateStore:
    """The project's state store (a SQLite file, or PostgreSQL); a dry run on a project
    without one uses an empty one."""
    from courtship.state import StateError, StateMisplaced, location_of, marker_of, open_store

    setting = "state_env" if project.state_env else "state"
    try:
        return open_store(location_of(project), dry_run=dry_run, marker=marker_of(project))
    except StateMisplaced as error:  # the project file names the wrong thing: say where
        raise fail(f"{project.state_place}: {setting}: {error}", ExitCode.USAGE) from None
    except StateError as error:
        raise fail(str(error), ExitCode.FINDINGS) from None


def known_customer(base: CustomerBase, customer: str) -> None:
    """A usage error, with the nearest id, for a customer the base does not have."""
    import polars as pl

    known = base.customers["customer_id"].cast(pl.String()).to_list()
    if customer not in known:
        from courtship.schema import did_you_mean

        hint = did_you_mean(customer, known)
        raise fail(f"no customer '{customer}'" + (f"; {hint}" if hint else ""), ExitCode.USAGE)


@contextmanager
def progress_bar(
    quiet: bool, label: str = "delivering"
) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal; nothing in CI, in a pipe, or with -q."""
    if quiet or not sys.stderr.isatty() or os.environ.get("CI"):
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance
