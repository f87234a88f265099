"""Broken or hostile input ends in a located finding or a contained outcome, never an internal
error or a hang: project settings, durations too long for a calendar, files that are not files,
a provider's absurd Retry-After, spreadsheet formulas in a customer's name."""

import csv
import datetime as dt
import io
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import customer
from typer.testing import CliRunner

from courtship.cli import app
from courtship.cli.plan import render_csv
from courtship.delivery import RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copy(ROOT / "courtship.yaml", tmp_path / "courtship.yaml")
    return tmp_path


def plan(project):
    return runner.invoke(app, ["plan", "--at", "2026-11-23T15:00:00Z", "--project", str(project)])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("timezone: UTC", "timezone: Europe/Londn"),
            "courtship.yaml:7:11: error schema[timezone] 'Europe/Londn' is not an IANA time zone; "
            "did you mean 'Europe/London'?",
        ),
        (
            ("lookback: 24h", "lookback: 500000w"),
            "courtship.yaml:8:11: error bad-duration '500000w' is longer than a calendar can "
            "hold (lookback); write at most a hundred years: 36525d or 5217w",
        ),
        (
            ("brand:", "channels:\n  - email\nbrand:"),
            "error schema[channels] channels must be a mapping",
        ),
    ],
    ids=["unknown-time-zone", "lookback-too-long", "channels-as-a-list"],
)
def test_a_bad_project_setting_is_a_finding_at_its_line(project, change, expected):
    file = project / "courtship.yaml"
    file.write_text(file.read_text().replace(*change))
    result = plan(project)
    assert result.exit_code == 1, result.output
    assert expected in result.output
    assert "internal error" not in result.output


def test_a_duration_too_long_for_any_calendar_is_a_finding(project):
    file = project / "playbooks" / "win-back.yaml"
    file.write_text(file.read_text().replace("once_every: 365d", "once_every: 999999999999999w"))
    result = runner.invoke(app, ["validate", str(project / "playbooks")])
    assert result.exit_code == 1
    assert (
        "win-back.yaml:37:15: error bad-duration '999999999999999w' is longer than a calendar "
        "can hold (once_every)" in result.output
    )


def test_a_named_pipe_among_the_playbooks_is_refused_not_read(project):
    os.mkfifo(project / "playbooks" / "pipe.yaml")
    os.mkfifo(project / "playbooks" / "templates" / "hello.md")
    courtship = Path(sys.executable).parent / "courtship"
    done = subprocess.run(
        [str(courtship), "validate", "playbooks"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "playbooks/pipe.yaml:1:1: error yaml-syntax cannot read file: not a regular file" in (
        done.stdout
    )


@pytest.mark.parametrize("retry_after", [1e308, 99999999999.0])
def test_a_providers_retry_after_is_capped_by_max_backoff(retry_after):
    policy = RetryPolicy(max_backoff=dt.timedelta(hours=6), jitter=0)
    assert policy.delay(1, retry_after, random.Random(1)) == dt.timedelta(hours=6)


@pytest.mark.parametrize("retry_after", [float("nan"), float("inf"), -5.0])
def test_an_unreadable_retry_after_is_ignored(retry_after):
    policy = RetryPolicy(backoff=dt.timedelta(minutes=1), jitter=0)
    assert policy.delay(1, retry_after, random.Random(1)) == dt.timedelta(minutes=1)


def test_csv_export_neutralises_formulas_a_customer_controls(world):
    world.playbook(
        """
        id: nudge
        title: Nudge
        stage: active
        category: marketing
        trigger: {event: visit}
        respond:
          - send: {channel: preferred, template: formula}
        """
    )
    world.template("formula", "{{ first_name }}, hello")
    world.customers.append(customer("c001", first="=1+2", cadence=0))
    world.event("c001", "visit", "2026-11-23T12:00:00Z")
    rows = list(csv.DictReader(io.StringIO(render_csv(world.plan()))))
    assert rows[0]["text"] == "'=1+2, hello"


@pytest.fixture
def linked(project, tmp_path_factory):
    """A template that is a link to a file of secrets outside the project."""
    secret = tmp_path_factory.mktemp("elsewhere") / "environ"
    secret.write_text("SMTP_PASSWORD=hunter2\n")
    template = project / "playbooks" / "templates" / "birthday.buddy.md"
    template.unlink()
    template.symlink_to(secret)
    return project


def test_a_template_linked_outside_the_project_is_never_read(linked):
    result = runner.invoke(app, ["validate", str(linked / "playbooks")])
    assert result.exit_code == 1
    assert "birthday.buddy.md:1:1: error template-syntax cannot read template: it is a link" in (
        result.output
    )
    assert "hunter2" not in result.output


def test_a_run_with_a_linked_template_sends_nothing_from_it(linked):
    result = runner.invoke(app, ["run", "--at", "2026-11-23T15:00:00Z", "--project", str(linked)])
    assert "internal error" not in result.output, result.output
    assert "delivered:" in result.output
    stored = [p.read_bytes() for p in (linked / ".courtship").rglob("*") if p.is_file()]
    assert stored and not any(b"hunter2" in content for content in stored)
