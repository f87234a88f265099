"""The project file, ``courtship.yaml``: where things are, and the guardrails."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from courtship.catalogue import FactSpec
from courtship.catalogue.attributes import attribute_facts, attribute_findings
from courtship.findings import Finding
from courtship.learn import Learning
from courtship.playbook import parse_duration, share, too_long
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
    #: Where ``state:`` is written (``courtship.yaml:4:8``), to place an error about the store.
    state_place: str = PROJECT_FILE
    #: ``state: postgresql://…``: a store on PostgreSQL (``state`` is None then)
    state_url: str | None = None
    #: ``state_env: VARIABLE``: the variable that holds the store's PostgreSQL URL, a secret
    state_env: str | None = None
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
    #: ``delivery.workers``: how many messages a channel sends at once, unless
    #: ``channels.<name>.workers`` says
    workers: int = 1
    #: the seed list of ``courtship preview --send-to seeds``: people of the team who receive
    #: test sends (name, email, phone, instagram_id)
    seeds: list[dict[str, str]] = field(default_factory=list)
    #: ``unsubscribe:``: base_url, secret_env, key_id of the signed one-click links
    unsubscribe: dict[str, Any] = field(default_factory=dict)
    #: ``serve:``: what ``courtship serve`` needs to check providers' callbacks
    serve: dict[str, Any] = field(default_factory=dict)
    #: your own customer attributes, as facts (``attributes:``)
    attributes: dict[str, FactSpec] = field(default_factory=dict)
    #: how learned facts are fitted (``learning:``)
    learning: Learning = field(default_factory=Learning)
    #: the share of the base that gets no marketing at all (``control_group: 5%``)
    control_group: float = 0.0
    #: what ``channel: preferred`` means when the customer file names none
    #: (``learning.preferred_channel``): ``file`` (nothing more), ``learned`` (``best_channel``)
    preferred_channel: str = "file"
    #: the horizon H of ``churn_risk`` and ``courtship model``, in days
    #: (``learning.churn_horizon``)
    churn_horizon_days: int = 90


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
        learning = doc.data.get("learning")
        horizon = learning.get("churn_horizon") if isinstance(learning, dict) else None
        if isinstance(horizon, str) and re.fullmatch(r"[0-9]+[dw]", horizon):
            days = parse_duration(horizon).days
            if days < 7 or days > 3660:
                findings.append(
                    doc.finding(
                        ("learning", "churn_horizon"),
                        "bad-duration",
                        f"'{horizon}' is no horizon to judge churn by (learning.churn_horizon)",
                        "write between 7d and 3660d, such as 90d or 12w",
                    )
                )
        findings.extend(_state_findings(doc))
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

    state_mark = doc.positions.get(("state_env",) if "state_env" in data else ("state",))
    state_setting = data.get("state")
    state_url = (
        state_setting
        if isinstance(state_setting, str) and _STATE_URL.match(state_setting)
        else None
    )
    state_env = data.get("state_env")
    quiet = data.get("quiet_hours", {"start": "21:00", "end": "08:00"})
    caps = data.get("caps", {})
    delivery = data.get("delivery", {})
    return Project(
        root=root,
        playbooks=path("playbooks", "playbooks") or root / "playbooks",
        customers=path("customers"),
        events=path("events"),
        state=None if state_url or state_env else path("state", ".courtship/state.sqlite"),
        state_place=f"{doc.path}:{state_mark.line}:{state_mark.col}" if state_mark else doc.path,
        state_url=state_url,
        state_env=state_env,
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
        workers=delivery.get("workers", 1),
        seeds=[dict(seed) for seed in data.get("seeds", [])],
        unsubscribe=dict(data.get("unsubscribe", {})),
        serve=dict(data.get("serve", {})),
        attributes=attribute_facts(data.get("attributes")),
        learning=Learning(**data.get("learning", {}).get("bgnbd", {})),
        preferred_channel=data.get("learning", {}).get("preferred_channel", "file"),
        churn_horizon_days=parse_duration(
            data.get("learning", {}).get("churn_horizon", "90d")
        ).days,
        control_group=share(data.get("control_group")),
    )


#: ``state:`` as a PostgreSQL URL (``postgresql://``, ``postgres://``, ``postgresql+psycopg://``).
_STATE_URL = re.compile(r"^postgres(ql)?(\+psycopg)?://", re.IGNORECASE)


def _state_findings(doc: Document) -> list[Finding]:
    """``state:`` is a file or a PostgreSQL URL, and ``state_env`` is instead of it."""
    state = doc.data.get("state")
    if "state" in doc.data and "state_env" in doc.data:
        return [
            doc.finding(
                ("state_env",),
                "schema[state_env]",
                "give state or state_env, not both",
                "keep state_env (the variable that holds the PostgreSQL URL) and remove state",
            )
        ]
    if isinstance(state, str) and "://" in state and not _STATE_URL.match(state):
        return [
            doc.finding(
                ("state",),
                "schema[state]",
                f"'{state.split('://')[0]}://' is no state store Courtship knows",
                "write a SQLite file path (.courtship/state.sqlite) or a PostgreSQL URL "
                "(postgresql://courtship@db.internal/shop)",
            )
        ]
    return []


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


#: Words that make a setting's name look like a secret: ``password``, ``api_key``, ``auth``, …
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "credential",
        "credentials",
        "creds",
        "apikey",
        "auth",
        "authorization",
        "authentication",
        "bearer",
        "cookie",
        "privatekey",
        "signature",
    }
)
#: Two-word names that are secrets together (``api_key``, ``private_key``, ``access_key``, …).
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"), ("client", "secret")}
)
#: A setting whose name ends so holds where to find something, not the thing itself.
_NOT_A_SECRET = frozenset({"url", "uri", "endpoint", "file", "path", "header", "id", "sid"})
#: Names that are no secret even under one (``auth: {username: …, password_env: …}``).
_PLAIN = frozenset({"user", "username", "login", "name", "type", "method", "scheme", "email"})
_ENV_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: ``scheme://user:password@host`` (or ``https://token@host``): what lies before the ``@``.
_URL_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#@\s]*)@", re.ASCII)
_HINT = "put it in an environment variable and name it with `{key}_env: {variable}`"
_URL_HINT = (
    "take the credentials out of the URL: put the whole URL in an environment variable and "
    "name it with `{key}_env: {variable}`, or give them as the plugin's own *_env settings"
)

_STATE_URL_HINT = (
    "take the password out of the file: export the whole URL in a variable "
    "(COURTSHIP_STATE_URL=postgresql://user:password@host/db) and write "
    "`state_env: COURTSHIP_STATE_URL` instead of state"
)


def _words(name: str) -> list[str]:
    """``authToken`` → ["auth", "token"]; ``API-Key`` → ["api", "key"]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [word for word in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if word]


