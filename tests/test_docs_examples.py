"""The docs tell the truth: every YAML example in README.md and docs/ is checked the way
Courtship would read it, and every ``courtship`` command they show exists, with its options.

- A playbook, or a part of one (a trigger, an audience, a respond list, limits, an offer, a value
  of the format reference), is written into a copy of the bundled library (replacing the bundled
  playbook of the same id), completed into a minimal playbook where it is a part, and must
  validate clean. In docs/rules.md, an example under "Wrong" must instead be reported by the
  rule of its section, and a finding shown right after it must be the one reported. The
  examples of lint rules (``courtship lint``) are checked by tests/test_lint_docs.py instead.
- A project file (``courtship.yaml``) must load: its schema and the no-secrets rule.
- A GitHub workflow and a pre-commit configuration name hooks and commands that exist.

Each example is one test, named ``FILE:LINE`` of its first line in the docs.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.core
import typer.main
import yaml

from courtship.cli import app
from courtship.findings import LINT_RULES
from courtship.project import ProjectError, load_project
from courtship.validate import display_path, validate_paths

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PLAYBOOK_SCHEMA = json.loads((ROOT / "schemas" / "playbook.schema.json").read_text())
PROJECT_SCHEMA = json.loads((ROOT / "schemas" / "project.schema.json").read_text())
PLAYBOOK_KEYS = set(PLAYBOOK_SCHEMA["properties"])
PROJECT_KEYS = set(PROJECT_SCHEMA["properties"])
#: What completes a part of a playbook into one: every required key the part does not give.
MINIMAL = {
    "id": "id: docs-example",
    "title": "title: An example from the docs",
    "stage": "stage: active",
    "category": "category: marketing",
    "trigger": "trigger: {event: order}",
    "respond": "respond: [{tag: docs-example}]",
}
assert set(MINIMAL) == set(PLAYBOOK_SCHEMA["required"])
SEND = "respond:\n  - send:\n      channel: preferred\n      template: birthday\n"
#: Where an example of each definition of the format reference (a section of
#: docs/reference/playbook.md) goes in a playbook; ``{}`` stands for the example.
PLACES = {
    "playbook_id": "depends_on:\n  - {}",
    "duration": "limits:\n  once_every: {}",
    "offset": "trigger:\n  anniversary: birthday\n  offset: {}",
    "time_of_day": "trigger:\n  anniversary: birthday\n  at: {}",
    "fact_name": "audience:\n  fact: {}\n  exists: true",
    "channel": "respond:\n  - send:\n      channel: {}\n      template: birthday",
    "template_name": "respond:\n  - send:\n      channel: preferred\n      template: {}",
    "value": "audience:\n  fact: days_since_last_order\n  gt: {}",
    "fact_ref": "audience:\n  fact: days_since_last_order\n  gt: {}",
    "condition": "audience: {}",
    "event_filter": "trigger:\n  event: order\n  where: {}",
    "event_name": "trigger:\n  event: {}",
    "trigger": "trigger: {}",
    "offer": SEND + "      offer: {}",
    "send": "respond:\n  - send: {}",
    "set": "respond:\n  - set: {}",
    "notify": "respond:\n  - notify: {}",
    "step": "respond:\n  - {}",
    "limits": "limits: {}",
}
assert set(PLACES) == set(PLAYBOOK_SCHEMA["$defs"])
#: Parts of a send shown alone (docs/rules.md: yaml-unsupported), placed inside a send.
SEND_KEYS = {"offer"}
#: ``courtship COMMAND`` shown in the docs that this installation cannot run, and why.
NOT_OURS = {"loyalty-report": "the command an example plugin adds (register_commands.md)"}
FINDING = re.compile(
    r"^(?P<path>\S+?):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning) "
    r"(?P<rule>[a-z-]+)(\[[^\]]*\])? (?P<message>.*?)(; (?P<hint>.*))?$"
)


@dataclass(frozen=True)
class Block:
    """A fenced block of a doc: its language, text, the line its text starts on, the heading
    it is under, and in docs/rules.md whether it shows a wrong or a right example."""

    doc: Path
    line: int
    lang: str
    text: str
    section: str
    label: str  # "wrong", "right" or ""

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def file_comment(self) -> str | None:
        """``# playbooks/NAME.yaml`` on the first line: the example is that file."""
        match = re.match(r"# playbooks/([\w-]+\.ya?ml)\s*$", self.text.split("\n", 1)[0])
        return match.group(1) if match else None


