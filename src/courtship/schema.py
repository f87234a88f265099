"""The playbook JSON Schema, and schema errors turned into findings a marketer can act on."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from courtship.findings import Finding
from courtship.yamlload import YAML11_BOOLEANS, Document

if TYPE_CHECKING:  # jsonschema is imported by the first validation (start-up: docs/ci.md)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_FILE = "playbook.schema.json"


PROJECT_SCHEMA_FILE = "project.schema.json"


def schema_path(name: str = SCHEMA_FILE) -> Path:
    """Where a schema file is: inside the installed package, or in the checkout's ``schemas/``."""
    packaged = files("courtship") / "schemas" / name
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "schemas" / name


@functools.cache
def load_schema(name: str = SCHEMA_FILE) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return schema


#: Definitions that refer to themselves stay references; every other reference is inlined.
_RECURSIVE = frozenset({"condition", "event_filter"})


@functools.cache
def _validation_schema(name: str) -> dict[str, Any]:
    """A copy of the schema with ``$ref``s to non-recursive definitions replaced by the very
    definition objects: validation skips reference resolution (half its time), and a
    definition keeps its identity, which messages use to name it."""
    schema: dict[str, Any] = copy.deepcopy(load_schema(name))
    defs: dict[str, Any] = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            target = ref.removeprefix("#/$defs/")
            if len(node) == 1 and ref.startswith("#/$defs/") and target not in _RECURSIVE:
                return defs[target]
            for key, value in node.items():
                node[key] = inline(value)
        elif isinstance(node, list):
            return [inline(item) for item in node]
        return node

    for definition in defs.values():
        inline(definition)
    for key, value in schema.items():
        if key != "$defs":
            schema[key] = inline(value)
    return schema


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_validation_schema(name))


@functools.cache
def _definition_names() -> dict[int, str]:
    """Map each schema definition (by identity) to the name a marketer knows it by."""
    names: dict[int, str] = {}
    for file, title in ((SCHEMA_FILE, "playbook"), (PROJECT_SCHEMA_FILE, "the project file")):
        schema = _validation_schema(file)
        names[id(schema)] = title
        for name, definition in schema.get("$defs", {}).items():
            names[id(definition)] = name.replace("_", " ")
            for key, prop in definition.get("properties", {}).items():
                if isinstance(prop, dict) and prop.get("type") == "object":
                    names[id(prop)] = key.replace("_", " ")
        for key, prop in schema.get("properties", {}).items():
            if isinstance(prop, dict) and prop.get("type") == "object":
                names[id(prop)] = key.replace("_", " ")
    return names


@functools.cache
def _pattern_rules() -> dict[str, tuple[str, str, str]]:
    """pattern → (rule id, what the value should be, hint)."""
    defs = load_schema()["$defs"]
    return {
        defs["duration"]["pattern"]: (
            "bad-duration",
            "a duration",
            "write a whole number and a unit: 30m, 4h, 7d or 2w",
        ),
        defs["offset"]["pattern"]: (
            "bad-duration",
            "an offset",
            "write a signed whole number and a unit: -3d is three days before, 2d two days after",
        ),
        defs["time_of_day"]["pattern"]: (
            "bad-time",
            "a time of day",
            "write HH:MM on a 24-hour clock, such as 09:30 or 21:00",
        ),
        defs["playbook_id"]["pattern"]: (
            "schema",
            "a playbook id",
            "ids are kebab-case: lowercase letters, digits and hyphens",
        ),
        defs["fact_name"]["pattern"]: (
            "schema",
            "a fact name",
            "fact names are snake_case: lowercase letters, digits and _",
        ),
        defs["template_name"]["pattern"]: (
            "schema",
            "a template name",
            "template names are lowercase letters, digits, - and _, without the .md",
        ),
    }


def did_you_mean(word: str, choices: object) -> str:
    """A ``did you mean 'x'?`` hint, or the empty string."""
    names = [str(choice) for choice in choices]  # type: ignore[attr-defined]
    word = str(word)
    swapped = {word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)}
    transposed = sorted(name for name in names if name in swapped)
    if transposed:  # two neighbouring letters swapped: one slip of the fingers
        return f"did you mean '{transposed[0]}'?"
    import difflib  # only for a finding's hint

    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def describe(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text '{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_TYPE_NAMES = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping (key: value lines)",
    "null": "empty",
}


