"""Property tests: mutated playbooks never crash the validator, and every finding has a real place.

The valid playbooks (``playbooks/*.yaml`` and ``tests/examples/valid/*.yaml``) are mutated — keys
deleted, values of another type, keys misspelt, broken YAML text injected, nested very deep, made
very large, turned into binary garbage — and validated from a temporary folder that holds their
``templates/`` too, so the template checks run as well. Whatever the input, ``validate_files``
returns, and every finding names the file, a line inside it and a known rule.

Validator defects these tests found (deep Jinja nesting, huge numbers, typos inside fact
references, transposed two-letter keys) are fixed; the tests keep them fixed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from courtship.findings import RULES, Severity
from courtship.schema import load_schema
from courtship.validate import Report, display_path, validate_files, validate_paths
from courtship.yamlload import Document, load_text

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = (ROOT / "playbooks", ROOT / "tests" / "examples" / "valid")
SOURCES: list[Path] = [p for folder in SOURCE_FOLDERS for p in sorted(folder.glob("*.yaml"))]
TEXTS: dict[Path, str] = {p: p.read_text(encoding="utf-8") for p in SOURCES}
DOCS: dict[Path, Document] = {p: load_text(text, p.name) for p, text in TEXTS.items()}
SOURCE_IDS = [f"{p.parent.name}/{p.name}" for p in SOURCES]
BIRTHDAY = ROOT / "playbooks" / "birthday-gift.yaml"


def _schema_objects() -> list[frozenset[str]]:
    """The keys of each object the schema describes."""
    objects: list[frozenset[str]] = []
    stack: list[Any] = [load_schema()]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                objects.append(frozenset(node["properties"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return objects


SCHEMA_OBJECTS = _schema_objects()
#: Every key the schema allows anywhere: a typo must not be one of them.
SCHEMA_KEYS = frozenset().union(*SCHEMA_OBJECTS)


def _keys_beside(siblings: set[str]) -> set[str]:
    """The keys valid in a mapping that holds ``siblings`` (every object they all fit)."""
    return set().union(*(keys for keys in SCHEMA_OBJECTS if siblings <= keys))


#: Multiply every example budget, for a long bug hunt: COURTSHIP_PROPERTY_SCALE=50 pytest ...
SCALE = max(1, int(os.environ.get("COURTSHIP_PROPERTY_SCALE", "1")))


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ── workspace and checks ──────────────────────────────────────────────────


@contextmanager
def _workspace(source: Path) -> Iterator[Path]:
    """A temporary folder holding a copy of the templates beside ``source``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        templates = source.parent / "templates"
        if templates.is_dir():
            shutil.copytree(templates, folder / "templates")
        yield folder


#: Line breaks as libyaml counts them (the loader reports libyaml's lines).
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _lines(raw: bytes) -> list[str] | list[bytes]:
    """The lines of a file, split the way the finding that points into it counts them.

    Text that is UTF-8 is split at YAML line breaks; bytes that are not are split at ``\\n`` (the
    loader counts the lines before a bad byte that way).
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pieces: list[bytes] = raw.split(b"\n")
        return pieces[:-1] if pieces[-1] == b"" else pieces
    lines = _BREAK.split(text)
    return lines[:-1] if lines[-1] == "" else lines


def _check_report(report: Report, file: Path, folder: Path) -> None:
    """Every finding names ``file`` (or one of its templates) at a place inside it."""
    assert report.files == [display_path(file)]
    files = {display_path(p): p for p in folder.rglob("*") if p.is_file()}
    lines: dict[Path, list[str] | list[bytes]] = {}
    for finding in report.findings:
        where = files.get(finding.path)
        assert where is not None, f"finding names no file of the folder: {finding}"
        assert where == file or where.parent == folder / "templates", finding
        if where not in lines:
            lines[where] = _lines(where.read_bytes())
        _check_place(finding, lines[where])


def _check_place(finding: Any, lines: list[str] | list[bytes]) -> None:
    assert isinstance(finding.line, int) and isinstance(finding.col, int), finding
    assert 1 <= finding.line <= len(lines) + 1, f"line outside the file ({len(lines)}): {finding}"
    width = len(lines[finding.line - 1]) if finding.line <= len(lines) else 0
    assert 1 <= finding.col <= width + 1, f"column outside line {finding.line}: {finding}"
    assert finding.rule_id in RULES or finding.rule_id.startswith("schema["), finding
    assert isinstance(finding.severity, Severity), finding
    assert finding.message.strip(), finding
    assert finding.json_path.startswith("$"), finding


def _validate_bytes(source: Path, raw: bytes, name: str | None = None) -> None:
    """Write ``raw`` beside a copy of ``source``'s templates, validate it, check every finding."""
    with _workspace(source) as folder:
        file = folder / (name or source.name)
        file.write_bytes(raw)
        report = validate_files([file])
        _check_report(report, file, folder)


