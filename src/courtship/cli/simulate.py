"""``courtship simulate --from A --to B``: the real engine, moment by moment, on a copy of the
state store; nothing is sent and the real store is left as it was."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from courtship.cli.common import EXECUTOR_HELP, SCHEDULER_HELP, fail, parse_moment, progress_bar
from courtship.findings import ExitCode

DECISION_SUFFIXES = (".csv", ".json")


def command(
    start: Annotated[str, typer.Option("--from", help="The first moment, ISO 8601 with a zone.")],
    end: Annotated[str, typer.Option("--to", help="The last moment, ISO 8601 with a zone.")],
    step: Annotated[
        str, typer.Option("--step", help="Time between moments: 1d, 6h, 30m… (default 1d).")
    ] = "1d",
    report: Annotated[
        Path, typer.Option("--report", help="The HTML report to write (opens offline).")
    ] = Path("simulation.html"),
    decisions: Annotated[
        Path | None,
        typer.Option("--decisions", help="Also write every decision: a .csv or .json file."),
    ] = None,
    behaviour: Annotated[
        bool,
        typer.Option(
            "--behaviour",
            help="Customers reached answer, buy, refer or drift (docs/simulate.md's model).",
        ),
    ] = False,
    answer: Annotated[
        float, typer.Option("--answer", help="With --behaviour: chance to answer.", min=0, max=1)
    ] = 0.10,
    buy: Annotated[
        float, typer.Option("--buy", help="With --behaviour: chance to order.", min=0, max=1)
    ] = 0.05,
    refer: Annotated[
        float, typer.Option("--refer", help="With --behaviour: chance to refer.", min=0, max=1)
    ] = 0.02,
    seed: Annotated[int, typer.Option("--seed", help="With --behaviour: the seed.")] = 1,
    uplift: Annotated[
        list[str] | None,
        typer.Option(
            "--uplift",
            help="With --behaviour: TEMPLATE=P, an extra chance to order for customers who "
            "received that template (repeatable).",
        ),
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    executor: Annotated[str, typer.Option("--executor", help=EXECUTOR_HELP)] = "process",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=SCHEDULER_HELP)] = None,
) -> None:
    """Simulate every moment from --from to --to by --step with the real engine on a copy of the
    state store (nothing is sent, no channel is used), and write an HTML report."""
    from courtship.playbook import parse_duration

    if output_format not in ("text", "json"):
        raise fail(f"unknown format '{output_format}'; choose text or json", ExitCode.USAGE)
    if decisions is not None and decisions.suffix.lower() not in DECISION_SUFFIXES:
        raise fail(f"--decisions {decisions}: write a .csv or a .json file", ExitCode.USAGE)
    try:
        every = parse_duration(step)
    except ValueError:
        raise fail(
            f"--step {step!r} is not a duration; write it like 1d, 6h or 30m", ExitCode.USAGE
        ) from None
    uplifts = _uplifts(uplift or [])
    first, last = parse_moment(start), parse_moment(end)
    for path in (report, decisions):
        if path is not None and not path.resolve().parent.is_dir():
            raise fail(f"{path}: no such folder {path.resolve().parent}", ExitCode.USAGE)
    facts = run_simulation(
        project,
        first,
        last,
        every,
        report=report,
        decisions=decisions,
        behaviour=(answer, buy, refer, seed) if behaviour else None,
        quiet=quiet,
        uplift=uplifts,
        executor=executor,
        scheduler=scheduler,
    )
    if output_format == "json":
        typer.echo(json.dumps(facts, indent=2))
    else:
        from courtship.simulate.report import render_text

        typer.echo(render_text(facts))
        typer.echo(f"  report: {report}" + (f"; decisions: {decisions}" if decisions else ""))
        if facts.get("experiments"):
            from courtship.cli.results import render

            typer.echo("\n" + render(facts["experiments"]), nl=False)  # type: ignore[arg-type]


def run_simulation(
    project: Path | None,
    first: dt.datetime,
    last: dt.datetime,
    every: dt.timedelta,
    *,
    report: Path,
    decisions: Path | None,
    behaviour: tuple[float, float, float, int] | None,
    quiet: bool,
    uplift: dict[str, float] | None = None,
    executor: str = "process",
    scheduler: str | None = None,
) -> dict[str, object]:
    """Load, simulate, write the report (and decisions); the summary."""
    from courtship.cli.common import evaluating, load
    from courtship.simulate import Behaviour, SimulationError, moments, simulate
    from courtship.simulate.report import (
        ReportError,
        _plotly,
        summary,
        write_decisions,
        write_report,
    )
    from courtship.state import StateError, location_of

    try:
        _plotly()  # before minutes of simulating, not after
    except ReportError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    try:
        moments(first, last, every)  # before loading
    except SimulationError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    loaded = load(project, quiet=quiet, dry_run=True)
    model = None
    if behaviour is not None:
        answer, buy, refer, seed = behaviour
        model = Behaviour(answer=answer, buy=buy, refer=refer, seed=seed, uplift=dict(uplift or {}))
    try:
        with (
            evaluating(loaded, executor, scheduler) as engine,
            progress_bar(quiet, "simulating") as advance,
        ):
            simulation = simulate(
                engine,
                loaded.base,
                location_of(loaded.project),
                first,
                last,
                every,
                behaviour=model,
                progress=advance,
            )
    except SimulationError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    except StateError as error:
        raise fail(str(error), ExitCode.FINDINGS) from None
    facts = summary(simulation)
    found = _experiments(loaded, simulation)
    if found:  # what `courtship results` would say of the simulated weeks
        facts["experiments"] = found
    try:
        write_report(simulation, facts, report)
        if decisions is not None:
            write_decisions(simulation, decisions)
    except OSError as error:
        raise fail(
            f"{error.filename}: cannot write it ({error.strerror})", ExitCode.USAGE
        ) from None
    return facts


def _uplifts(texts: list[str]) -> dict[str, float]:
    """``--uplift bold=0.1`` → {"bold": 0.1}, or a usage error naming what is wrong."""
    uplifts = {}
    for text in texts:
        template, _, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not template or not -1 <= number <= 1:
            raise fail(
                f"--uplift {text!r}: write TEMPLATE=P, with P between -1 and 1 (bold=0.1)",
                ExitCode.USAGE,
            )
        uplifts[template] = number
    return uplifts


def _experiments(loaded: Any, simulation: Any) -> list[dict[str, Any]]:
    """``courtship results`` of every experiment the simulation recorded."""
    from courtship import experiments
    from courtship.playbook import parse_duration

    if simulation.assignments is None or simulation.assignments.height == 0:
        return []
    playbooks = {pb.id: pb for pb in loaded.report.playbooks}
    measured = set(simulation.assignments.get_column("playbook").to_list()) & set(playbooks)
    return [
        experiments.results(
            pb_id,
            playbooks[pb_id].goal,
            simulation.assignments,
            simulation.events,
            parse_duration(str(playbooks[pb_id].goal["within"])) if playbooks[pb_id].goal else None,
        )
        for pb_id in sorted(measured)
    ]
