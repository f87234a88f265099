"""Validation: load every playbook, check it against the schema and the meaning of the format,
then check the playbooks together. Everything is validated before anything is reported."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import os
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

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
from courtship.graph import PlaybookGraph
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
    load_template,
    render_failure,
    template_names,
    variants,
)
from courtship.yamlload import YAML11_BOOLEANS, Document, PathParts, load_file

PLAYBOOK_SUFFIXES = (".yaml", ".yml")
TEMPLATES_FOLDER = "templates"


def display_path(path: Path) -> str:
    """Paths in findings are relative to the working folder when they are under it."""
    try:
        return (
            os.path.relpath(path) if Path(os.path.relpath(path)).parts[:1] != ("..",) else str(path)
        )
    except ValueError:  # another drive on Windows
        return str(path)


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
    catalogue = (catalogue or builtin_catalogue()).copy()
    report = Report()
    documents: list[Document] = []
    schema_errors: dict[str, set[PathParts]] = {}
    for file in files:
        display = display_path(file)
        report.files.append(display)
        doc = load_file(file, display)
        report.findings.extend(doc.findings)
        documents.append(doc)
        if doc.data is None:
            if not doc.findings:
                report.findings.append(
                    doc.finding(
                        (),
                        "schema",
                        "the file is empty",
                        "a playbook needs at least id, title, stage, category, trigger "
                        "and respond; see docs/marketers-guide.md",
                    )
                )
            continue
        found = schema_findings(doc)
        report.findings.extend(found)
        schema_errors[display] = {_parts_of(f) for f in found}
        playbook = Playbook.from_document(doc)
        if playbook is not None:
            report.playbooks.append(playbook)

    declare_set_facts(report.playbooks, catalogue)
    checker = _Checker(catalogue, _template_cache(), schema_errors)
    for playbook in report.playbooks:
        report.findings.extend(checker.check(playbook))
    report.findings.extend(checker.template_findings())
    report.findings.extend(_check_together(report.playbooks))
    report.findings = sorted(set(report.findings))
    return report


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


def _template_cache() -> dict[Path, TemplateFile]:
    return {}


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class _Checker:
    """The checks of one playbook that JSON Schema cannot express."""

    def __init__(
        self,
        catalogue: Catalogue,
        templates: dict[Path, TemplateFile],
        schema_errors: dict[str, set[PathParts]],
    ) -> None:
        self.catalogue = catalogue
        self.templates = templates
        self.schema_errors = schema_errors
        self.customer_facing: set[Path] = set()
        #: templates of marketing messages that can go out by email (a visible unsubscribe link)
        self.marketing_email: set[Path] = set()

    def _broken(self, doc: Document, parts: PathParts) -> bool:
        """The schema already reported a problem at or under ``parts``: do not say it twice."""
        errors = self.schema_errors.get(doc.path, set())
        return any(error[: len(parts)] == parts for error in errors)

    def check(self, pb: Playbook) -> list[Finding]:
        doc = pb.document
        out: list[Finding] = []
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
        return out

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
                    self.marketing_email.update(
                        variants(folder, send["template"], language).values()
                    )
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
        if not files:
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
            if file not in self.templates:
                self.templates[file] = load_template(file, display_path(file))
            if toned:
                self.customer_facing.add(file)
        return out

    def template_findings(self) -> list[Finding]:
        """Findings inside the template files the playbooks use, each file once."""
        out = []
        for file, tpl in self.templates.items():
            out.extend(tpl.findings)
            for name, line in tpl.variables.items():
                if name not in self.catalogue.facts and name not in TEMPLATE_CONTEXT:
                    known = sorted({*self.catalogue.facts, *TEMPLATE_CONTEXT})
                    out.append(
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
            if file in self.customer_facing and tpl.ok:
                out.extend(impersonal_findings(tpl))
            if tpl.ok and set(tpl.variables) <= {*self.catalogue.facts, *TEMPLATE_CONTEXT}:
                types = {name: spec.type for name, spec in self.catalogue.facts.items()}
                failure = render_failure(tpl, types)
                if failure is not None:
                    out.append(
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
            if file in self.marketing_email and tpl.ok and "unsubscribe_url" not in tpl.variables:
                out.append(
                    Finding(
                        tpl.display,
                        tpl.body_line,
                        1,
                        Severity.WARNING,
                        "template-unsubscribe-missing",
                        "a marketing email that never shows its unsubscribe link "
                        "(unsubscribe_url); a footer with it is added at the end",
                        "place it where it reads well: "
                        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
                    )
                )
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


def _check_together(playbooks: list[Playbook]) -> list[Finding]:
    """Checks across playbooks: duplicate ids, unknown dependencies, then cycles."""
    out: list[Finding] = []
    first: dict[str, Playbook] = {}
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
    graph = PlaybookGraph(first.values())
    for cycle in graph.cycles():
        steps = []
        places: list[tuple[Playbook, PathParts]] = []
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
