"""Message templates: Markdown files beside the playbooks, one variant per tone, in Jinja's sandbox.

``templates/apology.buddy.md``, ``apology.salesy.md`` and ``apology.direct.md`` are the three tones
of the template ``apology``; a toneless ``apology.md`` serves every tone that has no file of its
own. A template may open with YAML front matter (``subject:`` for email) between ``---`` lines.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from courtship.catalogue import TONES
from courtship.findings import Finding, Severity
from courtship.yamlload import load_text

if TYPE_CHECKING:  # Jinja is imported by the first template read or rendered, not before
    from jinja2 import Template, TemplateAssertionError, nodes

    from courtship.sandbox import LimitedEnvironment

FRONT_MATTER_KEYS = ("subject", "preheader")
_GENERIC_GREETING = re.compile(
    r"^\W*(dear\s+(valued\s+)?(customer|client|member|friend|sir|madam|user)"
    r"|(hi|hello|hey)\s+there|honey|baby|dollface|sweetie|hey\s+you)\b",
    re.IGNORECASE,
)


@functools.cache
def environment() -> LimitedEnvironment:
    """The one Jinja environment: sandboxed and immutable, under the limits of
    ``courtship.sandbox``, autoescape off (text channels), strict about unknown names; a known
    field without a value (``offer.gift`` of a discount) renders empty."""
    from jinja2 import StrictUndefined

    from courtship.plugins import PluginError, installed
    from courtship.sandbox import LimitedEnvironment

    env = LimitedEnvironment(
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        finalize=lambda value: "" if value is None else value,
    )
    try:
        filters = installed().template_filters()
    except PluginError:
        filters = {}  # the command that loads plugins reports the error itself
    for name, spec in filters.items():
        env.add_filter(name, spec.function)
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
    lines: dict[str, int] = field(default_factory=dict)  # body / front-matter key → first line
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


@functools.lru_cache(maxsize=512)
def _parsed(
    env: LimitedEnvironment, source: str
) -> tuple[nodes.Template, dict[str, int] | TemplateAssertionError]:
    """``source`` parsed in ``env``: its tree, and the names it reads (``_used_names``) or why
    they cannot be told (an unknown filter or test). A command validates each template it
    uses, then compiles it to render it: the text is parsed once a process (what is kept is
    never to be changed). A text that cannot be parsed raises, and nothing is kept."""
    from jinja2 import TemplateAssertionError

    tree = env.parse(source)
    try:
        return tree, _used_names(tree)
    except TemplateAssertionError as error:
        return tree, error


@functools.lru_cache(maxsize=512)
def _template(env: LimitedEnvironment, source: str) -> Template:
    """``source`` compiled in ``env`` from its parsed tree, once a process."""
    return env.from_string(_parsed(env, source)[0])


def _used_names(ast: nodes.Template) -> dict[str, int]:
    """Names the template reads from its context, each with the first line it appears on."""
    from jinja2 import meta, nodes

    undeclared = meta.find_undeclared_variables(ast)
    lines: dict[str, int] = {}
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name in undeclared and node.name not in lines:
            lines[node.name] = node.lineno
    return lines


def load_template(path: Path, display: str) -> TemplateFile:
    """The template file at ``path``, read, split and parsed (``display`` names it)."""
    read = read_template(path, display)
    return read if isinstance(read, TemplateFile) else template_from_bytes(path, display, read)


def read_template(path: Path, display: str) -> bytes | TemplateFile:
    """The bytes of the template file at ``path``, or the template that cannot be read (a link
    outside its folder, not a regular file, a read error) with its finding."""
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
        return path.read_bytes()
    except OSError as error:
        _finding(tpl, 1, "template-syntax", f"cannot read template: {error}", "save it as UTF-8")
        return tpl


def template_from_bytes(path: Path, display: str, raw: bytes) -> TemplateFile:
    """The template file read as ``raw``: split, parsed, its findings made."""
    from jinja2 import TemplateAssertionError, TemplateSyntaxError

    tpl = TemplateFile(path, display)
    try:  # as read_text reads it: universal newlines
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as error:
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
        tpl.lines[name] = first_line
        try:
            used = _parsed(environment(), source)[1]
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
        if isinstance(used, TemplateAssertionError):  # an unknown filter or test
            _finding(
                tpl,
                first_line + (used.lineno or 1) - 1,
                "template-syntax",
                f"{name}: {(used.message or '').rstrip('.')}",
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


def variants(folder: Path, name: str, language: str = "") -> dict[str, Path]:
    """The files of template ``name`` in ``language`` (``""``: the default files, with no
    language in their name): tone → path, with key ``""`` for a toneless file."""
    found: dict[str, Path] = {}
    suffix = f".{language}" if language else ""
    if _is_file(folder / f"{name}{suffix}.md"):
        found[""] = folder / f"{name}{suffix}.md"
    for tone in TONES:
        candidate = folder / f"{name}.{tone}{suffix}.md"
        if _is_file(candidate):
            found[tone] = candidate
    return found


def _is_file(path: Path) -> bool:
    """A file; a name no file can have (too long, a NUL in it) is none."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


