"""``courtship lint``: validation, plus the seed's rules across the whole library, plus the house
rules plugins add (``register_lint_rules``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from courtship.cli.validate import DEFAULT_PATHS, default_format, run_validation
from courtship.findings import ExitCode, Finding, Severity
from courtship.playbook import Playbook
from courtship.reporters import FORMATTERS

STAGES = ("new", "onboarding", "active", "loyal", "at-risk", "lapsed", "churned", "advocate")


def uncovered_stages(playbooks: list[Playbook]) -> list[Finding]:
    """Every stage of the journey deserves a playbook: don't vanish on anyone."""
    if not playbooks:
        return []
    covered = {pb.stage for pb in playbooks}
    first = min(playbooks, key=lambda pb: pb.path)
    return [
        Finding(
            first.path,
            1,
            1,
            Severity.WARNING,
            "stage-uncovered",
            f"no playbook serves customers at the '{stage}' stage",
            "write one, even a gentle check-in: customers at every stage notice silence",
        )
        for stage in STAGES
        if stage not in covered
    ]


def command(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Playbook files or folders. Default: playbooks/")
    ] = None,
    output_format: Annotated[
        str | None, typer.Option("--format", "-f", help="text, json, github or sarif.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
) -> None:
    """Validate, then check the library as a whole and run the plugins' house rules."""
    from courtship.plugins import PluginError, installed

    name = output_format or default_format()
    if name not in FORMATTERS:
        typer.secho(f"courtship: unknown format '{name}'", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE)
    report = run_validation(paths or DEFAULT_PATHS)
    valid = report.valid_playbooks
    findings = [*report.findings, *uncovered_stages(valid)]
    try:
        rules = installed().lint_rules()
    except PluginError as error:
        typer.secho(f"courtship: {error}", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    for rule in rules.values():
        findings.extend(rule.check(valid))
    report.findings = sorted(set(findings))
    typer.echo(FORMATTERS[name](report), nl=False)
    raise typer.Exit(report.exit_code(strict=strict))
