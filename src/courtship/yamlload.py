"""Line-aware, safe YAML loading.

Every mapping, list and scalar of a playbook remembers its line and column, so a finding can point
at the exact place. The loader reads YAML the way a marketer means it, not the way YAML 1.1 does:

- only ``true``/``false`` are booleans: ``NO``, ``yes``, ``on`` and ``off`` stay text;
- ``21:00`` stays the time ``"21:00"`` (YAML 1.1 reads it as 1260, a base-60 number);
- ``0012`` stays the code ``"0012"`` (YAML 1.1 reads it as the octal number 10);
- ``2026-11-23`` stays text (no surprise ``date`` objects);
- a key written twice is an error naming both lines (YAML would silently keep the last).

It composes documents from libyaml's event stream with an explicit stack, so deep nesting, alias
bombs and binary garbage end in a finding, never in a crash.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from courtship.findings import Finding, Severity, json_path

#: libyaml's parser when PyYAML was built with it (it is, in the PyPI wheels), else pure Python.
_Parser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 64
MAX_NODES = 50_000

PathParts = tuple[str | int, ...]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(
    r"^[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*(?:[eE][-+]?[0-9]+)?"
    r"|\.[0-9]+(?:[eE][-+]?[0-9]+)?|(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+)$"
)
_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}str", f"{_CORE}int", f"{_CORE}float", f"{_CORE}bool", f"{_CORE}null", "!"}

#: Plain scalars that YAML 1.1 would have turned into something else; the hint explains.
YAML11_BOOLEANS = frozenset(
    {
        "y",
        "Y",
        "yes",
        "Yes",
        "YES",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
    }
)


@dataclass(frozen=True)
class Mark:
    line: int
    col: int


@dataclass
class Document:
    """A loaded YAML file: its data, where each part of it stands, and what went wrong."""

    path: str
    data: Any = None
    positions: dict[PathParts, Mark] = field(default_factory=dict)
    key_positions: dict[PathParts, Mark] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.is_error for f in self.findings)

    def locate(self, parts: PathParts, *, key: bool = False) -> Mark:
        """The place of ``parts``, or of its nearest annotated ancestor.

        With ``key=True`` the place of the key rather than of its value.
        """
        parts = tuple(parts)
        if key and parts in self.key_positions:
            return self.key_positions[parts]
        while parts:
            if parts in self.positions:
                return self.positions[parts]
            parts = parts[:-1]
        return self.positions.get((), Mark(1, 1))

    def finding(
        self,
        parts: PathParts,
        rule_id: str,
        message: str,
        hint: str = "",
        *,
        key: bool = False,
        severity: Severity = Severity.ERROR,
    ) -> Finding:
        mark = self.locate(parts, key=key)
        return Finding(
            self.path, mark.line, mark.col, severity, rule_id, message, hint, json_path(parts)
        )


class _Stop(Exception):
    """Loading cannot go on; the finding is already recorded."""


@dataclass
class _Frame:
    container: dict[str, Any] | list[Any]
    parts: PathParts
    mark: Mark
    anchor: str | None
    size: int = 1
    key: str | None = None
    key_mark: Mark | None = None
    key_lines: dict[str, int] = field(default_factory=dict)


def _mark(event: Any) -> Mark:
    return Mark(event.start_mark.line + 1, event.start_mark.column + 1)


class _TooLong(ValueError):
    """A number with more digits than Python converts (4300)."""


def _int(value: str) -> int:
    if len(value) > 4000:
        raise _TooLong(value)
    return int(value)


def _scalar(event: Any) -> Any:
    """The value of a scalar, read the YAML 1.2 core way minus its traps."""
    value: str = event.value
    tag = event.tag
    if tag not in (None, "!"):
        if tag == f"{_CORE}str":
            return value
        if tag == f"{_CORE}int" and _INT.match(value):
            return _int(value)
        if tag == f"{_CORE}float" and (_FLOAT.match(value) or _INT.match(value)):
            return float(value)
        if tag == f"{_CORE}bool" and value in _BOOL:
            return _BOOL[value]
        if tag == f"{_CORE}null" and _NULL.match(value):
            return None
        raise ValueError(tag)
    if tag == "!" or not event.implicit[0]:  # quoted, or explicitly non-specific
        return value
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        return _int(value)
    if _FLOAT.match(value):
        return float(value)
    return value


def load_text(text: str, path: str) -> Document:
    """Load one YAML document from ``text``; ``path`` is how findings name the file."""
    doc = Document(path)
    try:
        _compose(text, doc)
    except _Stop:
        doc.data = None
    return doc


def load_file(file: Path, display: str | None = None) -> Document:
    """Load one YAML file; bytes that are not UTF-8 are a finding, not an exception."""
    display = display or str(file)
    read = read_file(file, display)
    return read if isinstance(read, Document) else load_bytes(read, display)


def read_file(file: Path, display: str) -> bytes | Document:
    """The bytes of ``file``, or the document of a file that cannot be read (not a regular
    file, a read error) with its finding."""
    try:
        if not stat.S_ISREG(file.stat().st_mode):  # a named pipe or a device would hang
            doc = Document(display)
            doc.findings.append(
                Finding(
                    display,
                    1,
                    1,
                    Severity.ERROR,
                    "yaml-syntax",
                    "cannot read file: not a regular file (a named pipe, a socket or a device)",
                    "keep only playbook files in the playbooks folder",
                )
            )
            return doc
        return file.read_bytes()
    except OSError as error:
        doc = Document(display)
        doc.findings.append(
            Finding(
                display, 1, 1, Severity.ERROR, "yaml-syntax", f"cannot read file: {error.strerror}"
            )
        )
        return doc


def load_bytes(raw: bytes, display: str) -> Document:
    """Load one YAML document from the bytes of a file; ``display`` names the file."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        doc = Document(display)
        line = raw.count(b"\n", 0, error.start) + 1
        col = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        doc.findings.append(
            Finding(
                display,
                line,
                col,
                Severity.ERROR,
                "yaml-syntax",
                f"byte 0x{raw[error.start]:02x} is not UTF-8 text",
                "save the file as UTF-8; is this a binary file in the playbooks folder?",
            )
        )
        return doc
    return load_text(text, display)