def blocks(doc: Path) -> Iterator[Block]:
    lines = doc.read_text(encoding="utf-8").split("\n")
    section, label, index = "", "", 0
    while index < len(lines):
        line = lines[index]
        fence = re.match(r"^(`{3,}|~{3,})\s*([\w-]*)", line)
        if fence is None:
            if line.startswith("#"):
                section, label = line.lstrip("#").strip(), ""
            elif re.match(r"(Wrong|Right)\b", line):
                label = line.split()[0].strip(":").lower()
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        text = "\n".join(lines[index + 1 : end])
        yield Block(doc, index + 2, fence.group(2) or "text", text, section, label)
        index = end + 1


ALL_BLOCKS = [block for doc in DOCS for block in blocks(doc)]


def top_keys(text: str) -> set[str]:
    return set(re.findall(r"^([A-Za-z_][\w-]*):", text, flags=re.MULTILINE))


# ── examples of playbooks, grouped where several files make one example ──────


@dataclass
class Example:
    blocks: list[Block]
    expected_rule: str | None  # a Wrong example: the rule that must report it
    shown: list[str]  # findings the doc shows for it

    @property
    def where(self) -> str:
        return self.blocks[0].where


def _is_lint_example(block: Block) -> bool:
    """An example of a lint rule: tests/test_lint_docs.py runs ``courtship lint`` on it."""
    return block.doc == ROOT / "docs" / "rules.md" and block.section in LINT_RULES


def _is_playbook_part(block: Block) -> bool:
    if block.lang not in ("yaml", "yml") or _is_lint_example(block):
        return False
    if block.doc.name == "playbook.md" and block.section in PLACES:
        return True
    keys = top_keys(block.text)
    if not keys:  # only comments: the editor line a playbook starts with
        return block.text.lstrip().startswith("#")
    return keys <= PLAYBOOK_KEYS or keys <= SEND_KEYS


def _examples() -> list[Example]:
    out: list[Example] = []
    for index, block in enumerate(ALL_BLOCKS):
        if not _is_playbook_part(block):
            continue
        rules_doc = block.doc == ROOT / "docs" / "rules.md"
        expected = block.section if rules_doc and block.label == "wrong" else None
        shown: list[str] = []
        after = ALL_BLOCKS[index + 1] if index + 1 < len(ALL_BLOCKS) else None
        if expected and after and after.doc == block.doc and after.lang == "text":
            shown = [line for line in after.text.split("\n") if FINDING.match(line)]
        previous = out[-1] if out else None
        if (
            block.file_comment
            and previous is not None
            and previous.blocks[-1].file_comment
            and previous.blocks[-1].doc == block.doc
            and previous.blocks[-1].section == block.section
            and previous.blocks[-1].label == block.label
            and ALL_BLOCKS[index - 1] is previous.blocks[-1]
            and not _labelled_between(previous.blocks[-1], block)
        ):
            previous.blocks.append(block)  # two files of one example (a cycle, a duplicate id)
            continue
        out.append(Example([block], expected, shown))
    return out


def _labelled_between(first: Block, second: Block) -> bool:
    lines = first.doc.read_text(encoding="utf-8").split("\n")[first.line : second.line - 2]
    return any(re.match(r"(Wrong|Right)\b", line) for line in lines)


