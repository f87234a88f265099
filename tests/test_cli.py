"""The command line as CI and marketers use it: exit codes, formats, streams."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def library(tmp_path, monkeypatch):
    """A copy of the bundled playbooks in a scratch folder, as the working directory."""
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path / "playbooks"


def break_birthday(library: Path) -> None:
    """Misspell a key of the birthday playbook: 'anniversary' → 'anniversery'."""
    file = library / "birthday-gift.yaml"
    file.write_text(file.read_text().replace("anniversary:", "anniversery:"))


def line_of(file: Path, needle: str) -> int:
    return next(i for i, line in enumerate(file.read_text().splitlines(), 1) if needle in line)


def test_bundled_playbooks_validate_clean(library):
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "all clean" in result.output


def test_a_typo_is_reported_at_its_line_with_a_suggestion_and_exit_1(library):
    break_birthday(library)
    result = runner.invoke(app, ["validate", "playbooks/"])
    assert result.exit_code == 1
    line = line_of(library / "birthday-gift.yaml", "anniversery:")
    assert (
        f"playbooks/birthday-gift.yaml:{line}:3: error schema[trigger] 'anniversery' is not a "
        "valid key of trigger; did you mean 'anniversary'?"
    ) in result.output


def test_json_format_is_machine_readable(library):
    break_birthday(library)
    result = runner.invoke(app, ["validate", "--format", "json"])
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["summary"]["errors"] >= 1
    first = payload["findings"][0]
    assert {"path", "line", "col", "severity", "rule", "message", "hint", "json_path"} <= set(first)
    assert first["json_path"].startswith("$.trigger")


def test_github_format_is_chosen_under_github_actions(library, monkeypatch):
    break_birthday(library)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 1
    line = line_of(library / "birthday-gift.yaml", "anniversery:")
    assert result.stdout.startswith(
        f"::error file=playbooks/birthday-gift.yaml,line={line},col=3,title=schema[trigger]::"
    )


def test_sarif_format(library):
    break_birthday(library)
    result = runner.invoke(app, ["validate", "-f", "sarif"])
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    result_0 = log["runs"][0]["results"][0]
    assert result_0["ruleId"] == "schema"
    region = result_0["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == line_of(library / "birthday-gift.yaml", "anniversery:")


def test_warnings_pass_unless_strict(library):
    template = library / "templates" / "birthday.direct.md"
    template.write_text("Dear customer, happy birthday.\n")
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0
    assert "warning template-impersonal" in result.output
    assert runner.invoke(app, ["validate", "--strict"]).exit_code == 1


def test_missing_path_is_a_usage_error(library):
    result = runner.invoke(app, ["validate", "nowhere/"])
    assert result.exit_code == 2
    assert "no such file or folder: nowhere" in result.stderr


def test_folder_without_playbooks_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["validate", "empty"])
    assert result.exit_code == 2
    assert "no playbooks" in result.stderr


def test_unknown_format_is_a_usage_error(library):
    result = runner.invoke(app, ["validate", "--format", "xml"])
    assert result.exit_code == 2
    assert "unknown format 'xml'" in result.stderr


def test_schema_prints_the_json_schema():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema == json.loads((ROOT / "schemas" / "playbook.schema.json").read_text())


def test_graph_mermaid_shows_every_kind_of_edge(library):
    result = runner.invoke(app, ["graph", "playbooks/"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("flowchart LR")
    assert "lapsed_frequent_customer --> win_back" in out
    assert "-. suppresses .->" in out
    assert '-- "sets ' in out


def test_graph_dot(library):
    result = runner.invoke(app, ["graph", "--format", "dot"])
    assert result.exit_code == 0
    assert result.stdout.startswith("digraph playbooks {")
    assert '"lapsed-frequent-customer" -> "win-back"' in result.stdout


def test_graph_svg_needs_graphviz(library, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = runner.invoke(app, ["graph", "--format", "svg"])
    assert result.exit_code == 2
    assert "Graphviz" in result.stderr


def test_graph_svg_without_graphviz_writes_nothing_and_says_what_to_do(library, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = runner.invoke(app, ["graph", "--format", "svg", "--output", "playbooks.svg"])
    assert result.exit_code == 2
    assert not Path("playbooks.svg").exists()
    assert "SVG needs Graphviz's 'dot' program" in result.stderr
    assert "apt-get install graphviz" in result.stderr and "--format dot" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_graph_svg_with_graphviz(library):
    result = runner.invoke(app, ["graph", "--format", "svg"])
    assert result.exit_code == 0
    assert "<svg" in result.stdout


def test_graph_refuses_a_cycle(library):
    file = library / "lapsed-frequent-customer.yaml"
    file.write_text(file.read_text() + "depends_on: [win-back]\n")
    result = runner.invoke(app, ["graph"])
    assert result.exit_code == 1
    assert (
        "dependency cycle: lapsed-frequent-customer --> win-back --> lapsed-frequent-customer"
        in (result.stderr)
    )


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("courtship ")


def test_an_internal_error_is_exit_3_without_traceback(monkeypatch, capsys, tmp_path):
    from courtship import cli

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.chdir(tmp_path)  # no project here: no answer kept from an earlier validate

    monkeypatch.setattr("courtship.validate.check_files", explode)  # what validate calls
    monkeypatch.setattr("sys.argv", ["courtship", "validate", str(ROOT / "playbooks")])
    monkeypatch.delenv("COURTSHIP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err


def test_every_rule_has_a_docs_section():
    from courtship.findings import LINT_RULES, RULES

    headings = {
        line.lstrip("#").strip().strip("`")
        for line in (ROOT / "docs" / "rules.md").read_text().splitlines()
        if line.startswith("## ")
    }
    assert set(RULES) | set(LINT_RULES) <= headings


def test_validate_checks_the_project_file_that_plan_would_refuse(library):
    project_file = library.parent / "courtship.yaml"
    shutil.copy(ROOT / "courtship.yaml", project_file)
    assert runner.invoke(app, ["validate"]).exit_code == 0
    project_file.write_text(project_file.read_text().replace("timezone:", "timezon:"))
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 1
    line = line_of(project_file, "timezon:")
    assert f"courtship.yaml:{line}:1: error schema[timezon] 'timezon' is not a valid key" in (
        result.stdout
    )
    assert "did you mean 'timezone'?" in result.stdout
    # plan refuses the same file: validate and plan agree.
    assert runner.invoke(app, ["plan", "--at", "2026-11-23T15:00:00Z"]).exit_code == 1


def test_validate_project_names_the_folder_and_its_playbooks(library, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.move(library, elsewhere / "journeys")
    (elsewhere / "courtship.yaml").write_text("playbooks: journeys\nlookback: 1000000w\n")
    result = runner.invoke(app, ["validate", "--project", str(elsewhere), "-f", "json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert any(path.endswith("courtship.yaml") for path in report["files"])
    assert sum("journeys" in path for path in report["files"]) == 15
    (finding,) = report["findings"]
    assert finding["rule"] == "bad-duration" and finding["line"] == 2
    missing = runner.invoke(app, ["validate", "--project", str(elsewhere / "nowhere")])
    assert missing.exit_code == 2 and "no such project folder" in missing.stderr


def test_schema_prints_the_playbook_or_the_project_schema():
    playbook = json.loads(runner.invoke(app, ["schema"]).stdout)
    project = json.loads(runner.invoke(app, ["schema", "--project"]).stdout)
    assert playbook == json.loads((ROOT / "schemas" / "playbook.schema.json").read_text())
    assert project == json.loads((ROOT / "schemas" / "project.schema.json").read_text())


def test_an_editor_names_a_misspelt_key_inside_a_fact_reference():
    """Editors report a schema's raw errors: no anyOf, so the error is the unknown key itself."""
    import jsonschema

    schema = json.loads((ROOT / "schemas" / "playbook.schema.json").read_text())
    assert "anyOf" not in json.dumps(schema) and "oneOf" not in json.dumps(schema)
    playbook = {
        "id": "x",
        "title": "X",
        "stage": "active",
        "category": "marketing",
        "trigger": {"becomes": {"fact": "total_spent", "gte": {"fact": "orders", "tmes": 2}}},
        "respond": [{"send": {"template": "x", "channel": "email"}}],
    }
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(playbook))
    assert [e.validator for e in errors] == ["additionalProperties"]
    assert "'tmes' was unexpected" in errors[0].message
    for good in (3, "text", True, [1, 2], {"fact": "orders", "times": 2}):
        playbook["trigger"]["becomes"]["gte"] = good
        assert not list(jsonschema.Draft202012Validator(schema).iter_errors(playbook)), good
