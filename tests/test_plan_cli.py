"""`courtship plan` and `courtship explain` on the bundled playbooks and example customers:
each seed rule in action at 2026-11-23T15:00:00Z (see examples/README.md for the stories)."""

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship.cli import app

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-23T15:00:00Z"
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The bundled project, with its state store in a scratch folder."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "courtship.yaml").write_text(
        (ROOT / "courtship.yaml")
        .read_text()
        .replace("playbooks: playbooks", f"playbooks: {ROOT / 'playbooks'}")
        .replace("examples/", f"{ROOT / 'examples'}/")
    )
    return folder


@pytest.fixture(scope="module")
def plan(project):
    result = runner.invoke(app, ["plan", "--at", AT, "--project", str(project), "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def find(items, customer, playbook):
    return [i for i in items if i["recipient"] == customer and i["playbook"] == playbook]


def test_instagram_only_inside_its_24_hour_window(plan):
    for send in plan["sends"]:
        if send["channel"] == "instagram":
            assert "window" not in send["reason"]
    assert any("24-hour messaging window" in d["reason"] for d in plan["sends"] + plan["blocked"])


def test_birthday_by_sms_in_buddy_tone_by_name(plan):
    [send] = find(plan["sends"], "c-0001", "birthday-gift")
    assert (send["channel"], send["tone"]) == ("sms", "buddy")
    assert "Amelia" in send["text"]


def test_birthday_in_quiet_hours_is_deferred_not_dropped(plan):
    [deferred] = find(plan["deferred"], "c-0002", "birthday-gift")
    assert "quiet hours" in deferred["reason"]
    assert deferred["due_at"] == "2026-11-23T23:00:00+00:00"  # 08:00 in Tokyo


def test_a_customer_without_a_name_is_skipped(plan):
    [blocked] = find(plan["blocked"], "c-0009", "birthday-gift")
    assert "no first name" in blocked["reason"]


def test_cadence_holds_back_a_marketing_message(plan):
    [held] = find(plan["deferred"], "c-0010", "call-them-by-name")
    assert "cadence" in held["reason"] and held["due_at"]


def test_an_unanswered_message_is_answered_despite_caps(plan):
    [send] = find(plan["sends"], "c-0005", "answer-their-calls")
    assert send["category"] == "transactional"
    assert any(n["customer"] == "c-0005" for n in plan["notifications"])


def test_a_referral_rewards_both_sides(plan):
    referrer = find(plan["sends"], "c-0006", "welcome-their-friends")
    friend = find(plan["sends"], "c-0007", "welcome-their-friends")
    assert referrer and friend


def test_lapsed_frequent_customer_and_win_back_apology(plan):
    assert find(plan["sends"], "c-0004", "lapsed-frequent-customer")
    [apology] = find(plan["sends"], "c-0008", "win-back")
    assert apology["template"] == "apology"


def test_plan_is_deterministic_and_records_nothing(tmp_path):
    (tmp_path / "courtship.yaml").write_text(
        f"playbooks: {ROOT / 'playbooks'}\ncustomers: {ROOT / 'examples' / 'customers.csv'}\n"
        f"events: {ROOT / 'examples' / 'events.jsonl'}\nstate: state.sqlite\n"
    )
    args = ["plan", "--at", AT, "--project", str(tmp_path), "--format", "json"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    assert not (tmp_path / "state.sqlite").exists()


def test_plan_text_and_csv(plan, project):
    text = runner.invoke(app, ["plan", "--at", AT, "--project", str(project)])
    assert text.exit_code == 0
    assert "birthday-gift" in text.stdout and "deferred:" in text.stdout
    result = runner.invoke(app, ["plan", "--at", AT, "--project", str(project), "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    total = plan["summary"]
    assert len(rows) == total["sends"] + total["deferred"] + total["blocked"]


def test_explain_gives_the_reasons(project):
    result = runner.invoke(app, ["explain", "c-0010", "--at", AT, "--project", str(project)])
    assert result.exit_code == 0, result.output
    assert "call-them-by-name" in result.stdout
    assert "cadence" in result.stdout
    assert "not triggered" in result.stdout


def test_explain_json_names_the_failing_condition_and_value(project):
    result = runner.invoke(
        app, ["explain", "c-0009", "--at", AT, "--project", str(project), "--format", "json"]
    )
    payload = json.loads(result.stdout)
    win_back = next(p for p in payload["playbooks"] if p["playbook"] == "win-back")
    assert win_back["outcome"] == "not triggered"
    assert any("days_since_last_order" in why for why in win_back["why"])


def test_explain_unknown_customer_is_a_usage_error(project):
    result = runner.invoke(app, ["explain", "c-00O1", "--at", AT, "--project", str(project)])
    assert result.exit_code == 2
    assert "no customer 'c-00O1'" in result.stderr


@pytest.mark.parametrize("moment", ["yesterday", "2026-11-23T15:00:00"])
def test_a_bad_moment_is_a_usage_error(moment, project):
    result = runner.invoke(app, ["plan", "--at", moment, "--project", str(project)])
    assert result.exit_code == 2
    assert "--at" in result.stderr


def test_a_broken_project_file_names_its_line(tmp_path):
    (tmp_path / "courtship.yaml").write_text("playbooks: playbooks\nlookback: 2 days\n")
    result = runner.invoke(app, ["plan", "--at", AT, "--project", str(tmp_path)])
    assert result.exit_code == 1
    assert "courtship.yaml:2:11: error bad-duration '2 days' is not a duration" in result.stderr


def test_a_broken_customer_file_names_file_line_and_field(tmp_path):
    (tmp_path / "playbooks").symlink_to(ROOT / "playbooks")
    lines = (ROOT / "examples" / "customers.csv").read_text().splitlines()[:5]
    lines[3] = lines[3].replace(lines[3].split(",")[10], "1990-13-01", 1)
    (tmp_path / "customers.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "courtship.yaml").write_text("customers: customers.csv\n")
    result = runner.invoke(app, ["plan", "--at", AT, "--project", str(tmp_path)])
    assert result.exit_code == 1
    assert "customers.csv:4: birthday: '1990-13-01' is not a date" in result.stderr
