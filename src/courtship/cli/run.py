"""``courtship run --at T``: decide, record and deliver, exactly once."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from courtship.cli.common import (
    EXECUTOR_HELP,
    SCHEDULER_HELP,
    close_channels,
    fail,
    parse_moment,
    progress_bar,
)
from courtship.findings import ExitCode

if TYPE_CHECKING:
    from courtship.channels import Channel
    from courtship.delivery import Lane
    from courtship.project import Project

#: Team notifications go to the outbox unless a ``team`` channel is configured.
DEFAULT_CHANNELS = ("email", "sms", "instagram", "team")


#: Settings of ``channels.<name>`` that say how the dispatcher drives a channel, not the plugin.
LANE_SETTINGS = ("via", "workers", "rate")


def build_channels(project: Project) -> dict[str, Channel]:
    """The channels of ``courtship.yaml`` (``channels:``), built by their plugins. Without that
    section, every channel writes to the outbox folder."""
    return {name: build() for name, (build, _settings) in _channel_builders(project).items()}


def build_lanes(project: Project) -> dict[str, Lane]:
    """How each channel is dispatched: ``workers`` (``channels.<name>.workers``, else
    ``delivery.workers``, else 1), each with its own channel instance, and ``rate``."""
    from courtship.delivery import Lane, Rate

    lanes: dict[str, Lane] = {}
    for name, (build, settings) in _channel_builders(project).items():
        rate = settings.get("rate")
        lanes[name] = Lane(
            workers=int(settings.get("workers", project.workers)),
            rate=Rate.parse(rate) if isinstance(rate, str) else None,
            build=build,
        )
    return lanes


def _channel_builders(
    project: Project,
) -> dict[str, tuple[Callable[[], Channel], dict[str, Any]]]:
    from courtship.channels import ChannelConfigError
    from courtship.plugins import PluginError, Registry, get_plugin_manager
    from courtship.schema import did_you_mean

    try:
        available = Registry(get_plugin_manager()).channels()
    except PluginError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    configured: dict[str, dict[str, Any]] = dict(project.channels)
    for name in DEFAULT_CHANNELS:
        if not project.channels or name == "team":
            configured.setdefault(name, {"via": "outbox"})
    builders: dict[str, tuple[Callable[[], Channel], dict[str, Any]]] = {}
    for name, settings in configured.items():
        via = settings.get("via", name)
        spec = available.get(via)
        if spec is None:
            hint = did_you_mean(via, available) or f"installed: {', '.join(sorted(available))}"
            raise fail(f"channels.{name}: no channel plugin '{via}'; {hint}", ExitCode.USAGE)
        options = {k: v for k, v in settings.items() if k not in LANE_SETTINGS}
        if via == "outbox":
            folder = Path(options.get("folder", project.outbox or ".courtship/outbox"))
            options["folder"] = str(folder if folder.is_absolute() else project.root / folder)

        def build(spec: Any = spec, options: dict[str, Any] = options, name: str = name) -> Channel:
            try:
                channel: Channel = spec.create(options)
            except ChannelConfigError as error:
                raise fail(f"channels.{name}: {error}", ExitCode.FINDINGS) from None
            return channel

        builders[name] = (build, settings)
    return builders


def command(
    at: Annotated[
        str | None,
        typer.Option("--at", help="The moment, ISO 8601 with a zone (default: the clock)."),
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            help="Seconds to wait for another run on the same state store to end (default 60).",
            min=0,
        ),
    ] = 60.0,
    executor: Annotated[str, typer.Option("--executor", help=EXECUTOR_HELP)] = "process",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=SCHEDULER_HELP)] = None,
) -> None:
    """Decide every message at moment AT, record it in the state store, and deliver what is due.
    Running the same moment again sends nothing twice."""
    from courtship.cli.common import dask_summary, evaluating, load, open_state
    from courtship.delivery import Dispatcher, RetryPolicy

    if output_format not in ("text", "json"):
        raise fail(f"unknown format '{output_format}'; choose text or json", ExitCode.USAGE)
    moment = parse_moment(at) if at else dt.datetime.now(dt.UTC)
    steps = Steps()
    loaded = load(project, quiet=quiet, dry_run=False, executor=executor)
    steps.done("load")
    lanes = build_lanes(loaded.project)
    channels = {name: lane.build() for name, lane in lanes.items() if lane.build is not None}
    state = open_state(loaded.project, dry_run=False)
    from courtship.state import StateBusy, StateError

    try:
        # One run at a time on a SQLite store: a second one (a cron job overlapping a manual
        # run) waits for the first, then finds its moment recorded and its messages delivered.
        # Many workers on one PostgreSQL store: one decides a moment at a time, the next finds
        # it recorded; all of them deliver.
        try:
            state.claim(wait)
            with state.deciding(wait):
                last = state.last_run()
                if last is not None and moment < last:
                    raise fail(
                        f"the state store has already run {last.isoformat()}, later than "
                        f"{moment.isoformat()}: runs go forward in time (`courtship plan --at` "
                        "looks at any moment without recording it)",
                        ExitCode.USAGE,
                    )
                with evaluating(loaded, executor, scheduler) as engine:
                    plan = engine.plan(loaded.base, moment, state)
                    on_dask = dask_summary(engine)
                steps.done("decide")
                loaded.engine.record(plan, state)
                steps.done("record")
        except StateBusy as error:
            raise fail(str(error), ExitCode.FINDINGS) from None
        policy = RetryPolicy(
            max_attempts=loaded.project.max_attempts,
            backoff=loaded.project.backoff,
            max_backoff=loaded.project.max_backoff,
        )
        with progress_bar(quiet) as advance:
            dispatcher = Dispatcher(state, channels, policy, lanes=lanes)
            report = dispatcher.dispatch(moment, advance)
        steps.done("deliver")
        waiting = state.waiting_sends()
    except StateError as error:  # a full disk, a store damaged under the run: nothing doubled
        raise fail(str(error), ExitCode.FINDINGS) from None
    finally:
        close_channels(channels)
        state.close()
    summary = report.as_dict()
    # what fell back when it was decided (no consent or address, Instagram's window) and what
    # fell back at delivery (a permanent failure), together
    for route, count in plan.fallbacks.items():
        summary["fell_back"][route] = summary["fell_back"].get(route, 0) + count
    summary |= {
        "at": moment.isoformat(),
        "decided": len(plan.sends) + len(plan.deferred) + len(plan.notifications),
        "blocked": len(plan.blocked),
        "waiting": waiting,
        "disabled": plan.disabled,
    }
    if on_dask:
        summary["dask"] = on_dask
    from courtship.redaction import redact

    steps.report(plan.aggregated)
    if output_format == "json":
        typer.echo(redact(json.dumps(summary, indent=2)))
    else:
        typer.echo(redact(render(summary)))
    raise typer.Exit(ExitCode.FINDINGS if report.failed else ExitCode.CLEAN)


class Steps:
    """How long each step of the run took, written to stderr as one JSON line when
    ``COURTSHIP_TIMINGS`` is set (docs/operations.md, "Where a run's time goes")."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self.last, 3)
        self.last = now

    def report(self, aggregated: tuple[int, int] | None = None) -> None:
        if os.environ.get("COURTSHIP_TIMINGS"):
            line: dict[str, Any] = {"seconds": self.seconds}
            if aggregated is not None:
                line["aggregated"] = {"customers": aggregated[0], "of": aggregated[1]}
            typer.echo(json.dumps(line), err=True)


def render(summary: Mapping[str, Any]) -> str:
    def count(name: str) -> str:
        items = summary[name]
        return f"{sum(items.values())}" + (
            f" ({', '.join(f'{k} {v}' for k, v in sorted(items.items()))})" if items else ""
        )

    lines = [
        f"Run at {summary['at']}: {summary['decided']} message(s) decided, "
        f"{summary['blocked']} that cannot go out (see `courtship plan`)",
        f"  delivered: {count('delivered')}",
        f"  retrying:  {count('retrying')}",
        f"  fell back: {count('fell_back')}",
        f"  failed:    {count('failed')}",
        f"  waiting (held back by quiet hours, cadence or caps; retries): {summary['waiting']}",
    ]
    lines += [f"    {f['customer']} {f['key']}: {f['reason']}" for f in summary["failures"]]
    if summary.get("dask"):
        from courtship.cli.common import dask_line

        lines.append(f"  {dask_line(summary['dask'])}")
    lines += [  # a template or dedup key that fails: its messages held or blocked
        f"  disabled at this moment: {playbook}: {why}"
        for playbook, why in sorted(summary.get("disabled", {}).items())
    ]
    return "\n".join(lines)
