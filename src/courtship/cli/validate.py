"""``courtship validate``: check playbooks, for people and for CI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from courtship.findings import ExitCode

if TYPE_CHECKING:
    from courtship.validate import Report

DEFAULT_PATHS = [Path("playbooks")]


def default_format() -> str:
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def run_validation(paths: list[Path], root: Path | None = None) -> Report:
    """Find and validate the playbooks under ``paths``, with the attributes the project in
    ``root`` (default: here) declares as facts; a missing path is a usage error."""
    from courtship.validate import discover, validate_files

    files, missing = discover(paths)
    if missing:
        typer.secho(f"courtship: no such file or folder: {', '.join(missing)}", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE)
    if not files:
        typer.secho(
            f"courtship: no playbooks (*.yaml, *.yml) in {', '.join(map(str, paths))}",
            fg="red",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    from courtship.catalogue.attributes import with_attributes
    from courtship.plugins import PluginError, installed
    from courtship.project import ProjectError, load_project

    # The project's own attributes are facts too (the project here, unless another is named).
    root = root or Path.cwd()
    try:
        attributes = load_project(root).attributes
    except ProjectError:  # reported with the project file's findings
        attributes = {}
    try:
        catalogue = with_attributes(installed().catalogue(), attributes)
    except (PluginError, ValueError) as error:
        typer.secho(f"courtship: {error}", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    return validate_files(files, catalogue)


def command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Playbook files or folders (searched recursively). Default: playbooks/"
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="text, json, github or sarif. Default: github under GitHub Actions, else text.",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail (exit 1) on warnings as well as errors.")
    ] = False,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-p",
            help="Folder of courtship.yaml, checked too; its playbooks are the default. "
            "Default: here.",
        ),
    ] = None,
) -> None:
    """Validate playbooks and the project file: exit 0 when clean, 1 with findings, 2 on a
    usage error."""
    from courtship.reporters import FORMATTERS

    name = output_format or default_format()
    if name not in FORMATTERS:
        typer.secho(
            f"courtship: unknown format '{name}'; choose from {', '.join(FORMATTERS)}",
            fg="red",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    root = project or Path.cwd()
    if not root.is_dir():
        typer.secho(f"courtship: no such project folder: {root}", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE)
    from courtship import validate_cache

    # The answer kept from a validation of the very same files, if there is one (see
    # courtship.validate_cache): then neither the validator nor its libraries are imported.
    wanted = validate_cache.key(root, paths or [_playbooks_folder(root)])
    kept = validate_cache.load(root, wanted) if wanted is not None else None
    if kept is not None:
        from courtship.findings import Report

        project_file, files, findings = kept
        report = Report(files=files, findings=findings, root=root)
    else:
        from courtship.project import check_project

        project_file, project_findings, playbooks = check_project(root)
        asked = paths or [playbooks]
        report = run_validation(asked, root)
        report.root = root
        if project_file is not None:
            report.files.insert(0, project_file)
            report.findings = sorted({*report.findings, *project_findings})
        if validate_cache.key(root, asked) == wanted and wanted is not None:
            validate_cache.save(root, wanted, project_file, report.files, report.findings)
    typer.echo(FORMATTERS[name](report), nl=False)
    raise typer.Exit(report.exit_code(strict=strict))


def _playbooks_folder(root: Path) -> Path:
    """The playbooks folder the project file in ``root`` names, read as ``check_project``
    reads it (a guess only decides which files the kept answer's key covers)."""
    import yaml

    try:
        data = yaml.load((root / "courtship.yaml").read_bytes(), Loader=yaml.CSafeLoader)
    except (OSError, yaml.YAMLError, AttributeError):
        data = None
    named = data.get("playbooks") if isinstance(data, dict) else None
    return root / named if isinstance(named, str) and named else root / "playbooks"
