"""Rules about what the messages say: read from the templates each playbook sends."""

from __future__ import annotations

import re
from collections.abc import Iterator

from jinja2 import TemplateSyntaxError, nodes

from courtship.findings import Finding, Severity
from courtship.lint.registry import Library, all_rules, place, rule, sends
from courtship.playbook import Playbook
from courtship.segments import count_segments
from courtship.templates import _GENERIC_GREETING, TemplateFile, environment

#: A generic form of address, anywhere in a message.
GENERIC_ADDRESS = re.compile(
    r"\b(dear\s+(valued\s+)?(customers?|clients?|members?|friends?|sir|madam|users?|shoppers?"
    r"|subscribers?)|valued\s+(customers?|clients?|members?|shoppers?)"
    r"|(hi|hello|hey)\s+there|honey|sweetie|dollface)\b",
    re.IGNORECASE,
)
#: The name with a generic stand-in: ``first_name | default("there")``, ``first_name or "friend"``.
NAME_FALLBACK = re.compile(r"(?<![\w.])first_name\s*(\|\s*(default|d)\s*\(|or\s+['\"])")
#: A message that apologises.
APOLOGY = re.compile(
    r"\b((we|i)('re| are|'m| am) (so |truly |really |very )?sorry|we apologi[sz]e|apologies"
    r"|we owe you an apology|please forgive)\b",
    re.IGNORECASE,
)
#: A sales pitch in the text itself.
PROMOTION = re.compile(
    r"\b(\d+ ?% off|discount|promo(tion)? code|coupon|voucher|sale ends|buy now|shop now)\b",
    re.IGNORECASE,
)
#: The most SMS segments a text may take when its send step does not say ``max_segments``.
SMS_SEGMENT_BUDGET = 3


def _at(playbook: Playbook, parts: tuple[str | int, ...]) -> str:
    mark = playbook.document.locate(parts)
    return f"{playbook.path}:{mark.line}"


def _customer_sends(lib: Library) -> Iterator[tuple[Playbook, int, dict, dict[str, TemplateFile]]]:
    """Every send to a customer or a friend, with its template's files by tone."""
    for pb in lib.enabled:
        for index, send in sends(pb):
            name = send.get("template")
            if isinstance(name, str):
                yield pb, index, send, lib.template_variants(pb, name)


def _file_lines(tpl: TemplateFile) -> list[str]:
    try:
        return tpl.path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return []


@rule("generic-greeting")
def generic_greeting(lib: Library) -> Iterator[Finding]:
    """A generic form of address anywhere in a message — the subject, the preheader, a line
    of the body — or the name with a generic stand-in. (The opening of the body is
    ``template-impersonal``'s, in ``validate``.)"""
    seen: set[str] = set()
    for pb, index, _send, files in _customer_sends(lib):
        for tpl in files.values():
            if tpl.display in seen:
                continue
            seen.add(tpl.display)
            opening = None
            first_words = tpl.body.lstrip()
            if first_words and _GENERIC_GREETING.match(first_words):
                opening = tpl.body_line + tpl.body[: tpl.body.find(first_words[:1])].count("\n")
            for number, text in enumerate(_file_lines(tpl), 1):
                if number == opening:
                    continue
                fallback = NAME_FALLBACK.search(text)
                # blank out {{ }} and {% %} in place, so a match keeps its column
                blanked = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", lambda m: " " * len(m[0]), text)
                found = GENERIC_ADDRESS.search(blanked)
                if fallback:
                    message = "the name has a generic stand-in for customers without one"
                    hint = (
                        "print {{ first_name }} alone: a customer without a name gets no "
                        "message at all (the no-name guard)"
                    )
                elif found:
                    message = f"the message calls them '{found.group(0)}'"
                    hint = "call them by name: {{ first_name }}"
                else:
                    continue
                yield Finding(
                    tpl.display,
                    number,
                    (fallback or found).start() + 1,
                    all_rules()["generic-greeting"].severity,
                    "generic-greeting",
                    f"{message} (sent by {_at(pb, (*index, 'send'))})",
                    hint,
                )


