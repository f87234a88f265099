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
    from courtship.engine import Decision, Engine, Plan

#: The tone a customer without one is spoken to in (as the engine decides).
DEFAULT_TONE = "direct"


def explain(
    engine: Engine, plan: Plan, customer_id: str, *, first_run: bool = False
) -> list[dict[str, Any]]:
    """One entry per playbook, in evaluation order: the outcome and the values that decided.

    Its messages are those the customer is the subject of and those they receive as someone
    else's friend (a referral's welcome). ``first_run``: the state store has no run recorded
    yet, so a ``becomes`` that holds was read from the data alone."""
    from courtship.engine.conditions import check

    facts = plan.customer_facts or {}
    entries = []
    for pb_id in engine.order:
        pb = engine.playbooks[pb_id]
        trace = plan.traces.get(pb_id, {})
        mine = [
            d
            for d in plan.decisions
            if d.playbook == pb_id and customer_id in (d.customer_id, d.recipient_id)
        ]
        for_others = sorted({d.customer_id for d in mine if d.customer_id != customer_id})
        entry: dict[str, Any] = {
            "playbook": pb_id,
            "priority": pb.priority,
            "category": pb.category,
        }
        trigger = pb.trigger
        if not trace.get("triggered"):
            own = [d for d in mine if d.customer_id == customer_id]
            if for_others:
                entry["outcome"] = f"fired for {_and(for_others)} (as their friend)"
                entry["why"] = []
            elif own:  # a sequence that began at an earlier moment carries on
                entry["outcome"] = "carried on from an earlier moment"
                entry["why"] = [f"at step {d.step_id}" for d in own[:1]]
            else:
                entry["outcome"] = "not triggered"
                entry["why"] = _trigger_reason(pb.trigger, facts, plan, first_run=first_run)
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
        if for_others and trace.get("triggered"):
            entry["why"].append(f"also fired for {_and(for_others)}, to them as their friend")
        routes = [
            (step_id, way) for p, c, step_id, way in plan.routes if (p, c) == (pb_id, customer_id)
        ]
        entry["why"] += [_route(pb, step_id, way, facts, plan.now) for step_id, way in routes]
        if routes:
            entry["routes"] = [{"step_id": step_id, "way": way} for step_id, way in routes]
        entry["messages"] = [_message(d) for d in mine]
        entries.append(entry)
    return entries


def _route(pb: Any, step_id: str, way: str, facts: dict[str, Any], now: dt.datetime) -> str:
    """Which way the customer went at a split or a branch, and why."""
    from courtship.engine.conditions import check

    if way.startswith("arm "):
        return (
            f"{step_id}: {way}, picked by weight from a hash of the customer, the playbook and "
            "the step (the same at every run)"
        )
    index = pb.step_index(step_id)
    condition = pb.flow[index]["branch"]["if"] if index is not None else {}
    why = "; ".join(check(condition, facts, now).reasons)
    return f"{step_id}: {way}" + (f" ({why})" if why else "")


def _message(decision: Decision) -> dict[str, Any]:
    return decision.as_dict() | {"to": decision.to}


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _trigger_reason(
    trigger: dict[str, Any], facts: dict[str, Any], plan: Plan, *, first_run: bool
) -> list[str]:
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
    if not outcome.passed:
        return outcome.reasons
    not_long_enough = f", or it has not held for {trigger['for']} yet" if "for" in trigger else ""
    if first_run:
        return [
            "the condition holds, but it was already true before this window began "
            f"({plan.since:%Y-%m-%d %H:%M} UTC), so a first run takes it as already answered"
            + not_long_enough
        ]
    return ["the condition holds, but it already fired while it stayed true" + not_long_enough]