def _fail(doc: Document, mark: Mark, rule_id: str, message: str, hint: str = "") -> _Stop:
    doc.findings.append(
        Finding(doc.path, mark.line, mark.col, Severity.ERROR, rule_id, message, hint)
    )
    return _Stop()


def _compose(text: str, doc: Document) -> None:
    parser = _Parser(text)
    stack: list[_Frame] = []
    anchors: dict[str, tuple[Any, int]] = {}
    documents = 0
    total = 0
    try:
        while True:
            event = parser.get_event()
            if isinstance(event, yaml.StreamEndEvent):
                break
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _fail(
                        doc,
                        _mark(event),
                        "yaml-unsupported",
                        "a playbook file holds one YAML document, this is a second one",
                        "put each playbook in a file of its own and remove the '---' line",
                    )
                continue
            if isinstance(event, (yaml.StreamStartEvent, yaml.DocumentEndEvent)):
                continue

            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                value, size = frame.container, frame.size
                if frame.anchor:
                    anchors[frame.anchor] = (value, size)
                if not stack:
                    doc.data = value
                else:
                    _attach(doc, stack[-1], value, size, frame.parts, frame.mark)
                continue

            mark = _mark(event)
            # A scalar where a mapping expects its key.
            if stack and isinstance(stack[-1].container, dict) and stack[-1].key is None:
                top = stack[-1]
                if not isinstance(event, yaml.ScalarEvent):
                    raise _fail(
                        doc,
                        mark,
                        "yaml-unsupported",
                        "a key must be plain text, not a list or a mapping",
                        "write the key as a word, then a colon",
                    )
                key = event.value if event.value is not None else ""
                if key in top.key_lines:
                    first = top.key_lines[key]
                    doc.findings.append(
                        Finding(
                            doc.path,
                            mark.line,
                            mark.col,
                            Severity.ERROR,
                            "yaml-duplicate-key",
                            f"key '{key}' appears twice in this mapping, on line {first} and "
                            f"line {mark.line}",
                            "remove one of them: YAML would silently keep only the last",
                            json_path((*top.parts, key)),
                        )
                    )
                top.key_lines[key] = mark.line
                top.key = key
                top.key_mark = mark
                doc.key_positions[(*top.parts, key)] = mark
                continue

            parts = _child_parts(stack)
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    raise _fail(doc, mark, "yaml-syntax", f"alias *{event.anchor} names no anchor")
                value, size = anchors[event.anchor]
            elif isinstance(event, yaml.ScalarEvent):
                try:
                    value = _scalar(event)
                except _TooLong:
                    raise _fail(
                        doc,
                        mark,
                        "yaml-unsupported",
                        f"a number of {len(event.value)} digits is too long",
                        "numbers in a playbook are short: did a paste go wrong?",
                    ) from None
                except ValueError:
                    raise _fail(
                        doc,
                        mark,
                        "yaml-unsupported",
                        f"the tag {event.tag} is not allowed in a playbook",
                        "remove the tag: playbooks hold only text, numbers, true/false, lists "
                        "and mappings",
                    ) from None
                size = 1
                if event.anchor:
                    anchors[event.anchor] = (value, 1)
            else:
                tag = event.tag
                if tag not in (None, "!", f"{_CORE}map", f"{_CORE}seq"):
                    raise _fail(
                        doc,
                        mark,
                        "yaml-unsupported",
                        f"the tag {tag} is not allowed in a playbook",
                        "remove the tag: playbooks hold only text, numbers, true/false, lists "
                        "and mappings",
                    )
                if len(stack) >= MAX_DEPTH:
                    raise _too_deep(doc, mark)
                container: dict[str, Any] | list[Any] = (
                    {} if isinstance(event, yaml.MappingStartEvent) else []
                )
                doc.positions[parts] = mark
                stack.append(_Frame(container, parts, mark, event.anchor))
                continue

            if not stack:
                doc.data = value
                doc.positions[()] = mark
                continue
            _attach(doc, stack[-1], value, size, parts, mark)
            total += size
            if total > MAX_NODES or stack[0].size > MAX_NODES:
                raise _fail(
                    doc,
                    mark,
                    "yaml-unsupported",
                    f"the document expands to more than {MAX_NODES} values",
                    "aliases (*name) that repeat large parts multiply its size; write it out",
                )
    except yaml.YAMLError as error:
        problem_mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        mark = Mark(problem_mark.line + 1, problem_mark.column + 1) if problem_mark else Mark(1, 1)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        message = f"{problem} ({context})" if context else str(problem)
        if "nesting depth" in message:  # PyYAML ≥ 6.0.3 stops deep nesting while scanning
            raise _too_deep(doc, mark) from None
        lines = text.splitlines()
        row = lines[mark.line - 1] if 0 < mark.line <= len(lines) else ""
        char = row[mark.col - 1 : mark.col]
        raise _fail(doc, mark, "yaml-syntax", message, _syntax_hint(message, char)) from None
    if documents == 0 or (doc.data is None and () not in doc.positions):
        doc.positions.setdefault((), Mark(1, 1))


