"""``courtship schema``: print a JSON Schema (for editors and other tools)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def command(
    project: Annotated[
        bool,
        typer.Option("--project", help="Print the schema of courtship.yaml instead."),
    ] = False,
) -> None:
    """Print the playbook JSON Schema (2020-12), or with --project the project file's."""
    from courtship.schema import PROJECT_SCHEMA_FILE, SCHEMA_FILE, load_schema

    typer.echo(json.dumps(load_schema(PROJECT_SCHEMA_FILE if project else SCHEMA_FILE), indent=2))
