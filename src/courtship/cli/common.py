"""What the commands that evaluate playbooks share: the project, the data, the engine, ``--at``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from courtship.findings import ExitCode
from courtship.project import Project, ProjectError, load_project
from courtship.validate import Report, discover, validate_files

if TYPE_CHECKING:  # the engine imports polars: only the commands that evaluate load it
    from courtship.engine import Engine
    from courtship.sources import CustomerBase
    from courtship.state import StateStore


def fail(message: str, code: ExitCode = ExitCode.FINDINGS) -> typer.Exit:
    typer.secho(f"courtship: {message}", fg="red", err=True)
    return typer.Exit(code)


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
    return moment.astimezone(dt.UTC)


@dataclass
class Loaded:
    project: Project
    report: Report
    engine: Engine
    base: CustomerBase


def load(root: Path | None, *, quiet: bool = False, dry_run: bool = True) -> Loaded:
    """Project file, playbooks (broken ones disabled with their reason), customers and events."""
    from courtship.engine import Engine
    from courtship.intake import read_base
    from courtship.sources import SourceError

    try:
        project = load_project(root)
    except ProjectError as error:
        for finding in error.findings:
            typer.echo(str(finding), err=True)
        raise fail("the project file has errors", ExitCode.FINDINGS) from None
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
    try:
        base = read_base(project, installed(), dry_run=dry_run)
    except SourceError as error:
        raise fail(str(error)) from None
    except FileNotFoundError as error:
        raise fail(f"no such file: {error.filename}", ExitCode.USAGE) from None
    engine = Engine(report.valid_playbooks, project, catalogue)
    return Loaded(project, report, engine, base)


def open_state(project: Project, *, dry_run: bool) -> StateStore:
    """The project's state store; a dry run on a project without one uses an empty one."""
    from courtship.state import StateError, StateStore

    if project.state is None or (dry_run and not project.state.exists()):
        return StateStore(None)
    try:
        return StateStore(project.state)
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
