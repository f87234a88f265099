"""``courtship lint``: validation, then the rules about the library as a whole
(:mod:`courtship.lint`), then the house rules plugins add (``register_lint_rules``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from courtship.cli.validate import default_format, run_validation
from courtship.findings import ExitCode
from courtship.reporters import FORMATTERS


def command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Playbook files or folders. Default: the project's playbooks/"),
    ] = None,
    output_format: Annotated[
        str | None, typer.Option("--format", "-f", help="text, json, github or sarif.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-p",
            help="Folder of courtship.yaml (its caps.per_customer_per_week is the weekly "
            "budget; its playbooks are the default). Default: here.",
        ),
    ] = None,
) -> None:
    """Validate, then lint the library as a whole: coverage, messages, frequency, conflicts."""
    from courtship.lint import lint_report
    from courtship.plugins import PluginError, installed
    from courtship.project import check_project

    name = output_format or default_format()
    if name not in FORMATTERS:
        typer.secho(f"courtship: unknown format '{name}'", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE)
    root = project or Path.cwd()
    if not root.is_dir():
        typer.secho(f"courtship: no such project folder: {root}", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE)
    _, _, playbooks = check_project(root)
    report = run_validation(paths or [playbooks])
    report.root = root
    try:
        rules = installed().lint_rules()
    except PluginError as error:
        typer.secho(f"courtship: {error}", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    from courtship.findings import LINT_RULES, RULES

    taken = [spec for spec in rules.values() if spec.id in RULES or spec.id in LINT_RULES]
    if taken:
        names = ", ".join(f"'{spec.id}' (plugin {spec.plugin})" for spec in taken)
        typer.secho(
            f"courtship: a plugin's lint rule has the id of a built-in rule: {names}; "
            "rename the plugin's rule",
            fg="red",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    report.findings = lint_report(report, rules, root)
    typer.echo(FORMATTERS[name](report), nl=False)
    raise typer.Exit(report.exit_code(strict=strict))
