"""``courtship plugins``: the installed plugins, as JSON (name, version, hooks, registrations)."""

from __future__ import annotations

import json

import typer

from courtship.findings import ExitCode
from courtship.plugins import PluginError, describe_plugins, get_plugin_manager


def command() -> None:
    """List the installed plugins and what each registered, as JSON."""
    try:
        described = describe_plugins(get_plugin_manager())
    except PluginError as error:
        typer.secho(f"courtship: {error}", fg="red", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    typer.echo(json.dumps(described, indent=2))
