"""Message templates: Markdown files beside the playbooks, one variant per tone, in Jinja's sandbox.

``templates/apology.buddy.md``, ``apology.salesy.md`` and ``apology.direct.md`` are the three tones
of the template ``apology``; a toneless ``apology.md`` serves every tone that has no file of its
own. A template may open with YAML front matter (``subject:`` for email) between ``---`` lines.
"""

from __future__ import annotations

import functools
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateAssertionError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from courtship.catalogue import TONES
from courtship.findings import Finding, Severity
from courtship.yamlload import load_text

FRONT_MATTER_KEYS = ("subject", "preheader")
_GENERIC_GREETING = re.compile(
    r"^\W*(dear\s+(valued\s+)?(customer|client|member|friend|sir|madam|user)"
    r"|(hi|hello|hey)\s+there|honey|baby|dollface|sweetie|hey\s+you)\b",
    re.IGNORECASE,
)


@functools.cache
def environment() -> SandboxedEnvironment:
    """The one Jinja environment: sandboxed, autoescape off (text channels), strict about
    unknown names; a known field without a value (``offer.gift`` of a discount) renders empty."""
    from jinja2 import StrictUndefined

    from courtship.plugins import PluginError, installed

    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,
    )
    try:
        filters = installed().template_filters()
    except PluginError:
        filters = {}  # the command that loads plugins reports the error itself
    for name, spec in filters.items():
        env.filters[name] = spec.function
    return env


@dataclass
class TemplateFile:
    """One template file, split and compiled; ``findings`` says what is wrong with it."""

    path: Path
    display: str
    front_matter: dict[str, Any] = field(default_factory=dict)
    body: str = ""
    body_line: int = 1
    variables: dict[str, int] = field(default_factory=dict)  # name → first line it is used on
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.is_error for f in self.findings)

    @property
    def sources(self) -> dict[str, str]:
        """Every text the template renders: the body and each front-matter field."""
        parts = {key: str(value) for key, value in self.front_matter.items()}
        parts["body"] = self.body
        return parts


def _split(text: str) -> tuple[str | None, str, int]:
    """(front matter or None, body, line the body starts on)."""
    if not text.startswith("---"):
        return None, text, 1
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return None, text, 1
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :]), index + 2
    return "\n".join(lines[1:]), "", len(lines) + 1


def _finding(
    tpl: TemplateFile,
    line: int,
    rule: str,
    message: str,
    hint: str = "",
    severity: Severity = Severity.ERROR,
) -> None:
    tpl.findings.append(Finding(tpl.display, line, 1, severity, rule, message, hint))


def _used_names(ast: nodes.Template) -> dict[str, int]:
    """Names the template reads from its context, each with the first line it appears on."""
    undeclared = meta.find_undeclared_variables(ast)
    lines: dict[str, int] = {}
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name in undeclared and node.name not in lines:
            lines[node.name] = node.lineno
    return lines


def load_template(path: Path, display: str) -> TemplateFile:
    tpl = TemplateFile(path, display)
    if outside_its_folder(path):
        _finding(
            tpl,
            1,
            "template-syntax",
            f"cannot read template: it is a link to {path.resolve()}, outside the playbooks folder",
            "copy the template into the templates folder instead of linking to it",
        )
        return tpl
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a named pipe or a device would hang
            _finding(
                tpl,
                1,
                "template-syntax",
                "cannot read template: not a regular file (a named pipe, a socket or a device)",
                "keep only template files in the templates folder",
            )
            return tpl
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        _finding(tpl, 1, "template-syntax", f"cannot read template: {error}", "save it as UTF-8")
        return tpl
    front, tpl.body, tpl.body_line = _split(text)
    sources: list[tuple[str, str, int]] = []
    if front is not None:
        doc = load_text(front, display)
        for item in doc.findings:  # front matter starts on line 2 of the file
            tpl.findings.append(
                Finding(
                    display,
                    item.line + 1,
                    item.col,
                    item.severity,
                    "template-syntax",
                    f"front matter: {item.message}",
                    item.hint,
                )
            )
        if doc.data is not None and not isinstance(doc.data, dict):
            _finding(
                tpl,
                2,
                "template-syntax",
                "front matter must be key: value lines",
                "for example subject: Happy birthday, {{ first_name }}!",
            )
        elif isinstance(doc.data, dict):
            for key, value in doc.data.items():
                line = doc.locate((key,), key=True).line + 1
                if key not in FRONT_MATTER_KEYS:
                    from courtship.schema import did_you_mean

                    _finding(
                        tpl,
                        line,
                        "template-syntax",
                        f"'{key}' is not a front-matter key",
                        did_you_mean(key, FRONT_MATTER_KEYS)
                        or f"valid keys are {', '.join(FRONT_MATTER_KEYS)}",
                    )
                    continue
                tpl.front_matter[key] = value
                sources.append((key, str(value), doc.locate((key,)).line + 1))
    sources.append(("body", tpl.body, tpl.body_line))
    for name, source, first_line in sources:
        try:
            ast = environment().parse(source)
        except TemplateSyntaxError as error:
            line = first_line + (error.lineno or 1) - 1
            _finding(
                tpl,
                line,
                "template-syntax",
                f"{name}: {(error.message or '').rstrip('.')}",
                "check the {{ }} and {% %} pairs around this line",
            )
            continue
        except RecursionError:
            _finding(
                tpl,
                first_line,
                "template-syntax",
                f"{name}: nested too deeply to read",
                "simplify the expression: brackets nested hundreds deep are a mistake",
            )
            continue
        try:
            used = _used_names(ast)
        except TemplateAssertionError as error:  # an unknown filter or test
            _finding(
                tpl,
                first_line + (error.lineno or 1) - 1,
                "template-syntax",
                f"{name}: {(error.message or '').rstrip('.')}",
                "use a Jinja filter, or one a plugin adds (see `courtship plugins`)",
            )
            continue
        for variable, line in used.items():
            tpl.variables.setdefault(variable, first_line + line - 1)
    return tpl