def render(
    customer_id: str,
    plan: Plan,
    entries: list[dict[str, Any]],
    consent: list[str] | None = None,
    learned: list[str] | None = None,
    hour: list[str] | None = None,
    channel: str | None = None,
) -> str:
    """``consent``: the withdrawals in force (an unsubscribe, a STOP, a bounce), in words;
    ``learned``: what the learned preferences were learned from; ``hour``: what their best
    hour was learned from; ``channel``: what ``channel: preferred`` means for them."""
    facts = plan.customer_facts or {}
    name = " ".join(filter(None, [facts.get("first_name"), facts.get("last_name")])) or "(no name)"
    lines = [
        f"{customer_id} {name} at {plan.now:%Y-%m-%dT%H:%M:%SZ}{_local_time(facts)}",
        f"  {_habits(facts)}",
        *(f"  {line}" for line in consent or []),
        *([f"  {channel}"] if channel else []),
        *_learned_lines(facts, learned),
        *_hour_lines(facts, hour),
        "",
    ]
    for entry in entries:
        lines.append(f"{entry['playbook']:<30} {entry['outcome']}")
        for reason in entry["why"]:
            lines.append(f"    · {reason}")
        for message in entry["messages"]:
            lines.append(f"    → {_message_head(message, customer_id)}")
            if message["text"]:
                lines.append(f"      {message['text'].splitlines()[0][:100]}")
    return "\n".join(lines) + "\n"


def _learned_lines(facts: dict[str, Any], learned: list[str] | None) -> list[str]:
    if learned is None:
        return []
    channel, cadence = facts.get("best_channel"), facts.get("suggested_cadence_days")
    head = (
        f"  learned: best_channel {channel or '(none)'}, suggested_cadence_days "
        f"{cadence if cadence is not None else '(none)'}, from"
    )
    return [head, *(f"    {line}" for line in learned)]


def preferred_meaning(project: Any, facts: dict[str, Any]) -> str | None:
    """What ``channel: preferred`` means for this customer, and why, when the project lets it
    mean their learned best_channel (``learning.preferred_channel: learned``)."""
    if project.preferred_channel != "learned":
        return None
    own, learned = facts.get("preferred_channel"), facts.get("best_channel")
    if own:
        return (
            f"channel: preferred is {own}, their own preferred channel from the customer file "
            f"(the learned best_channel, {learned or 'none'}, stands in only when the file "
            "has none)"
        )
    if learned:
        return (
            f"channel: preferred is {learned}, their learned best_channel: the customer file "
            "names no preferred channel (learning.preferred_channel: learned)"
        )
    return (
        "channel: preferred names no channel: the customer file has none and nothing is "
        "learned yet (no best_channel), so the step's fallbacks are tried"
    )


def _hour_lines(facts: dict[str, Any], hour: list[str] | None) -> list[str]:
    if hour is None:
        return []
    best = facts.get("best_hour")
    head = f"  learned: best_hour {f'{best:02d}:00 local' if best is not None else '(none)'}, from"
    return [head, *(f"    {line}" for line in hour[:-1])]


def hour_evidence(
    engine: Engine, base: Any, state: Any, facts: dict[str, Any], now: Any
) -> list[str]:
    """Their activity per local hour, their persona's (the prior) and the result: what
    ``best_hour`` was learned from."""
    import polars as pl

    from courtship.learn.preferences import hour_evidence as words
    from courtship.learn.preferences import persona_hours

    history = engine.fact_history(base, state)
    row = history.ids.filter(pl.col("customer_id") == facts["customer_id"]).get_column("_row")[0]
    hours = history.activity(now)
    people = history.customers.select("_row", "persona")
    mine = hours.filter(pl.col("_row") == row)
    return words(facts, mine, persona_hours(people, hours))


def learned_evidence(engine: Engine, base: Any, state: Any, customer: str, now: Any) -> list[str]:
    """Per channel, the messages the customer was sent and those they answered within 48 h:
    what ``best_channel`` and ``suggested_cadence_days`` were learned from."""
    import polars as pl

    from courtship.learn.preferences import evidence

    history = engine.fact_history(base, state)
    row = history.ids.filter(pl.col("customer_id") == customer).get_column("_row")[0]
    return evidence(history.answered(now), row)


def _local_time(facts: dict[str, Any]) -> str:
    local = facts.get("_local_now")
    if not isinstance(local, dt.datetime):
        return ""
    return f" ({facts.get('timezone')}, {local:%Y-%m-%d %H:%M} local)"


def _habits(facts: dict[str, Any]) -> str:
    """How the customer likes to be courted, a missing value said in words."""
    stage = facts.get("stage")
    channel = facts.get("preferred_channel")
    tone = facts.get("tone")
    cadence = facts.get("cadence_days")
    if cadence is None:
        every = "no cadence"
    elif cadence == 0:
        every = "no cadence (0 days)"
    else:
        every = f"cadence {cadence} day{'' if cadence == 1 else 's'}"
    return ", ".join(
        [
            f"stage {stage}" if stage else "no stage",
            f"prefers {channel}" if channel else "no preferred channel",
            f"tone {tone}" if tone else f"tone {DEFAULT_TONE} (default)",
            every,
        ]
    )


