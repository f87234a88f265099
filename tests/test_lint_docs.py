"""Each lint rule's section of docs/rules.md holds a wrong and a right example, and they tell the
truth: ``courtship lint`` on the bundled library with the wrong example's files written into it
reports exactly that rule, and with the right example's files reports nothing.

An example is the fenced blocks under a ``Wrong``/``Right`` line, each with ``title="PATH"``: the
file it is, relative to the project folder. A playbook replaces the bundled playbook of its id.
A ``text`` block right after a wrong example shows findings that must be reported word for word.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship.cli import app
from courtship.findings import LINT_RULES

ROOT = Path(__file__).resolve().parents[1]
RULES_DOC = ROOT / "docs" / "rules.md"
runner = CliRunner()
FENCE = re.compile(r'^```(\w*)(?:\s+title="([^"]+)")?\s*$')


@dataclass
class Example:
    rule: str
    label: str  # "wrong" or "right"
    line: int
    files: dict[str, str] = field(default_factory=dict)
    shown: list[str] = field(default_factory=list)


def lint_examples() -> list[Example]:
    lines = RULES_DOC.read_text(encoding="utf-8").split("\n")
    out: list[Example] = []
    section, label, index = "", "", 0
    current: Example | None = None
    while index < len(lines):
        line = lines[index]
        fence = FENCE.match(line)
        if fence is None:
            if line.startswith("#"):
                section, label, current = line.lstrip("#").strip(), "", None
            elif re.match(r"(Wrong|Right)\b", line):
                label, current = line.split()[0].strip(":").lower(), None
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        text = "\n".join(lines[index + 1 : end]) + "\n"
        if section in LINT_RULES and label:
            lang, title = fence.group(1), fence.group(2)
            if title:
                if current is None:
                    current = Example(section, label, index + 1)
                    out.append(current)
                current.files[title] = text
            elif lang == "text" and current is not None and label == "wrong":
                current.shown.extend(t for t in text.split("\n") if t.strip())
            else:
                raise AssertionError(f"docs/rules.md:{index + 1}: a lint example without a title")
        index = end + 1
    return out


EXAMPLES = lint_examples()


def test_every_lint_rule_has_a_wrong_and_a_right_example() -> None:
    have = {(e.rule, e.label) for e in EXAMPLES}
    wanted = [(rule, label) for rule in LINT_RULES for label in ("wrong", "right")]
    missing = [pair for pair in wanted if pair not in have]
    assert missing == []


def _id_of(text: str) -> str | None:
    match = re.search(r"^id:\s*([\w-]+)", text, flags=re.MULTILINE)
    return match.group(1) if match else None


def lint_with(files: dict[str, str], tmp_path: Path) -> list[dict]:
    """``courtship lint --format json`` in a copy of the bundled library with ``files`` written."""
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    for name, text in files.items():
        pb_id = _id_of(text) if name.endswith(".yaml") else None
        if pb_id:
            for bundled in (tmp_path / "playbooks").glob("*.yaml"):
                if _id_of(bundled.read_text()) == pb_id:
                    bundled.unlink()
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["lint", "--format", "json", "--project", str(tmp_path)])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)["findings"]


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=[f"{e.rule}-{e.label}-rules.md:{e.line}" for e in EXAMPLES]
)
def test_lint_example(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    findings = lint_with(example.files, tmp_path)
    told = "\n".join(f"{f['path']}:{f['line']}: {f['rule']} {f['message']}" for f in findings)
    if example.label == "right":
        assert findings == [], f"the right example of {example.rule} is not clean:\n{told}"
        return
    assert {f["rule"] for f in findings} == {example.rule}, told
    for shown in example.shown:
        assert any(
            f"{f['path']}:{f['line']}:{f['col']}: {f['severity']} {f['rule']} {f['message']}"
            + (f"; {f['hint']}" if f["hint"] else "")
            == shown
            for f in findings
        ), f"the doc shows\n  {shown}\nbut lint says:\n{told}"