def _too_deep(doc: Document, mark: Mark) -> _Stop:
    """Nesting deeper than ``MAX_DEPTH``, whichever of us or the parser notices first."""
    return _fail(
        doc,
        mark,
        "yaml-unsupported",
        f"nested more than {MAX_DEPTH} levels deep",
        "a playbook this deep is almost certainly a mistake; flatten it",
    )


def _child_parts(stack: list[_Frame]) -> PathParts:
    if not stack:
        return ()
    top = stack[-1]
    if isinstance(top.container, dict):
        assert top.key is not None
        return (*top.parts, top.key)
    return (*top.parts, len(top.container))


def _attach(
    doc: Document, top: _Frame, value: Any, size: int, parts: PathParts, mark: Mark
) -> None:
    doc.positions.setdefault(parts, mark)
    top.size += size
    if top.size > MAX_NODES:
        raise _fail(
            doc,
            mark,
            "yaml-unsupported",
            f"the document expands to more than {MAX_NODES} values",
            "aliases (*name) that repeat large parts multiply its size; write it out",
        )
    if isinstance(top.container, dict):
        assert top.key is not None
        top.container[top.key] = value
        top.key = None
    else:
        top.container.append(value)


def _syntax_hint(message: str, char: str) -> str:
    if char == "\t":
        return "indent with spaces, not tabs"
    if "control characters" in message or "special characters" in message:
        return "the file holds control characters; is it a binary file?"
    if re.search(r"\btabs?\b", message):
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in message:
        return "a value containing ': ' must be quoted, or a key is indented wrongly"
    if "could not find expected ':'" in message:
        return "each line of a mapping needs 'key: value'; check the indentation above"
    if "found character" in message and "cannot start any token" in message:
        return "quote the value: some characters (@, `, %) cannot start plain text"
    return "check the indentation and quoting around this line"