def _validate_text(source: Path, text: str, name: str | None = None) -> None:
    _validate_bytes(source, text.encode("utf-8"), name)


# ── tree mutations ────────────────────────────────────────────────────────

Parts = tuple[str | int, ...]


def _nodes(value: Any, parts: Parts = ()) -> Iterator[tuple[Parts, Any]]:
    yield parts, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, (*parts, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _nodes(child, (*parts, index))


def _get(data: Any, parts: Parts) -> Any:
    for part in parts:
        data = data[part]
    return data


def _kind(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "int"
    return {str: "str", list: "list", dict: "dict"}[type(value)]


#: Text that is nearly right somewhere in a playbook, or a YAML 1.1 trap.
NEAR_MISSES = [
    "yes", "no", "NO", "on", "off", "21:00", "24:00", "9:30", "0012", "2026-11-23", "0d", "-3d",
    "7x", "1e5", "now", "preferred", "email", "birthday", "orders_count", "Europe/Lndon", "{{",
    "{{ first_name }", "{% if %}", "", " ", "~", "null", "true", "<<", "*a", "&a", "!!str",
]  # fmt: skip
SCALARS = (
    st.sampled_from(NEAR_MISSES)
    | st.text(max_size=30)
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False, width=32)
)
KEYS = st.sampled_from(sorted(SCHEMA_KEYS)) | st.text(min_size=1, max_size=12)
VALUES_OF_KIND = {
    "str": st.sampled_from(NEAR_MISSES) | st.text(max_size=40),
    "int": st.integers(min_value=-(10**20), max_value=10**20),
    "list": st.lists(SCALARS, max_size=4),
    "dict": st.dictionaries(KEYS, SCALARS, max_size=4),
    "bool": st.booleans(),
    "none": st.none(),
}


def _typo(key: str, kind: str, at: int) -> str | None:
    """``key`` with one character transposed, doubled or deleted at ``at``; None if impossible."""
    if kind == "transpose":
        if at + 1 >= len(key) or key[at] == key[at + 1]:
            return None
        return key[:at] + key[at + 1] + key[at] + key[at + 2 :]
    if kind == "double":
        return key[: at + 1] + key[at] + key[at + 1 :] if at < len(key) else None
    if len(key) < 2 or at >= len(key):
        return None
    return key[:at] + key[at + 1 :]


TYPO_KINDS = ("transpose", "double", "delete")


def _dump(data: Any, style: dict[str, Any]) -> str:
    return yaml.safe_dump(data, **style)


DUMP_STYLES = st.fixed_dictionaries(
    {
        "default_flow_style": st.sampled_from([False, None, True]),
        "sort_keys": st.booleans(),
        "allow_unicode": st.booleans(),
        "width": st.sampled_from([20, 80, 1000]),
        "indent": st.sampled_from([2, 4]),
    }
)


@_settings(40)
@given(st.data())
def test_deleting_any_key_never_crashes(data):
    source = data.draw(st.sampled_from(SOURCES), label="source")
    tree = copy.deepcopy(DOCS[source].data)
    for _ in range(data.draw(st.integers(1, 3), label="deletions")):
        keys = [parts for parts, _ in _nodes(tree) if parts and isinstance(parts[-1], str)]
        if not keys:
            break
        parts = data.draw(st.sampled_from(keys), label="key")
        del _get(tree, parts[:-1])[parts[-1]]
    _validate_text(source, _dump(tree, data.draw(DUMP_STYLES, label="style")))


@_settings(60)
@given(st.data())
def test_swapping_any_value_type_never_crashes(data):
    source = data.draw(st.sampled_from(SOURCES), label="source")
    tree = copy.deepcopy(DOCS[source].data)
    for _ in range(data.draw(st.integers(1, 3), label="swaps")):
        parts, value = data.draw(st.sampled_from(list(_nodes(tree))), label="node")
        kind = data.draw(st.sampled_from([k for k in VALUES_OF_KIND if k != _kind(value)]))
        new = data.draw(VALUES_OF_KIND[kind], label="new value")
        if parts:
            _get(tree, parts[:-1])[parts[-1]] = new
        else:
            tree = new
    _validate_text(source, _dump(tree, data.draw(DUMP_STYLES, label="style")))


@_settings(40)
@given(st.data())
def test_misspelling_any_key_never_crashes(data):
    source = data.draw(st.sampled_from(SOURCES), label="source")
    tree = copy.deepcopy(DOCS[source].data)
    for _ in range(data.draw(st.integers(1, 3), label="typos")):
        keys = [parts for parts, _ in _nodes(tree) if parts and isinstance(parts[-1], str)]
        parts = data.draw(st.sampled_from(keys), label="key")
        key = str(parts[-1])
        kind = data.draw(st.sampled_from(TYPO_KINDS), label="kind")
        typo = _typo(key, kind, data.draw(st.integers(0, max(len(key) - 1, 0)), label="at"))
        parent = _get(tree, parts[:-1])
        if typo is None or typo in parent:
            continue
        # Keep the order of the keys: rebuild the mapping with the typo in place of the key.
        items = [(typo if k == key else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)
    _validate_text(source, _dump(tree, data.draw(DUMP_STYLES, label="style")))


# ── broken YAML text ──────────────────────────────────────────────────────

BROKEN_SNIPPETS = [
    "[", "]", "{", "}", "[a, {b: c]", "{a: [1, 2}", "\t", "\tkey: value", "\t- item", ":",
    ": stray", "key: : value", "a:b: c: d", "- - -", "? ", "?", "---", "...", "--- !!map",
    "!!python/object:os.system [echo hi]", "!!python/object/apply:os.system ['ls']",
    "!!python/name:os.system", "x: !custom 1", "!!binary aGk=", "!!set {a, b}", "!!omap [a: 1]",
    "!!timestamp 2026-11-23", "!!float nan", "!!int 0x1F", "&anchor", "*nope", "x: *nope",
    "<<: {a: 1}", "<<: *a", "%YAML 1.1", "%TAG ! tag:x,2026:", "'unclosed", '"unclosed',
    '"bad \\q escape"', "key: |\n bad", "key: >-", "@at", "`tick", "%", "#", "# comment",
    "\x00", "\x07", "\x1b[31m", "\ufeff", "\r", "\u2028", "\x85", "é: ü", "🦆: 🦆",
    "a: 1\n a: 2", "id: duplicate", "- x", "  - x", "key", "key:value", "{{ first_name }}",
    "'", '"', "|", ">", "!", "&", "*", ",", "[]]", "{}}", ": : :", "-", "- ", "x: [\n",
]  # fmt: skip


@_settings(80)
@given(st.data())
def test_broken_yaml_text_at_any_line_never_crashes(data):
    source = data.draw(st.sampled_from(SOURCES), label="source")
    lines = TEXTS[source].split("\n")
    snippet = data.draw(
        st.sampled_from(BROKEN_SNIPPETS)
        | st.text(alphabet="[]{}:,-?!&*|>'\"%@`#\t\n ", max_size=8),
        label="snippet",
    )
    row = data.draw(st.integers(0, len(lines) - 1), label="line")
    how = data.draw(st.sampled_from(["insert", "splice", "replace"]), label="how")
    if how == "insert":
        indent = " " * data.draw(st.integers(0, 8), label="indent")
        lines.insert(row, indent + snippet)
    elif how == "splice":
        col = data.draw(st.integers(0, len(lines[row])), label="column")
        lines[row] = lines[row][:col] + snippet + lines[row][col:]
    else:
        lines[row] = snippet
    _validate_text(source, "\n".join(lines))


# ── binary garbage ────────────────────────────────────────────────────────


@_settings(60)
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash(raw):
    _validate_bytes(BIRTHDAY, raw)


@_settings(60)
@given(st.data())
def test_corrupted_bytes_of_a_playbook_never_crash(data):
    source = data.draw(st.sampled_from(SOURCES), label="source")
    raw = bytearray(TEXTS[source].encode("utf-8"))
    for _ in range(data.draw(st.integers(1, 8), label="corruptions")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        junk = data.draw(
            st.sampled_from([b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x1b", b"\r", b"\t"])
            | st.binary(min_size=1, max_size=4),
            label="junk",
        )
        raw[at : at + data.draw(st.integers(0, 2))] = junk
    _validate_bytes(source, bytes(raw))


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda t: t.encode("utf-16"), id="utf-16-bom"),
        pytest.param(lambda t: t.encode("utf-16-le"), id="utf-16-le"),
        pytest.param(lambda t: t.encode("utf-16-be"), id="utf-16-be"),
        pytest.param(lambda t: t.encode("utf-32"), id="utf-32-bom"),
        pytest.param(lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"), id="utf-8-bom"),
        pytest.param(lambda t: t.replace("e", "é").encode("latin-1"), id="latin-1"),
        pytest.param(lambda t: t.encode("utf-8") + b"\x00", id="nul-at-end"),
        pytest.param(lambda t: b"\x00" * 64 + t.encode("utf-8"), id="nul-first"),
        pytest.param(lambda t: t.replace("\n", "\x00\n").encode("utf-8"), id="nul-each-line"),
        pytest.param(lambda t: t.encode("utf-8")[:-7] + b"\xe2\x82", id="cut-mid-char"),
        pytest.param(lambda t: t.replace("\n", "\r").encode("utf-8"), id="cr-only"),
        pytest.param(lambda t: t.replace("\n", "\r\n").encode("utf-8"), id="crlf"),
        pytest.param(lambda t: t.replace("\n", "\u2028").encode("utf-8"), id="line-separator"),
        pytest.param(lambda t: bytes(range(256)) * 8, id="all-bytes"),
        pytest.param(lambda t: b"\x89PNG\r\n\x1a\n" + bytes(200), id="png-header"),
        pytest.param(lambda t: b"", id="empty"),
    ],
)
@pytest.mark.parametrize("source", SOURCES[:3], ids=SOURCE_IDS[:3])
def test_encodings_and_binary_files_never_crash(source, encode):
    _validate_bytes(source, encode(TEXTS[source]))


# ── deep nesting and very large files ─────────────────────────────────────

DEPTH = 10_000


def _with_audience(source: Path, audience: Any) -> str:
    tree = copy.deepcopy(DOCS[source].data)
    tree["audience"] = audience
    return yaml.safe_dump(tree, sort_keys=False, width=1000)


def _alias_bomb(levels: int, width: int, indent: str = "") -> str:
    lines = [f"{indent}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"{indent}a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def _deep_not(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"fact": "orders_count", "gte": 1}
    for _ in range(depth):
        node = {"not": node}
    return node


LARGE_CASES = {
    "deep-flow-list-alone": "[" * DEPTH + "]" * DEPTH,
    "deep-flow-list-in-playbook": TEXTS[BIRTHDAY] + "extra: " + "[" * DEPTH + "]" * DEPTH + "\n",
    "deep-flow-list-as-audience": TEXTS[BIRTHDAY].replace(
        "audience:\n  fact: orders_count\n  gte: 1\n",
        "audience: " + "[" * DEPTH + "]" * DEPTH + "\n",
    ),
    "deep-flow-map-alone": "{a: " * DEPTH + "1" + "}" * DEPTH,
    "deep-block-list-alone": "- " * DEPTH + "x\n",
    "deep-block-map-alone": "".join(" " * i + "a:\n" for i in range(2000)) + " " * 2000 + "b: 1\n",
    "deep-unclosed-list": "[" * DEPTH,
    "deep-not-within-limit": _with_audience(BIRTHDAY, _deep_not(25)),
    "deep-not-over-limit": _with_audience(BIRTHDAY, _deep_not(200)),
    "5000-audience-conditions": _with_audience(
        BIRTHDAY,
        {
            "all": [
                {"fact": "orders_count", "gte": i}
                if i % 50
                else {"fact": "order_count", "gte": "three", "lt": i}
                for i in range(5000)
            ]
        },
    ),
    "5000-unknown-keys": TEXTS[BIRTHDAY] + "".join(f"extra_{i}: {i}\n" for i in range(5000)),
    "5000-duplicate-keys": TEXTS[BIRTHDAY] + "title: again\n" * 5000,
    "one-megabyte-line": TEXTS[BIRTHDAY].replace("Never forget", "x" * 1_000_000, 1),
    "alias-bomb-alone": _alias_bomb(10, 10),
    "alias-bomb-in-playbook": TEXTS[BIRTHDAY] + "extra:\n" + _alias_bomb(10, 10, "  "),
    "alias-bomb-as-audience": TEXTS[BIRTHDAY].replace(
        "audience:\n  fact: orders_count\n  gte: 1\n",
        "x:\n  - &c0 {fact: orders_count, gte: 1}\n"
        + "".join(f"  - &c{i} {{all: [{', '.join([f'*c{i - 1}'] * 10)}]}}\n" for i in range(1, 9))
        + "audience: *c8\n",
    ),
    "alias-bomb-of-strings": "a: &a " + "x" * 100_000 + "\nb: [" + ", ".join(["*a"] * 5000) + "]\n",
    "10000-documents": "---\nid: x\n" * 10_000,
}


@pytest.mark.parametrize("text", list(LARGE_CASES.values()), ids=list(LARGE_CASES))
def test_deep_and_large_files_never_crash(text):
    _validate_text(BIRTHDAY, text)


def test_very_deep_nesting_is_reported_at_its_place():
    with _workspace(BIRTHDAY) as folder:
        file = folder / "deep.yaml"
        file.write_text(TEXTS[BIRTHDAY] + "extra: " + "[" * DEPTH + "]" * DEPTH + "\n")
        report = validate_files([file])
        _check_report(report, file, folder)
    deep = [f for f in report.findings if f.rule_id == "yaml-unsupported"]
    assert deep, report.findings
    assert deep[0].line == TEXTS[BIRTHDAY].count("\n") + 1


JINJA_DEPTH = 200


def test_deeply_nested_jinja_in_dedup_key_never_crashes():
    nested = "(" * JINJA_DEPTH + "1" + ")" * JINJA_DEPTH
    text = TEXTS[BIRTHDAY].replace("birthday-{{ now.year }}", "{{ " + nested + " }}")
    assert text != TEXTS[BIRTHDAY]
    _validate_text(BIRTHDAY, text)


def test_deeply_nested_jinja_in_a_template_never_crashes():
    nested = "[" * JINJA_DEPTH + "]" * JINJA_DEPTH
    with _workspace(BIRTHDAY) as folder:
        (folder / "templates" / "birthday.buddy.md").write_text(
            "Hi {{ first_name }}, {{ " + nested + " }}\n", encoding="utf-8"
        )
        file = folder / BIRTHDAY.name
        file.write_text(TEXTS[BIRTHDAY], encoding="utf-8")
        report = validate_files([file])
        _check_report(report, file, folder)


def test_a_huge_number_is_reported_as_a_number():
    text = TEXTS[BIRTHDAY].replace("priority: 80", "priority: " + "9" * 5000)
    with _workspace(BIRTHDAY) as folder:
        file = folder / BIRTHDAY.name
        file.write_text(text, encoding="utf-8")
        report = validate_files([file])
        _check_report(report, file, folder)
    assert report.errors
    assert all("tag None" not in f.message for f in report.findings), report.findings


# ── cross-playbook mutations ──────────────────────────────────────────────


@_settings(15)
@given(st.data())
def test_mutated_playbook_among_its_siblings_never_crashes(data):
    """Mutations that reach the checks across playbooks: ids, dependencies, facts set."""
    folder_source = data.draw(st.sampled_from(SOURCE_FOLDERS), label="folder")
    sources = [p for p in SOURCES if p.parent == folder_source]
    victim = data.draw(st.sampled_from(sources), label="playbook")
    ids = [DOCS[p].data["id"] for p in sources]
    tree = copy.deepcopy(DOCS[victim].data)
    what = data.draw(st.sampled_from(["same-id", "depends", "suppresses", "set-fact"]))
    other = data.draw(st.sampled_from(ids), label="other id")
    if what == "same-id":
        tree["id"] = other
    elif what in ("depends", "suppresses"):
        key = "depends_on" if what == "depends" else "suppresses"
        tree[key] = [*tree.get(key, []), other, data.draw(st.sampled_from([*ids, "nobody"]))]
    else:
        fact = data.draw(st.sampled_from(["orders_count", "digest_sent_at", "new_fact", "x"]))
        value = data.draw(SCALARS, label="value")
        tree["respond"] = [*tree.get("respond", []), {"set": {"fact": fact, "value": value}}]
    with _workspace(victim) as folder:
        files = []
        for source in sources:
            file = folder / source.name
            text = yaml.safe_dump(tree, sort_keys=False) if source == victim else TEXTS[source]
            file.write_text(text, encoding="utf-8")
            files.append(file)
        report = validate_files(files)
        known = {display_path(p): _lines(p.read_bytes()) for p in folder.rglob("*") if p.is_file()}
        for finding in report.findings:
            assert finding.path in known, finding
            _check_place(finding, known[finding.path])


# ── round trip ────────────────────────────────────────────────────────────

ROUND_TRIP_STYLES = {
    "block": {"default_flow_style": False, "sort_keys": False},
    "flow": {"default_flow_style": True, "sort_keys": False},
    "sorted": {"default_flow_style": None, "sort_keys": True},
    "narrow-unicode": {"width": 20, "allow_unicode": True, "indent": 4},
}


@pytest.mark.parametrize("style", list(ROUND_TRIP_STYLES.values()), ids=list(ROUND_TRIP_STYLES))
@pytest.mark.parametrize("folder", SOURCE_FOLDERS, ids=[f.name for f in SOURCE_FOLDERS])
def test_valid_playbooks_re_serialised_still_validate_clean(folder, style):
    sources = [p for p in SOURCES if p.parent == folder]
    with _workspace(sources[0]) as tmp:
        for source in sources:
            assert DOCS[source].findings == []
            text = yaml.safe_dump(DOCS[source].data, **style)
            (tmp / source.name).write_text(text, encoding="utf-8")
            assert load_text(text, source.name).data == DOCS[source].data
        report = validate_paths([tmp])
    assert [str(f) for f in report.findings] == []
    assert len(report.playbooks) == len(sources)


# ── a typo in any key is caught on its line, with a suggestion ────────────


def _key_typos() -> Iterator[Any]:
    """One typo for every key of every bundled playbook, kinds taken in turn."""
    for number, source in enumerate(SOURCES):
        doc = DOCS[source]
        lines = TEXTS[source].split("\n")
        for index, (parts, mark) in enumerate(doc.key_positions.items()):
            key = str(parts[-1])
            siblings = set(_get(doc.data, parts[:-1]))
            line = lines[mark.line - 1]
            assert line[mark.col - 1 : mark.col - 1 + len(key)] == key, (source, parts, line)
            turn = (index + number) % 3
            kinds = TYPO_KINDS[turn:] + TYPO_KINDS[:turn]
            chosen = next(
                (kind, typo)
                for kind in kinds
                for at in range(len(key))
                if (typo := _typo(key, kind, (at + index) % len(key))) is not None
                and typo not in SCHEMA_KEYS
                and typo not in siblings
            )
            _, typo = chosen
            marks: list[pytest.MarkDecorator] = []
            new_line = line[: mark.col - 1] + typo + line[mark.col - 1 + len(key) :]
            text = "\n".join([*lines[: mark.line - 1], new_line, *lines[mark.line :]])
            yield pytest.param(
                source,
                text,
                mark.line,
                typo,
                marks=marks,
                id=f"{source.name}:{mark.line}:{'.'.join(map(str, parts))}->{typo}",
            )


KEY_TYPOS = list(_key_typos())


@pytest.fixture(scope="module")
def typo_folders(tmp_path_factory):
    folders = {}
    for source_folder in SOURCE_FOLDERS:
        folder = tmp_path_factory.mktemp(source_folder.name)
        shutil.copytree(source_folder / "templates", folder / "templates")
        folders[source_folder] = folder
    return folders


@pytest.mark.parametrize(("source", "text", "line", "typo"), KEY_TYPOS)
def test_a_typo_in_any_key_is_an_error_on_its_line_with_a_suggestion(
    source, text, line, typo, typo_folders
):
    folder = typo_folders[source.parent]
    file = folder / source.name
    file.write_text(text, encoding="utf-8")
    try:
        report = validate_files([file])
    finally:
        file.unlink()
    on_line = [f for f in report.errors if f.path == display_path(file) and f.line == line]
    assert any("did you mean" in f.hint for f in on_line), (
        f"no 'did you mean' error on line {line} for the key '{typo}'; on that line: "
        + json.dumps([str(f) for f in on_line])
    )


def test_every_key_of_every_bundled_playbook_gets_a_typo():
    assert len(KEY_TYPOS) == sum(len(DOCS[p].key_positions) for p in SOURCES) > 100


# ── the loader against yaml.safe_load ─────────────────────────────────────


def _reads_as_float(text: str) -> bool:
    """YAML 1.2 reads ``1e5``, ``-.5`` and ``1.5e5`` as numbers; YAML 1.1 (safe_dump) as text.

    safe_dump leaves such text unquoted, so the loader would read a number: a known, intended
    difference (the loader follows YAML 1.2 there), kept out of the generated text.
    """
    try:
        float(text)
    except ValueError:
        return False
    return True


LOADER_TEXT = st.text(max_size=20).filter(lambda s: not _reads_as_float(s))
LOADER_DATA = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | LOADER_TEXT
    | st.sampled_from([s for s in NEAR_MISSES if not _reads_as_float(s)]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            (LOADER_TEXT | st.sampled_from(sorted(SCHEMA_KEYS))).filter(lambda k: k != "<<"),
            children,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@_settings(200)
@given(LOADER_DATA, DUMP_STYLES)
def test_loader_reads_safe_dump_output_like_safe_load(value, style):
    text = yaml.safe_dump(value, **style)
    doc = load_text(text, "data.yaml")
    assert doc.findings == []
    # Not ``== value``: PyYAML's own round trip is not exact (with allow_unicode it writes a raw
    # NEL, U+0085, inside a quoted scalar, which reads back as a folded space).
    assert doc.data == yaml.safe_load(text)
    lines = _lines(text.encode("utf-8"))
    for table in (doc.positions, doc.key_positions):
        for parts, mark in table.items():
            assert 1 <= mark.line <= len(lines) + 1, (parts, mark)
            width = len(lines[mark.line - 1]) if mark.line <= len(lines) else 0
            assert 1 <= mark.col <= width + 1, (parts, mark)
    for parts in doc.positions:
        _get(doc.data, parts)  # every annotated path exists in the data
    assert () in doc.positions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: yes\nb: NO\nc: on\nd: Off\n", {"a": "yes", "b": "NO", "c": "on", "d": "Off"}),
        ("at: 12:30\n", {"at": "12:30"}),
        ("code: 0012\n", {"code": "0012"}),
        ("day: 2026-11-23\n", {"day": "2026-11-23"}),
        ("n: 1e5\n", {"n": 100000.0}),
    ],
)
def test_loader_keeps_yaml11_traps_as_text(text, expected):
    doc = load_text(text, "traps.yaml")
    assert doc.findings == []
    assert doc.data == expected
    assert doc.data != yaml.safe_load(text)
