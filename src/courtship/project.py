"""The project file, ``courtship.yaml``: where things are, and the guardrails."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from courtship.findings import Finding
from courtship.schema import PROJECT_SCHEMA_FILE, schema_findings
from courtship.validate import display_path, parse_duration
from courtship.yamlload import load_file

PROJECT_FILE = "courtship.yaml"
DEFAULT_BRAND = {"name": "our shop", "url": "", "signature": "The team"}


class ProjectError(Exception):
    """The project file is wrong; ``findings`` say where."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("\n".join(str(f) for f in findings))
        self.findings = findings


@dataclass
class Project:
    root: Path
    playbooks: Path
    customers: Path | None = None
    events: Path | None = None
    state: Path | None = None
    timezone: str = "UTC"
    lookback: dt.timedelta = dt.timedelta(hours=24)
    quiet_start: dt.time = dt.time(21, 0)
    quiet_end: dt.time = dt.time(8, 0)
    per_moment: int = 1
    per_customer_per_week: int | None = None
    per_channel: dict[str, int] = field(default_factory=dict)
    brand: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_BRAND))


def load_project(root: Path | None = None) -> Project:
    """Read ``courtship.yaml`` in ``root`` (default: the working folder); defaults without one."""
    root = root or Path.cwd()
    file = root / PROJECT_FILE
    if not file.is_file():
        return Project(root=root, playbooks=root / "playbooks")
    doc = load_file(file, display_path(file))
    findings = [*doc.findings]
    if doc.data is not None:
        findings.extend(schema_findings(doc, PROJECT_SCHEMA_FILE))
    if findings:
        raise ProjectError(findings)
    data: dict[str, Any] = doc.data or {}

    def path(key: str, default: str | None = None) -> Path | None:
        value = data.get(key, default)
        return root / value if value else None

    quiet = data.get("quiet_hours", {"start": "21:00", "end": "08:00"})
    caps = data.get("caps", {})
    return Project(
        root=root,
        playbooks=path("playbooks", "playbooks") or root / "playbooks",
        customers=path("customers"),
        events=path("events"),
        state=path("state", ".courtship/state.sqlite"),
        timezone=data.get("timezone", "UTC"),
        lookback=parse_duration(data.get("lookback", "24h")),
        quiet_start=dt.time.fromisoformat(quiet["start"]),
        quiet_end=dt.time.fromisoformat(quiet["end"]),
        per_moment=caps.get("per_moment", 1),
        per_customer_per_week=caps.get("per_customer_per_week"),
        per_channel=dict(caps.get("per_channel", {})),
        brand=DEFAULT_BRAND | dict(data.get("brand", {})),
    )
