"""``courtship results [PLAYBOOK]``: what each arm of an experiment achieved — reached,
converted, conversion rate, and the lift against the holdout (or the project's control group)
with its 95 % interval — from the record of the runs and the events of the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from courtship.cli.common import fail
from courtship.findings import ExitCode


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def render(reports: list[dict[str, Any]]) -> str:
    """The results as text: one table per playbook."""
    if not reports:
        return (
            "no experiment has reached anyone yet (no playbook with a goal, holdout or variants)\n"
        )
    lines: list[str] = []
    for report in reports:
        goal = report["goal"]
        said = f"goal: {goal['event']} within {goal['within']}" if goal else "no goal: reach only"
        lines.append(f"{report['playbook']}  ({said})")
        header = f"  {'arm':<16} {'reached':>8} {'converted':>10} {'rate':>7}"
        if report["baseline"]:
            header += f"  lift vs {report['baseline']} (95% interval, points)"
        lines.append(header)
        if not report["arms"]:
            lines.append("  nobody reached yet: no message of it went out, nobody was held out")
        for arm in report["arms"]:
            line = (
                f"  {arm['arm']:<16} {arm['reached']:>8} "
                f"{'' if arm['converted'] is None else arm['converted']:>10} {_pct(arm['rate']):>7}"
            )
            if arm["lift"] is not None:
                line += f"  {_points(arm['lift'])} [{_points(arm['low'])}, {_points(arm['high'])}]"
            lines.append(line)
        if goal and not report["baseline"]:
            lines.append("  no holdout and no control group reached: no lift to measure")
        lines.append("")
    lines.append(f"interval: {reports[0]['interval']}")
    return "\n".join(lines) + "\n"


def command(
    playbook: Annotated[
        str | None, typer.Argument(help="The playbook id (default: every experiment).")
    ] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
) -> None:
    """What each variant of PLAYBOOK achieved against its holdout: reached, converted, rate and
    lift with a 95 % interval (from the record in the state store and the events)."""
    if output_format not in ("text", "json"):
        raise fail(f"unknown format '{output_format}'; choose text or json", ExitCode.USAGE)
    from courtship import experiments
    from courtship.cli.common import load, open_state
    from courtship.playbook import parse_duration

    loaded = load(project, quiet=True)
    playbooks = {pb.id: pb for pb in loaded.report.playbooks}
    if playbook is not None and playbook not in playbooks:
        from courtship.schema import did_you_mean

        hint = did_you_mean(playbook, sorted(playbooks)) or "courtship graph lists the playbooks"
        raise fail(f"no playbook '{playbook}'; {hint}", ExitCode.USAGE)
    state = open_state(loaded.project, dry_run=True)
    try:
        assignments = state.assignments()
    finally:
        state.close()
    measured = set(assignments.get_column("playbook").unique().to_list())
    chosen = [playbook] if playbook is not None else sorted(measured & set(playbooks))
    reports = []
    for pb_id in chosen:
        goal = playbooks[pb_id].goal
        within = parse_duration(str(goal["within"])) if goal else None
        reports.append(experiments.results(pb_id, goal, assignments, loaded.base.events, within))
    if output_format == "json":
        typer.echo(json.dumps({"results": reports}, indent=2))
    else:
        typer.echo(render(reports), nl=False)
