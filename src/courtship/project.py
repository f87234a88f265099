"""The project file, ``courtship.yaml``: where things are, and the guardrails."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from courtship.catalogue import FactSpec
from courtship.catalogue.attributes import attribute_facts, attribute_findings
from courtship.findings import Finding
from courtship.learn import Learning
from courtship.playbook import parse_duration, too_long
from courtship.schema import PROJECT_SCHEMA_FILE, did_you_mean, schema_findings
from courtship.validate import display_path
from courtship.yamlload import Document, load_file

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
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: Path | None = None
    max_attempts: int = 6
    backoff: dt.timedelta = dt.timedelta(minutes=1)
    max_backoff: dt.timedelta = dt.timedelta(hours=6)
    #: your own customer attributes, as facts (``attributes:``)
    attributes: dict[str, FactSpec] = field(default_factory=dict)
    #: how learned facts are fitted (``learning:``)
    learning: Learning = field(default_factory=Learning)


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
    if isinstance(doc.data, dict):
        findings.extend(_secrets_in_file(doc))
        findings.extend(attribute_findings(doc))
        delivery = doc.data.get("delivery")
        lengths = [("lookback",)] + [
            ("delivery", key) for key in ("backoff", "max_backoff") if isinstance(delivery, dict)
        ]
        for parts in lengths:
            value = doc.data.get(parts[0]) if len(parts) == 1 else delivery.get(parts[1])  # type: ignore[union-attr]
            if isinstance(value, str) and too_long(value):
                findings.append(
                    doc.finding(
                        parts,
                        "bad-duration",
                        f"'{value}' is longer than a calendar can hold ({parts[-1]})",
                        "write at most a hundred years: 36525d or 5217w",
                    )
                )
        zone = doc.data.get("timezone")
        if isinstance(zone, str) and zone not in zoneinfo.available_timezones():
            findings.append(
                doc.finding(
                    ("timezone",),
                    "schema[timezone]",
                    f"'{zone}' is not an IANA time zone",
                    did_you_mean(zone, sorted(zoneinfo.available_timezones()))
                    or "write a zone such as Europe/London or America/New_York",
                )
            )
    if findings:
        raise ProjectError(findings)
    data: dict[str, Any] = doc.data or {}

    def path(key: str, default: str | None = None) -> Path | None:
        value = data.get(key, default)
        return root / value if value else None

    quiet = data.get("quiet_hours", {"start": "21:00", "end": "08:00"})
    caps = data.get("caps", {})
    delivery = data.get("delivery", {})
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
        channels={name: dict(value) for name, value in data.get("channels", {}).items()},
        sources={role: dict(value) for role, value in data.get("sources", {}).items()},
        outbox=root / delivery.get("outbox", ".courtship/outbox"),
        max_attempts=delivery.get("max_attempts", 6),
        backoff=parse_duration(delivery.get("backoff", "1m")),
        max_backoff=parse_duration(delivery.get("max_backoff", "6h")),
        attributes=attribute_facts(data.get("attributes")),
        learning=Learning(**data.get("learning", {}).get("bgnbd", {})),
    )


def check_project(root: Path) -> tuple[str | None, list[Finding], Path]:
    """What ``courtship validate`` says of the project in ``root``: the project file's name (None
    without one), its findings, and the playbooks folder it names (``playbooks/`` if it can't)."""
    file = root / PROJECT_FILE
    if not file.is_file():
        return None, [], root / "playbooks"
    try:
        project = load_project(root)
    except ProjectError as error:
        data = load_file(file, display_path(file)).data
        named = data.get("playbooks") if isinstance(data, dict) else None
        folder = root / named if isinstance(named, str) and named else root / "playbooks"
        return display_path(file), error.findings, folder
    return display_path(file), [], project.playbooks


_SECRET = re.compile(r"(password|passwd|token|secret|api_key|apikey|private_key)$", re.IGNORECASE)


def _secrets_in_file(doc: Document) -> list[Finding]:
    """Secrets come from the environment: a setting that looks like one is an error."""
    out = []
    for section in ("channels", "sources"):
        entries = doc.data.get(section)
        if not isinstance(entries, dict):  # the schema says what it should be
            continue
        for name, settings in entries.items():
            if not isinstance(settings, dict):
                continue
            for key in settings:
                if _SECRET.search(str(key)):
                    out.append(
                        doc.finding(
                            (section, name, key),
                            f"schema[{section}]",
                            f"'{key}' would put a secret in the project file",
                            f"name an environment variable instead: {key}_env: "
                            f"{name.upper()}_{str(key).upper()}",
                            key=True,
                        )
                    )
    return out
