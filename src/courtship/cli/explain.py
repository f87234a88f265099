"""``courtship explain CUSTOMER --at T``: for one customer, every playbook, and why."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from courtship.cli.common import fail, parse_moment
from courtship.findings import ExitCode

if TYPE_CHECKING:
    from courtship.engine import Engine, Plan


def explain(engine: Engine, plan: Plan, customer_id: str) -> list[dict[str, Any]]:
    """One entry per playbook, in evaluation order: the outcome and the values that decided."""
    from courtship.engine.conditions import check

    facts = plan.customer_facts or {}
    entries = []
    for pb_id in engine.order:
        pb = engine.playbooks[pb_id]
        trace = plan.traces.get(pb_id, {})
        mine = [d for d in plan.decisions if d.customer_id == customer_id and d.playbook == pb_id]
        entry: dict[str, Any] = {
            "playbook": pb_id,
            "priority": pb.priority,
            "category": pb.category,
        }
        trigger = pb.trigger
        if not trace.get("triggered"):
            entry["outcome"] = "not triggered"
            entry["why"] = _trigger_reason(pb.trigger, facts, plan)
        elif not trace.get("audience"):
            entry["outcome"] = "not in the audience"
            entry["why"] = check(pb.audience or {}, facts, plan.now).reasons
        elif not trace.get("limits"):
            entry["outcome"] = "held back by its limits"
            entry["why"] = [f"limits: {json.dumps(pb.limits)}"]
        else:
            entry["outcome"] = "fired"
            entry["why"] = check(pb.audience, facts, plan.now).reasons if pb.audience else []
            if "becomes" in trigger:
                entry["why"] = check(trigger["becomes"], facts, plan.now).reasons + entry["why"]
        entry["messages"] = [d.as_dict() for d in mine]
        entries.append(entry)
    return entries


def _trigger_reason(trigger: dict[str, Any], facts: dict[str, Any], plan: Plan) -> list[str]:
    from courtship.engine.conditions import check

    window = f"between {plan.since:%Y-%m-%d %H:%M} and {plan.now:%Y-%m-%d %H:%M} UTC"
    if "event" in trigger:
        return [f"no {trigger['event']} event {window}"]
    if "anniversary" in trigger:
        day = facts.get(trigger["anniversary"])
        if day is None:
            return [f"{trigger['anniversary']} has no value"]
        return [
            f"{trigger['anniversary']} is {day}; its moment (offset {trigger.get('offset', '0d')}, "
            f"at {trigger.get('at', '00:00')} local) is not {window}"
        ]
    if "schedule" in trigger:
        return [f"no scheduled moment ({json.dumps(trigger['schedule'])}) {window}"]
    outcome = check(trigger["becomes"], facts, plan.now)
    if outcome.passed:
        return [
            "the condition holds, but it already fired while it stayed true"
            + (f", or has not held for {trigger['for']} yet" if "for" in trigger else "")
        ]
    return outcome.reasons


def render(customer_id: str, plan: Plan, entries: list[dict[str, Any]]) -> str:
    facts = plan.customer_facts or {}
    name = " ".join(filter(None, [facts.get("first_name"), facts.get("last_name")])) or "(no name)"
    local = facts.get("_local_now")
    lines = [
        f"{customer_id} {name} at {plan.now:%Y-%m-%dT%H:%M:%SZ}"
        + (
            f" ({facts.get('timezone')}, {local:%Y-%m-%d %H:%M} local)"
            if isinstance(local, dt.datetime)
            else ""
        ),
        f"  stage {facts.get('stage')}, prefers {facts.get('preferred_channel')}, "
        f"tone {facts.get('tone')}, cadence {facts.get('cadence_days')} days",
        "",
    ]
    for entry in entries:
        lines.append(f"{entry['playbook']:<30} {entry['outcome']}")
        for reason in entry["why"]:
            lines.append(f"    · {reason}")
        for message in entry["messages"]:
            status = message["status"]
            head = f"    → {status} on {message['channel']} ({message['tone']})"
            if message["reason"]:
                head += f": {message['reason']}"
            lines.append(head)
            if message["text"]:
                lines.append(f"      {message['text'].splitlines()[0][:100]}")
    return "\n".join(lines) + "\n"


def command(
    customer: Annotated[str, typer.Argument(help="The customer_id to explain.")],
    at: Annotated[str, typer.Option("--at", help="The moment, ISO 8601 with a zone.")],
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    project: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Folder of courtship.yaml (default: here)."),
    ] = None,
) -> None:
    """Why each playbook did or did not speak to CUSTOMER at moment AT (records nothing)."""
    if output_format not in ("text", "json"):
        raise fail(f"unknown format '{output_format}'; choose text or json", ExitCode.USAGE)
    from courtship.cli.common import load, open_state

    moment = parse_moment(at)
    loaded = load(project, quiet=True)
    known = loaded.base.customers["customer_id"].to_list()
    if customer not in known:
        from courtship.schema import did_you_mean

        hint = did_you_mean(customer, known)
        raise fail(f"no customer '{customer}'" + (f"; {hint}" if hint else ""), ExitCode.USAGE)
    state = open_state(loaded.project, dry_run=True)
    try:
        plan = loaded.engine.plan(loaded.base, moment, state, trace=customer)
    finally:
        state.close()
    entries = explain(loaded.engine, plan, customer)
    if output_format == "json":
        facts = {
            k: (v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in (plan.customer_facts or {}).items()
            if not k.startswith("_")
        }
        typer.echo(
            json.dumps(
                {
                    "customer": customer,
                    "at": plan.now.isoformat(),
                    "facts": facts,
                    "playbooks": entries,
                },
                indent=2,
                default=str,
            )
        )
    else:
        typer.echo(render(customer, plan, entries), nl=False)