#: A language in a template's file name: ``fr``, ``pt-BR``, ``zh-Hant`` (BCP 47's language and
#: an optional region or script).
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


def languages(folder: Path, name: str) -> list[str]:
    """The languages template ``name`` has files in besides the default (``birthday.buddy.fr.md``
    is ``fr``), sorted."""
    found = set()
    for file in folder.glob(f"{name}.*.md"):
        parts = file.name[: -len(".md")].split(".")[1:]
        if parts and parts[0] in TONES:
            parts = parts[1:]
        if len(parts) == 1 and LANGUAGE.match(parts[0]):
            found.add(parts[0])
    return sorted(found)


def choose(by_language: dict[str, dict[str, Path]], language: str | None, tone: str) -> Path | None:
    """The file a customer reads: their language (``fr-CA``), then its base language (``fr``),
    then the default files; in each, their tone's file, then the toneless one."""
    wanted = []
    if language:
        known = {lang.lower(): lang for lang in by_language if lang}
        for candidate in (language, language.split("-", 1)[0]):
            if candidate.lower() in known and known[candidate.lower()] not in wanted:
                wanted.append(known[candidate.lower()])
    wanted.append("")
    for lang in wanted:
        files = by_language.get(lang, {})
        file = files.get(tone) or files.get("")
        if file is not None:
            return file
    return None


def template_names(folder: Path) -> set[str]:
    """Every template name in a folder (``apology`` for ``apology.buddy.md``)."""
    if not folder.is_dir():
        return set()
    names = set()
    for file in folder.glob("*.md"):
        name, *rest = file.name[: -len(".md")].split(".")
        if rest and rest[0] in TONES:
            rest = rest[1:]
        if not rest or (len(rest) == 1 and LANGUAGE.match(rest[0])):
            names.add(name)
        else:
            names.add(file.name[: -len(".md")])
    return names


class TemplateFailure(Exception):
    """A template or dedup key that cannot render (or goes over the limits): where and why."""

    def __init__(self, where: str, line: int, message: str) -> None:
        super().__init__(f"{where}:{line}: {message}")
        self.where, self.line, self.message = where, line, message


def _failure(where: str, first_line: int, error: BaseException) -> TemplateFailure:
    from jinja2 import TemplateError

    from courtship.sandbox import TemplateLimit, error_line

    line = error_line(error)
    message = str(error) if isinstance(error, TemplateLimit) else f"{error}"
    if not isinstance(error, TemplateLimit | TemplateError):
        message = f"{type(error).__name__}: {error}"
    return TemplateFailure(where, first_line + (line or 1) - 1, message.rstrip("."))


@dataclass(frozen=True)
class Compiled:
    """A template file compiled once for rendering: its body and subject as Jinja templates."""

    file: TemplateFile
    body: Template
    subject: Template | None

    def render(self, context: dict[str, Any]) -> tuple[str, str]:
        """(subject, text) for one person, under the limits of ``courtship.sandbox``; a
        template that fails or goes over a limit raises ``TemplateFailure`` at its line."""
        from courtship.sandbox import render_limited

        subject = ""
        if self.subject is not None:
            try:
                subject = render_limited(self.subject, context)
            except Exception as error:
                raise _failure(self.file.display, self.file.lines["subject"], error) from None
        try:
            text = render_limited(self.body, context)
        except Exception as error:
            raise _failure(self.file.display, self.file.body_line, error) from None
        return subject, text.strip()


def outside_its_folder(path: Path) -> bool:
    """A template that resolves outside the playbooks folder it serves (``templates/``'s
    parent), as a link to ``/proc/self/environ`` would: never read."""
    folder = path.parent.parent.resolve()
    return not path.resolve().is_relative_to(folder)


def compiled(path: Path) -> Compiled:
    """The compiled template at ``path``, cached until the file changes. A template outside
    its playbooks folder raises ``ValueError`` (its message is blocked with the reason); one
    that cannot be read or compiled raises ``TemplateFailure`` with its first error."""
    if outside_its_folder(path):
        raise ValueError(f"{path} is a link outside the playbooks folder; it is never read")
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as error:
        raise TemplateFailure(str(path), 1, f"cannot read template: {error}") from None
    made = _compiled(path, mtime)
    if isinstance(made, TemplateFailure):
        raise made
    return made


