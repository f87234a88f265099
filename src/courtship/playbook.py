"""The playbook model: what a loaded, validated YAML file says, with the place of every part."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from courtship.yamlload import Document, PathParts

if TYPE_CHECKING:
    from courtship.catalogue import Catalogue

TRIGGER_KINDS = ("event", "anniversary", "becomes", "schedule")
STEP_KINDS = ("send", "set", "tag", "untag", "notify", "wait", "split", "branch")
COMBINATORS = ("all", "any", "not")


@dataclass
class Playbook:
    """One playbook. ``document`` keeps the source positions for findings and explanations."""

    id: str
    title: str
    stage: str
    category: str
    trigger: dict[str, Any]
    respond: list[dict[str, Any]]
    document: Document
    audience: dict[str, Any] | None = None
    priority: int = 50
    enabled: bool = True
    description: str = ""
    depends_on: list[str] = field(default_factory=list)
    suppresses: list[str] = field(default_factory=list)
    dedup_key: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    #: the share of customers held out of its marketing messages (``holdout: 10%``)
    holdout: float = 0.0
    #: what counts as a conversion for ``courtship results`` (``{event, within}``)
    goal: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return self.document.path

    # ── versions and steps ─────────────────────────────────────────────────
    @functools.cached_property
    def version(self) -> str:
        """A hash of what the playbook says: an enrollment remembers it, so an edit is seen."""
        text = json.dumps(self.document.data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @functools.cached_property
    def _flow(self) -> list[tuple[dict[str, Any], PathParts, str]]:
        out: list[tuple[dict[str, Any], PathParts, str]] = []
        _flatten(self.respond, ("respond",), "", out, set())
        return out

    @property
    def flow(self) -> list[dict[str, Any]]:
        """The response as the engine walks it, one step after the other: a ``split`` or a
        ``branch`` step is followed by the steps of its arms (or ``then`` and ``else``), each
        arm but the last ending in a jump, ``{"goto": n}``, past the others. A split keeps where
        each arm begins (``_starts``), a branch where ``then`` and ``else`` begin (``_then``,
        ``_else``). Without a split or branch, it is ``respond``. Indexes into it are what
        sequences, enrollments and decisions call a step."""
        return [entry for entry, _, _ in self._flow]

    @property
    def flow_parts(self) -> list[PathParts]:
        """Where each step of ``flow`` is in the file."""
        return [parts for _, parts, _ in self._flow]

    @property
    def step_ids(self) -> list[str]:
        """Each step's stable name (of ``flow``): its declared ``id``, else what it does
        (``send:apology``, ``wait:7d``, …; a repeated name gets ``#2``, ``#3``); a step in an
        arm of a split or a side of a branch is named after it: ``split/short/wait:2d``,
        ``branch/then/send:vip``. Customers waiting at a step stay at it through an edit that
        keeps its name."""
        return [name for _, _, name in self._flow]

    def step_index(self, step_id: str) -> int | None:
        """Where the step named ``step_id`` is now, or None when the playbook no longer has it."""
        try:
            return self.step_ids.index(step_id)
        except ValueError:
            return None

    @classmethod
    def from_document(cls, doc: Document) -> Playbook | None:
        """A playbook from a loaded document, as far as its shape allows; None if it has no id."""
        data = doc.data
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return None

        def get(key: str, kind: type, default: Any) -> Any:
            value = data.get(key, default)
            return value if isinstance(value, kind) else default

        return cls(
            id=data["id"],
            title=get("title", str, data["id"]),
            stage=get("stage", str, ""),
            category=get("category", str, "marketing"),
            trigger=get("trigger", dict, {}),
            respond=[step for step in get("respond", list, []) if isinstance(step, dict)],
            document=doc,
            audience=get("audience", dict, None),
            priority=get("priority", int, 50),
            enabled=get("enabled", bool, True),
            description=get("description", str, ""),
            depends_on=[d for d in get("depends_on", list, []) if isinstance(d, str)],
            suppresses=[s for s in get("suppresses", list, []) if isinstance(s, str)],
            dedup_key=get("dedup_key", str, None),
            limits=get("limits", dict, {}),
            holdout=share(data.get("holdout")),
            goal=get("goal", dict, None),
        )

    def steps(self) -> Iterator[tuple[PathParts, dict[str, Any]]]:
        """Every step of the response with its path, those inside a ``split`` arm or a
        ``branch`` included (after the step that holds them)."""
        yield from _steps(self.respond, ("respond",))

    # ── facts ──────────────────────────────────────────────────────────────
    def conditions(self) -> Iterator[tuple[PathParts, dict[str, Any]]]:
        """Every condition tree of the playbook with its path: the audience, ``becomes`` and
        each ``branch``'s ``if``."""
        if isinstance(self.audience, dict):
            yield ("audience",), self.audience
        becomes = self.trigger.get("becomes")
        if isinstance(becomes, dict):
            yield ("trigger", "becomes"), becomes
        for parts, step in self.steps():
            branch = step.get("branch")
            if isinstance(branch, dict) and isinstance(branch.get("if"), dict):
                yield (*parts, "branch", "if"), branch["if"]

    @property
    def facts_read(self) -> dict[str, PathParts]:
        """Facts the playbook reads, each with the first place it reads it."""
        reads: dict[str, PathParts] = {}
        for parts, condition in self.conditions():
            for leaf_parts, leaf in walk_conditions(condition, parts):
                if isinstance(leaf.get("fact"), str):
                    reads.setdefault(leaf["fact"], (*leaf_parts, "fact"))
                for op, value in leaf.items():
                    for ref_parts, ref in _fact_refs(value, (*leaf_parts, op)):
                        reads.setdefault(ref, ref_parts)
        anniversary = self.trigger.get("anniversary")
        if isinstance(anniversary, str):
            reads.setdefault(anniversary, ("trigger", "anniversary"))
        for parts, step in self.steps():
            send = step.get("send")
            if isinstance(send, dict) and send.get("at") == "best_hour":
                reads.setdefault("best_hour", (*parts, "send", "at"))
        return reads

    @property
    def facts_set(self) -> dict[str, tuple[PathParts, Any]]:
        """Facts the playbook sets: name → (place, value)."""
        sets: dict[str, tuple[PathParts, Any]] = {}
        for parts, step in self.steps():
            action = step.get("set")
            if isinstance(action, dict) and isinstance(action.get("fact"), str):
                sets.setdefault(action["fact"], ((*parts, "set"), action.get("value")))
        return sets


def _unique(name: str, seen: set[str]) -> str:
    if name in seen:
        name = next(f"{name}#{n}" for n in range(2, len(seen) + 2) if f"{name}#{n}" not in seen)
    seen.add(name)
    return name


def _flatten(
    steps: list[Any],
    parts: PathParts,
    prefix: str,
    out: list[tuple[dict[str, Any], PathParts, str]],
    seen: set[str],
) -> None:
    """``steps`` appended to ``out`` as ``Playbook.flow`` walks them, named under ``prefix``."""
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        here = (*parts, index)
        name = _unique(prefix + step_name(step), seen)
        if isinstance(step.get("split"), list):
            arms = [arm for arm in step["split"] if isinstance(arm, dict)]
            entry: dict[str, Any] = {**step, "_starts": []}
            out.append((entry, here, name))
            jumps = []
            for number, arm in enumerate(arms):
                label = str(arm.get("id", number + 1))
                entry["_starts"].append(len(out))
                inner = arm.get("steps") if isinstance(arm.get("steps"), list) else []
                _flatten(inner, (*here, "split", number, "steps"), f"{name}/{label}/", out, seen)
                if number < len(arms) - 1:
                    jumps.append(len(out))
                    out.append(({"goto": 0}, here, _unique(f"{name}/{label}/end", seen)))
            for jump in jumps:
                out[jump][0]["goto"] = len(out)
        elif isinstance(step.get("branch"), dict):
            branch = step["branch"]
            entry = {**step, "_then": len(out) + 1, "_else": 0}
            out.append((entry, here, name))
            for side in ("then", "else"):
                if side == "else":
                    entry["_else"] = len(out)
                inner = branch.get(side) if isinstance(branch.get(side), list) else []
                _flatten(inner, (*here, "branch", side), f"{name}/{side}/", out, seen)
                if side == "then":
                    jump = len(out)
                    out.append(({"goto": 0}, here, _unique(f"{name}/then/end", seen)))
            out[jump][0]["goto"] = len(out)
        else:
            out.append((step, here, name))


def _steps(steps: list[Any], parts: PathParts) -> Iterator[tuple[PathParts, dict[str, Any]]]:
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        here = (*parts, index)
        yield here, step
        split = step.get("split")
        if isinstance(split, list):
            for arm_index, arm in enumerate(split):
                if isinstance(arm, dict) and isinstance(arm.get("steps"), list):
                    yield from _steps(arm["steps"], (*here, "split", arm_index, "steps"))
        branch = step.get("branch")
        if isinstance(branch, dict):
            for side in ("then", "else"):
                if isinstance(branch.get(side), list):
                    yield from _steps(branch[side], (*here, "branch", side))


def facts_in(condition: Any) -> set[str]:
    """The facts a condition reads, in its leaves and in the values it compares with."""
    names: set[str] = set()
    for leaf_parts, leaf in walk_conditions(condition, ()):
        if isinstance(leaf.get("fact"), str):
            names.add(leaf["fact"])
        if "tag" in leaf:  # a tag test reads the customer's tags
            names.add("tags")
        for op, value in leaf.items():
            names.update(ref for _, ref in _fact_refs(value, (*leaf_parts, op)))
    return names


def walk_conditions(condition: Any, parts: PathParts) -> Iterator[tuple[PathParts, dict[str, Any]]]:
    """Every condition node (combinations and leaves) under ``condition``, depth first."""
    stack: list[tuple[PathParts, Any]] = [(parts, condition)]
    while stack:
        here, node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield here, node
        for key in ("all", "any"):
            children = node.get(key)
            if isinstance(children, list):
                stack.extend(
                    ((*here, key, i), child) for i, child in reversed(list(enumerate(children)))
                )
        if isinstance(node.get("not"), dict):
            stack.append(((*here, "not"), node["not"]))


def _fact_refs(value: Any, parts: PathParts) -> Iterator[tuple[PathParts, str]]:
    if isinstance(value, dict) and isinstance(value.get("fact"), str):
        yield (*parts, "fact"), value["fact"]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _fact_refs(item, (*parts, index))


_DURATION = re.compile(r"^([+-]?)([0-9]+)([mhdw])$")
_UNIT = {
    "m": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "w": dt.timedelta(weeks=1),
}


#: The longest length of time a playbook or the project may name: a calendar must hold now
#: plus or minus it (``validate`` says so at the value's line).
MAX_DURATION = dt.timedelta(days=36525)  # 100 years


def share(text: object) -> float:
    """``"10%"`` → 0.10 (the schema checks the form); anything else → 0."""
    if isinstance(text, str) and text.endswith("%"):
        try:
            return min(max(float(text[:-1]) / 100, 0.0), 1.0)
        except ValueError:
            return 0.0
    return 0.0


def parse_duration(text: str) -> dt.timedelta:
    """``7d`` → 7 days, ``-3d`` → minus 3 days. Raises ``ValueError`` for anything else, and
    for a length beyond ``MAX_DURATION``."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    digits = match.group(2)
    if len(digits) > 9:
        raise ValueError(f"too long: {text!r}")
    length = int(digits) * _UNIT[match.group(3)]
    if length > MAX_DURATION:
        raise ValueError(f"too long: {text!r}")
    return sign * length


def too_long(text: str) -> bool:
    """A well-formed length of time beyond ``MAX_DURATION``."""
    if not _DURATION.match(text):
        return False
    try:
        parse_duration(text)
    except ValueError:
        return True
    return False


def declare_set_facts(playbooks: list[Playbook], catalogue: Catalogue) -> None:
    """A fact a playbook sets becomes a fact every playbook may read; its type follows the value."""
    for pb in playbooks:
        for name, (_, value) in pb.facts_set.items():
            if name in catalogue.facts:
                continue
            if isinstance(value, bool):
                kind = "boolean"
            elif isinstance(value, int | float):
                kind = "number"
            elif value == "now":
                kind = "datetime"
            else:
                kind = "string"
            from courtship.catalogue import FactSpec

            catalogue.facts[name] = FactSpec(
                name,
                kind,
                f"Set by the playbook {pb.id}.",
                group="set by playbooks",
                source=f"playbook {pb.id}",
            )


def step_name(step: dict[str, Any]) -> str:
    """A step's name: its ``id``, else its kind and what it acts on."""
    if isinstance(step.get("id"), str):
        return step["id"]
    if isinstance(step.get("send"), dict):
        send = step["send"]
        return f"send:{send.get('template')}" + ("@friend" if send.get("to") == "friend" else "")
    if isinstance(step.get("set"), dict):
        return f"set:{step['set'].get('fact')}"
    if isinstance(step.get("notify"), dict):
        return f"notify:{step['notify'].get('team')}"
    for kind in ("tag", "untag", "wait"):
        if kind in step:
            return f"{kind}:{step[kind]}"
    for kind in ("split", "branch"):
        if kind in step:
            return kind
    return "step"