def _placed(block: Block) -> tuple[str, int]:
    """The block as (part of) a playbook file, and the file line its first line lands on."""
    text = block.text
    if block.doc.name == "playbook.md" and block.section in PLACES:
        before, _, after = PLACES[block.section].partition("{}")
        head, _, lead = before.rpartition("\n")
        head = head + "\n" if head else ""
        lines = text.split("\n")
        if len(lines) == 1 and not top_keys(text):  # a scalar or a flow value
            return head + lead + text + after, head.count("\n")
        if lead.rstrip().endswith("-"):  # a list item
            indent = " " * len(lead)
            body = lead + lines[0] + "".join(f"\n{indent}{line}" for line in lines[1:])
            return head + body + after, head.count("\n")
        key = lead.lstrip()
        column = len(lead) - len(key) + (2 if key.startswith("- ") else 0)
        indent = " " * (column + 2)
        body = lead.rstrip() + "".join(f"\n{indent}{line}" for line in lines)
        return head + body + after, head.count("\n") + 1
    if top_keys(text) and top_keys(text) <= SEND_KEYS:
        nested = "\n".join(f"      {line}" for line in text.split("\n"))
        return SEND + nested, SEND.count("\n")
    return text, 0


def _complete(text: str) -> str:
    missing = [line for key, line in MINIMAL.items() if key not in top_keys(text)]
    return text.rstrip("\n") + "\n" + "".join(f"{line}\n" for line in missing)


def _id_of(text: str) -> str | None:
    match = re.search(r"^id:\s*([\w-]+)", text, flags=re.MULTILINE)
    return match.group(1) if match else None


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundled playbooks and templates, as the working folder's playbooks/."""
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "playbooks"


EXAMPLES = _examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_playbook_example(example: Example, library: Path) -> None:
    written: dict[str, tuple[Block, int]] = {}  # display path → (block, line offset)
    names: set[str] = set()
    for block in example.blocks:
        text, offset = _placed(block)
        text = _complete(text)
        pb_id = _id_of(text)
        if pb_id:  # the example replaces the bundled playbook of its id
            for bundled in library.glob("*.yaml"):
                if _id_of(bundled.read_text()) == pb_id and bundled.name not in names:
                    bundled.unlink()
        name = block.file_comment or f"{pb_id or 'docs-example'}.yaml"
        names.add(name)
        file = library / name
        file.write_text(text, encoding="utf-8")
        written[display_path(file)] = (block, offset)
        schema_line = re.search(r"\$schema=(\S+)", block.text)
        if schema_line:
            assert (ROOT / "playbooks" / schema_line.group(1)).is_file(), block.where

    report = validate_paths([library])
    mine = [f for f in report.findings if f.path in written]

    def at_doc(finding_path: str, line: int) -> str:
        block, offset = written[finding_path]
        return f"{block.where.rsplit(':', 1)[0]}:{block.line + max(line - 1 - offset, 0)}"

    told = [f"{at_doc(f.path, f.line)}: {f.rule_id} {f.message}" for f in mine]
    if example.expected_rule is None:
        assert mine == [], "the example does not validate clean:\n" + "\n".join(told)
        return
    rules = {f.rule_id.split("[", 1)[0] for f in mine}
    assert example.expected_rule in rules, (
        f"{example.where}: a Wrong example of {example.expected_rule}, but validation says:\n"
        + ("\n".join(told) or "nothing")
    )
    for shown in example.shown:
        match = FINDING.match(shown)
        assert match is not None
        line, col = int(match["line"]), int(match["col"])
        offset = written[next(iter(written))][1]
        assert any(
            (f.rule_id.split("[", 1)[0], f.line - offset, f.col, f.message)
            == (match["rule"], line, col, match["message"])
            for f in mine
        ), f"{example.where}: the doc shows\n  {shown}\nbut validation says:\n" + "\n".join(told)


def test_every_yaml_example_is_checked() -> None:
    """A YAML block no test above or below reads is a claim nobody checks."""
    checked = {b.where for e in EXAMPLES for b in e.blocks} | {b.where for b in PROJECT_FILES}
    checked |= {b.where for b in WORKFLOWS + PRE_COMMIT}
    checked |= {b.where for b in ALL_BLOCKS if _is_lint_example(b)}
    unchecked = [b.where for b in ALL_BLOCKS if b.lang in ("yaml", "yml")]
    assert [where for where in unchecked if where not in checked] == []


# ── project files ────────────────────────────────────────────────────────────

