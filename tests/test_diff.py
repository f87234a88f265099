"""`courtship diff`: a change to the playbooks shown as a plan, before it is merged — two folders
or a git revision, in text, JSON and Markdown; nothing recorded, nothing sent."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship.cli import app

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-23T15:00:00Z"
runner = CliRunner()


@pytest.fixture
def bundled(tmp_path):
    for name in ("playbooks", "examples"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "courtship.yaml", tmp_path / "courtship.yaml")
    shutil.copytree(ROOT / "playbooks", tmp_path / "old")
    return tmp_path


def diff(root: Path, *args: str, code: int = 0):
    result = runner.invoke(app, ["diff", *args, "--project", str(root)])
    assert result.exit_code == code, result.output
    return result


def daily_digest(root: Path) -> None:
    """Raise the weekly digest's frequency to every day."""
    file = root / "playbooks" / "weekly-digest.yaml"
    file.write_text(file.read_text().replace("{every: 1w, days: [thu]}", "{every: 1d}"))


def test_a_change_that_raises_a_frequency_shows_in_every_format(bundled):
    daily_digest(bundled)
    args = (str(bundled / "old"), str(bundled / "playbooks"), "--at", AT)
    change = json.loads(diff(bundled, *args, "-f", "json").stdout)
    (digest,) = change["playbooks"]
    assert digest["playbook"] == "weekly-digest" and digest["change"] == "changed"
    assert digest["sends_before"] == 0 and digest["sends_after"] > 0
    assert len(digest["enter"]) >= digest["sends_after"] and digest["leave"] == []
    assert change["sends"]["after"] == change["sends"]["before"] + digest["sends_after"]
    pressure = change["pressure"]
    assert pressure["after"]["messages"] == pressure["before"]["messages"] + digest["sends_after"]
    text = diff(bundled, *args).stdout
    assert "~ weekly-digest" in text and f"sends 0 → {digest['sends_after']}" in text
    assert f"+ {len(digest['enter'])} enter:" in text
    assert "playbooks/weekly-digest.yaml" in text
    markdown = diff(bundled, *args, "-f", "markdown").stdout
    assert markdown.startswith("### Courtship diff")
    assert f"| ~ | `weekly-digest` | changed | 0 → {digest['sends_after']}" in markdown


def test_no_change_says_so_and_nothing_is_recorded(bundled):
    result = diff(bundled, str(bundled / "old"), str(bundled / "playbooks"), "--at", AT)
    assert "No change in what the playbooks decide at this moment." in result.stdout
    assert not (bundled / ".courtship" / "state.sqlite").exists()


def test_added_and_removed_playbooks(bundled):
    (bundled / "playbooks" / "weekly-digest.yaml").rename(bundled / "weekly-digest.yaml")
    daily = (bundled / "weekly-digest.yaml").read_text()
    (bundled / "old" / "weekly-digest.yaml").unlink()
    (bundled / "playbooks" / "birthday-gift.yaml").unlink()
    (bundled / "old" / "weekly-digest.yaml").write_text(daily)
    change = json.loads(
        diff(
            bundled, str(bundled / "old"), str(bundled / "playbooks"), "--at", AT, "-f", "json"
        ).stdout
    )
    kinds = {e["playbook"]: e["change"] for e in change["playbooks"]}
    assert kinds["birthday-gift"] == "removed" and kinds["weekly-digest"] == "removed"
    text = diff(bundled, str(bundled / "old"), str(bundled / "playbooks"), "--at", AT).stdout
    assert "- birthday-gift" in text


def test_base_revision_of_a_git_repository(bundled):
    git = ["git", "-C", str(bundled), "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "playbooks"], check=True)
    daily_digest(bundled)
    result = diff(bundled, "--base", "HEAD", "--at", AT)
    assert "the working tree against HEAD" in result.stdout
    assert "~ weekly-digest" in result.stdout
    unknown = diff(bundled, "--base", "no-such-branch", "--at", AT, code=2)
    assert "no playbooks at git revision 'no-such-branch'" in unknown.stderr


def test_base_revision_outside_a_repository_is_a_clear_error(bundled):
    result = diff(bundled, "--base", "HEAD", "--at", AT, code=2)
    assert "is not in a git repository; give OLD_DIR NEW_DIR" in result.stderr


def test_waiting_customers_the_change_lets_go(bundled):
    assert runner.invoke(app, ["run", "--at", AT, "--project", str(bundled), "-q"]).exit_code == 0
    win_back = bundled / "playbooks" / "win-back.yaml"
    text = win_back.read_text()
    win_back.write_text(text[: text.index("  - wait: 7d")] + text[text.index("limits:") :])
    change = json.loads(
        diff(
            bundled,
            str(bundled / "old"),
            str(bundled / "playbooks"),
            "--at",
            "2026-11-30T16:00:00Z",
            "-f",
            "json",
        ).stdout
    )
    assert change["waiting"]["win-back"] == {"moved": 0, "let_go": 1}  # c-0008, at the wait
    text = diff(
        bundled, str(bundled / "old"), str(bundled / "playbooks"), "--at", "2026-11-30T16:00:00Z"
    ).stdout
    assert "waiting in win-back: 0 moved with their step, 1 let go (their step is gone)" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--at", AT], "give OLD_DIR NEW_DIR, or --base REVISION"),
        (["a", "b", "--at", AT], "no such folder: a"),
        (["--base", "HEAD"], "give the moment to compare at"),
    ],
)
def test_usage_errors(bundled, args, message):
    assert message in diff(bundled, *args, code=2).stderr


def test_a_period_simulates_both_sides_and_shows_what_else_the_change_moves(bundled):
    daily_digest(bundled)
    args = [str(bundled / "old"), str(bundled / "playbooks")]
    # a week and a day: a Thursday of the weekly digest, and a digest every day using up the
    # cadence of keep-in-touch's customers
    period = ["--from", AT, "--to", "2026-11-30T15:00:00Z"]
    change = json.loads(diff(bundled, *args, *period, "-f", "json").stdout)
    assert change["period"] is True and change["at"].endswith("every 1d")
    kinds = {e["playbook"]: e for e in change["playbooks"]}
    digest = kinds["weekly-digest"]
    assert digest["change"] == "changed" and digest["sends_after"] > digest["sends_before"] > 0
    # the daily digest uses up customers' cadence: keep-in-touch, unchanged, now sends less
    assert kinds["keep-in-touch"]["change"] == "affected"
    assert kinds["keep-in-touch"]["sends_after"] < kinds["keep-in-touch"]["sends_before"]
    pressure = change["pressure"]
    assert pressure["after"]["max"] > pressure["before"]["max"]
    text = diff(bundled, *args, *period).stdout
    assert "messages per customer in a week of the period" in text
    assert not (bundled / ".courtship" / "state.sqlite").exists()  # simulated on copies


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from", AT], "give either --at T, or --from A with --to B"),
        (["--at", AT, "--from", AT, "--to", AT], "give either --at T, or --from A with --to B"),
        (["--from", AT, "--to", AT, "--step", "daily"], "--step 'daily' is not a duration"),
    ],
)
def test_period_usage_errors(bundled, args, message):
    result = diff(bundled, str(bundled / "old"), str(bundled / "playbooks"), *args, code=2)
    assert message in result.stderr
