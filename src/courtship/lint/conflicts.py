"""Static conflict analysis: what the playbooks' conditions allow, decided by reasoning.

- ``playbook-conflict``: two marketing playbooks that can fire for the same customer at the
  same moment, with the same priority and neither suppressing the other: which one speaks is
  then decided by their ids, not by you.
- ``never-true``: a condition no customer can meet, alone or together with the trigger.
- ``unreachable-step``: a step no customer can reach.

Any two triggers can fire at one moment (a run's window may hold an event, a scheduled time and
an anniversary alike), so two playbooks meet when their conditions can all hold for one
customer: the ``becomes`` conditions, the audiences, and an anniversary's date having a value.
See :mod:`courtship.lint.solver` for how that is decided; an undecided pair is not reported.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from courtship.findings import Finding, Severity
from courtship.lint.registry import Library, place, rule, where
from courtship.lint.solver import Domains, Verdict, satisfiable
from courtship.playbook import TRIGGER_KINDS, Playbook
from courtship.yamlload import PathParts


def trigger_conditions(pb: Playbook) -> list[dict[str, Any]]:
    """What must hold of a customer for the trigger to fire for them."""
    out = []
    if isinstance(pb.trigger.get("becomes"), dict):
        out.append(pb.trigger["becomes"])
    if isinstance(pb.trigger.get("anniversary"), str):
        out.append({"fact": pb.trigger["anniversary"], "exists": True})
    return out


def fires_for(pb: Playbook) -> list[dict[str, Any]]:
    """Every condition a customer must meet for ``pb`` to act on them."""
    audience = [pb.audience] if isinstance(pb.audience, dict) else []
    return [*trigger_conditions(pb), *audience]


def _messages_customer(pb: Playbook) -> bool:
    """Priority and suppression judge messages to the customer: a playbook without one
    competes with nobody."""
    return any(
        isinstance(step.get("send"), dict) and step["send"].get("to", "customer") == "customer"
        for _, step in pb.steps()
    )


def _anchor(pb: Playbook) -> tuple[str, ...]:
    return ("priority",) if "priority" in (pb.document.data or {}) else ("id",)


@rule("playbook-conflict")
def playbook_conflict(lib: Library) -> Iterator[Finding]:
    marketing = sorted(
        (pb for pb in lib.enabled if pb.category == "marketing" and _messages_customer(pb)),
        key=lambda pb: pb.path,
    )
    for first, second in itertools.combinations(marketing, 2):
        if first.priority != second.priority:
            continue
        if second.id in first.suppresses or first.id in second.suppresses:
            continue
        if (
            satisfiable(*fires_for(first), *fires_for(second), domains=lib.domains)
            is not Verdict.SAT
        ):
            continue
        yield place(
            first,
            _anchor(first),
            "playbook-conflict",
            f"'{first.id}' ({where(first, *_anchor(first), key=True)}) and '{second.id}' "
            f"({where(second, *_anchor(second), key=True)}) can fire for the same customer at "
            f"the same moment, both at priority {first.priority}, and neither suppresses the "
            "other: their ids decide which one speaks",
            f"give one of them a higher priority, or add suppresses: [{second.id}] to "
            f"{first.id} (or the other way round)",
            key=True,
        )


def _impossible_node(
    condition: dict[str, Any], parts: PathParts, domains: Domains
) -> tuple[PathParts, Any]:
    """The innermost part of an impossible condition that is impossible by itself."""
    node, here = condition, parts
    while True:
        if "all" in node:
            inner = next(
                (
                    (i, child)
                    for i, child in enumerate(node["all"])
                    if isinstance(child, dict)
                    and satisfiable(child, domains=domains) is Verdict.UNSAT
                ),
                None,
            )
            if inner is None:
                return here, node
            here, node = (*here, "all", inner[0]), inner[1]
        elif "any" in node and len(node["any"]) == 1:
            here, node = (*here, "any", 0), node["any"][0]
        else:
            return here, node


def as_condition(event_filter: Any) -> Any:
    """An event's ``where:`` filter as a condition on facts named ``event.FIELD``: an event
    without the field fails every test but ``exists: false``, as a customer without a fact."""
    if isinstance(event_filter, list):
        return [as_condition(item) for item in event_filter]
    if not isinstance(event_filter, dict):
        return event_filter
    out = {key: as_condition(value) for key, value in event_filter.items() if key != "field"}
    if "field" in event_filter:
        out["fact"] = f"event.{event_filter['field']}"
    return out


@rule("never-true", Severity.ERROR)
def never_true(lib: Library) -> Iterator[Finding]:
    for pb in lib.enabled:
        alone = []
        trees = list(pb.conditions())
        if isinstance(pb.trigger.get("where"), dict):
            trees.append((("trigger", "where"), as_condition(pb.trigger["where"])))
        for parts, condition in trees:
            verdict = satisfiable(condition, domains=lib.domains)
            if "branch" not in parts:  # a branch's condition leaves the playbook acting
                alone.append(verdict)
            if verdict is Verdict.UNSAT:
                at, _ = _impossible_node(condition, parts, lib.domains)
                acts = (
                    "its branch's then steps never run"
                    if "branch" in parts
                    else "the playbook never acts"
                )
                yield place(
                    pb,
                    at,
                    "never-true",
                    f"this condition of '{pb.id}' can never be true: no customer can meet all "
                    f"of it at once, so {acts}",
                    "check the bounds: a fact cannot be both above and below a value, or "
                    "both in and out of a list",
                )
        if Verdict.UNSAT in alone or not isinstance(pb.audience, dict):
            continue
        if satisfiable(*fires_for(pb), domains=lib.domains) is Verdict.UNSAT:
            yield place(
                pb,
                ("audience",),
                "never-true",
                f"the audience of '{pb.id}' can never be true when its trigger "
                f"({where(pb, 'trigger', key=True)}) fires: the playbook never acts",
                "the trigger and the audience contradict each other; loosen one",
            )


@rule("unreachable-step")
def unreachable_step(lib: Library) -> Iterator[Finding]:
    for pb in lib.enabled:
        if "event" in pb.trigger:
            continue
        for index, step in enumerate(pb.respond):
            send = step.get("send")
            if not isinstance(send, dict) or send.get("to") != "friend":
                continue
            yield place(
                pb,
                ("respond", index, "send", "to"),
                "unreachable-step",
                f"this message to a friend can never go out: only an event (a referral with a "
                f"friend_id) names a friend, and '{pb.id}' has a "
                f"{next((k for k in TRIGGER_KINDS if k in pb.trigger), 'missing')} trigger",
                "send it from a playbook with trigger: {event: referral}",
            )
            if send.get("optional") is True:
                continue
            for later in range(index + 1, len(pb.respond)):
                yield place(
                    pb,
                    ("respond", later),
                    "unreachable-step",
                    f"this step never runs: the message to a friend before it "
                    f"({where(pb, 'respond', index)}) can never go out, which ends the sequence",
                    "mark that send optional: true, or move this step before it",
                )
            break
