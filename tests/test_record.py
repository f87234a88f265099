"""The record of every decision: after a `run`, `explain` at that moment and `history` answer from
what the run decided (not from a re-computation), and fallbacks are counted where they happen."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from courtship.cli import app

ROOT = Path(__file__).resolve().parents[1]
AT = "2026-11-23T15:00:00Z"
NEXT = "2026-11-24T09:00:00Z"
runner = CliRunner()


@pytest.fixture
def bundled(tmp_path):
    """The README's project: bundled playbooks, example customers, courtship.yaml."""
    for name in ("playbooks", "examples"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "courtship.yaml", tmp_path / "courtship.yaml")
    return tmp_path


def cli(root: Path, *args: str):
    result = runner.invoke(app, [*args, "--project", str(root)])
    assert result.exit_code in (0, 1), result.output
    return result


def decisions(root: Path) -> int:
    with sqlite3.connect(root / ".courtship" / "state.sqlite") as db:
        return db.execute("SELECT count(*) FROM decisions").fetchone()[0]


def test_explain_after_the_readme_run_tells_what_was_sent_and_why(bundled):
    cli(bundled, "run", "--at", AT, "-q")
    text = cli(bundled, "explain", "c-0001", "--at", AT).stdout
    assert f"from the record of the run at {AT}" in text
    story = text.split("birthday-gift", 1)[1].split("\n", 4)
    assert "fired" in story[0]
    assert "· orders_count was 9" in text and '· birthday was "1990-11-23"' in text
    assert "→ send on sms (buddy) — delivered" in text
    assert "Happy birthday, Amelia!" in text
    report = json.loads(cli(bundled, "explain", "c-0001", "--at", AT, "-f", "json").stdout)
    assert report["source"] == "record"
    (gift,) = [e for e in report["playbooks"] if e["playbook"] == "birthday-gift"]
    assert gift["outcome"] == "fired" and gift["messages"][0]["delivery"] == "delivered"


def test_explain_at_a_moment_not_run_computes_and_says_so(bundled):
    result = cli(bundled, "explain", "c-0001", "--at", AT)
    assert "computed now: no run has recorded 2026-11-23T15:00:00Z" in result.stdout
    report = json.loads(cli(bundled, "explain", "c-0001", "--at", AT, "-f", "json").stdout)
    assert report["source"] == "computed"


def test_the_record_outlives_an_edit_of_the_playbook(bundled):
    cli(bundled, "run", "--at", AT, "-q")
    before = json.loads(cli(bundled, "explain", "c-0001", "--at", AT, "-f", "json").stdout)
    gift = bundled / "playbooks" / "birthday-gift.yaml"
    gift.write_text(gift.read_text().replace("gte: 1", "gte: 30"))  # c-0001 would not qualify
    after = json.loads(cli(bundled, "explain", "c-0001", "--at", AT, "-f", "json").stdout)
    pick = next(e for e in after["playbooks"] if e["playbook"] == "birthday-gift")
    was = next(e for e in before["playbooks"] if e["playbook"] == "birthday-gift")
    assert pick["version"] == was["version"] and pick["messages"] == was["messages"]
    assert "this playbook has been edited since" in pick["why"]


def test_history_follows_a_held_message_to_its_delivery(bundled):
    cli(bundled, "run", "--at", AT, "-q")
    cli(bundled, "run", "--at", NEXT, "-q")
    report = json.loads(cli(bundled, "history", "c-0003", "-f", "json").stdout)
    held, sent = [d for d in report["decisions"] if d["playbook"] == "birthday-gift"]
    assert (held["status"], held["guard"], held["delivery"]) == ("deferred", "quiet-hours", None)
    assert held["at"].startswith("2026-11-23T15:00") and held["due_at"]
    assert (sent["status"], sent["delivery"], sent["channel"]) == ("send", "delivered", "email")
    assert sent["key"] == held["key"] and sent["wanted"] == "instagram"
    text = cli(bundled, "history", "c-0003").stdout
    assert "held back on email (salesy)" in text and "quiet hours in their time zone" in text
    assert "sent on email (salesy): instagram: outside the 24-hour messaging window" in text


def test_running_a_moment_again_adds_nothing_to_the_record(bundled):
    cli(bundled, "run", "--at", AT, "-q")
    first = decisions(bundled)
    assert first > 20
    cli(bundled, "run", "--at", AT, "-q")
    assert decisions(bundled) == first


def test_fallbacks_are_counted_at_plan_time_and_in_the_run_summary(bundled):
    plan = json.loads(cli(bundled, "plan", "--at", AT, "-f", "json").stdout)
    assert plan["summary"]["fell_back"] == {"instagram → email": 3}
    assert "fell back: 3\n  instagram → email" in cli(bundled, "plan", "--at", AT).stdout
    summary = json.loads(cli(bundled, "run", "--at", AT, "-q", "-f", "json").stdout)
    assert summary["fell_back"] == {"instagram → email": 3}


def test_plan_at_a_moment_already_run_says_where_its_decisions_are(bundled):
    cli(bundled, "run", "--at", AT, "-q")
    result = cli(bundled, "plan", "--at", AT)
    assert "has already been run: what it decided is in the record" in result.stderr


def test_history_of_someone_unknown_names_the_nearest_customer(bundled):
    result = runner.invoke(app, ["history", "c-00001", "--project", str(bundled)])
    assert result.exit_code == 2
    assert "no customer 'c-00001'" in result.stderr and "did you mean" in result.stderr
    quiet = cli(bundled, "history", "c-0002")
    assert "nothing recorded yet" in quiet.stdout


def test_history_shows_what_the_provider_called_back(bundled):
    """A status callback that `courtship serve` recorded (Twilio: undelivered, error 30003)
    tells what became of a message after the provider accepted it."""
    import datetime as dt

    from courtship.state import StateStore

    cli(bundled, "run", "--at", AT, "-q")
    state = StateStore(bundled / ".courtship" / "state.sqlite")
    (gift,) = [d for d in state.decisions(customer_id="c-0001") if d["playbook"] == "birthday-gift"]
    later = dt.datetime(2026, 11, 23, 15, 5, tzinfo=dt.UTC)
    state.record_callback(
        later, "twilio", "undelivered", channel="sms", send_key=gift["key"], detail="error 30003"
    )
    state.close()
    text = cli(bundled, "history", "c-0001").stdout
    assert "delivered; the provider reports it undelivered (error 30003)" in text
    told = cli(bundled, "explain", "c-0001", "--at", AT).stdout
    assert "the provider reports it undelivered (error 30003)" in told