PROJECT_FILES = [
    b
    for b in ALL_BLOCKS
    if b.lang in ("yaml", "yml")
    and not _is_playbook_part(b)
    and top_keys(b.text)
    and top_keys(b.text) <= PROJECT_KEYS
]


@pytest.mark.parametrize("block", PROJECT_FILES, ids=[b.where for b in PROJECT_FILES])
def test_project_file_example(block: Block, tmp_path: Path) -> None:
    (tmp_path / "courtship.yaml").write_text(block.text + "\n", encoding="utf-8")
    try:
        load_project(tmp_path)
    except ProjectError as error:
        pytest.fail(f"{block.where}: the project file is refused:\n{error}")


# ── CI configuration ─────────────────────────────────────────────────────────

WORKFLOWS = [b for b in ALL_BLOCKS if b.lang == "yaml" and {"on", "jobs"} <= top_keys(b.text)]
PRE_COMMIT = [b for b in ALL_BLOCKS if b.lang == "yaml" and top_keys(b.text) == {"repos"}]


@pytest.mark.parametrize("block", WORKFLOWS, ids=[b.where for b in WORKFLOWS])
def test_workflow_example_runs_real_commands(block: Block) -> None:
    workflow = yaml.safe_load(block.text)
    runs = [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]
    assert any("courtship" in run for run in runs)
    for run in runs:
        assert_commands_exist(run, block.where)


@pytest.mark.parametrize("block", PRE_COMMIT, ids=[b.where for b in PRE_COMMIT])
def test_pre_commit_example_names_our_hook(block: Block) -> None:
    ours = {hook["id"] for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    for repo in yaml.safe_load(block.text)["repos"]:
        for hook in repo["hooks"]:
            assert hook["id"] in ours, f"{block.where}: no hook {hook['id']!r}"
            if "entry" in hook:
                assert_commands_exist(" ".join([hook["entry"], *hook.get("args", [])]), block.where)


# ── commands ─────────────────────────────────────────────────────────────────

CLI = typer.main.get_command(app)
assert isinstance(CLI, typer.core.TyperGroup)


def commands_in(text: str) -> Iterator[tuple[str, list[str]]]:
    """(subcommand, its options) for each ``courtship`` command in a shell text."""
    for line in text.split("\n"):
        # a synopsis's [--format text|json] lists alternatives: not a pipe
        line = re.sub(r"\[[^\]]*\]", lambda group: group[0].replace("|", " "), line)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:  # an unclosed quote: not shell
            continue
        for index, word in enumerate(words):
            if word != "courtship" and not word.endswith("/courtship"):
                continue
            rest = words[index + 1 :]
            if not rest or rest[0].startswith("-"):
                continue
            options = []
            for token in rest[1:]:
                if token in ("&&", "||", "|", ";", ">", ">>", "<"):
                    break
                token = token.strip("[]")
                if token.startswith("-"):
                    options.append(token.split("=", 1)[0])
            yield rest[0], options


def assert_commands_exist(text: str, where: str) -> None:
    for name, options in commands_in(text):
        if name in NOT_OURS:
            continue
        assert name in CLI.commands, f"{where}: there is no command `courtship {name}`"
        known = {opt for param in CLI.commands[name].params for opt in param.opts}
        known |= {"--help", "-h"}
        for option in options:
            assert option in known, f"{where}: `courtship {name}` has no option {option}"


SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("sh", "bash", "shell", "console")]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.where for b in SHELL_BLOCKS])
def test_shell_example_commands_exist(block: Block) -> None:
    assert_commands_exist(block.text, block.where)


def _inline_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").split("\n"), 1):
            for code in re.findall(r"`(courtship [^`]+)`", line):
                found.append((f"{doc.relative_to(ROOT)}:{number}", code.replace("\\|", "|")))
    return found


INLINE = _inline_commands()


@pytest.mark.parametrize(("where", "code"), INLINE, ids=[f"{w} {c}" for w, c in INLINE])
def test_inline_command_exists(where: str, code: str) -> None:
    assert_commands_exist(code, where)


def test_the_readme_table_lists_every_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `courtship ([a-z-]+)", readme, flags=re.MULTILINE))
    assert listed == set(CLI.commands)
