"""The example corpora: every valid example is clean; every invalid one says exactly what it should.

``tests/examples/invalid/<rule-id>/`` holds playbooks (and templates) that break one rule, and
``expected.txt``: the exact findings, one per line, as ``courtship validate`` prints them from
inside that folder. To add a case, add a file and its line in ``expected.txt``.
"""

from pathlib import Path

import pytest

from courtship.findings import RULES
from courtship.reporters import base_rule
from courtship.validate import validate_paths

EXAMPLES = Path(__file__).parent / "examples"
INVALID = sorted(p for p in (EXAMPLES / "invalid").iterdir() if p.is_dir())


def test_valid_examples_have_no_findings(monkeypatch):
    monkeypatch.chdir(EXAMPLES / "valid")
    report = validate_paths([Path(".")])
    assert report.findings == []
    assert len(report.playbooks) == len(list(Path(".").glob("*.yaml")))


@pytest.mark.parametrize("folder", INVALID, ids=[p.name for p in INVALID])
def test_invalid_example_reports_exactly_its_findings(folder, monkeypatch):
    monkeypatch.chdir(folder)
    report = validate_paths([Path(".")])
    expected = (folder / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert [str(finding) for finding in report.findings] == expected
    assert {base_rule(finding) for finding in report.findings} == {folder.name}


def test_every_rule_has_an_invalid_example():
    assert {p.name for p in INVALID} == set(RULES)
