"""Findings: what validation says about a playbook, each placed at a file, line and column."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from courtship.playbook import Playbook


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


class ExitCode(enum.IntEnum):
    """Exit codes of every command, as CI reads them."""

    CLEAN = 0
    FINDINGS = 1
    USAGE = 2
    INTERNAL = 3


@dataclass(frozen=True, order=True)
class Finding:
    """One problem in one place.

    Ordered by place first (path, line, column), so a sorted report reads top to bottom.
    ``line`` and ``col`` are 1-based; ``json_path`` names the field (``$.trigger.at``).
    """

    path: str
    line: int
    col: int
    severity: Severity
    rule_id: str
    message: str
    hint: str = ""
    json_path: str = "$"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}:{self.col}: {self.severity} {self.rule_id} {self.message}"
        return f"{text}; {self.hint}" if self.hint else text


def json_path(parts: tuple[str | int, ...]) -> str:
    """``('respond', 0, 'send')`` → ``$.respond[0].send``."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][\w-]*", part):
            text += f".{part}"
        else:  # a key with dots, brackets or spaces: quoted, so the path stays unambiguous
            text += f"[{json.dumps(part)}]"
    return text


#: Every rule validation applies: id → what it catches. ``docs/rules.md`` has a section for each.
RULES: dict[str, str] = {
    "yaml-syntax": "the file is not valid YAML (or not UTF-8 text)",
    "yaml-duplicate-key": "a key appears twice in one mapping",
    "yaml-unsupported": "YAML features a playbook does not use: tags, several documents, bombs",
    "schema": "the playbook does not match the format: unknown keys, wrong types, missing keys",
    "bad-duration": "a duration that is not a whole number and a unit, or is zero",
    "bad-time": "a time of day that is not HH:MM on a 24-hour clock",
    "bad-timezone": "a time zone that is not an IANA name",
    "duplicate-id": "two playbooks share an id",
    "unknown-dependency": "depends_on or suppresses names no playbook",
    "dependency-cycle": "playbooks that depend on each other in a circle",
    "unknown-fact": "a condition reads a fact nobody provides",
    "condition-shape": "a condition that is not exactly one test or combination",
    "fact-type-mismatch": "a fact compared with a value of another kind",
    "trigger-shape": "a trigger that is not exactly one kind, or keys that do not go with it",
    "step-shape": "a response step that is not exactly one action",
    "unknown-channel": "a channel no plugin provides",
    "unknown-template": "a template with no file",
    "template-tone-missing": "a send template without all three tones",
    "template-language-tone-missing": "a language's templates without a tone the default has",
    "template-syntax": "a template that does not compile",
    "template-unknown-variable": "a template that reads something that is no fact",
    "template-render": "a template or dedup key that fails, or goes over the limits, rendered once",
    "template-impersonal": "a customer message that never uses their name",
    "template-unsubscribe-missing": "a marketing email that never shows its unsubscribe link",
    "experiment-shape": "a holdout that cannot hold out, or two variants of one name",
}

#: Rules of ``courtship lint`` beyond validation: id → what it catches. Their severities and
#: checks are registered in ``courtship.lint.registry``; ``docs/rules.md`` has a section each.
LINT_RULES: dict[str, str] = {
    "stage-coverage": "a stage of the customer journey that no playbook serves",
    "no-birthday-playbook": "no playbook writes to customers on their birthday",
    "unanswered-inbound-uncovered": "no playbook answers a customer waiting for an answer",
    "no-win-back": "no marketing playbook writes to churned customers",
    "no-referral-playbook": "no playbook thanks a customer who refers a friend",
    "generic-greeting": "a message that calls the customer something generic, not their name",
    "marketing-without-unsubscribe": "a scheduled marketing letter without an unsubscribe link",
    "sms-over-segments": "a text that takes more SMS segments than allowed",
    "apology-with-promotion": "a message that apologises and sells at once",
    "tone-copies": "tone variants of a template that are the same text",
    "over-messaging": "a playbook that can send one customer more messages a week than the budget",
    "playbook-conflict": "two playbooks that can speak to one customer at one moment, undecided",
    "never-true": "a condition no customer can ever meet",
    "unreachable-step": "a step no customer can ever reach",
    "unknown-ignore": "an ignore comment naming no rule",
}


@dataclass
class Report:
    """The outcome of validating some playbooks (``courtship.validate``; here, where a kept answer
    is read without importing the validator)."""

    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    playbooks: list[Playbook] = field(default_factory=list)
    root: Path | None = None  # the project folder, that SARIF's URIs are relative to

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.is_error]

    def exit_code(self, *, strict: bool = False) -> ExitCode:
        if self.errors or (strict and self.findings):
            return ExitCode.FINDINGS
        return ExitCode.CLEAN

    @property
    def valid_playbooks(self) -> list[Playbook]:
        """Playbooks without errors: the ones a run may use (the others are disabled)."""
        broken = {f.path for f in self.errors}
        return [pb for pb in self.playbooks if pb.path not in broken]
