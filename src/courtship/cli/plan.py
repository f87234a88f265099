"""``courtship plan --at T``: a dry run. What would be sent, deferred and blocked, and why."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from courtship.cli.common import EXECUTOR_HELP, SCHEDULER_HELP, fail, parse_moment
from courtship.findings import ExitCode

if TYPE_CHECKING:
    from courtship.engine import Plan

FORMATS = ("text", "json", "csv")


def render_text(plan: Plan) -> str:
    lines = [
        f"Plan at {plan.now:%Y-%m-%dT%H:%M:%SZ} (events since {plan.since:%Y-%m-%dT%H:%M:%SZ})"
    ]
    sends = Counter((d.playbook, d.channel) for d in plan.sends)
    lines.append(f"\nsends: {len(plan.sends)}")
    for (playbook, channel), count in sorted(sends.items()):
        lines.append(f"  {playbook:<32} {channel:<10} {count:>6}")
    fallbacks = plan.fallbacks
    lines.append(f"\nfell back: {sum(fallbacks.values())}")
    for route, count in fallbacks.items():
        lines.append(f"  {route:<43} {count:>6}")
    lines.append(f"\ndeferred: {len(plan.deferred)}")
    for (playbook, reason), count in sorted(
        Counter((d.playbook, d.reason) for d in plan.deferred).items()
    ):
        lines.append(f"  {playbook:<32} {count:>6}  {reason}")
    lines.append(f"\nnot sent: {len(plan.blocked)}")
    reasons = Counter((d.reason.split(";")[0], d.playbook) for d in plan.blocked)
    for (reason, playbook), count in sorted(reasons.items()):
        lines.append(f"  {playbook:<32} {count:>6}  {reason}")
    if plan.routes:
        lines.append("\nsplits and branches:")
        ways = Counter((playbook, step_id, way) for playbook, _, step_id, way in plan.routes)
        for (playbook, step_id, way), count in sorted(ways.items()):
            lines.append(f"  {playbook:<32} {count:>6}  {step_id}: {way}")
    if plan.edits:
        lines.append("\nwaiting customers and edited playbooks:")
        for playbook, counts in sorted(plan.edits.items()):
            lines.append(
                f"  {playbook:<32} {counts['moved']:>6}  moved with their step to its new place"
            )
            lines.append(f"  {playbook:<32} {counts['let_go']:>6}  let go: their step is gone")
    if plan.disabled:
        lines.append(
            f"\ndisabled at this moment (template or dedup key fails): {len(plan.disabled)}"
        )
        lines += [f"  {playbook:<32} {why}" for playbook, why in sorted(plan.disabled.items())]
    if plan.notifications:
        lines.append(f"\nteam notifications: {len(plan.notifications)}")
        teams = Counter((n["team"], n["playbook"]) for n in plan.notifications)
        for (team, playbook), count in sorted(teams.items()):
            lines.append(f"  {playbook:<32} {count:>6}  to {team}")
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    payload = {
        "at": plan.now.isoformat(),
        "since": plan.since.isoformat(),
        "summary": {
            "sends": len(plan.sends),
            "deferred": len(plan.deferred),
            "blocked": len(plan.blocked),
            "notifications": len(plan.notifications),
            "fell_back": plan.fallbacks,
        },
        "routes": [
            {"playbook": playbook, "step_id": step_id, "way": way, "customers": count}
            for (playbook, step_id, way), count in sorted(
                Counter((p, step_id, way) for p, _, step_id, way in plan.routes).items()
            )
        ],
        "edits": plan.edits,
        "disabled": plan.disabled,
        "sends": [d.as_dict() for d in plan.sends],
        "deferred": [d.as_dict() for d in plan.deferred],
        "blocked": [d.as_dict() for d in plan.blocked],
        "notifications": plan.notifications,
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def render_csv(plan: Plan) -> str:
    out = io.StringIO()
    fields = list(plan.decisions[0].as_dict()) if plan.decisions else ["customer"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for decision in plan.decisions:
        writer.writerow({k: _cell(v) for k, v in decision.as_dict().items()})
    return out.getvalue()


#: What makes a spreadsheet read a cell as a formula (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    """A value as a CSV cell no spreadsheet evaluates: text that would start a formula (a first
    name such as =HYPERLINK(...)) gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def command(
    at: Annotated[
        str, typer.Option("--at", help="The moment, ISO 8601 with a zone: 2026-11-23T15:00:00Z")
    ],
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="text, json or csv.")
    ] = "text",
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
    executor: Annotated[str, typer.Option("--executor", help=EXECUTOR_HELP)] = "process",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=SCHEDULER_HELP)] = None,
) -> None:
    """Dry run: decide every message at moment AT and print it; records nothing."""
    if output_format not in FORMATS:
        raise fail(
            f"unknown format '{output_format}'; choose from {', '.join(FORMATS)}", ExitCode.USAGE
        )
    from courtship.cli.common import dask_line, dask_summary, evaluating, load, open_state

    moment = parse_moment(at)
    loaded = load(project, executor=executor)
    state = open_state(loaded.project, dry_run=True)
    try:
        if state.has_run(moment):
            typer.secho(
                f"courtship: {moment:%Y-%m-%dT%H:%M:%SZ} has already been run: what it decided is "
                "in the record (`courtship explain CUSTOMER --at` that moment, `courtship "
                "history CUSTOMER`); this plan shows only what is left to decide",
                fg="yellow",
                err=True,
            )
        with evaluating(loaded, executor, scheduler) as engine:
            plan = engine.plan(loaded.base, moment, state)
            on_dask = dask_summary(engine)
    finally:
        state.close()
    if on_dask:
        typer.echo(dask_line(on_dask), err=True)
    renderer = {"text": render_text, "json": render_json, "csv": render_csv}[output_format]
    typer.echo(renderer(plan), nl=False)
