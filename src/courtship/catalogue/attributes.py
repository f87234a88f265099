"""Your own attributes as facts: the project file's ``attributes:`` section.

Each entry names a column of the customer file (or of the customer source) and its type; the
column is then a fact like any other: read with its type (a cell that is not of it is an error
naming the line), checked for type in conditions and templates, listed by ``courtship facts``.
No plugin needed::

    attributes:
      loyalty_tier: {type: enum, values: [bronze, silver, gold]}
      points: {type: number, unit: points, description: Loyalty points balance}
      newsletter_since: {type: date}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from courtship.catalogue import Catalogue, FactSpec, builtin_catalogue
from courtship.findings import Finding
from courtship.schema import did_you_mean
from courtship.yamlload import Document

#: Where a fact declared in the project file comes from (``FactSpec.source``).
SOURCE = "project attributes"
#: The project file's names for a type, and the catalogue's.
TYPES: dict[str, str] = {
    "text": "string",
    "string": "string",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "list": "list",
    "enum": "enum",
}
#: Columns beside the facts that no attribute may be named like.
LOCAL_COLUMNS = ("local_date", "local_time", "utc_offset_minutes")


def attribute_findings(doc: Document) -> list[Finding]:
    """What the schema cannot say of ``attributes:``: a name Courtship already has, an enum
    without values, values on a type that has none."""
    entries = doc.data.get("attributes") if isinstance(doc.data, dict) else None
    if not isinstance(entries, dict):
        return []
    core = builtin_catalogue().facts
    out = []
    for name, spec in entries.items():
        if name in core or name in LOCAL_COLUMNS:
            out.append(
                doc.finding(
                    ("attributes", name),
                    "schema[attributes]",
                    f"'{name}' is already a fact Courtship knows (see docs/reference/facts.md)",
                    "the customer file's own columns of that name are read as that fact; "
                    "give your attribute another name",
                    key=True,
                )
            )
            continue
        if not isinstance(spec, dict):
            continue
        kind, values = spec.get("type"), spec.get("values")
        if kind == "enum" and not values:
            out.append(
                doc.finding(
                    ("attributes", name, "type"),
                    "schema[attributes]",
                    f"attribute '{name}' is an enum without values",
                    "list them: values: [bronze, silver, gold]",
                )
            )
        elif kind != "enum" and values is not None:
            out.append(
                doc.finding(
                    ("attributes", name, "values"),
                    "schema[attributes]",
                    f"attribute '{name}' is a {kind}: only an enum has values",
                    "write type: enum, or leave values out",
                )
            )
    return out


def attribute_facts(entries: Mapping[str, Any] | None) -> dict[str, FactSpec]:
    """The facts the (valid) ``attributes:`` section declares."""
    return {
        name: FactSpec(
            name=name,
            type=TYPES[spec["type"]],
            description=spec.get("description", ""),
            unit=spec.get("unit"),
            group="attributes",
            values=tuple(spec.get("values", ())),
            example=spec.get("example"),
            source=SOURCE,
        )
        for name, spec in (entries or {}).items()
    }


def with_attributes(catalogue: Catalogue, attributes: Mapping[str, FactSpec]) -> Catalogue:
    """``catalogue`` (core and plugin facts) with the project's attributes. An attribute named
    like a plugin's fact raises ``ValueError`` naming both."""
    extended = catalogue.copy()
    for name, spec in attributes.items():
        known = extended.facts.get(name)
        if known is not None:
            raise ValueError(
                f"attribute '{name}' of the project file is also a fact of plugin "
                f"'{known.source}'; rename the attribute"
            )
        extended.facts[name] = spec
    return extended


def unknown_attribute_hint(name: str, columns: list[str]) -> str:
    """The hint for a declared attribute the customers have no column for."""
    return did_you_mean(name, columns) or (
        f"add a column {name} to the customers, or remove the attribute"
    )
