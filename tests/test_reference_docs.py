"""The reference pages in docs/reference/ are generated, complete and up to date."""

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from courtship import reference_docs as reference

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "run `python -m courtship.reference_docs` and commit docs/reference/"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return reference.load_schema()


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Any]:
    return reference.load_facts_catalogue()


@pytest.fixture(scope="module")
def playbook_md(schema) -> str:
    return reference.render_playbook_reference(schema)


@pytest.fixture(scope="module")
def facts_md(catalogue) -> str:
    return reference.render_facts_reference(catalogue)


def _property_names(node: Any) -> set[str]:
    """Every key that appears under ``properties`` anywhere in the schema."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= _property_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= _property_names(value)
    return names


def test_schema_is_the_checkout_schema(schema):
    on_disk = (ROOT / "schemas" / "playbook.schema.json").read_text(encoding="utf-8")
    assert schema == json.loads(on_disk)


@pytest.mark.parametrize(
    ("relative", "render"),
    [
        (reference.PLAYBOOK_REFERENCE, "playbook_md"),
        (reference.FACTS_REFERENCE, "facts_md"),
    ],
    ids=["playbook", "facts"],
)
def test_reference_is_up_to_date(relative, render, request):
    expected = request.getfixturevalue(render)
    path = ROOT / relative
    assert path.is_file(), f"{relative.as_posix()} is missing: {REGENERATE}"
    actual = path.read_text(encoding="utf-8")
    assert actual == expected, f"{relative.as_posix()} is stale: {REGENERATE}"


def test_rendering_is_deterministic(schema, catalogue, playbook_md, facts_md):
    assert reference.render_playbook_reference(schema) == playbook_md
    assert reference.render_facts_reference(catalogue) == facts_md


def test_every_schema_property_is_documented(schema, playbook_md):
    names = _property_names(schema)
    assert names, "the schema has no properties?"
    missing = sorted(name for name in names if f"| `{name}` |" not in playbook_md)
    assert not missing, f"schema properties missing from the playbook reference: {missing}"


def test_every_definition_has_a_section(schema, playbook_md):
    headings = set(re.findall(r"^#+ (.+)$", playbook_md, flags=re.MULTILINE))
    missing = sorted(set(schema.get("$defs", {})) - headings)
    assert not missing, f"$defs without a section: {missing}"


def test_every_enum_value_is_listed(schema, playbook_md):
    def enums(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            found |= {str(v) for v in node.get("enum", [])}
            for value in node.values():
                found |= enums(value)
        elif isinstance(node, list):
            for value in node:
                found |= enums(value)
        return found

    missing = sorted(v for v in enums(schema) if f"`{v}`" not in playbook_md)
    assert not missing, f"enum values missing from the playbook reference: {missing}"


def test_every_internal_link_has_a_heading(playbook_md, facts_md):
    for text in (playbook_md, facts_md):
        anchors = {reference.slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
        links = set(re.findall(r"\]\(#([^)]+)\)", text))
        assert links <= anchors, f"links to missing headings: {sorted(links - anchors)}"


def test_every_fact_is_documented(catalogue, facts_md):
    facts = catalogue["facts"]
    assert facts
    missing = sorted(name for name in facts if f"| `{name}` |" not in facts_md)
    assert not missing, f"facts missing from the facts reference: {missing}"
    for fact in facts.values():
        assert f"## {fact['group']}" in facts_md


def test_every_fact_type_has_operators(catalogue):
    types = {fact["type"] for fact in catalogue["facts"].values()}
    unknown = sorted(types - set(reference.OPERATORS_BY_TYPE))
    assert not unknown, f"fact types with no operators in courtship.reference_docs: {unknown}"


def test_minimal_example_is_a_valid_playbook(schema, playbook_md):
    """The example at the top of the reference passes the schema it documents."""
    block = re.search(r"smallest playbook.*?```yaml\n(.*?)```", playbook_md, flags=re.DOTALL)
    assert block, "the playbook reference lost its minimal example"
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(block.group(1)))
