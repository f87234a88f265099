"""`courtship validate --format sarif` as code scanning reads it: valid against the official OASIS
SARIF 2.1.0 schema (formats checked, so URIs must be RFC 3986 references), columns counted in code
points, URIs relative to the project and percent-encoded, fingerprints that survive moved lines."""

import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import jsonschema
import pytest
from typer.testing import CliRunner

from courtship.cli import app
from courtship.findings import LINT_RULES, RULES

ROOT = Path(__file__).resolve().parents[1]
#: The committee specification's schema, copied from oasis-tcs/sarif-spec
#: (Documents/CommitteeSpecifications/2.1.0/sarif-schema-2.1.0.json).
SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The bundled project copied to a scratch folder, as the working directory."""
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    shutil.copy(ROOT / "courtship.yaml", tmp_path / "courtship.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return tmp_path


def sarif(*args: str) -> dict:
    result = runner.invoke(app, ["validate", "-f", "sarif", *args])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def assert_valid(log: dict) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]
    assert not errors, errors


def broken_playbook(folder: Path, name: str, title: str = "Birthday") -> Path:
    """A playbook with a misspelt key ('anniversery') on its trigger line."""
    file = folder / name
    file.write_text(
        "id: odd-name\n"
        f'title: "{title}"\n'
        "stage: active\n"
        "category: marketing\n"
        "trigger: {anniversery: birthday}\n"
        "respond:\n"
        "  - send: {template: birthday, channel: email}\n",
        encoding="utf-8",
    )
    return file


def test_a_clean_log_and_a_log_with_findings_are_valid_sarif(project):
    assert_valid(sarif())
    broken_playbook(project / "playbooks", "my birthday é.yaml")
    log = sarif()
    assert log["runs"][0]["results"], "the broken playbook has findings"
    assert_valid(log)


def test_uris_are_percent_encoded_and_relative_to_the_project(project):
    broken_playbook(project / "playbooks", "my birthday é.yaml")
    run = sarif()["runs"][0]
    location = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "playbooks/my%20birthday%20%C3%A9.yaml", "uriBaseId": "PROJECTROOT"}
    base = run["originalUriBaseIds"]["PROJECTROOT"]["uri"]
    assert base == project.resolve().as_uri() + "/"
    assert Path(unquote(base.removeprefix("file://")) + unquote(location["uri"])).is_file()


def test_a_project_named_elsewhere_is_the_base_and_a_file_outside_it_is_an_absolute_uri(
    project, tmp_path_factory
):
    elsewhere = tmp_path_factory.mktemp("outside")
    outside = broken_playbook(elsewhere, "stray.yaml")
    log = sarif("--project", str(project), str(outside))
    assert_valid(log)
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in log["runs"][0]["results"]
    }
    assert outside.resolve().as_uri() in uris


def test_columns_count_code_points(project):
    line = '  - send: {template: birthday, channel: email, subject: "🎂 Cake 🎂", tone: bogus}'
    (project / "playbooks" / "cake.yaml").write_text(
        "id: cake\nstage: active\ncategory: marketing\ntitle: Cake\n"
        f"trigger: {{anniversary: birthday}}\nrespond:\n{line}\n",
        encoding="utf-8",
    )
    run = sarif()["runs"][0]
    assert run["columnKind"] == "unicodeCodePoints"
    (tone,) = [r for r in run["results"] if "'tone'" in r["message"]["text"]]
    region = tone["locations"][0]["physicalLocation"]["region"]
    # Code points, not UTF-16 units (82 in all) nor UTF-8 bytes: the emoji count one each.
    assert region == {"startLine": 7, "startColumn": line.index("tone") + 1}


def test_fingerprints_survive_lines_added_above(project):
    file = broken_playbook(project / "playbooks", "odd.yaml")

    def in_odd() -> list[dict]:
        results = sarif()["runs"][0]["results"]
        return [r for r in results if "odd.yaml" in json.dumps(r["locations"])]

    before = in_odd()
    file.write_text("# a comment\n# and another\n" + file.read_text(encoding="utf-8"))
    after = in_odd()
    assert before
    assert [r["partialFingerprints"] for r in before] == [r["partialFingerprints"] for r in after]
    line = [
        [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in results]
        for results in (before, after)
    ]
    assert [n + 2 for n in line[0]] == line[1]


def test_every_rule_has_a_description_and_help(project):
    broken_playbook(project / "playbooks", "odd.yaml")
    (project / "playbooks" / "templates" / "birthday.direct.md").write_text("Dear customer, hi.\n")
    rules = sarif()["runs"][0]["tool"]["driver"]["rules"]
    assert {rule["id"] for rule in rules} >= {"schema", "template-impersonal"}
    for rule in rules:
        assert rule["shortDescription"]["text"] == (RULES | LINT_RULES)[rule["id"]]
        assert rule["help"]["text"] and rule["helpUri"].endswith(f"#{rule['id']}")