@rule("marketing-without-unsubscribe", Severity.ERROR)
def marketing_without_unsubscribe(lib: Library) -> Iterator[Finding]:
    """A recurring marketing letter (a schedule) whose text offers no way out."""
    seen: set[str] = set()
    for pb, index, send, files in _customer_sends(lib):
        if pb.category != "marketing" or "schedule" not in pb.trigger:
            continue
        if send.get("to", "customer") != "customer":
            continue
        if {send.get("channel"), *(send.get("fallback") or [])} == {"email"}:
            continue  # email only: the channel adds the footer (validate's unsubscribe rule)
        for tpl in files.values():
            if "unsubscribe_url" in tpl.variables or tpl.display in seen or not tpl.ok:
                continue
            seen.add(tpl.display)
            yield Finding(
                tpl.display,
                tpl.body_line,
                1,
                all_rules()["marketing-without-unsubscribe"].severity,
                "marketing-without-unsubscribe",
                "a scheduled marketing letter without a way to unsubscribe "
                f"(sent by {_at(pb, (*index, 'send'))})",
                "end it with a line such as: Unsubscribe: {{ unsubscribe_url }}",
            )


def always_printed(source: str) -> str:
    """The text a template prints whatever the customer: its fixed text outside any
    ``{% if %}`` or ``{% for %}``, as rendered (stripped)."""
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError:
        return ""
    parts: list[str] = []
    for node in ast.body:
        if isinstance(node, nodes.Output):
            parts.extend(
                child.data for child in node.nodes if isinstance(child, nodes.TemplateData)
            )
    return "".join(parts).strip()


@rule("sms-over-segments")
def sms_over_segments(lib: Library) -> Iterator[Finding]:
    """A text that can go as SMS and takes more segments than allowed before any fact is
    printed into it."""
    for pb, index, send, files in _customer_sends(lib):
        if send.get("channel") != "sms" and "sms" not in (send.get("fallback") or []):
            continue
        limit = send.get("max_segments")
        limit = limit if isinstance(limit, int) else SMS_SEGMENT_BUDGET
        for _tone, tpl in sorted(files.items()):
            segments = count_segments(always_printed(tpl.body))
            if segments.count > limit:
                yield place(
                    pb,
                    (*index, "send", "template"),
                    "sms-over-segments",
                    f"{tpl.display} takes at least {segments.count} SMS segments "
                    f"({segments.units} {segments.encoding} characters before any fact is "
                    f"printed), more than {limit}",
                    "shorten the text, or give the SMS its own template "
                    + ("" if "max_segments" in send else f"(or set max_segments above {limit})"),
                )


@rule("apology-with-promotion")
def apology_with_promotion(lib: Library) -> Iterator[Finding]:
    """A message that says sorry and sells in the same breath."""
    for pb, index, send, files in _customer_sends(lib):
        for _tone, tpl in sorted(files.items()):
            apology = APOLOGY.search(tpl.body)
            if apology is None:
                continue
            line = tpl.body_line + tpl.body[: apology.start()].count("\n")
            pitch = PROMOTION.search(tpl.body)
            if "offer" in send:
                why = "the send attaches an offer"
            elif "offer" in tpl.variables:
                why = "the template prints an offer"
            elif pitch:
                why = f"the template says '{pitch.group(0)}'"
            else:
                continue
            yield place(
                pb,
                (*index, "send"),
                "apology-with-promotion",
                f"{tpl.display}:{line} apologises, and {why}",
                "apologise first and alone; make the gesture in a later step "
                "(a wait, then a send with the offer: see win-back.yaml)",
            )
            break


@rule("tone-copies")
def tone_copies(lib: Library) -> Iterator[Finding]:
    """Tone variants of one template that say exactly the same thing."""
    seen: set[str] = set()
    for _pb, _index, _send, files in _customer_sends(lib):
        toned = sorted((tone, tpl) for tone, tpl in files.items() if tone)
        texts: dict[str, TemplateFile] = {}
        for tone, tpl in toned:
            text = " ".join("\n".join(_file_lines(tpl)).split())
            if text in texts and tpl.display not in seen:
                seen.add(tpl.display)
                other = texts[text]
                yield Finding(
                    tpl.display,
                    1,
                    1,
                    all_rules()["tone-copies"].severity,
                    "tone-copies",
                    f"the {tone} variant is the same text as {other.display}",
                    "write each tone in its own voice, or keep one toneless NAME.md for all",
                )
            texts.setdefault(text, tpl)
