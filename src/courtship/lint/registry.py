"""The one registry of ``courtship lint``'s rules: id, severity, what it catches, its check.

A rule's check receives a :class:`Library` (the valid playbooks, their templates, the weekly
budget) and yields findings. ``scope`` says where an ignore comment for it goes: ``"place"``
rules are ignored at their line, ``"library"`` rules (something the library as a whole lacks)
by an ``ignore-file`` comment in any playbook of the library.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from courtship.findings import LINT_RULES, Finding, Severity
from courtship.lint.solver import Domains
from courtship.playbook import Playbook
from courtship.templates import TemplateFile, load_template, variants
from courtship.validate import display_path

#: The weekly budget of messages per customer when ``caps.per_customer_per_week`` is not set.
DEFAULT_WEEKLY_BUDGET = 3

#: Old rule ids that still work in ignore comments, and the rule they now mean.
ALIASES = {"stage-uncovered": "stage-coverage"}


@dataclass
class Library:
    """What a lint check reads: the valid playbooks and the project's weekly budget."""

    playbooks: list[Playbook]
    weekly_budget: int = DEFAULT_WEEKLY_BUDGET
    budget_from: str = "the default budget"
    domains: Domains = field(default_factory=Domains)
    _templates: dict[Path, TemplateFile] = field(default_factory=dict)

    @property
    def enabled(self) -> list[Playbook]:
        return [pb for pb in self.playbooks if pb.enabled]

    def template_variants(self, playbook: Playbook, name: str) -> dict[str, TemplateFile]:
        """Tone (``""`` for a toneless file) → the loaded template file, for one playbook."""
        folder = Path(playbook.path).parent / "templates"
        out = {}
        for tone, file in variants(folder, name).items():
            if file not in self._templates:
                self._templates[file] = load_template(file, display_path(file))
            out[tone] = self._templates[file]
        return out

    @property
    def first(self) -> Playbook:
        """Where a finding about the whole library goes: its first playbook file."""
        return min(self.playbooks, key=lambda pb: pb.path)


Check = Callable[[Library], Iterable[Finding]]


@dataclass(frozen=True)
class LintRule:
    id: str
    severity: Severity
    check: Check
    scope: str = "place"  # or "library"

    @property
    def description(self) -> str:
        return LINT_RULES[self.id]


REGISTRY: dict[str, LintRule] = {}


def rule(
    rule_id: str, severity: Severity = Severity.WARNING, scope: str = "place"
) -> Callable[[Check], Check]:
    """Register a check under ``rule_id`` (which ``findings.LINT_RULES`` describes)."""
    if rule_id not in LINT_RULES:
        raise ValueError(f"lint rule {rule_id!r} has no description in LINT_RULES")

    def register(check: Check) -> Check:
        if rule_id in REGISTRY:
            raise ValueError(f"lint rule {rule_id!r} is registered twice")
        REGISTRY[rule_id] = LintRule(rule_id, severity, check, scope)
        return check

    return register


@functools.cache
def all_rules() -> dict[str, LintRule]:
    """Every built-in rule, once its modules are imported."""
    from courtship.lint import conflicts, coverage, frequency, messages  # noqa: F401

    return dict(REGISTRY)


def library_finding(lib: Library, rule_id: str, message: str, hint: str) -> Finding:
    """A finding about the library as a whole, at the top of its first playbook file."""
    return Finding(lib.first.path, 1, 1, all_rules()[rule_id].severity, rule_id, message, hint)


def place(
    playbook: Playbook,
    parts: tuple[str | int, ...],
    rule_id: str,
    message: str,
    hint: str = "",
    *,
    key: bool = False,
) -> Finding:
    """A finding at a part of a playbook (``("respond", 0, "send")``; its key with ``key``)."""
    return playbook.document.finding(
        parts, rule_id, message, hint, key=key, severity=all_rules()[rule_id].severity
    )


def where(playbook: Playbook, *parts: str | int, key: bool = False) -> str:
    """``path:line`` of a part of a playbook, for a message that names it."""
    return f"{playbook.path}:{playbook.document.locate(parts, key=key).line}"


def sends(playbook: Playbook) -> Iterator[tuple[tuple[str | int, ...], dict]]:
    """(where the step is, send) of each send step, those in splits and branches too."""
    for parts, step in playbook.steps():
        if isinstance(step.get("send"), dict):
            yield parts, step["send"]
