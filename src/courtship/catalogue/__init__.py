"""The facts catalogue: every fact a condition or a template may read, with its type and unit."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import yaml

#: Types a fact may have, and the operators that make sense for each.
OPERATORS_BY_TYPE: dict[str, frozenset[str]] = {
    "number": frozenset(
        {"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in", "exists"}
    ),
    "integer": frozenset(
        {"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in", "exists"}
    ),
    "string": frozenset({"eq", "ne", "in", "not_in", "exists"}),
    "enum": frozenset({"eq", "ne", "in", "not_in", "exists"}),
    "boolean": frozenset({"eq", "ne", "exists"}),
    "date": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "between", "exists", "within"}),
    "datetime": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "between", "exists", "within"}),
    "list": frozenset({"contains", "exists"}),
}
OPERATORS: tuple[str, ...] = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "in",
    "not_in",
    "contains",
    "exists",
    "within",
)
NUMERIC = frozenset({"number", "integer"})
TEMPORAL = frozenset({"date", "datetime"})

#: Channels core knows by name before any plugin registers more.
BUILTIN_CHANNELS: frozenset[str] = frozenset({"email", "sms", "instagram", "outbox"})
#: The pseudo-channel that means "the customer's preferred channel".
PREFERRED = "preferred"
#: The tones a send template comes in.
TONES: tuple[str, ...] = ("buddy", "salesy", "direct")
#: Names a template may use besides facts. In a referral's messages ``friend`` is always the
#: referred person and ``referrer`` the one who referred them, whoever receives the message.
TEMPLATE_CONTEXT: frozenset[str] = frozenset(
    {"offer", "friend", "referrer", "brand", "playbook", "now", "unsubscribe_url"}
)


@dataclass(frozen=True)
class FactSpec:
    """One fact: its name, type and meaning."""

    name: str
    type: str
    description: str = ""
    unit: str | None = None
    group: str = "custom"
    values: tuple[str, ...] = ()
    example: Any = None
    source: str = "core"

    @property
    def operators(self) -> frozenset[str]:
        return OPERATORS_BY_TYPE[self.type]


@dataclass
class Catalogue:
    """The facts and channels validation knows about."""

    facts: dict[str, FactSpec] = field(default_factory=dict)
    channels: set[str] = field(default_factory=lambda: set(BUILTIN_CHANNELS))

    def copy(self) -> Catalogue:
        return Catalogue(dict(self.facts), set(self.channels))


def load_catalogue_data() -> dict[str, Any]:
    """The raw catalogue, as shipped in ``courtship/catalogue/facts.yaml``."""
    text = (files("courtship.catalogue") / "facts.yaml").read_text(encoding="utf-8")
    # libyaml's parser where PyYAML has it: the pure-Python one costs every command ~25 ms
    data: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return data


@functools.cache
def builtin_catalogue() -> Catalogue:
    """The built-in facts; callers that extend it take a ``copy()``."""
    facts = {
        name: FactSpec(
            name=name,
            type=spec["type"],
            description=spec.get("description", ""),
            unit=spec.get("unit"),
            group=spec.get("group", "custom"),
            values=tuple(spec.get("values", ())),
            example=spec.get("example"),
        )
        for name, spec in load_catalogue_data()["facts"].items()
    }
    return Catalogue(facts)
