"""`courtship validate` keeps its answer beside the project (.courtship/validate.json) and gives it
again, without importing the validator, until a file it read changes: then it validates again."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship import hookimpl
from courtship.catalogue import FactSpec
from courtship.cli import app
from courtship.plugins import installed
from courtship.templates import environment

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


# ── after an edit: each file is given again from what is kept of it, unless it changed ────────


def fresh(project: Path) -> tuple[int, str]:
    """What a validation with nothing kept says of the project as it is now."""
    kept(project).unlink(missing_ok=True)
    return validate()


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))


@pytest.fixture
def reads(monkeypatch):
    """The playbooks and templates a validation reads (parses) again, by file name."""
    from courtship import validate as validation

    read: list[str] = []
    load_bytes, template_from_bytes = validation.load_bytes, validation.template_from_bytes

    def reading_playbook(raw, display):
        read.append(Path(display).name)
        return load_bytes(raw, display)

    def reading_template(path, display, raw):
        read.append(Path(display).name)
        return template_from_bytes(path, display, raw)

    monkeypatch.setattr(validation, "load_bytes", reading_playbook)
    monkeypatch.setattr(validation, "template_from_bytes", reading_template)
    return read


def test_an_edited_playbook_is_read_again_and_its_new_error_found_at_its_line(project, reads):
    assert validate()[0] == 0
    assert len(reads) == 15 + 50  # nothing kept yet: every playbook and template read
    reads.clear()
    edit(project / "playbooks" / "welcome.yaml", "priority: 85", "priority: high")
    code, output = validate()
    assert reads == ["welcome.yaml"]  # only the file that changed
    assert code == 1
    assert "playbooks/welcome.yaml:12:11: error schema[priority] priority must be" in output
    assert output.count(": error") == 1
    assert (code, output) == fresh(project)


def test_a_playbook_checked_against_what_changed_elsewhere_is_checked_again(project, reads):
    """lapsed-frequent-customer sets lapse_reached_out_at; lapsed-check-in and win-back read it."""
    assert validate()[0] == 0
    reads.clear()
    setter = project / "playbooks" / "lapsed-frequent-customer.yaml"
    edit(setter, "fact: lapse_reached_out_at, value: now", "fact: lapse_reached_out, value: now")
    code, output = validate()
    assert code == 1
    assert (
        "playbooks/lapsed-check-in.yaml:19:14: error unknown-fact 'lapse_reached_out_at' is not "
        "a known fact; did you mean 'lapse_reached_out'?" in output
    )
    assert "playbooks/win-back.yaml:20" in output and "playbooks/win-back.yaml:21" in output
    assert (code, output) == fresh(project)
    # the fact set again, as a true/false: within no longer applies to it
    edit(setter, "fact: lapse_reached_out, value: now", "fact: lapse_reached_out_at, value: true")
    code, output = validate()
    assert "lapsed-check-in.yaml:19:36: error fact-type-mismatch 'within' does not apply" in output
    assert (code, output) == fresh(project)


def test_a_depends_on_to_a_removed_playbook_is_found_though_the_other_files_are_kept(
    project, reads
):
    assert validate()[0] == 0
    reads.clear()
    (project / "playbooks" / "lapsed-frequent-customer.yaml").unlink()
    code, output = validate()
    # no file changed, but the fact it set is gone from the catalogue: each playbook is checked
    # again (read again, not against the schema), and no template read again
    assert sorted(reads) == sorted(f.name for f in (project / "playbooks").glob("*.yaml"))
    assert code == 1
    assert (
        "playbooks/lapsed-check-in.yaml:13:14: error unknown-dependency depends_on names "
        "'lapsed-frequent-customer', which is no playbook" in output
    )
    assert "'lapse_reached_out_at' is not a known fact" in output  # nobody sets it now
    assert (code, output) == fresh(project)


def test_a_new_cycle_is_found_though_the_other_files_are_kept(project, reads):
    assert validate()[0] == 0
    reads.clear()
    edit(
        project / "playbooks" / "lapsed-frequent-customer.yaml",
        "stage: ",
        "depends_on: [lapsed-check-in]\nstage: ",
    )
    code, output = validate()
    assert reads == ["lapsed-frequent-customer.yaml"]
    assert code == 1
    assert (
        "error dependency-cycle dependency cycle: lapsed-check-in --> lapsed-frequent-customer "
        "--> lapsed-check-in" in output
    )
    assert (code, output) == fresh(project)


def test_a_duplicate_id_is_found_though_the_first_file_is_kept(project):
    assert validate()[0] == 0
    edit(project / "playbooks" / "win-back.yaml", "id: win-back", "id: welcome")
    code, output = validate()
    assert "error duplicate-id id 'welcome' is already used by playbooks/welcome.yaml:4" in output
    assert (code, output) == fresh(project)


def test_a_removed_template_is_missed_by_the_playbook_that_sends_it(project, reads):
    assert validate()[0] == 0
    reads.clear()
    for file in (project / "playbooks" / "templates").glob("what-changed.*.md"):
        file.unlink()
    code, output = validate()
    assert reads == ["lapsed-check-in.yaml"]  # checked again: its templates folder changed
    assert code == 1
    assert "lapsed-check-in.yaml:25:17: error unknown-template no template 'what-changed'" in output
    assert (code, output) == fresh(project)


def test_an_edited_template_is_read_again_alone(project, reads):
    assert validate()[0] == 0
    reads.clear()
    template = project / "playbooks" / "templates" / "we-miss-you.direct.md"
    template.write_text(template.read_text() + "\n{{ favourite_colour }}\n")
    code, output = validate()
    assert reads == ["we-miss-you.direct.md"]
    assert code == 1 and "we-miss-you.direct.md" in output and "favourite_colour" in output
    assert (code, output) == fresh(project)


def test_an_attribute_the_project_file_no_longer_declares_is_an_unknown_fact(project):
    (project / "courtship.yaml").write_text(
        "playbooks: playbooks\ntimezone: UTC\nattributes:\n  tier: {type: enum, values: [a, b]}\n"
    )
    edit(
        project / "playbooks" / "welcome.yaml",
        "  fact: first_name\n  exists: true",
        "  fact: tier\n  eq: a",
    )
    assert validate()[0] == 0
    (project / "courtship.yaml").write_text("playbooks: playbooks\ntimezone: UTC\n")
    code, output = validate()
    assert (
        code == 1 and "welcome.yaml:16:9: error unknown-fact 'tier' is not a known fact" in output
    )
    assert (code, output) == fresh(project)


def test_a_dedup_key_that_reads_the_title_is_rendered_again_with_the_new_title(project):
    welcome = project / "playbooks" / "welcome.yaml"
    edit(welcome, "dedup_key: welcome", "dedup_key: 'welcome-{{ playbook.title }}'")
    assert validate()[0] == 0
    edit(welcome, "title: Say hello, by name", f"title: {'Hello! ' * 90}")  # the key: 547 letters
    code, output = validate()
    assert code == 1
    assert "welcome.yaml:22:12: error template-render dedup_key: the dedup key is longer" in output
    assert (code, output) == fresh(project)


class LoyaltyPlugin:
    """A plugin with a fact and a template filter."""

    @hookimpl
    def register_facts(self, register):
        register(FactSpec(name="loyalty_points", type="integer", description="Points."))

    @hookimpl
    def register_template_filters(self, register):
        register("shout", str.upper)


def test_what_a_plugin_added_is_missed_by_the_kept_files_once_it_is_gone(project, reads):
    """What is kept of each file holds for the plugins it was found with."""
    edit(project / "playbooks" / "welcome.yaml", "fact: first_name\n", "fact: loyalty_points\n")
    template = project / "playbooks" / "templates" / "welcome.direct.md"
    edit(template, "{{ first_name }}", "{{ first_name | shout }}")
    installed.cache_clear()
    environment.cache_clear()
    installed().pm.register(LoyaltyPlugin(), name="loyalty")
    try:
        assert validate() == (0, "16 files checked: all clean.\n")
    finally:
        installed().pm.unregister(name="loyalty")
        installed.cache_clear()
        environment.cache_clear()
    reads.clear()
    code, output = validate()
    assert len(reads) == 15 + 50  # another environment: nothing kept of any file holds
    assert "welcome.yaml:16:9: error unknown-fact 'loyalty_points' is not a known fact" in output
    assert "welcome.direct.md" in output and "No filter named 'shout'" in output
    assert (code, output) == fresh(project)


def test_a_schema_changed_since_discards_what_is_kept_of_each_file(project, reads):
    assert validate()[0] == 0
    reads.clear()
    schema = ROOT / "schemas" / "playbook.schema.json"
    status = schema.stat()
    try:
        os.utime(schema, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
        edit(project / "playbooks" / "welcome.yaml", "priority: 85", "priority: 86")
        assert validate()[0] == 0
    finally:
        os.utime(schema, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert len(reads) == 15 + 50  # every file read again, under the schema as it is now


def test_what_is_kept_of_a_file_that_is_damaged_is_read_again(project):
    assert validate()[0] == 0
    data = json.loads(kept(project).read_text())
    data["key"] = "another"  # not the whole answer: file by file
    data["playbooks"]["playbooks/welcome.yaml"]["loaded"] = "damaged"
    data["templates"]["playbooks/templates/welcome.buddy.md"]["findings"] = [{"line": 1}]
    data["dedup_keys"] = {json.dumps(["welcome"]): "damaged"}
    kept(project).write_text(json.dumps(data))
    assert validate() == fresh(project)


def test_an_edit_imports_neither_jinja_nor_networkx(project):
    """A playbook whose templates and dedup key are as they were: only the schema is needed."""
    assert validate()[0] == 0
    edit(project / "playbooks" / "welcome.yaml", "title: Say hello", "title: Say hi")
    code = (
        "import json, sys\n"
        "sys.argv = ['courtship', 'validate']\n"
        "from courtship.cli import main\n"
        "try:\n    main()\nexcept SystemExit as end:\n    code = end.code\n"
        "heavy = ('networkx', 'jsonschema', 'jinja2', 'courtship.project')\n"
        "print(json.dumps([code, sorted(m for m in heavy if m in sys.modules)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=project, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, ["jsonschema"]]


@pytest.mark.parametrize(
    "example", sorted(p.name for p in (ROOT / "tests" / "examples" / "invalid").iterdir())
)
def test_each_broken_example_put_in_and_taken_out_is_said_as_with_nothing_kept(project, example):
    """The bundled library kept, then each example of a rule broken (tests/examples/invalid):
    copied in a folder of its own, then over the bundled files of the same names, then taken
    out. Every answer is the one a validation with nothing kept gives."""
    source = ROOT / "tests" / "examples" / "invalid" / example
    playbooks = project / "playbooks"
    files = [f for f in sorted(source.rglob("*")) if f.suffix in (".yaml", ".yml", ".md")]
    assert validate()[0] == 0
    shutil.copytree(source, playbooks / example)
    code, output = validate()
    assert "all clean" not in output
    assert (code, output) == fresh(project)
    shutil.rmtree(playbooks / example)
    bundled = {}
    for file in files:
        target = playbooks / file.relative_to(source)
        bundled[target] = target.read_bytes() if target.exists() else None
        shutil.copy(file, target)
    code, output = validate()
    assert "all clean" not in output
    assert (code, output) == fresh(project)
    for target, text in bundled.items():
        if text is None:
            target.unlink()
        else:
            target.write_bytes(text)
    assert validate() == fresh(project) == (0, "16 files checked: all clean.\n")