def impersonal_findings(tpl: TemplateFile) -> list[Finding]:
    """The seed's "Honey, Baby, Dollface": a customer message must call them by name."""
    out = []
    first_words = tpl.body.lstrip()
    if _GENERIC_GREETING.match(first_words):
        greeting = first_words.splitlines()[0][:40]
        out.append(
            Finding(
                tpl.display,
                tpl.body_line + tpl.body[: tpl.body.find(first_words[:1])].count("\n"),
                1,
                Severity.WARNING,
                "template-impersonal",
                f"the message opens with a generic greeting: '{greeting}'",
                "call them by name: Hi {{ first_name }},",
            )
        )
    if "first_name" not in tpl.variables:
        out.append(
            Finding(
                tpl.display,
                tpl.body_line,
                1,
                Severity.WARNING,
                "template-impersonal",
                "the message never uses the customer's name (first_name)",
                "nobody likes to be everyone's 'Honey': start with Hi {{ first_name }},",
            )
        )
    return out


def variants(folder: Path, name: str) -> dict[str, Path]:
    """The files of template ``name``: tone → path, with key ``""`` for a toneless file."""
    found: dict[str, Path] = {}
    if _is_file(folder / f"{name}.md"):
        found[""] = folder / f"{name}.md"
    for tone in TONES:
        candidate = folder / f"{name}.{tone}.md"
        if _is_file(candidate):
            found[tone] = candidate
    return found


def _is_file(path: Path) -> bool:
    """A file; a name no file can have (too long, a NUL in it) is none."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def template_names(folder: Path) -> set[str]:
    """Every template name in a folder (``apology`` for ``apology.buddy.md``)."""
    if not folder.is_dir():
        return set()
    names = set()
    for file in folder.glob("*.md"):
        stem = file.name[: -len(".md")]
        base, _, tone = stem.rpartition(".")
        names.add(base if base and tone in TONES else stem)
    return names


@dataclass(frozen=True)
class Compiled:
    """A template file compiled once for rendering: its body and subject as Jinja templates."""

    file: TemplateFile
    body: Template
    subject: Template | None

    def render(self, context: dict[str, Any]) -> tuple[str, str]:
        """(subject, text) for one person."""
        subject = self.subject.render(context) if self.subject is not None else ""
        return subject, self.body.render(context).strip()


def outside_its_folder(path: Path) -> bool:
    """A template that resolves outside the playbooks folder it serves (``templates/``'s
    parent), as a link to ``/proc/self/environ`` would: never read."""
    folder = path.parent.parent.resolve()
    return not path.resolve().is_relative_to(folder)


def compiled(path: Path) -> Compiled:
    """The compiled template at ``path``, cached until the file changes. A template outside
    its playbooks folder raises ``ValueError`` (its message is blocked with the reason)."""
    if outside_its_folder(path):
        raise ValueError(f"{path} is a link outside the playbooks folder; it is never read")
    return _compiled(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _compiled(path: Path, mtime_ns: int) -> Compiled:
    tpl = load_template(path, str(path))
    env = environment()
    subject = tpl.front_matter.get("subject")
    return Compiled(
        tpl, env.from_string(tpl.body), env.from_string(str(subject)) if subject else None
    )
