"""`courtship validate` keeps its answer beside the project (.courtship/validate.json) and gives it
again, without importing the validator, until a file it read changes: then it validates again."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The bundled project file and playbooks in a scratch folder, as the working directory."""
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    (tmp_path / "courtship.yaml").write_text("playbooks: playbooks\ntimezone: UTC\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path


def validate(*argv: str) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", *argv])
    return result.exit_code, result.output


def kept(project: Path) -> Path:
    return project / ".courtship" / "validate.json"


def test_the_second_validate_gives_the_same_answer_without_importing_the_validator(project):
    (project / "playbooks" / "birthday-gift.yaml").write_text(
        (project / "playbooks" / "birthday-gift.yaml")
        .read_text()
        .replace("anniversary:", "anniversery:")
    )
    code = (
        "import json, sys\n"
        "sys.argv = ['courtship', 'validate', '--format', 'json']\n"
        "from courtship.cli import main\n"
        "try:\n    main()\nexcept SystemExit as end:\n    code = end.code\n"
        "heavy = ('networkx', 'jsonschema', 'jinja2', 'courtship.validate', 'courtship.graph')\n"
        "print(json.dumps([code, sorted(m for m in heavy if m in sys.modules)]))"
    )

    def run() -> tuple[dict, int, list[str]]:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=project, check=True
        )
        *report, last = done.stdout.strip().splitlines()
        exit_code, imported = json.loads(last)
        return json.loads("\n".join(report)), exit_code, imported

    first, first_code, first_imports = run()
    assert kept(project).is_file()
    again, again_code, again_imports = run()
    assert first_imports  # the first one validated
    assert again_imports == []  # the second read the kept answer
    assert (again, again_code) == (first, first_code)
    assert again_code == 1 and any(f["rule"] == "schema[trigger]" for f in again["findings"])


def test_a_template_changed_since_is_validated_again(project):
    assert validate() == (0, validate()[1])  # clean, then clean from the kept answer
    template = project / "playbooks" / "templates" / "birthday.buddy.md"
    template.write_text(template.read_text() + "\n{{ favourite_colour }}\n")
    code, output = validate()
    assert code == 1
    assert "birthday.buddy.md" in output and "'favourite_colour' is neither a fact" in output


def test_a_playbook_changed_or_added_since_is_validated_again(project):
    assert validate()[0] == 0
    broken = project / "playbooks" / "nested" / "copy.yaml"
    broken.parent.mkdir()
    text = (project / "playbooks" / "birthday-gift.yaml").read_text()
    broken.write_text(text.replace("id: birthday-gift", "id: birthday-copy").replace("at:", "att:"))
    code, output = validate()
    assert code == 1 and "playbooks/nested/copy.yaml" in output


def test_a_project_file_changed_since_is_checked_again(project):
    assert validate()[0] == 0
    (project / "courtship.yaml").write_text("playbooks: playbooks\ntimezone: Mars/Olympus\n")
    code, output = validate()
    assert code == 1 and "courtship.yaml" in output and "'Mars/Olympus'" in output
    (project / "courtship.yaml").write_text("playbooks: playbooks\ntimezone: UTC\n")
    assert validate()[0] == 0


def test_a_damaged_or_foreign_answer_is_ignored(project):
    code, output = validate()
    for damage in ("{not json", json.dumps({"key": "another"}), json.dumps([1, 2])):
        kept(project).write_text(damage)
        assert validate() == (code, output)


def test_a_folder_that_cannot_keep_the_answer_changes_nothing(project):
    (project / ".courtship").write_text("a file where the folder would be")
    first = validate()
    assert first[0] == 0 and validate() == first
    assert (project / ".courtship").read_text() == "a file where the folder would be"


def test_a_folder_without_a_project_file_keeps_nothing(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    monkeypatch.chdir(tmp_path)
    assert validate()[0] == 0
    assert not (tmp_path / ".courtship").exists()


def test_a_linked_folder_is_always_validated_again(project):
    templates = project / "playbooks" / "templates"
    shutil.move(templates, project / "playbooks" / "shared-templates")
    templates.symlink_to(project / "playbooks" / "shared-templates")
    assert validate()[0] == 0
    assert not kept(project).exists()  # what a link to a folder leads to is not in the key


def test_the_key_reads_playbooks_and_templates_as_the_validator_finds_them():
    from courtship import validate, validate_cache

    assert validate_cache.PLAYBOOK_SUFFIXES == validate.PLAYBOOK_SUFFIXES
    assert validate_cache.TEMPLATES == validate.TEMPLATES_FOLDER
