"""Ignore comments: ``# courtship: ignore[rule-id]`` on a finding's line or the line above,
``# courtship: ignore-file[rule-id]`` for a whole file (at its top, by convention); in a
template the same words in a Jinja comment, ``{# courtship: ignore[rule-id] #}``.

Several ids go in one comment, separated by commas. A rule about the library as a whole
(``stage-coverage``, ``no-birthday-playbook``, …) is ignored by an ``ignore-file`` comment in any
playbook of the library. Validation errors cannot be ignored: a broken playbook never runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from courtship.findings import Finding, Severity
from courtship.lint.registry import ALIASES

COMMENT = re.compile(r"#\s*courtship:\s*(ignore|ignore-file)\[([^\]]*)\]")
#: The rule that reports an ignore comment naming no rule.
UNKNOWN_RULE = "unknown-ignore"


@dataclass
class Ignores:
    """The ignore comments of one file."""

    by_line: dict[int, set[str]] = field(default_factory=dict)
    whole_file: set[str] = field(default_factory=set)
    named: list[tuple[int, int, str]] = field(default_factory=list)  # line, col, id as written

    def covers(self, rule_id: str, line: int) -> bool:
        return rule_id in self.whole_file or rule_id in self.by_line.get(line, set())


def canonical(rule_id: str) -> str:
    base = rule_id.split("[", 1)[0].strip()
    return ALIASES.get(base, base)


@functools.lru_cache(maxsize=4096)
def read_ignores(path: str) -> Ignores:
    found = Ignores()
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return found
    for number, text in enumerate(lines, 1):
        for match in COMMENT.finditer(text):
            ids: set[str] = set()
            offset = match.start(2)
            for part in match.group(2).split(","):
                name = part.strip()
                if name:
                    col = offset + len(part) - len(part.lstrip()) + 1
                    found.named.append((number, col, name))
                    ids.add(canonical(name))
                offset += len(part) + 1
            if match.group(1) == "ignore-file":
                found.whole_file |= ids
                continue
            found.by_line.setdefault(number, set()).update(ids)
            before = text[: match.start()].strip()
            if before in ("", "{"):  # a comment line of its own: it covers the next line
                found.by_line.setdefault(number + 1, set()).update(ids)
    return found


def apply(
    findings: Iterable[Finding],
    *,
    ignorable: set[str],
    library_rules: set[str],
    library_files: list[str],
) -> list[Finding]:
    """The findings no comment ignores. ``ignorable``: rule ids a comment may silence (lint
    rules); a validation warning may be silenced too, an error never."""
    read_ignores.cache_clear()  # files may have changed since the last lint
    library_wide = set().union(*(read_ignores(path).whole_file for path in library_files))
    kept = []
    for finding in findings:
        rule_id = canonical(finding.rule_id)
        if finding.severity is Severity.ERROR and rule_id not in ignorable:
            kept.append(finding)
        elif rule_id in library_rules and rule_id in library_wide:
            continue
        elif not read_ignores(finding.path).covers(rule_id, finding.line):
            kept.append(finding)
    return kept


def unknown_ids(files: Iterable[str], known: set[str]) -> list[Finding]:
    """A warning for each ignore comment that names no rule."""
    out = []
    for path in files:
        for line, col, name in read_ignores(path).named:
            if canonical(name) not in known:
                from courtship.schema import did_you_mean

                out.append(
                    Finding(
                        path,
                        line,
                        col,
                        Severity.WARNING,
                        UNKNOWN_RULE,
                        f"the ignore comment names no rule: '{name}'",
                        did_you_mean(name, sorted(known)) or "see docs/rules.md for the rule ids",
                    )
                )
    return out
