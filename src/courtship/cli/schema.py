"""``courtship schema``: print the playbook JSON Schema (for editors and other tools)."""

from __future__ import annotations

import json

import typer

from courtship.schema import load_schema


def command() -> None:
    """Print the playbook JSON Schema (2020-12)."""
    typer.echo(json.dumps(load_schema(), indent=2))
