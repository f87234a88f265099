"""``courtship lint``: the rules about the library as a whole, what its messages say, how often
it writes, and what its conditions allow — beyond validation. One registry
(:mod:`courtship.lint.registry`) holds the built-in rules; plugins add theirs through
``register_lint_rules``; comments ignore a finding (:mod:`courtship.lint.ignores`).
"""

from __future__ import annotations

from pathlib import Path

from courtship.findings import LINT_RULES, RULES, Finding
from courtship.lint import ignores
from courtship.lint.registry import ALIASES, DEFAULT_WEEKLY_BUDGET, Library, all_rules
from courtship.lint.solver import Domains
from courtship.plugins import LintRuleSpec
from courtship.validate import Report, display_path

__all__ = ["Library", "all_rules", "lint_report"]


def weekly_budget(root: Path) -> tuple[int, str]:
    """The budget over-messaging compares with: ``caps.per_customer_per_week``, else 3."""
    from courtship.project import PROJECT_FILE, ProjectError, load_project

    try:
        project = load_project(root)
    except ProjectError:  # validate reports the project file; lint keeps the default
        return DEFAULT_WEEKLY_BUDGET, "the default budget"
    if project.per_customer_per_week is None:
        return DEFAULT_WEEKLY_BUDGET, "the default budget; set caps.per_customer_per_week"
    where = display_path(root / PROJECT_FILE)
    return project.per_customer_per_week, f"caps.per_customer_per_week in {where}"


def lint_report(
    report: Report, plugin_rules: dict[str, LintRuleSpec], root: Path | None = None
) -> list[Finding]:
    """Every finding of ``courtship lint``: validation's, the built-in rules', the plugins',
    less those an ignore comment silences, plus a warning for each comment naming no rule."""
    valid = report.valid_playbooks
    budget, budget_from = weekly_budget(root or Path.cwd())
    from courtship.plugins import PluginError, installed

    try:
        domains = Domains.of(installed().catalogue())
    except PluginError:  # the command reports the plugins' error itself
        domains = Domains()
    library = Library(valid, budget, budget_from, domains)
    rules = all_rules()
    found: list[Finding] = list(report.findings)
    if valid:
        for lint_rule in rules.values():
            found.extend(lint_rule.check(library))
        for spec in plugin_rules.values():
            found.extend(spec.check(valid))
    playbook_files = sorted({pb.path for pb in report.playbooks})
    template_files = sorted(
        {
            display_path(file)
            for path in playbook_files
            for file in (Path(path).parent / "templates").glob("*.md")
        }
    )
    kept = ignores.apply(
        found,
        ignorable=set(rules) | set(plugin_rules),
        library_rules={r.id for r in rules.values() if r.scope == "library"},
        library_files=playbook_files,
    )
    known = set(RULES) | set(LINT_RULES) | set(plugin_rules) | set(ALIASES)
    kept.extend(ignores.unknown_ids([*playbook_files, *template_files], known))
    return sorted(set(kept))
