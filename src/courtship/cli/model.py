"""``courtship model``: the model card of ``churn_risk``, the chance of no order in the next H
days, learned from the base's own past.

The card shows how well the model would have done on this base: trained on the facts at
``now - 2H`` (and who ordered in the H days after), it predicts who orders nothing between
``now - H`` and ``now``. Its ROC AUC stands beside that of ``1 - p_alive`` and of plain recency
(days since the last order) on the same customers; then the weights of the model that scores
``now``. Records nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from courtship.cli.common import fail, parse_moment
from courtship.findings import ExitCode

FORMATS = ("text", "json")
#: What the card calls each score it compares.
SCORES = {
    "churn_risk": "churn_risk (this model)",
    "p_alive": "1 - p_alive (BG/NBD)",
    "recency": "recency (days since last order)",
}


def card(loaded: Any, state: Any, now: dt.datetime | None, horizon: dt.timedelta) -> dict:
    """The model card's numbers at ``now`` (default: the latest event) for a horizon of
    ``horizon``. Raises ``ChurnError`` when the base's past cannot teach a model."""
    from courtship.learn.churn import CHURN_INPUTS, back_test

    if now is None:
        latest = loaded.base.events.get_column("at").max()
        if latest is None:
            raise fail("the base has no events: give the moment with --at")
        now = latest.astimezone(dt.UTC)
    history = loaded.engine.fact_history(loaded.base, state)
    inputs = set(CHURN_INPUTS)
    at_now = history.at(now)
    at_h = history.before(now - horizon, now, inputs)
    at_2h = history.before(now - 2 * horizon, now, inputs)
    numbers = back_test(at_2h, at_h, at_now, horizon.days)
    moments = {
        "trained": _iso(now - 2 * horizon),
        "tested": _iso(now - horizon),
        "now": _iso(now),
    }
    return {"at": _iso(now), "moments": moments, **numbers}


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_text(numbers: dict) -> str:
    """The card for people: what was tested, how well each score did, the weights."""
    from courtship.learn.churn import FEATURES

    days = numbers["horizon_days"]
    test, model, moments = numbers["back_test"], numbers["model"], numbers["moments"]
    lines = [
        f"churn_risk: the chance that a customer orders nothing in the next {days} days",
        f"learned from this base's own past, at {moments['now']}",
        "",
        "Back-test on this base",
        f"  trained on the facts at {moments['trained']}: {test['trained_on']} customers with"
        f" an order, {_share(test['trained_churned'], test['trained_on'])} of them ordered"
        f" nothing in the {days} days after",
        f"  tested on the facts at {moments['tested']}: {test['tested_on']} customers,"
        f" {_share(test['tested_churned'], test['tested_on'])} ordered nothing by"
        f" {moments['now']}",
        "  how well each score ranks who orders nothing (AUC: 0.5 is a coin toss, 1 is perfect):",
    ]
    for key, label in SCORES.items():
        value = test["auc"][key]
        lines.append(f"    {label:<34} {'n/a' if value is None else f'{value:.3f}'}")
    lines += [
        "",
        f"The model that scores now: {model['kind']}",
        f"  trained on the facts at {moments['tested']} ({model['trained_on']} customers,"
        f" {_share(model['trained_churned'], model['trained_on'])} ordered nothing since)",
        "  the features' weight (per standard deviation; positive: more of it, more risk):",
    ]
    for name, weight in sorted(model["weights"].items(), key=lambda item: -abs(item[1])):
        lines.append(f"    {name:<26} {FEATURES[name]:<28} {weight:+.3f}")
    mean = model["mean_churn_risk"]
    lines.append(
        f"  scored now: {model['scored']} customers with an order, mean churn_risk"
        f" {'n/a' if mean is None else f'{mean:.3f}'}"
    )
    return "\n".join(lines) + "\n"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "0%"


def command(
    at: Annotated[
        str | None,
        typer.Option("--at", help="The moment, ISO 8601 with a zone (default: the latest event)."),
    ] = None,
    horizon: Annotated[
        str | None,
        typer.Option(
            "--horizon",
            help="How far ahead churn is judged: 90d, 8w, … (default: the project's "
            "learning.churn_horizon, else 90d).",
        ),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
) -> None:
    """The model card of churn_risk: its back-test on the base's own past, beside p_alive and
    recency, and the features' weight (records nothing)."""
    from courtship.cli.common import load, open_state
    from courtship.learn.churn import ChurnError
    from courtship.playbook import parse_duration

    if output_format not in FORMATS:
        raise fail(f"unknown format '{output_format}'; choose {', '.join(FORMATS)}", ExitCode.USAGE)
    span = dt.timedelta(0)
    if horizon is not None:
        try:
            span = parse_duration(horizon)
        except ValueError:
            span = dt.timedelta(0)
        if span.days < 1 or span % dt.timedelta(days=1):
            raise fail(
                f"--horizon {horizon!r} is not a whole number of days; write it like 90d or 12w",
                ExitCode.USAGE,
            )
    moment = parse_moment(at) if at is not None else None
    loaded = load(project, quiet=True)
    if horizon is None:  # the horizon churn_risk itself is computed with
        span = dt.timedelta(days=loaded.project.churn_horizon_days)
    state = open_state(loaded.project, dry_run=True)
    try:
        numbers = card(loaded, state, moment, span)
    except ChurnError as error:
        raise fail(f"cannot back-test churn_risk on this base: {error}") from None
    except ValueError as error:
        raise fail(str(error)) from None
    finally:
        state.close()
    if output_format == "json":
        sys.stdout.write(json.dumps(numbers, indent=2) + "\n")
    else:
        sys.stdout.write(as_text(numbers))
