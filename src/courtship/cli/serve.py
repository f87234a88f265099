"""``courtship serve``: receive providers' callbacks (unsubscribes, STOPs, receipts, bounces)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from courtship.cli.common import fail
from courtship.findings import ExitCode


def command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=0)] = 8025,
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
) -> None:
    """Answer the one-click unsubscribe links and the callbacks of Twilio, Meta and the mail
    relay, recording what they say in the state store for the next run. Put it behind a reverse
    proxy that speaks https (docs/operations.md)."""
    from courtship.cli.common import project_or_fail

    loaded = project_or_fail(project)
    try:
        import uvicorn

        from courtship.serve.app import Secrets, create_app
    except ImportError as error:
        raise fail(
            f"`courtship serve` needs its extra ({error.name} is missing): "
            "pip install 'courtship[serve]'",
            ExitCode.USAGE,
        ) from None
    from courtship.unsubscribe import Unsubscriber

    try:
        app = create_app(loaded)
    except ValueError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    links = Unsubscriber.of(loaded)
    for variable, value in (
        (links.secret_env, links.secret),
        *((name, secret) for name, secret in vars(Secrets.of(loaded)).values()),
    ):
        if value is None:
            typer.secho(
                f"courtship serve: {variable} is not set: its endpoint answers 503",
                fg="yellow",
                err=True,
            )
    uvicorn.run(app, host=host, port=port, proxy_headers=True, log_level="info")