def looks_like_a_secret(name: str) -> bool:
    """True for a setting name such as ``password``, ``smtp_pass``, ``authToken``, ``api-key``."""
    words = _words(name)
    if not words or words[-1] in _NOT_A_SECRET or words[-1] == "env":
        return False
    pairs = set(itertools.pairwise(words))
    return bool(_SECRET_WORDS.intersection(words) or _SECRET_PAIRS & pairs)


def credentials_in_url(text: str) -> bool:
    """True when the URL ``text`` carries a password (``user:pass@``), or any user part at all
    over HTTP(S), where one is always a credential (``https://TOKEN@api.example.org``)."""
    match = _URL_USERINFO.match(text.strip())
    if not match or not match.group(2):
        return False
    return ":" in match.group(2) or match.group(1).lower() in {"http", "https"}


def _variable(parts: tuple[Any, ...]) -> str:
    """A variable name for a setting: ``channels.email.auth.password`` → EMAIL_AUTH_PASSWORD."""
    skip = 1 if parts and parts[0] in ("channels", "sources") else 0
    words = [str(part) for part in parts[skip:] if isinstance(part, str)] or ["MY", "SECRET"]
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(words).upper()).strip("_") or "MY_SECRET"


def _secrets_in_file(doc: Document) -> list[Finding]:
    """Secrets come from the environment. An error at its line, never quoting the value, for:
    a URL with credentials in it (anywhere in the file); and, at any depth of ``channels`` and
    ``sources``, a setting whose name looks like a secret (or anything under one, such as
    ``auth: {password: …}``) and an ``*_env`` setting that cannot name a variable."""
    out: list[Finding] = []

    def found(parts: tuple[Any, ...], message: str, hint: str, *, key: bool = False) -> None:
        out.append(doc.finding(parts, f"schema[{parts[0]}]", message, hint, key=key))

    def walk(node: Any, parts: tuple[Any, ...], free: bool, under_secret: bool) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            here = (*parts, key)
            name = ".".join(str(part) for part in here[2:]) or str(key)
            if isinstance(value, str) and credentials_in_url(value):
                found(
                    here,
                    f"'{name}' is a URL with credentials in it (user:password@)",
                    _URL_HINT.format(key=key, variable=_variable(here)),
                )
            elif isinstance(value, dict | list):
                secret = under_secret or (free and looks_like_a_secret(str(key)))
                walk(value, here, free, secret)
            elif not free or value is None or isinstance(value, bool):
                continue
            elif isinstance(key, str) and key.lower().endswith("_env"):
                if not (isinstance(value, str) and _ENV_VARIABLE.match(value)):
                    found(
                        here,
                        f"'{name}' must name an environment variable (letters, digits and _), "
                        "not hold the secret itself",
                        f"export the secret as a variable and write {key}: "
                        f"{_variable((*here[:-1], key[:-4]))}",
                    )
            elif (under_secret and str(key).lower() not in _PLAIN) or looks_like_a_secret(str(key)):
                label = key if isinstance(key, str) else parts[-1]
                found(
                    here,
                    f"'{name}' would put a secret in the project file",
                    _HINT.format(key=label, variable=_variable(here)),
                    key=isinstance(key, str),
                )

    for section, value in doc.data.items():
        free = section in ("channels", "sources")
        if isinstance(value, dict | list):
            walk(value, (section,), free, False)
        elif isinstance(value, str) and credentials_in_url(value):
            found(
                (section,),
                f"'{section}' is a URL with credentials in it (user:password@)",
                _STATE_URL_HINT
                if section == "state"
                else _URL_HINT.format(key=section, variable=section.upper()),
            )
    return out
