"""Validation: load every playbook, check it against the schema and the meaning of the format,
then check the playbooks together. Everything is validated before anything is reported.

A validation can give again what an earlier one found of a file nothing of which has changed
(:func:`check_files`, with the parts ``courtship validate`` keeps in ``.courtship``): each
playbook's findings and summary are kept under a hash of its bytes, its checks also under the
catalogue and the names in its templates folder, each template's findings under its bytes and
the facts it reads. What spans the files (ids, depends_on, suppresses, the facts one playbook
sets and another reads, cycles) is checked again every time, from the summaries. Neither
jsonschema, Jinja nor networkx is imported before a file needs it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from courtship.catalogue import (
    NUMERIC,
    OPERATORS,
    PREFERRED,
    TEMPLATE_CONTEXT,
    TEMPORAL,
    TONES,
    Catalogue,
    FactSpec,
    builtin_catalogue,
)
from courtship.findings import Finding, Report, Severity
from courtship.graph import has_cycle
from courtship.playbook import (
    COMBINATORS,
    STEP_KINDS,
    TRIGGER_KINDS,
    Playbook,
    declare_set_facts,
    parse_duration,
    too_long,
    walk_conditions,
)
from courtship.schema import describe, did_you_mean, schema_findings
from courtship.templates import (
    TemplateFailure,
    TemplateFile,
    dedup_key,
    environment,
    impersonal_findings,
    languages,
    read_template,
    render_failure,
    template_from_bytes,
    template_names,
    variants,
)
from courtship.validate_cache import finding_from_json, finding_to_json
from courtship.yamlload import (
    YAML11_BOOLEANS,
    Document,
    Mark,
    PathParts,
    load_bytes,
    read_file,
)

PLAYBOOK_SUFFIXES = (".yaml", ".yml")
TEMPLATES_FOLDER = "templates"


def display_path(path: Path) -> str:
    """Paths in findings are relative to the working folder when they are under it."""
    path = Path(path)
    if not path.is_absolute() and ".." not in path.parts:
        return str(path)  # what relpath would make of it
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return relative if Path(relative).parts[:1] != ("..",) else str(path)


def discover(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Playbook files under ``paths`` (folders searched recursively, templates folders skipped).

    Returns the files and the paths that do not exist.
    """
    files: list[Path] = []
    missing: list[str] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != TEMPLATES_FOLDER)
                files.extend(
                    Path(root) / name for name in sorted(names) if name.endswith(PLAYBOOK_SUFFIXES)
                )
        else:
            missing.append(str(path))
    unique = list(dict.fromkeys(files))
    return unique, missing


def validate_paths(paths: Sequence[Path], catalogue: Catalogue | None = None) -> Report:
    """Validate every playbook file under ``paths``. Never raises for bad input."""
    files, _ = discover(paths)
    return validate_files(files, catalogue)


def validate_files(files: Iterable[Path], catalogue: Catalogue | None = None) -> Report:
    """Validate the playbook ``files`` with the facts of ``catalogue`` (default: the built-in
    ones). Never raises for bad input."""
    return check_files(files, catalogue)[0]


def check_files(
    files: Iterable[Path],
    catalogue: Catalogue | None = None,
    kept: Mapping[str, Any] | None = None,
) -> tuple[Report, dict[str, Any]]:
    """:func:`validate_files`, giving again what ``kept`` found of each file that has not
    changed since (the parts of an earlier validation, as this returns them); the report and
    this validation's parts. The report is the one a validation of every file gives, but for
    ``playbooks``: only those read again."""
    catalogue = (catalogue or builtin_catalogue()).copy()
    earlier = _Earlier(kept)
    report = Report()
    parts: dict[str, Any] = {"playbooks": {}, "templates": {}, "dedup_keys": {}}
    loaded: list[_Loaded] = []
    for file in files:
        display = display_path(file)
        report.files.append(display)
        item = _load(file, display, earlier.playbooks.get(display))
        report.findings.extend(item.findings)
        if item.entry is not None:
            parts["playbooks"][display] = item.entry
        if item.summary is not None:
            loaded.append(item)
            if item.playbook is not None:
                report.playbooks.append(item.playbook)

    summaries = [item.summary for item in loaded if item.summary is not None]
    declare_set_facts(summaries, catalogue)  # type: ignore[arg-type]  # reads id and facts_set
    checker = _Checker(catalogue, {}, earlier.dedup_keys, parts["dedup_keys"])
    facts = _catalogue_digest(catalogue)
    folders: dict[Path, list[tuple[str, bool]] | None] = {}
    uses: dict[Path, list[bool]] = {}  # template → [customer-facing, a marketing email]
    for item in loaded:
        folder = Path(item.display).parent / TEMPLATES_FOLDER
        if folder not in folders:
            folders[folder] = _names_in(folder)
        check = item.entry.get("check") if item.entry is not None and item.reused else None
        again = _kept_check(check, facts, folders[folder])
        if again is not None:
            found, used = again
        else:
            if item.playbook is None:  # kept, but what it is checked against changed
                item.playbook = Playbook.from_document(load_bytes(item.raw or b"", item.display))
                if item.playbook is None:  # pragma: no cover - the same bytes had an id
                    continue
                report.playbooks.append(item.playbook)
            checker.schema_errors[item.display] = item.schema_errors
            found = checker.check(item.playbook)
            used = checker.used
            names = None if checker.listed else sorted(checker.names)
            if item.entry is not None:
                item.entry["check"] = {
                    "context": _check_context(facts, folders[folder], names),
                    "names": names,
                    "findings": [finding_to_json(f) for f in found],
                    "templates": [[str(path), *flags] for path, flags in used.items()],
                }
        report.findings.extend(found)
        for path, (customer_facing, marketing_email) in used.items():
            flags = uses.setdefault(path, [False, False])
            flags[0] |= customer_facing
            flags[1] |= marketing_email

    for path, (customer_facing, marketing_email) in uses.items():
        report.findings.extend(
            _template_file_findings(
                path,
                catalogue,
                customer_facing=customer_facing,
                marketing_email=marketing_email,
                kept=earlier.templates.get(str(path)),
                keep=parts["templates"],
            )
        )
    report.findings.extend(_check_together(summaries))
    report.findings = sorted(set(report.findings))
    return report, parts


