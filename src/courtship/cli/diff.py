"""``courtship diff``: a plan of a change to the playbooks, for its pull request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from courtship.cli.common import fail, parse_moment
from courtship.findings import ExitCode

FORMATS = ("text", "json", "markdown")
SIGNS = {"added": "+", "removed": "-", "changed": "~", "affected": " "}


def command(
    folders: Annotated[
        list[Path] | None,
        typer.Argument(help="OLD_DIR NEW_DIR: two playbook folders (or use --base)."),
    ] = None,
    base_revision: Annotated[
        str | None,
        typer.Option("--base", help="A git revision: the project's playbooks as they were there."),
    ] = None,
    at: Annotated[
        str, typer.Option("--at", help="The moment, ISO 8601 with a zone: 2026-11-23T15:00:00Z")
    ] = "",
    start: Annotated[
        str, typer.Option("--from", help="Or a period: its first moment (with --to).")
    ] = "",
    end: Annotated[str, typer.Option("--to", help="The period's last moment.")] = "",
    step: Annotated[str, typer.Option("--step", help="Time between moments (default 1d).")] = "1d",
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="text, json or markdown.")
    ] = "text",
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
) -> None:
    """What a change to the playbooks does at moment AT (or over --from A --to B, both sides
    simulated moment by moment): who newly enters or leaves each playbook,
    the sends by playbook and channel before and after, the waiting customers it moves or lets
    go, and contact pressure. Records nothing, sends nothing."""
    from courtship.cli.common import load, open_state
    from courtship.diff import (
        DiffError,
        compare,
        compare_period,
        playbooks_at_revision,
        temporary_folder,
    )

    if output_format not in FORMATS:
        raise fail(f"unknown format '{output_format}'; choose {', '.join(FORMATS)}", ExitCode.USAGE)
    if bool(start) != bool(end) or (at and start):
        raise fail("give either --at T, or --from A with --to B", ExitCode.USAGE)
    if not at and not start:
        raise fail(
            "give the moment to compare at (--at 2026-11-23T15:00:00Z) or a period (--from A "
            "--to B)",
            ExitCode.USAGE,
        )
    folders = folders or []
    if base_revision is None and len(folders) != 2:
        raise fail("give OLD_DIR NEW_DIR, or --base REVISION", ExitCode.USAGE)
    if base_revision is not None and folders:
        raise fail("give either OLD_DIR NEW_DIR or --base REVISION, not both", ExitCode.USAGE)
    for folder in folders:
        if not folder.is_dir():
            raise fail(f"no such folder: {folder}", ExitCode.USAGE)
    if start:
        from courtship.playbook import parse_duration

        try:
            every = parse_duration(step)
        except ValueError:
            raise fail(
                f"--step {step!r} is not a duration; write it like 1d, 6h or 30m", ExitCode.USAGE
            ) from None
    moment = parse_moment(at or start)
    loaded = load(project, quiet=True)
    with temporary_folder() as scratch:
        if base_revision is not None:
            new_folder = loaded.project.playbooks
            try:
                old_folder = playbooks_at_revision(new_folder, base_revision, Path(scratch))
            except DiffError as error:
                raise fail(str(error), ExitCode.USAGE) from None
            names = (f"{base_revision}", "the working tree")
        else:
            old_folder, new_folder = folders
            names = (str(old_folder), str(new_folder))
        old, old_broken = _engine(old_folder, loaded)
        new, new_broken = _engine(new_folder, loaded)
        state = open_state(loaded.project, dry_run=True)
        budget = loaded.project.per_customer_per_week
        try:
            if start:
                from courtship.simulate.timeline import SimulationError
                from courtship.state import StateError, location_of

                try:
                    change = compare_period(
                        old,
                        new,
                        loaded.base,
                        state,
                        location_of(loaded.project),
                        moment,
                        parse_moment(end),
                        every,
                        budget,
                        step,
                    )
                except (SimulationError, StateError) as error:
                    raise fail(str(error), ExitCode.USAGE) from None
            else:
                change = compare(old, new, loaded.base, state, moment, budget)
        finally:
            state.close()
        for entry in change["playbooks"]:
            entry["file"] = _shown(entry["file"], old_folder, new_folder)
    change |= {"old": names[0], "new": names[1], "disabled": {"old": old_broken, "new": new_broken}}
    renderer = {"text": render_text, "json": render_json, "markdown": render_markdown}
    typer.echo(renderer[output_format](change), nl=False)


def _engine(folder: Path, loaded: Any) -> tuple[Any, list[str]]:
    """An engine for the playbooks in ``folder`` (broken ones disabled, as a run would)."""
    from courtship.engine import Engine
    from courtship.validate import discover, validate_files

    files, _ = discover([folder])
    report = validate_files(files, loaded.engine.catalogue)
    broken = sorted({Path(f.path).name for f in report.errors})
    return Engine(report.valid_playbooks, loaded.project, loaded.engine.catalogue), broken


def _shown(path: str, old: Path, new: Path) -> str:
    """A playbook's file as the pull request names it (the new folder's path)."""
    for folder in (old, new):
        try:
            relative = Path(path).resolve().relative_to(folder.resolve())
        except ValueError:
            continue
        from courtship.validate import display_path

        return display_path(new / relative)
    return path


def _delta(before: int, after: int) -> str:
    change = after - before
    return f"{before} → {after}" + (f" ({change:+d})" if change else "")


def _who(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def render_text(change: dict[str, Any]) -> str:
    lines = [
        f"Courtship diff at {change['at']}: {change['new']} against {change['old']}",
        "",
    ]
    if not change["playbooks"]:
        lines.append("No change in what the playbooks decide at this moment.")
    for entry in change["playbooks"]:
        lines.append(
            f"{SIGNS[entry['change']]} {entry['playbook']:<32} {entry['change']:<8} sends "
            f"{_delta(entry['sends_before'], entry['sends_after'])}   ({entry['file']})"
        )
        for channel, (before, after) in entry["sends"].items():
            if before != after:
                lines.append(f"      {channel:<10} {_delta(before, after)}")
        if entry["enter"]:
            lines.append(f"      + {len(entry['enter'])} enter: {_who(entry['enter'])}")
        if entry["leave"]:
            lines.append(f"      - {len(entry['leave'])} leave: {_who(entry['leave'])}")
    lines += ["", f"sends in all: {_delta(change['sends']['before'], change['sends']['after'])}"]
    for playbook, counts in sorted(change["waiting"].items()):
        lines.append(
            f"waiting in {playbook}: {counts['moved']} moved with their step, "
            f"{counts['let_go']} let go (their step is gone)"
        )
    lines.append(_pressure_line(change["pressure"], change.get("period", False)))
    for side, broken in change["disabled"].items():
        if broken:
            lines.append(f"disabled in {side} (errors; see validate): {', '.join(broken)}")
    return "\n".join(lines) + "\n"


def _pressure_line(pressure: dict[str, Any], period: bool = False) -> str:
    before, after = pressure["before"], pressure["after"]
    over = "in a week of the period" if period else "over the week to this moment"
    text = (
        f"contact pressure (messages per customer {over}): most "
        f"{_delta(before['max'], after['max'])}, mean {before['mean']} → {after['mean']}"
    )
    if pressure["budget"] is None:
        return text + "; no weekly budget set (caps.per_customer_per_week)"
    return (
        text + f"; over the budget of {pressure['budget']} a week: "
        f"{_delta(before['over_budget'], after['over_budget'])}"
    )


def render_json(change: dict[str, Any]) -> str:
    return json.dumps(change, indent=2, ensure_ascii=False) + "\n"


def render_markdown(change: dict[str, Any]) -> str:
    """A pull-request comment: a summary line, a table per changed playbook, pressure."""
    lines = [
        "### Courtship diff",
        "",
        f"At **{change['at']}**, `{change['new']}` against `{change['old']}`: sends "
        f"**{_delta(change['sends']['before'], change['sends']['after'])}**.",
        "",
    ]
    if change["playbooks"]:
        lines += [
            "| | playbook | change | sends | by channel | enter | leave |",
            "|---|---|---|---|---|---|---|",
        ]
        for entry in change["playbooks"]:
            channels = "<br>".join(
                f"{c}: {_delta(b, a)}" for c, (b, a) in entry["sends"].items() if b != a
            )
            lines.append(
                f"| {SIGNS[entry['change']].strip() or '·'} | `{entry['playbook']}` "
                f"| {entry['change']} | {_delta(entry['sends_before'], entry['sends_after'])} "
                f"| {channels or '—'} | {len(entry['enter'])} | {len(entry['leave'])} |"
            )
    else:
        lines.append("No change in what the playbooks decide at this moment.")
    lines.append("")
    for playbook, counts in sorted(change["waiting"].items()):
        lines.append(
            f"- waiting in `{playbook}`: {counts['moved']} moved with their step, "
            f"{counts['let_go']} let go"
        )
    lines.append(f"- {_pressure_line(change['pressure'], change.get('period', False))}")
    for side, broken in change["disabled"].items():
        if broken:
            lines.append(f"- disabled in {side} (errors): {', '.join(broken)}")
    return "\n".join(lines) + "\n"
