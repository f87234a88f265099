"""``courtship validate``: check playbooks, for people and for CI."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from courtship.findings import ExitCode

if TYPE_CHECKING:
    from courtship.catalogue import FactSpec
    from courtship.findings import Finding
    from courtship.validate import Report

DEFAULT_PATHS = [Path("playbooks")]


def default_format() -> str:
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def run_validation(paths: list[Path], root: Path | None = None) -> Report:
    """Find and validate the playbooks under ``paths``, with the attributes the project in
    ``root`` (default: here) declares as facts; a missing path is a usage error."""
    from courtship.project import ProjectError, load_project

    # The project's own attributes are facts too (the project here, unless another is named).
    root = root or Path.cwd()
    try:
        attributes = load_project(root).attributes
    except ProjectError:  # reported with the project file's findings
        attributes = {}
    return _validate(paths, attributes, {})[0]


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
    found = validate_cache.keys(root, paths or [_playbooks_folder(root)])
    environment, wanted = found if found is not None else (None, None)
    data = validate_cache.kept_data(root) if wanted is not None else {}
    kept = validate_cache.load(root, wanted, data) if wanted is not None else None
    if kept is not None:
        from courtship.findings import Report

        project_file, files, findings = kept
        report = Report(files=files, findings=findings, root=root)
    else:
        # What is kept of each file is given again where nothing it read has changed.
        earlier = data if environment is not None and data.get("environment") == environment else {}
        project_file, project_findings, playbooks, attributes, project_part = _check_project(
            root, earlier.get("project")
        )
        asked = paths or [playbooks]
        report, parts = _validate(asked, attributes, earlier)
        report.root = root
        if project_file is not None:
            report.files.insert(0, project_file)
            report.findings = sorted({*report.findings, *project_findings})
        if wanted is not None and validate_cache.key(root, asked) == wanted:
            parts = {
                "environment": environment,
                "project": project_part,
                **parts,
                "playbooks": _merged(earlier.get("playbooks"), parts["playbooks"]),
                "templates": _merged(earlier.get("templates"), parts["templates"]),
            }
            validate_cache.save(root, wanted, project_file, report.files, report.findings, parts)
    typer.echo(FORMATTERS[name](report), nl=False)
    raise typer.Exit(report.exit_code(strict=strict))


def _validate(
    paths: list[Path], attributes: dict[str, FactSpec], earlier: dict[str, Any]
) -> tuple[Report, dict[str, Any]]:
    """Find and validate the playbooks under ``paths`` with the project's ``attributes`` as
    facts (a missing path is a usage error), giving again what ``earlier`` found of the files
    that did not change; the report and what to keep of each file."""
    from courtship.validate import check_files, discover

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

    try:
        catalogue = with_attributes(installed().catalogue(), attributes)
    except (PluginError, ValueError) as error:
        typer.secho(f"courtship: {error}", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    return check_files(files, catalogue, earlier)


def _check_project(
    root: Path, kept: Any
) -> tuple[str | None, list[Finding], Path, dict[str, FactSpec], dict[str, Any] | None]:
    """What ``check_project`` says of the project file in ``root``, and the attributes it
    declares as facts (none when it has errors), given again from ``kept`` when the file is
    the same; and what to keep of it (None for none)."""
    import hashlib

    from courtship.validate_cache import finding_from_json, finding_to_json

    file = root / "courtship.yaml"
    try:
        content = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
    except OSError:
        content = None
    if content is not None and isinstance(kept, dict) and kept.get("content") == content:
        try:
            from courtship.catalogue import FactSpec

            return (
                kept["file"],
                [finding_from_json(f) for f in kept["findings"]],
                Path(kept["playbooks"]),
                {
                    spec["name"]: FactSpec(**{**spec, "values": tuple(spec["values"])})
                    for spec in kept["attributes"]
                },
                kept,
            )
        except (KeyError, TypeError, ValueError):
            pass  # damaged: read it again
    from courtship.project import ProjectError, check_project, load_project

    project_file, findings, playbooks = check_project(root)
    try:
        attributes = load_project(root).attributes
    except ProjectError:  # reported with the project file's findings
        attributes = {}
    part: dict[str, Any] | None = {
        "content": content,
        "file": project_file,
        "findings": [finding_to_json(f) for f in findings],
        "playbooks": str(playbooks),
        "attributes": [dataclasses.asdict(spec) for spec in attributes.values()],
    }
    try:
        json.dumps(part)
    except (TypeError, ValueError):  # an attribute's example JSON cannot hold
        part = None
    return project_file, findings, playbooks, attributes, part if content is not None else None


def _merged(earlier: Any, found: dict[str, Any]) -> dict[str, Any]:
    """What this validation found of each file, and what an earlier one found of the files
    this one did not read (validated alone, say) that are still there."""
    if not isinstance(earlier, dict):
        return found
    kept = {name: part for name, part in earlier.items() if name not in found}
    return {**{name: part for name, part in kept.items() if Path(name).exists()}, **found}


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
