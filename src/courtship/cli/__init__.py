"""The ``courtship`` command line: one module per command, joined here."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from courtship import __version__
from courtship.cli import (
    diff,
    explain,
    facts,
    graph,
    history,
    lint,
    model,
    plan,
    plugins,
    preview,
    results,
    run,
    schema,
    serve,
    simulate,
    validate,
)
from courtship.findings import ExitCode

app = typer.Typer(
    name="courtship",
    help="Treat every customer the way a good partner would: validate, graph and run playbooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"courtship {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Courtship: playbooks for every stage of the customer journey."""


app.command("validate")(validate.command)
app.command("lint")(lint.command)
app.command("graph")(graph.command)
app.command("schema")(schema.command)
app.command("plan")(plan.command)
app.command("explain")(explain.command)
app.command("facts")(facts.command)
app.command("model")(model.command)
app.command("history")(history.command)
app.command("diff")(diff.command)
app.command("preview")(preview.command)
app.command("run")(run.command)
app.command("plugins")(plugins.command)
app.command("serve")(serve.command)
app.command("simulate")(simulate.command)
app.command("results")(results.command)


def main() -> None:
    """Entry point of the console script: domain errors end in a message, never a traceback."""
    try:
        from courtship.plugins import PluginError, add_plugin_commands

        try:
            add_plugin_commands(app)
        except PluginError as error:
            typer.secho(f"courtship: {error}", fg="red", err=True)
            sys.exit(ExitCode.USAGE)
        app()
    except Exception as error:
        if os.environ.get("COURTSHIP_DEBUG"):
            raise
        from courtship.redaction import describe, redact

        state = sys.modules.get("courtship.state")  # loaded by the commands that use it
        if state is not None and isinstance(error, state.StateError):
            typer.secho(f"courtship: {redact(str(error))}", fg="red", err=True)
            sys.exit(ExitCode.FINDINGS)
        typer.secho(
            f"courtship: internal error: {describe(error)}\n"
            "This is a bug in Courtship; please report it. "
            "Set COURTSHIP_DEBUG=1 to see the traceback.",
            fg="red",
            err=True,
        )
        sys.exit(ExitCode.INTERNAL)