@functools.lru_cache(maxsize=1024)
def _compiled(path: Path, mtime_ns: int) -> Compiled | TemplateFailure:
    tpl = load_template(path, str(path))
    errors = [f for f in tpl.findings if f.is_error]
    if errors:
        return TemplateFailure(tpl.display, errors[0].line, errors[0].message)
    return compile_file(tpl)


def compile_file(tpl: TemplateFile) -> Compiled | TemplateFailure:
    """A template file without findings, compiled (or why it cannot be)."""
    env = environment()
    subject = tpl.front_matter.get("subject")
    try:
        return Compiled(
            tpl,
            _template(env, tpl.body),
            _template(env, str(subject)) if subject else None,
        )
    except Exception as error:  # nested beyond what compiling can follow, say
        return _failure(tpl.display, tpl.body_line, error)


def render_failure(tpl: TemplateFile, fact_types: Mapping[str, str]) -> TemplateFailure | None:
    """Why a template file without findings fails rendered once with sample values (compiling
    it, going over a limit, an error), or None."""
    made = compile_file(tpl)
    if isinstance(made, TemplateFailure):
        return made
    try:
        made.render(sample_context(tpl, fact_types))
    except TemplateFailure as failure:
        return failure
    return None


#: The fields of ``offer`` in every template's context (None where they do not apply).
OFFER_FIELDS = (
    "percent_off",
    "amount_off",
    "gift",
    "free_shipping",
    "code",
    "friend_code",
    "expires_on",
)
#: An offer with every field, for a template rendered once with sample values.
SAMPLE_OFFER = {
    "percent_off": 10,
    "amount_off": 5,
    "gift": "a sample gift",
    "free_shipping": True,
    "code": "GIFT-SAMPLE",
    "friend_code": "GIFT-FRIEND",
    "expires_on": "2026-12-31",
}
#: The longest dedup key: it is kept with every message sent.
MAX_DEDUP_KEY = 500
_SAMPLE_BY_TYPE: dict[str, Any] = {
    "number": 1.0,
    "integer": 1,
    "string": "Sam",
    "enum": "Sam",
    "boolean": True,
    "date": dt.date(2026, 1, 1),
    "datetime": dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC),
    "list": [],
}


#: The brand of a project validate does not know (a project's brand has these three fields).
SAMPLE_BRAND = {"name": "Sample", "url": "https://example.org", "signature": "Sam at Sample"}


def sample_context(
    tpl: TemplateFile,
    fact_types: Mapping[str, str],
    *,
    brand: Mapping[str, Any] | None = None,
    playbook: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A context a message could have: sample values of the facts the template reads, an offer
    with every field, a friend and a referrer with names. A name that is no fact is left out
    (``validate`` reports it; rendering fails on it)."""
    from courtship.sandbox import frozen

    context: dict[str, Any] = {}
    for name in tpl.variables:
        if name in fact_types:
            context[name] = _SAMPLE_BY_TYPE.get(fact_types[name], "Sam")
    person = {"first_name": "Sam", "last_name": "Lee"}
    context.update(
        offer=SAMPLE_OFFER,
        friend=person,
        referrer=person,
        brand=SAMPLE_BRAND if brand is None else brand,
        playbook=playbook or {"id": "sample", "title": "Sample"},
        now=now or dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC),
        unsubscribe_url="https://example.org/unsubscribe?c=c-1",
    )
    return {key: frozen(value) for key, value in context.items()}


def dedup_key(pb: Any, now: dt.datetime) -> str:
    """The dedup key of playbook ``pb`` at ``now``, rendered under the limits; one that fails
    raises ``TemplateFailure`` at the playbook's ``dedup_key`` line."""
    from courtship.sandbox import frozen, render_limited

    line = pb.document.locate(("dedup_key",)).line
    try:
        key = render_limited(
            _dedup_template(pb.dedup_key),
            {"now": now, "playbook": frozen({"id": pb.id, "title": pb.title})},
        )
    except Exception as error:
        raise _failure(pb.document.path, line, error) from None
    if len(key) > MAX_DEDUP_KEY:
        raise TemplateFailure(
            pb.document.path, line, f"the dedup key is longer than {MAX_DEDUP_KEY} characters"
        )
    return key


@functools.lru_cache(maxsize=256)
def _dedup_template(source: str) -> Template:
    return environment().from_string(source)
