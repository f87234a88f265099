"""The loader reads YAML the way a marketer means it, and knows where everything stands."""

import pytest

from courtship.yamlload import load_file, load_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v: NO", "NO"),  # YAML 1.1: false
        ("v: yes", "yes"),  # YAML 1.1: true
        ("v: off", "off"),
        ("v: 21:00", "21:00"),  # YAML 1.1: 1260
        ("v: 0012", "0012"),  # YAML 1.1: 10
        ("v: 2026-11-23", "2026-11-23"),  # YAML 1.1: a date object
        ("v: true", True),
        ("v: FALSE", False),
        ("v: 12", 12),
        ("v: -3", -3),
        ("v: 1.5", 1.5),
        ("v: 1e3", 1000.0),
        ("v: ~", None),
        ("v: '12'", "12"),
        ("v: !!str 12", "12"),
        ("v: .inf", ".inf"),
    ],
)
def test_scalars_are_read_as_meant(text, expected):
    doc = load_text(text, "x.yaml")
    assert doc.findings == []
    assert doc.data == {"v": expected}
    assert type(doc.data["v"]) is type(expected)


def test_positions_of_values_and_keys():
    doc = load_text("id: a\ntrigger:\n  event: order\nrespond:\n  - tag: vip\n", "x.yaml")
    assert doc.locate(("trigger", "event")).line == 3
    assert doc.locate(("trigger", "event")).col == 10
    assert doc.locate(("trigger", "event"), key=True).col == 3
    assert doc.locate(("respond", 0, "tag")).line == 5
    # a path that does not exist is placed at its nearest ancestor
    assert doc.locate(("respond", 0, "send", "channel")).line == 5


def test_duplicate_key_names_both_lines():
    doc = load_text("a: 1\nb: 2\na: 3\n", "x.yaml")
    [finding] = doc.findings
    assert (finding.rule_id, finding.line, finding.col) == ("yaml-duplicate-key", 3, 1)
    assert "line 1 and line 3" in finding.message


def test_nested_duplicate_key():
    doc = load_text("t:\n  at: '09:00'\n  at: '10:00'\n", "x.yaml")
    assert [(f.rule_id, f.line, f.json_path) for f in doc.findings] == [
        ("yaml-duplicate-key", 3, "$.t.at")
    ]


def test_anchors_and_aliases_are_allowed():
    doc = load_text("a: &x [1, 2]\nb: *x\n", "x.yaml")
    assert doc.findings == []
    assert doc.data == {"a": [1, 2], "b": [1, 2]}


def test_alias_bomb_is_a_finding():
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for name, prev in zip("bcdefg", "abcdef", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    doc = load_text("\n".join(lines), "x.yaml")
    assert [f.rule_id for f in doc.findings] == ["yaml-unsupported"]
    assert "expands" in doc.findings[0].message


def test_deep_nesting_is_a_finding_not_a_crash():
    doc = load_text("[" * 50_000 + "]" * 50_000, "x.yaml")
    assert [f.rule_id for f in doc.findings] == ["yaml-unsupported"]


def test_unsafe_tags_are_refused():
    doc = load_text("a: !!python/object/apply:os.system ['true']", "x.yaml")
    assert [f.rule_id for f in doc.findings] == ["yaml-unsupported"]
    assert doc.data is None


def test_not_utf8_is_placed_at_the_bad_byte(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_bytes(b"id: ok\ntitle: caf\xe9\n")
    doc = load_file(file, "bad.yaml")
    [finding] = doc.findings
    assert (finding.rule_id, finding.line, finding.col) == ("yaml-syntax", 2, 11)
    assert "0xe9" in finding.message


def test_unreadable_file_is_a_finding(tmp_path):
    doc = load_file(tmp_path / "missing.yaml", "missing.yaml")
    assert [f.rule_id for f in doc.findings] == ["yaml-syntax"]