def _message_head(message: dict[str, Any], customer_id: str) -> str:
    """``send on sms (buddy)``, ``blocked: <reason>`` when no channel could be used, with
    whom it went to when that is not the customer explained."""
    channel = message["channel"]
    head = message["status"] if channel is None else f"{message['status']} on {channel}"
    if channel is not None:
        head += f" ({message['tone']})"
    if message["customer"] != customer_id:
        head += f", to them as the friend of {message['customer']}"
    elif message.get("to") == "friend":
        friend = message["recipient"]
        head += f" to their friend {friend}" if friend != customer_id else " to their friend"
    if message["reason"]:
        head += f": {message['reason']}"
    return head


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
    from courtship.cli.common import known_customer, load, open_state
    from courtship.cli.history import recorded_entries

    moment = parse_moment(at)
    loaded = load(project, quiet=True)
    known_customer(loaded.base, customer)
    state = open_state(loaded.project, dry_run=True)
    try:
        recorded = state.has_run(moment)
        from courtship.engine.consent import withdrawals_of

        if recorded:  # answered from what that run recorded, not recomputed
            import polars as pl

            entries = recorded_entries(loaded.engine, state, customer, moment)
            person = loaded.base.customers.filter(pl.col("customer_id").cast(pl.String) == customer)
            facts = person.to_dicts()[0] if person.height else {}
            consent = withdrawals_of(customer, facts, state.consent_changes(), moment)
        else:
            first_run = state.last_run() is None
            plan = loaded.engine.plan(loaded.base, moment, state, trace=customer)
            consent = withdrawals_of(
                customer, plan.customer_facts or {}, state.consent_changes(), plan.now
            )
            learned = (
                learned_evidence(loaded.engine, loaded.base, state, customer, plan.now)
                if loaded.engine.prefers
                else None
            )
            channel = preferred_meaning(loaded.project, plan.customer_facts or {})
            hour = (
                hour_evidence(
                    loaded.engine, loaded.base, state, plan.customer_facts or {}, plan.now
                )
                if loaded.engine.prefers and plan.customer_facts
                else None
            )
    finally:
        state.close()
    if recorded:
        _print_recorded(customer, moment, facts, entries, consent, output_format)
        return
    entries = explain(loaded.engine, plan, customer, first_run=first_run)
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
                    "source": "computed",
                    "facts": facts,
                    "consent": consent,
                    "learned_from": learned,
                    "best_hour_from": hour,
                    "preferred_channel": channel,
                    "playbooks": entries,
                },
                indent=2,
                default=str,
            )
        )
    else:
        typer.echo(render(customer, plan, entries, consent, learned, hour, channel), nl=False)
        typer.echo(
            f"\n(computed now: no run has recorded {plan.now:%Y-%m-%dT%H:%M:%SZ} in the state "
            "store yet)"
        )


def _print_recorded(
    customer: str,
    moment: dt.datetime,
    person: dict[str, Any],
    entries: list[dict[str, Any]],
    consent: list[str],
    output_format: str,
) -> None:
    """``explain`` at a moment already run: what its run recorded, said to be so."""
    stamp = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if output_format == "json":
        payload = {
            "customer": customer,
            "at": stamp,
            "source": "record",
            "consent": consent,
            "playbooks": entries,
        }
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    name = " ".join(filter(None, [person.get("first_name"), person.get("last_name")]))
    lines = [
        f"{customer} {name or '(no name)'} at {stamp}",
        f"  from the record of the run at {stamp} (what it decided then; "
        "`courtship history` lists every run)",
        *(f"  {line}" for line in consent),
        "",
    ]
    for entry in entries:
        version = f" (version {entry['version'][:8]})" if entry.get("version") else ""
        lines.append(f"{entry['playbook'] + version:<40} {entry['outcome']}")
        lines += [f"    · {reason}" for reason in entry["why"]]
        for message in entry["messages"]:
            head = _message_head(message, customer)
            if message.get("delivery"):
                head += f" — {message['delivery']}"
            if message.get("receipt"):
                head += f"; the provider reports it {message['receipt']}"
            lines.append(f"    → {head}")
            if message["text"]:
                lines.append(f"      {message['text'].splitlines()[0][:100]}")
    typer.echo("\n".join(lines))