class _Earlier:
    """The parts of an earlier validation, each kind a mapping (or empty, when damaged)."""

    def __init__(self, kept: Mapping[str, Any] | None) -> None:
        kept = kept if isinstance(kept, Mapping) else {}
        self.playbooks = _mapping(kept.get("playbooks"))
        self.templates = _mapping(kept.get("templates"))
        self.dedup_keys = _mapping(kept.get("dedup_keys"))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _digest(*parts: object) -> str:
    text = json.dumps(parts, default=str, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _catalogue_digest(catalogue: Catalogue) -> str:
    """What the checks of a playbook read of the catalogue: each fact's name, type, unit and
    values, and the channels."""
    facts = [
        (name, spec.type, spec.unit, list(spec.values))
        for name, spec in sorted(catalogue.facts.items())
    ]
    return _digest(facts, sorted(catalogue.channels))


def _names_in(folder: Path) -> list[tuple[str, bool]] | None:
    """The names in a templates folder, each with whether it is a file (None: no folder)."""
    try:
        with os.scandir(folder) as entries:
            return sorted((entry.name, _is_file(entry)) for entry in entries)
    except OSError:
        return None


def _check_context(
    facts: str, folder: list[tuple[str, bool]] | None, names: Sequence[str] | None
) -> str:
    """What the checks of a playbook read beside its own file: the catalogue (``facts``, its
    digest), and of its templates folder the names of the files of the templates it names
    (``names``; its text is the template's own concern), or every name in it (``names`` None:
    a template it names is missing, and the hint lists the others)."""
    if folder is not None and names is not None:
        folder = [
            (name, is_file)
            for name, is_file in folder
            if any(name.startswith(f"{template}.") for template in names)
        ]
    return _digest(facts, folder)


def _kept_check(
    check: Any, facts: str, folder: list[tuple[str, bool]] | None
) -> tuple[list[Finding], dict[Path, list[bool]]] | None:
    """The findings of a playbook's checks and the templates it uses, as kept in ``check``,
    when what they read is the same; else None."""
    if not isinstance(check, Mapping):
        return None
    try:
        names = check["names"]
        if names is not None and not all(isinstance(name, str) for name in names):
            return None
        if check["context"] != _check_context(facts, folder, names):
            return None
        found = [finding_from_json(f) for f in check["findings"]]
        used = {Path(path): [bool(cf), bool(me)] for path, cf, me in check["templates"]}
    except (KeyError, TypeError, ValueError):
        return None
    return found, used


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


@dataclass
class PlaybookSummary:
    """What the checks across playbooks read of one playbook: its id, its links to others, the
    facts it reads and sets, and the place of each in its file (``document`` holds only those
    places). It is kept with a validation's answer, so an unchanged file is not read again."""

    id: str
    document: Document
    depends_on: list[str]
    suppresses: list[str]
    facts_read: dict[str, PathParts]
    #: fact → (place, value): the value only as far as it gives the fact's type
    facts_set: dict[str, tuple[PathParts, Any]]

    @property
    def path(self) -> str:
        return self.document.path

    @classmethod
    def of(cls, pb: Playbook) -> PlaybookSummary:
        doc = pb.document
        facts_read = pb.facts_read
        facts_set = {
            name: (parts, value if _typed(value) else None)
            for name, (parts, value) in pb.facts_set.items()
        }
        places: list[PathParts] = [
            ("id",),
            *(("depends_on", index) for index in range(len(pb.depends_on))),
            *(("suppresses", index) for index in range(len(pb.suppresses))),
            *facts_read.values(),
        ]
        positions = {parts: doc.locate(parts) for parts in places}
        return cls(
            pb.id,
            Document(doc.path, positions=positions),
            list(pb.depends_on),
            list(pb.suppresses),
            facts_read,
            facts_set,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "depends_on": self.depends_on,
            "suppresses": self.suppresses,
            "facts_read": [[name, list(parts)] for name, parts in self.facts_read.items()],
            "facts_set": [
                [name, list(parts), value] for name, (parts, value) in self.facts_set.items()
            ],
            "places": [
                [list(parts), mark.line, mark.col]
                for parts, mark in self.document.positions.items()
            ],
        }

    @classmethod
    def from_json(cls, path: str, data: Mapping[str, Any]) -> PlaybookSummary:
        positions = {tuple(parts): Mark(int(line), int(col)) for parts, line, col in data["places"]}
        return cls(
            str(data["id"]),
            Document(path, positions=positions),
            [str(target) for target in data["depends_on"]],
            [str(target) for target in data["suppresses"]],
            {str(name): tuple(parts) for name, parts in data["facts_read"]},
            {str(name): (tuple(parts), value) for name, parts, value in data["facts_set"]},
        )


def _typed(value: Any) -> bool:
    """A set value that gives its fact a type other than text (``declare_set_facts``)."""
    return isinstance(value, bool | int | float) or value == "now"


@dataclass
class _Loaded:
    """One playbook file as read: its own findings (of loading and the schema) and summary."""

    display: str
    findings: list[Finding]
    schema_errors: set[PathParts] = field(default_factory=set)
    summary: PlaybookSummary | None = None
    playbook: Playbook | None = None
    raw: bytes | None = None
    #: what is kept of it (None for a file that could not be read: it is read again)
    entry: dict[str, Any] | None = None
    #: given again from an earlier validation
    reused: bool = False


def _load(file: Path, display: str, kept: Any) -> _Loaded:
    read = read_file(file, display)
    if isinstance(read, Document):  # it cannot be read: its finding, and nothing kept
        return _Loaded(display, list(read.findings))
    content = hashlib.sha256(read).hexdigest()
    if isinstance(kept, Mapping) and kept.get("content") == content:
        try:
            loading = [finding_from_json(f) for f in kept["loaded"]]
            schema = [finding_from_json(f) for f in kept["schema"]]
            summary = (
                None
                if kept["playbook"] is None
                else PlaybookSummary.from_json(display, kept["playbook"])
            )
        except (KeyError, TypeError, ValueError):
            pass  # damaged: read the file again
        else:
            return _Loaded(
                display,
                [*loading, *schema],
                {_parts_of(f) for f in schema},
                summary,
                raw=read,
                entry=dict(kept),
                reused=True,
            )
    doc = load_bytes(read, display)
    loading = list(doc.findings)
    entry: dict[str, Any] = {"content": content, "schema": [], "playbook": None}
    if doc.data is None:
        if not loading:
            loading.append(
                doc.finding(
                    (),
                    "schema",
                    "the file is empty",
                    "a playbook needs at least id, title, stage, category, trigger "
                    "and respond; see docs/marketers-guide.md",
                )
            )
        entry["loaded"] = [finding_to_json(f) for f in loading]
        return _Loaded(display, loading, raw=read, entry=entry)
    schema = schema_findings(doc)
    playbook = Playbook.from_document(doc)
    summary = PlaybookSummary.of(playbook) if playbook is not None else None
    entry["loaded"] = [finding_to_json(f) for f in loading]
    entry["schema"] = [finding_to_json(f) for f in schema]
    entry["playbook"] = summary.to_json() if summary is not None else None
    return _Loaded(
        display,
        [*loading, *schema],
        {_parts_of(f) for f in schema},
        summary,
        playbook,
        raw=read,
        entry=entry,
    )


def _parts_of(finding: Finding) -> PathParts:
    parts: list[str | int] = []
    path_part = r'\.([A-Za-z_][\w-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]'
    for match in re.finditer(path_part, finding.json_path):
        if match.group(1) is not None:
            parts.append(match.group(1))
        elif match.group(2) is not None:
            parts.append(int(match.group(2)))
        else:
            parts.append(json.loads(match.group(3)))
    return tuple(parts)


@functools.cache
def _timezones() -> frozenset[str]:
    import zoneinfo  # (its import reads sysconfig: only for a playbook with a time zone)

    return frozenset(zoneinfo.available_timezones())


class _Checker:
    """The checks of one playbook that JSON Schema cannot express."""

    def __init__(
        self,
        catalogue: Catalogue,
        schema_errors: dict[str, set[PathParts]],
        dedup_keys: Mapping[str, Any] | None = None,
        said: dict[str, Any] | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.schema_errors = schema_errors
        #: the templates the last playbook checked uses: file → [customer-facing (a message
        #: to a customer, not a notice to a team), a marketing message that can go out by
        #: email (a visible unsubscribe link)]
        self.used: dict[Path, list[bool]] = {}
        #: the templates it names, and whether one is missing (the hint lists the others)
        self.names: set[str] = set()
        self.listed = False
        #: what an earlier validation said of each dedup key (``_dedup_key``), and this one
        self.dedup_keys = dedup_keys or {}
        self.said = said if said is not None else {}

    def _broken(self, doc: Document, parts: PathParts) -> bool:
        """The schema already reported a problem at or under ``parts``: do not say it twice."""
        errors = self.schema_errors.get(doc.path, set())
        return any(error[: len(parts)] == parts for error in errors)

    def check(self, pb: Playbook) -> list[Finding]:
        doc = pb.document
        out: list[Finding] = []
        self.used, self.names, self.listed = {}, set(), False
        if not self._broken(doc, ("trigger",)):
            out.extend(self._trigger(pb))
        for parts, condition in pb.conditions():
            if not self._broken(doc, parts):
                out.extend(self._condition(doc, condition, parts))
        out.extend(_lengths_beyond_a_calendar(doc, doc.data, ()))
        named: dict[str, PathParts] = {}
        for parts, step in pb.steps():
            if not self._broken(doc, parts):
                out.extend(self._step(pb, step, parts))
            if isinstance(step.get("id"), str):
                if step["id"] in named:
                    other = named[step["id"]]
                    where = (
                        f"step {other[-1] + 1}"
                        if len(other) == 2
                        else f"at line {doc.locate(other).line}"
                    )
                    out.append(
                        doc.finding(
                            (*parts, "id"),
                            "step-shape",
                            f"two steps are named '{step['id']}' (the other is {where})",
                            "give each step its own id: waiting customers are kept at a step by it",
                        )
                    )
                named.setdefault(step["id"], parts)
        limits = pb.limits
        for key in ("once_every", "cooldown"):
            if isinstance(limits.get(key), str) and not self._broken(doc, ("limits", key)):
                out.extend(self._positive(doc, ("limits", key), limits[key]))
        out.extend(self._experiment(pb))
        if pb.dedup_key and not self._broken(doc, ("dedup_key",)):
            out.extend(self._dedup_key(pb))
        return out

    def _dedup_key(self, pb: Playbook) -> list[Finding]:
        """What is wrong with the dedup key, said again when an earlier validation read the
        same key (of a playbook with the same id and title, where the key reads them)."""
        alone = json.dumps([pb.dedup_key])
        with_playbook = json.dumps([pb.dedup_key, pb.id, pb.title])
        for memo in (alone, with_playbook):
            said = self.dedup_keys.get(memo)
            if _well_said(said):
                break
        else:
            found, reads_playbook = _dedup_key_findings(pb)
            said = [[f.rule_id, f.message, f.hint, f.severity.value] for f in found]
            memo = with_playbook if reads_playbook else alone
        self.said[memo] = said
        return [
            pb.document.finding(("dedup_key",), rule, message, hint, severity=Severity(severity))
            for rule, message, hint, severity in said
        ]

    # ── trigger ───────────────────────────────────────────────────────────
    def _trigger(self, pb: Playbook) -> list[Finding]:
        doc, trigger = pb.document, pb.trigger
        if not trigger:
            return []
        out = []
        kinds = [kind for kind in TRIGGER_KINDS if kind in trigger]
        if len(kinds) != 1:
            found = f"found {' and '.join(kinds)}" if kinds else "found none"
            out.append(
                doc.finding(
                    ("trigger",),
                    "trigger-shape",
                    f"a trigger needs exactly one of {', '.join(TRIGGER_KINDS)}; {found}",
                    "split it into two playbooks, one per trigger"
                    if kinds
                    else "for example anniversary: birthday, or event: order",
                )
            )
        companions = {
            "where": ("event",),
            "offset": ("anniversary",),
            "at": ("anniversary", "schedule"),
            "for": ("becomes",),
        }
        for key, owners in companions.items():
            if key in trigger and not any(owner in trigger for owner in owners):
                out.append(
                    doc.finding(
                        ("trigger", key),
                        "trigger-shape",
                        f"'{key}' only goes with {' or '.join(owners)}",
                        f"remove '{key}', or trigger on {' or '.join(owners)}",
                        key=True,
                    )
                )
        anniversary = trigger.get("anniversary")
        if isinstance(anniversary, str):
            spec = self.catalogue.facts.get(anniversary)
            if spec is None:
                out.append(self._unknown_fact(doc, ("trigger", "anniversary"), anniversary))
            elif spec.type not in TEMPORAL:
                dates = sorted(n for n, s in self.catalogue.facts.items() if s.type == "date")
                out.append(
                    doc.finding(
                        ("trigger", "anniversary"),
                        "fact-type-mismatch",
                        f"anniversary needs a date fact, and '{anniversary}' is {_a(spec.type)}",
                        f"date facts: {', '.join(dates)}",
                    )
                )
        if isinstance(trigger.get("for"), str):
            out.extend(self._positive(doc, ("trigger", "for"), trigger["for"]))
        schedule = trigger.get("schedule")
        if isinstance(schedule, dict):
            if isinstance(schedule.get("every"), str):
                out.extend(self._positive(doc, ("trigger", "schedule", "every"), schedule["every"]))
            zone = schedule.get("timezone")
            if isinstance(zone, str) and zone not in _timezones():
                out.append(
                    doc.finding(
                        ("trigger", "schedule", "timezone"),
                        "bad-timezone",
                        f"'{zone}' is not a time zone",
                        did_you_mean(zone, _timezones())
                        or "use an IANA name such as Europe/London or America/New_York",
                    )
                )
        for parts, node in ((("trigger", "where"), trigger.get("where")),):
            if node is not None:
                out.extend(self._event_filter(doc, node, parts))
        return out

    # ── conditions ────────────────────────────────────────────────────────
    def _condition(
        self, doc: Document, condition: dict[str, Any], parts: PathParts
    ) -> list[Finding]:
        out: list[Finding] = []
        for here, node in walk_conditions(condition, parts):
            kinds = [k for k in (*COMBINATORS, "fact", "tag") if k in node]
            operators = [op for op in OPERATORS if op in node]
            if len(kinds) != 1:
                if not kinds:
                    out.append(
                        doc.finding(
                            here,
                            "condition-shape",
                            f"operator {', '.join(operators)} needs a fact to test",
                            f"for example {{fact: total_spent, {operators[0]}: ...}}",
                        )
                    )
                else:
                    out.append(
                        doc.finding(
                            here,
                            "condition-shape",
                            f"a condition is one of all, any, not, fact or tag; this one has "
                            f"{' and '.join(kinds)}",
                            "wrap them in all: [...] to require each",
                        )
                    )
                continue
            kind = kinds[0]
            if kind in COMBINATORS or kind == "tag":
                if operators:
                    out.append(
                        doc.finding(
                            (*here, operators[0]),
                            "condition-shape",
                            f"'{operators[0]}' goes beside a fact, not beside {kind}",
                            "put the test in its own {fact: ..., op: ...} condition",
                            key=True,
                        )
                    )
                continue
            out.extend(self._leaf(doc, node, here, operators))
        return out

    def _leaf(
        self, doc: Document, node: dict[str, Any], here: PathParts, operators: list[str]
    ) -> list[Finding]:
        name = node["fact"]
        if len(operators) != 1:
            if not operators:
                return [
                    doc.finding(
                        here,
                        "condition-shape",
                        f"the test of '{name}' has no operator",
                        f"add one of {', '.join(OPERATORS)}, for example gte: 3",
                    )
                ]
            return [
                doc.finding(
                    (*here, operators[1]),
                    "condition-shape",
                    f"the test of '{name}' has {len(operators)} operators ({', '.join(operators)})",
                    "one operator per test: use between: [low, high], or all: [...] of two tests",
                    key=True,
                )
            ]
        spec = self.catalogue.facts.get(name)
        if spec is None:
            return [self._unknown_fact(doc, (*here, "fact"), name)]
        op = operators[0]
        value = node[op]
        where = (*here, op)
        if op not in spec.operators:
            usable = ", ".join(sorted(spec.operators))
            return [
                doc.finding(
                    where,
                    "fact-type-mismatch",
                    f"'{op}' does not apply to '{name}', which is {_a(spec.type)}",
                    f"operators for {spec.type} facts: {usable}",
                    key=True,
                )
            ]
        if op == "exists":
            return []
        if op == "within":
            return self._positive(doc, where, value) if isinstance(value, str) else []
        values = value if op in ("between", "in", "not_in") and isinstance(value, list) else [value]
        out = []
        for index, item in enumerate(values):
            item_parts = (*where, index) if values is value else where
            problem = self._mismatch(spec, item)
            if problem:
                out.append(doc.finding(item_parts, "fact-type-mismatch", *problem))
        if (
            op == "between"
            and len(values) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            and values[0] > values[1]
        ):
            out.append(
                doc.finding(
                    where,
                    "condition-shape",
                    f"between [{values[0]}, {values[1]}] is empty: low > high",
                    f"write between: [{values[1]}, {values[0]}]",
                )
            )
        return out

    def _mismatch(self, spec: FactSpec, value: Any) -> tuple[str, str] | None:
        """(message, hint) when ``value`` cannot be compared with fact ``spec``."""
        name = spec.name
        if isinstance(value, dict):  # another fact
            other_name = value.get("fact")
            other = self.catalogue.facts.get(other_name) if isinstance(other_name, str) else None
            if other is None:
                hint = (
                    did_you_mean(other_name, self.catalogue.facts) or "see docs/reference/facts.md"
                )
                return f"'{other_name}' is not a known fact", hint
            scaled = "times" in value or "plus" in value
            if scaled and other.type not in NUMERIC:
                return (
                    f"times/plus scale numbers, and '{other_name}' is {_a(other.type)}",
                    "compare it as it is, without times or plus",
                )
            if _family(spec.type) != _family(other.type):
                return (
                    f"'{name}' is {_a(spec.type)} and '{other_name}' is {_a(other.type)}: "
                    "they cannot be compared",
                    "compare facts of the same kind",
                )
            return None
        family = _family(spec.type)
        if family == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return None
            return (
                f"'{name}' is a number ({spec.unit or 'no unit'}), and {describe(value)} is not",
                "write a number without quotes, such as 3",
            )
        if family == "temporal":
            if isinstance(value, str):
                try:
                    dt.date.fromisoformat(value)
                    return None
                except ValueError:
                    pass
            return (
                f"'{name}' is a date, and {describe(value)} is not a date",
                "write a date as YYYY-MM-DD, use within: 30d for 'in the last 30 days', "
                "or a days_since_* fact to count days",
            )
        if family == "boolean":
            if isinstance(value, bool):
                return None
            if isinstance(value, str) and value in YAML11_BOOLEANS:
                truth = "true" if value.lower() in {"y", "yes", "on"} else "false"
                return (
                    f"'{name}' is true/false, and '{value}' is text",
                    f"YAML 1.1 would read '{value}' as {truth}; Courtship keeps it as text. "
                    f"Write {truth}",
                )
            return f"'{name}' is true/false, and {describe(value)} is not", "write true or false"
        if spec.type == "enum":
            if value in spec.values:
                return None
            suggestion = did_you_mean(value, spec.values)
            listing = f"one of: {', '.join(spec.values)}"
            return (
                f"{describe(value)} is not a possible value of '{name}'",
                f"{suggestion} ({listing})" if suggestion else listing,
            )
        if spec.type == "string" and not isinstance(value, str):
            return (f"'{name}' is text, and {describe(value)} is not", f"quote it: '{value}'")
        return None

    def _unknown_fact(self, doc: Document, parts: PathParts, name: str) -> Finding:
        hint = did_you_mean(name, self.catalogue.facts) or (
            "see the facts catalogue (docs/reference/facts.md), or set it in a playbook"
        )
        return doc.finding(parts, "unknown-fact", f"'{name}' is not a known fact", hint)

    def _event_filter(self, doc: Document, node: Any, parts: PathParts) -> list[Finding]:
        out = []
        for here, item in walk_conditions(node, parts):
            kinds = [k for k in (*COMBINATORS, "field") if k in item]
            operators = [op for op in OPERATORS if op in item]
            if len(kinds) != 1:
                out.append(
                    doc.finding(
                        here,
                        "condition-shape",
                        "an event filter is one of all, any, not or field"
                        + (f"; this one has {' and '.join(kinds)}" if kinds else ""),
                        "for example {field: amount, gte: 50}",
                    )
                )
            elif kinds[0] == "field" and len(operators) != 1:
                out.append(
                    doc.finding(
                        here,
                        "condition-shape",
                        f"the test of field '{item['field']}' needs exactly one operator",
                        "for example {field: amount, gte: 50}",
                    )
                )
        return out

    # ── steps ─────────────────────────────────────────────────────────────
    def _step(self, pb: Playbook, step: dict[str, Any], parts: PathParts) -> list[Finding]:
        doc = pb.document
        out = []
        kinds = [kind for kind in STEP_KINDS if kind in step]
        if len(kinds) != 1:
            found = f"found {' and '.join(kinds)}" if kinds else "found none"
            out.append(
                doc.finding(
                    parts,
                    "step-shape",
                    f"a step does exactly one of {', '.join(STEP_KINDS)}; {found}",
                    "make each action its own '- ' item of respond",
                )
            )
        if "unless" in step and "wait" not in step:
            out.append(
                doc.finding(
                    (*parts, "unless"),
                    "step-shape",
                    "'unless' only goes with wait",
                    "add wait: 7d before it, or remove it",
                    key=True,
                )
            )
        if isinstance(step.get("wait"), str):
            out.extend(self._positive(doc, (*parts, "wait"), step["wait"]))
        unless = step.get("unless")
        if isinstance(unless, dict) and unless.get("where") is not None:
            out.extend(self._event_filter(doc, unless["where"], (*parts, "unless", "where")))
        send = step.get("send")
        if isinstance(send, dict):
            out.extend(self._send(doc, send, (*parts, "send")))
        notify = step.get("notify")
        if isinstance(notify, dict) and isinstance(notify.get("template"), str):
            out.extend(
                self._template(doc, notify["template"], (*parts, "notify", "template"), toned=False)
            )
        return out

    def _send(self, doc: Document, send: dict[str, Any], parts: PathParts) -> list[Finding]:
        out = self._send_at(doc, send, parts)
        channel = send.get("channel")
        if isinstance(channel, str) and channel != PREFERRED:
            out.extend(self._channel(doc, (*parts, "channel"), channel))
        for index, fallback in enumerate(send.get("fallback") or []):
            if fallback == PREFERRED:
                out.append(
                    doc.finding(
                        (*parts, "fallback", index),
                        "unknown-channel",
                        "'preferred' cannot be a fallback",
                        "name a channel: email, sms, instagram",
                    )
                )
            elif isinstance(fallback, str):
                out.extend(self._channel(doc, (*parts, "fallback", index), fallback))
        messages = [(send, (*parts, "template"))] + [  # each variant's template, too
            (
                {k: v for k, v in send.items() if k != "variants"} | variant,
                (*parts, "variants", i, "template"),
            )
            for i, variant in enumerate(send.get("variants") or [])
            if isinstance(variant, dict) and "template" in variant
        ]
        for message, where in messages:
            out.extend(self._send_template(doc, message, where))
        return out

    def _send_at(self, doc: Document, send: dict[str, Any], parts: PathParts) -> list[Finding]:
        """``at: best_hour`` and its window: ``within`` only with it, above zero, at most a day
        (the best hour comes once a day)."""
        within = send.get("within")
        if not isinstance(within, str):
            return []
        if send.get("at") != "best_hour":
            return [
                doc.finding(
                    (*parts, "within"),
                    "step-shape",
                    "'within' only goes with at: best_hour",
                    "add at: best_hour, or remove within",
                    key=True,
                )
            ]
        out = self._positive(doc, (*parts, "within"), within)
        try:
            length = parse_duration(within)
        except ValueError:
            return out  # the schema reported it
        if length > dt.timedelta(days=1):
            out.append(
                doc.finding(
                    (*parts, "within"),
                    "bad-duration",
                    f"'{within}' is beyond a day: a best hour comes every 24 hours (within)",
                    "write at most 24h, such as 6h",
                )
            )
        return out

    def _send_template(
        self, doc: Document, send: dict[str, Any], parts: PathParts
    ) -> list[Finding]:
        out: list[Finding] = []
        if isinstance(send.get("template"), str):
            out.extend(self._template(doc, send["template"], parts, toned=True))
            # A template that may go out by SMS too is left to the email footer: a link
            # written into it would be sent in the SMS as well.
            reaches = {send.get("channel"), *(send.get("fallback") or [])}
            if (
                isinstance(doc.data, dict)
                and doc.data.get("category") == "marketing"
                and reaches == {"email"}
            ):
                folder = Path(doc.path).parent / "templates"
                for language in ["", *languages(folder, send["template"])]:
                    for file in variants(folder, send["template"], language).values():
                        self.used.setdefault(file, [False, False])[1] = True
        return out

    def _experiment(self, pb: Playbook) -> list[Finding]:
        """A holdout only holds out marketing (an answer is never withheld), and each variant of
        a message has its own name (``courtship results`` reports them by it)."""
        doc, out = pb.document, []
        if "holdout" in (doc.data or {}) and pb.category == "transactional":
            out.append(
                doc.finding(
                    ("holdout",),
                    "experiment-shape",
                    "a transactional playbook answers a customer: it is never held out",
                    "remove holdout:, or measure a marketing playbook",
                    key=True,
                )
            )
        for parts, step in pb.steps():
            variants = (
                step.get("send", {}).get("variants") if isinstance(step.get("send"), dict) else None
            )
            arms = step.get("split")
            if isinstance(variants, list) and not self._broken(doc, parts):
                out.extend(
                    _unique_ids(doc, variants, (*parts, "send", "variants"), "variant", "variants")
                )
            if isinstance(arms, list) and not self._broken(doc, parts):
                out.extend(_unique_ids(doc, arms, (*parts, "split"), "arm", "arms"))
        return out

    def _channel(self, doc: Document, parts: PathParts, channel: str) -> list[Finding]:
        if channel in self.catalogue.channels:
            return []
        known = sorted(self.catalogue.channels | {PREFERRED})
        return [
            doc.finding(
                parts,
                "unknown-channel",
                f"'{channel}' is not a channel",
                did_you_mean(channel, known) or f"channels: {', '.join(known)} (plugins add more)",
            )
        ]

    def _template(
        self, doc: Document, name: str, parts: PathParts, *, toned: bool
    ) -> list[Finding]:
        folder = Path(doc.path).parent / "templates"
        files = variants(folder, name)
        self.names.add(name)
        if not files:
            self.listed = True
            known = sorted(template_names(folder))
            expected = (
                f"{name}.buddy.md, {name}.salesy.md and {name}.direct.md" if toned else f"{name}.md"
            )
            return [
                doc.finding(
                    parts,
                    "unknown-template",
                    f"no template '{name}' in {display_path(folder)}",
                    did_you_mean(name, known) or f"create {expected} there",
                )
            ]
        out = []
        if toned and "" not in files:
            missing = [tone for tone in TONES if tone not in files]
            if missing:
                out.append(
                    doc.finding(
                        parts,
                        "template-tone-missing",
                        f"template '{name}' has no {', '.join(missing)} variant",
                        f"add {', '.join(f'{name}.{tone}.md' for tone in missing)}, or a toneless "
                        f"{name}.md for every tone",
                    )
                )
        every = list(files.values())
        for language in languages(folder, name):
            translated = variants(folder, name, language)
            every += translated.values()
            missing = [tone for tone in TONES if tone in files and tone not in translated]
            if toned and "" not in translated and missing:
                out.append(
                    doc.finding(
                        parts,
                        "template-language-tone-missing",
                        f"template '{name}' in {language} has no {', '.join(missing)} variant: "
                        f"those customers read the default-language text instead",
                        f"add {', '.join(f'{name}.{tone}.{language}.md' for tone in missing)}, "
                        f"or a toneless {name}.{language}.md",
                        severity=Severity.WARNING,
                    )
                )
        for file in every:
            flags = self.used.setdefault(file, [False, False])
            flags[0] |= toned
        return out

    def _positive(self, doc: Document, parts: PathParts, text: str) -> list[Finding]:
        try:
            length = parse_duration(text)
        except ValueError:
            return []  # the schema reported it
        if length <= dt.timedelta(0):
            return [
                doc.finding(
                    parts,
                    "bad-duration",
                    f"'{text}' is no length of time",
                    "give a length above zero, such as 1d",
                )
            ]
        return []


#: Keys whose value is a length of time (or an offset) in a playbook.
DURATION_KEYS = frozenset(
    {"once_every", "cooldown", "for", "every", "wait", "within", "offset", "valid_for", "expires"}
)


RENDER_HINT = (
    "a message renders within 1 s, 100000 steps (loops and calls) and 100000 characters, and "
    "cannot change what it reads (docs/engine.md, templates under limits)"
)


def _well_said(said: Any) -> bool:
    return isinstance(said, list) and all(
        isinstance(item, list) and len(item) == 4 and all(isinstance(x, str) for x in item)
        for item in said
    )


def _dedup_key_findings(pb: Playbook) -> tuple[list[Finding], bool]:
    """The dedup key read as a template: its syntax, the names it uses, rendered once; and
    whether what it says may depend on the playbook's id and title (the key names
    ``playbook``, or calls a filter, which a plugin's may read the whole context)."""
    from jinja2 import TemplateSyntaxError, nodes

    doc = pb.document
    out: list[Finding] = []
    reads_playbook = False
    try:
        ast = environment().parse(pb.dedup_key)
    except TemplateSyntaxError as error:
        out.append(
            doc.finding(
                ("dedup_key",),
                "template-syntax",
                f"dedup_key: {error.message}",
                "check the {{ }} pairs",
            )
        )
    except RecursionError:
        out.append(
            doc.finding(
                ("dedup_key",),
                "template-syntax",
                "dedup_key: nested too deeply to read",
                "simplify the expression",
            )
        )
    else:
        from jinja2 import meta

        try:
            undeclared = meta.find_undeclared_variables(ast)
        except TemplateSyntaxError as error:  # an unknown filter
            undeclared = {"?"}  # not rendered
            out.append(
                doc.finding(
                    ("dedup_key",),
                    "template-syntax",
                    f"dedup_key: {error.message}",
                    "use a Jinja filter, or one a plugin adds",
                )
            )
        reads_playbook = "playbook" in undeclared or any(True for _ in ast.find_all(nodes.Filter))
        for name in sorted(undeclared - {"now", "playbook", "?"}):
            out.append(
                doc.finding(
                    ("dedup_key",),
                    "template-unknown-variable",
                    f"dedup_key: '{name}' is not available in a dedup key",
                    "a dedup key may use now and playbook; it is kept per customer "
                    "already, as in birthday-{{ now.year }}",
                )
            )
        out.extend(_dedup_key_renders(pb, undeclared))
    return out, reads_playbook


def _template_file_findings(
    path: Path,
    catalogue: Catalogue,
    *,
    customer_facing: bool,
    marketing_email: bool,
    kept: Any,
    keep: dict[str, Any],
) -> list[Finding]:
    """Findings inside one template file the playbooks use: given again from ``kept`` when
    the file's bytes and the facts it reads are the same, else read; what is found of a file
    that was read is put in ``keep``."""
    display = display_path(path)
    read = read_template(path, display)
    if isinstance(read, TemplateFile):  # it cannot be read: its finding, and nothing kept
        return list(read.findings)
    content = hashlib.sha256(read).hexdigest()
    entry: dict[str, Any] | None = None
    if isinstance(kept, Mapping) and kept.get("content") == content:
        variables = kept.get("variables")
        if (
            isinstance(variables, list)
            and all(isinstance(name, str) for name in variables)
            and kept.get("facts") == _facts_read(variables, catalogue)
        ):
            entry = dict(kept)
    if entry is None:
        tpl = template_from_bytes(path, display, read)
        always, personal, unsubscribe = _template_checks(tpl, catalogue)
        entry = {
            "content": content,
            "variables": sorted(tpl.variables),
            "facts": _facts_read(sorted(tpl.variables), catalogue),
            "findings": [finding_to_json(f) for f in always],
            "customer_facing": [finding_to_json(f) for f in personal],
            "marketing_email": [finding_to_json(f) for f in unsubscribe],
        }
    keep[str(path)] = entry
    names = ["findings"]
    names += ["customer_facing"] if customer_facing else []
    names += ["marketing_email"] if marketing_email else []
    try:
        return [finding_from_json(f) for name in names for f in entry[name]]
    except (KeyError, TypeError, ValueError):  # damaged: read it again
        del keep[str(path)]
        return _template_file_findings(
            path,
            catalogue,
            customer_facing=customer_facing,
            marketing_email=marketing_email,
            kept=None,
            keep=keep,
        )


def _facts_read(variables: Sequence[Any], catalogue: Catalogue) -> str:
    """What a template's findings read of the catalogue: the type of each name it uses (None:
    no fact), and every fact's name when one is unknown (a hint suggests the nearest)."""
    types = [
        [str(name), catalogue.facts[name].type if name in catalogue.facts else None]
        for name in variables
    ]
    unknown = any(t is None and name not in TEMPLATE_CONTEXT for name, t in types)
    return _digest(types, sorted(catalogue.facts) if unknown else None)


def _template_checks(
    tpl: TemplateFile, catalogue: Catalogue
) -> tuple[list[Finding], list[Finding], list[Finding]]:
    """The findings of a template file: always; when it is a message to a customer; when it is
    a marketing message that can go out by email."""
    always = list(tpl.findings)
    for name, line in tpl.variables.items():
        if name not in catalogue.facts and name not in TEMPLATE_CONTEXT:
            known = sorted({*catalogue.facts, *TEMPLATE_CONTEXT})
            always.append(
                Finding(
                    tpl.display,
                    line,
                    1,
                    Severity.ERROR,
                    "template-unknown-variable",
                    f"'{name}' is neither a fact nor a template variable",
                    did_you_mean(name, known)
                    or "use a fact, or offer, friend, referrer, brand, playbook, now, "
                    "unsubscribe_url",
                )
            )
    personal = impersonal_findings(tpl) if tpl.ok else []
    if tpl.ok and set(tpl.variables) <= {*catalogue.facts, *TEMPLATE_CONTEXT}:
        types = {name: spec.type for name, spec in catalogue.facts.items()}
        failure = render_failure(tpl, types)
        if failure is not None:
            always.append(
                Finding(
                    tpl.display,
                    failure.line,
                    1,
                    Severity.ERROR,
                    "template-render",
                    f"rendered with sample values: {failure.message}",
                    RENDER_HINT,
                )
            )
    unsubscribe = []
    if tpl.ok and "unsubscribe_url" not in tpl.variables:
        unsubscribe.append(
            Finding(
                tpl.display,
                tpl.body_line,
                1,
                Severity.WARNING,
                "template-unsubscribe-missing",
                "a marketing email that never shows its unsubscribe link "
                "(unsubscribe_url); a footer with it is added at the end",
                'place it where it reads well: <a href="{{ unsubscribe_url }}">Unsubscribe</a>',
            )
        )
    return always, personal, unsubscribe


def _dedup_key_renders(pb: Playbook, undeclared: set[str]) -> list[Finding]:
    """The dedup key rendered once, as at a moment: a failure or a key over the limits."""
    if undeclared - {"now", "playbook"}:
        return []
    try:
        dedup_key(pb, dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC))
    except TemplateFailure as failure:
        return [
            pb.document.finding(
                ("dedup_key",),
                "template-render",
                f"dedup_key: {failure.message}",
                "a dedup key is a short text such as birthday-{{ now.year }}, rendered under the "
                "limits of every template (docs/engine.md, templates under limits)",
            )
        ]
    return []


def _lengths_beyond_a_calendar(doc: Document, node: Any, parts: PathParts) -> list[Finding]:
    """Every length of time too long for a calendar (beyond a hundred years), where it is."""
    out: list[Finding] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in DURATION_KEYS and isinstance(value, str) and too_long(value):
                out.append(
                    doc.finding(
                        (*parts, key),
                        "bad-duration",
                        f"'{value}' is longer than a calendar can hold ({key})",
                        "write at most a hundred years: 36525d or 5217w",
                    )
                )
            else:
                out.extend(_lengths_beyond_a_calendar(doc, value, (*parts, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_lengths_beyond_a_calendar(doc, value, (*parts, index)))
    return out


def _unique_ids(
    doc: Document, items: list[Any], parts: PathParts, kind: str, plural: str
) -> list[Finding]:
    """Each variant (or arm of a split) has its own id: results are reported by it."""
    out: list[Finding] = []
    seen: dict[str, int] = {}
    for place, item in enumerate(items):
        name = item.get("id") if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen:
            out.append(
                doc.finding(
                    (*parts, place, "id"),
                    "experiment-shape",
                    f"two {plural} are named '{name}' (the other is {kind} {seen[name] + 1})",
                    f"give each {kind} its own id: results are reported by it",
                )
            )
        if isinstance(name, str):
            seen.setdefault(name, place)
    return out


def _family(kind: str) -> str:
    if kind in NUMERIC:
        return "number"
    if kind in TEMPORAL:
        return "temporal"
    return kind


def _a(kind: str) -> str:
    return {
        "integer": "a whole number",
        "number": "a number",
        "boolean": "true/false",
        "date": "a date",
        "datetime": "a moment",
        "list": "a list",
        "enum": "a choice",
        "string": "text",
    }.get(kind, kind)


def _check_together(playbooks: Sequence[PlaybookSummary]) -> list[Finding]:
    """Checks across playbooks: duplicate ids, unknown dependencies, then cycles."""
    out: list[Finding] = []
    first: dict[str, PlaybookSummary] = {}
    for pb in playbooks:
        if pb.id in first:
            other = first[pb.id]
            mark = other.document.locate(("id",))
            out.append(
                pb.document.finding(
                    ("id",),
                    "duplicate-id",
                    f"id '{pb.id}' is already used by {other.path}:{mark.line}",
                    "ids must be unique: rename one of them",
                )
            )
        else:
            first[pb.id] = pb
    unknown = False
    for pb in playbooks:
        for key in ("depends_on", "suppresses"):
            for index, target in enumerate(getattr(pb, key)):
                if target not in first:
                    unknown = True
                    out.append(
                        pb.document.finding(
                            (key, index),
                            "unknown-dependency",
                            f"{key} names '{target}', which is no playbook",
                            did_you_mean(target, first) or "check the id of the playbook you mean",
                        )
                    )
    if unknown:
        return out  # a cycle through a misspelt id is reported once the id is fixed
    if not has_cycle(first.values()):
        return out
    from courtship.graph import PlaybookGraph  # networkx: only to name the cycles

    graph = PlaybookGraph(first.values())  # type: ignore[arg-type]  # reads ids and links
    for cycle in graph.cycles():
        steps = []
        places: list[tuple[PlaybookSummary, PathParts]] = []
        for source, target in itertools.pairwise(cycle):
            data = graph.graph.edges[source, target]
            dependent = first[target]
            if "depends_on" in data["kinds"]:
                parts: PathParts = ("depends_on", dependent.depends_on.index(source))
                link = f"{target} depends_on {source}"
            else:
                fact = sorted(data["facts"])[0]
                parts = dependent.facts_read[fact]
                link = f"{target} reads {fact} set by {source}"
            places.append((dependent, parts))
            mark = dependent.document.locate(parts)
            steps.append(f"{link} ({dependent.path}:{mark.line})")
        where, parts = places[0]
        out.append(
            where.document.finding(
                parts,
                "dependency-cycle",
                f"dependency cycle: {' --> '.join(cycle)}",
                "; ".join(steps) + ". Break one of these links",
            )
        )
    return out
