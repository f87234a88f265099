"""``courtship graph``: draw the dependencies between playbooks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from courtship.cli.validate import DEFAULT_PATHS, run_validation
from courtship.findings import ExitCode

if TYPE_CHECKING:
    pass

FORMATS = ("mermaid", "dot", "svg")


def command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Playbook files or folders. Default: playbooks/"),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="mermaid, dot, or svg (needs Graphviz).")
    ] = "mermaid",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Print the dependency graph: depends_on, facts set and read, suppression."""
    if output_format not in FORMATS:
        typer.secho(
            f"courtship: unknown graph format '{output_format}'; choose from {', '.join(FORMATS)}",
            fg="red",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    from courtship.graph import PlaybookGraph
    from courtship.reporters import FORMATTERS

    report = run_validation(paths or DEFAULT_PATHS)
    graph_findings = [
        f for f in report.errors if f.rule_id in ("unknown-dependency", "dependency-cycle")
    ]
    if report.errors:
        typer.echo(FORMATTERS["text"](report), nl=False, err=True)
    if graph_findings:
        raise typer.Exit(ExitCode.FINDINGS)
    graph = PlaybookGraph(report.playbooks)
    if output_format == "svg":
        try:
            text = graph.to_svg()
        except FileNotFoundError:
            typer.secho(
                "courtship: SVG needs Graphviz's 'dot' program, which is not installed; "
                "install Graphviz (apt-get install graphviz, brew install graphviz) "
                "or use --format dot",
                fg="red",
                err=True,
            )
            raise typer.Exit(ExitCode.USAGE) from None
        except subprocess.CalledProcessError as error:
            typer.secho(f"courtship: dot failed: {error.stderr}", fg="red", err=True)
            raise typer.Exit(ExitCode.INTERNAL) from None
    else:
        text = graph.to_mermaid() if output_format == "mermaid" else graph.to_dot()
    if output:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=False)
    raise typer.Exit(report.exit_code())
