"""``courtship history CUSTOMER``: what they received and what was held back, and why, across
runs — and ``explain`` at a moment already run, both answered from the record of the runs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from courtship.cli.common import fail
from courtship.findings import ExitCode

if TYPE_CHECKING:
    from courtship.engine import Engine
    from courtship.state import StateStore

#: How the record names what became of a decision, by its status.
OUTCOMES = {"send": "sent", "deferred": "held back", "blocked": "not sent"}


def recorded_entries(
    engine: Engine, state: StateStore, customer_id: str, moment: dt.datetime
) -> list[dict[str, Any]]:
    """One entry per playbook, in evaluation order, from what the run at ``moment`` recorded:
    the decisions about the customer (as the subject or the recipient), with the playbook
    version that decided and the values of the facts it read then."""
    decisions = state.decisions(at=moment, customer_id=customer_id)
    fired = state.fired_at(moment, customer_id)
    order = list(engine.order)
    order += sorted({d["playbook"] for d in decisions} - set(order))  # removed since
    entries = []
    for pb_id in order:
        mine = [d for d in decisions if d["playbook"] == pb_id]
        entry: dict[str, Any] = {"playbook": pb_id}
        if mine:
            entry["version"] = mine[0]["version"]
            entry["outcome"] = "fired" if pb_id in fired else "carried on from an earlier moment"
            entry["why"] = [
                f"{name} was {_value(value)}" for name, value in mine[0]["decided_by"].items()
            ]
            if pb_id not in engine.playbooks:
                entry["why"].append("this playbook has been removed since")
            elif engine.playbooks[pb_id].version != mine[0]["version"]:
                entry["why"].append("this playbook has been edited since")
        elif pb_id in fired:
            entry["outcome"] = "fired"
            entry["why"] = ["no message to them at this moment (a wait, or a set or tag step)"]
        else:
            entry["outcome"] = "did not speak to them"
            entry["why"] = []
        entry["messages"] = [_message(d) for d in mine]
        entries.append(entry)
    return entries


def _value(value: Any) -> str:
    return "no value" if value is None else json.dumps(value, ensure_ascii=False)


def _message(decision: dict[str, Any]) -> dict[str, Any]:
    """A recorded decision as ``explain`` shows a message (the same keys as a computed one)."""
    return {
        "customer": decision["customer_id"],
        "recipient": decision["recipient_id"],
        "playbook": decision["playbook"],
        "step": decision["step"],
        "step_id": decision["step_id"],
        "category": decision["category"],
        "channel": decision["delivered_channel"] or decision["channel"],
        "tone": decision["tone"],
        "template": decision["template"],
        "status": decision["status"],
        "reason": decision["reason"],
        "guard": decision["guard"],
        "due_at": decision["due_at"],
        "subject": decision["subject"] or "",
        "text": decision["text"] or "",
        "key": decision["key"],
        "to": decision["to_whom"],
        "delivery": decision["delivery"],
        "receipt": decision["receipt"],
        "error": decision["error"],
    }


def describe(decision: dict[str, Any]) -> str:
    """``sent on sms (buddy): delivered``, ``held back: quiet hours … (due …)``."""
    outcome = OUTCOMES.get(decision["status"], decision["status"])
    channel = decision["delivered_channel"] or decision["channel"]
    text = f"{outcome} on {channel} ({decision['tone']})" if channel else outcome
    if (
        decision["wanted"]
        and channel
        and decision["wanted"] != channel
        and (
            decision["guard"] != "instagram"  # whose reason says it fell back
        )
    ):
        text += f", fell back from {decision['wanted']}"
    if decision["reason"]:
        text += f": {decision['reason']}"
    if decision["status"] == "deferred" and decision["due_at"]:
        text += f" (due {decision['due_at'][:16].replace('T', ' ')} UTC)"
    if decision["delivery"]:
        text += f" — {decision['delivery']}"
        if decision["error"]:
            text += f" ({decision['error']})"
    if decision["receipt"]:
        text += f"; the provider reports it {decision['receipt']}"
    if decision["recipient_id"] != decision["customer_id"]:
        text += f" [to {decision['recipient_id']}, as the friend of {decision['customer_id']}]"
    return text


def render(customer_id: str, decisions: list[dict[str, Any]]) -> str:
    if not decisions:
        return f"{customer_id}: nothing recorded yet (no run has decided anything about them)\n"
    runs = len({d["at"] for d in decisions})
    lines = [
        f"{customer_id}: {len(decisions)} decision(s) across {runs} run(s)",
        "",
    ]
    previous = None
    for d in decisions:
        when = d["at"][:16].replace("T", " ") if d["at"] != previous else ""
        previous = d["at"]
        lines.append(f"{when:<16}  {d['playbook']:<30} {describe(d)}")
        for name, value in d["decided_by"].items():
            lines.append(f"{'':<18}  · {name} was {_value(value)}")
        if d["subject"] or d["text"]:
            first = (d["subject"] or d["text"].splitlines()[0] if d["text"] else d["subject"])[:90]
            lines.append(f"{'':<18}  “{first}”")
    return "\n".join(lines) + "\n"


def command(
    customer: Annotated[str, typer.Argument(help="The customer_id.")],
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
) -> None:
    """What CUSTOMER received and what was held back, and why, across every run (from the
    record in the state store; computes nothing)."""
    if output_format not in ("text", "json"):
        raise fail(f"unknown format '{output_format}'; choose text or json", ExitCode.USAGE)
    from courtship.cli.common import open_state, project_or_fail

    loaded = project_or_fail(project)
    state = open_state(loaded, dry_run=True)
    try:
        decisions = state.decisions(customer_id=customer)
    finally:
        state.close()
    if not decisions:  # nothing recorded: a customer no run spoke of yet, or a typo?
        from courtship.cli.common import known_customer, load

        known_customer(load(project, quiet=True).base, customer)
    if output_format == "json":
        typer.echo(json.dumps({"customer": customer, "decisions": decisions}, indent=2))
    else:
        typer.echo(render(customer, decisions), nl=False)
