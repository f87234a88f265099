"""Output formats for findings, in one registry: text, json, github, sarif.

Each formatter turns a :class:`~courtship.validate.Report` into the text printed on stdout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from courtship import __version__
from courtship.findings import LINT_RULES, RULES, Finding

if TYPE_CHECKING:
    from courtship.validate import Report

Formatter = Callable[["Report"], str]
FORMATTERS: dict[str, Formatter] = {}

ALL_RULES = RULES | LINT_RULES
DOCS_URL = "https://github.com/courtship-dev/courtship/blob/main/docs/rules.md"


def formatter(name: str) -> Callable[[Formatter], Formatter]:
    def register(function: Formatter) -> Formatter:
        FORMATTERS[name] = function
        return function

    return register


def base_rule(finding: Finding) -> str:
    """``schema[trigger]`` → ``schema``: the rule a finding belongs to."""
    return finding.rule_id.split("[", 1)[0]


@formatter("text")
def text(report: Report) -> str:
    lines = [str(finding) for finding in report.findings]
    errors, warnings = len(report.errors), len(report.warnings)
    files = len(report.files)
    noun = "file" if files == 1 else "files"
    if not report.findings:
        lines.append(f"{files} {noun} checked: all clean.")
    else:
        lines.append(f"{files} {noun} checked: {errors} error(s), {warnings} warning(s).")
    return "\n".join(lines) + "\n"


@formatter("json")
def as_json(report: Report) -> str:
    payload = {
        "files": report.files,
        "summary": {"errors": len(report.errors), "warnings": len(report.warnings)},
        "findings": [
            {
                "path": f.path,
                "line": f.line,
                "col": f.col,
                "severity": str(f.severity),
                "rule": f.rule_id,
                "message": f.message,
                "hint": f.hint,
                "json_path": f.json_path,
            }
            for f in report.findings
        ],
    }
    return json.dumps(payload, indent=2) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


@formatter("github")
def github(report: Report) -> str:
    """GitHub Actions workflow commands: each finding becomes an annotation on the pull request."""
    lines = []
    for f in report.findings:
        level = "error" if f.is_error else "warning"
        props = ",".join(
            [
                f"file={_escape_property(f.path)}",
                f"line={f.line}",
                f"col={f.col}",
                f"title={_escape_property(f.rule_id)}",
            ]
        )
        message = f"{f.message}; {f.hint}" if f.hint else f.message
        lines.append(f"::{level} {props}::{_escape_data(message)}")
    return "\n".join(lines) + ("\n" if lines else "")


#: The base the SARIF log's relative URIs are resolved against (§3.14.14 originalUriBaseIds).
PROJECT_ROOT = "PROJECTROOT"


def _artifact(path: str, root: Path) -> dict[str, str]:
    """A finding's file as a SARIF artifact location: percent-encoded, relative to the project
    root when it lies under it, an absolute ``file:`` URI when it does not."""
    absolute = Path(path).absolute()
    try:
        relative = absolute.relative_to(root)
    except ValueError:
        return {"uri": absolute.as_uri()}
    return {"uri": quote(relative.as_posix()), "uriBaseId": PROJECT_ROOT}


def _fingerprint(finding: Finding, root: Path) -> str:
    """Stable while lines move: the rule, the file, the field and the message, not the line."""
    where = _artifact(finding.path, root)["uri"]
    text = "\0".join((finding.rule_id, where, finding.json_path, finding.message))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _rule(rule: str) -> dict[str, Any]:
    description = ALL_RULES.get(rule, rule)
    return {
        "id": rule,
        "shortDescription": {"text": description},
        "help": {
            "text": f"{description}. See {DOCS_URL}#{rule}",
            "markdown": f"{description}. See [{rule}]({DOCS_URL}#{rule}).",
        },
        "helpUri": f"{DOCS_URL}#{rule}",
    }


@formatter("sarif")
def sarif(report: Report) -> str:
    """SARIF 2.1.0, for GitHub code scanning and other tools.

    Columns count Unicode code points (``columnKind``), as the findings do; URIs are relative to
    the project root (``PROJECTROOT``) and percent-encoded; ``partialFingerprints`` let code
    scanning follow a finding while the lines above it change.
    """
    root = (report.root or Path.cwd()).absolute()
    rules = sorted({base_rule(f) for f in report.findings})
    results = [
        {
            "ruleId": base_rule(f),
            "ruleIndex": rules.index(base_rule(f)),
            "level": "error" if f.is_error else "warning",
            "message": {"text": f"{f.message}; {f.hint}" if f.hint else f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": _artifact(f.path, root),
                        "region": {"startLine": f.line, "startColumn": f.col},
                    }
                }
            ],
            "partialFingerprints": {"courtshipFinding/v1": _fingerprint(f, root)},
            "properties": {"jsonPath": f.json_path, "rule": f.rule_id},
        }
        for f in report.findings
    ]
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "courtship",
                        "version": __version__,
                        "informationUri": DOCS_URL,
                        "rules": [_rule(rule) for rule in rules],
                    }
                },
                "originalUriBaseIds": {PROJECT_ROOT: {"uri": root.as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"
