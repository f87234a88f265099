"""Findings: what validation says about a playbook, each placed at a file, line and column."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