def _field(parts: tuple[str | int, ...]) -> str:
    """How a message names a place: the last key, or ``respond[2]``."""
    for index in range(len(parts) - 1, -1, -1):
        if isinstance(parts[index], str):
            rest = "".join(f"[{p}]" for p in parts[index + 1 :])
            return f"{parts[index]}{rest}"
    return "the playbook"


def _example(schema: dict[str, Any]) -> str:
    examples = schema.get("examples")
    if not examples:
        return ""
    return f"for example {json.dumps(examples[0])}"


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """Replace an anyOf/oneOf failure by its most relevant branch error."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        context = list(error.context)
        if isinstance(error.instance, dict):
            # A mapping was meant for the branch that takes mappings: explain that branch.
            shaped = [e for e in context if e.validator != "type" or e.path]
            context = shaped or context
        yield from _leaves(best_match(context))
    else:
        yield error


def schema_findings(doc: Document, schema: str = SCHEMA_FILE) -> list[Finding]:
    """Validate ``doc.data`` against a schema (the playbook's by default), errors placed."""
    findings: list[Finding] = []
    for error in _validator(schema).iter_errors(doc.data):
        for leaf in _leaves(error):
            findings.extend(_to_findings(doc, leaf))
    return findings


def _to_findings(doc: Document, error: ValidationError) -> list[Finding]:
    parts = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    owner = _definition_names().get(id(schema), _field(parts))
    field = _field(parts)
    rule = f"schema[{parts[0]}]" if parts else "schema"
    value = error.instance

    if error.validator == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        out = []
        for key in value:
            if key in schema.get("properties", {}):
                continue
            hint = did_you_mean(key, allowed) or f"valid keys are {', '.join(allowed)}"
            if key == "<<":
                hint = "YAML merge keys (<<) are not supported; write the keys out"
            out.append(
                doc.finding(
                    (*parts, key),
                    f"schema[{parts[0] if parts else key}]",
                    f"'{key}' is not a valid key of {owner}",
                    hint,
                    key=True,
                )
            )
        return out
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        prop = schema.get("properties", {}).get(missing, {})
        about = (prop.get("description") or "") if isinstance(prop, dict) else ""
        hint = f"add {missing}: ({about[0].lower()}{about[1:]})" if about else f"add {missing}:"
        return [doc.finding(parts, rule, f"{owner} is missing the required key '{missing}'", hint)]
    if error.validator == "type":
        wanted = error.validator_value
        wanted_list = wanted if isinstance(wanted, list) else [wanted]
        expected = " or ".join(_TYPE_NAMES.get(w, w) for w in wanted_list)
        hint = _example(schema)
        if isinstance(value, str) and value in YAML11_BOOLEANS and "boolean" in wanted_list:
            truth = "true" if value.lower() in {"y", "yes", "on"} else "false"
            hint = (
                f"YAML 1.1 would read '{value}' as {truth}; Courtship reads it as text. "
                f"Write {truth}"
            )
        elif isinstance(value, str) and {"number", "integer"} & set(wanted_list):
            hint = "write the number without quotes" + (f"; {hint}" if hint else "")
        return [
            doc.finding(parts, rule, f"{field} must be {expected}, not {describe(value)}", hint)
        ]
    if error.validator == "enum":
        options = error.validator_value
        suggestion = did_you_mean(value, options) if isinstance(value, str) else ""
        listing = f"one of: {', '.join(map(str, options))}"
        hint = f"{suggestion} ({listing})" if suggestion else listing
        return [doc.finding(parts, rule, f"{describe(value)} is not a valid {field}", hint)]
    if error.validator == "pattern":
        rule_id, what, hint = _pattern_rules().get(
            str(error.validator_value),
            ("schema", f"a valid {field}", f"it must match {error.validator_value}"),
        )
        if rule_id == "schema":
            rule_id = rule
        return [doc.finding(parts, rule_id, f"'{value}' is not {what} ({field})", hint)]
    if error.validator in ("minProperties", "minItems", "minLength") and not value:
        return [
            doc.finding(parts, rule, f"{field} is empty", _example(schema) or "give it a value")
        ]
    if error.validator == "uniqueItems":
        return [
            doc.finding(parts, rule, f"{field} lists the same value twice", "remove the repeat")
        ]
    message = error.message
    return [doc.finding(parts, rule, f"{field}: {message}", _example(schema))]
