"""`courtship preview PLAYBOOK`: every version of a playbook's messages for one customer, in every
tone and language; `--send-to seeds` delivers them to the team's seed list through the real
channels (an SMTP server on 127.0.0.1), marked as tests and never counted as a customer's."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
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
    return tmp_path


def preview(root: Path, *args: str, code: int = 0):
    result = runner.invoke(app, ["preview", *args, "--at", AT, "--project", str(root)])
    assert result.exit_code == code, result.output
    return result


def test_every_tone_for_the_customer_named(bundled):
    result = preview(bundled, "birthday-gift", "--customer", "c-0001", "-f", "json")
    (step,) = json.loads(result.stdout)["steps"]
    assert step["template"] == "birthday"
    assert sorted(v["tone"] for v in step["versions"]) == ["buddy", "direct", "salesy"]
    assert all("Amelia" in v["subject"] + v["text"] for v in step["versions"])
    text = preview(bundled, "birthday-gift", "--customer", "c-0001").stdout
    assert "── buddy, default language (" in text and "Subject: Happy birthday, Amelia!" in text


def test_a_sample_customer_when_none_is_named_and_every_language(bundled):
    (bundled / "playbooks" / "templates" / "birthday.buddy.fr.md").write_text(
        "---\nsubject: Joyeux anniversaire, {{ first_name }} !\n---\nBonne fête {{ first_name }}.\n"
    )
    report = json.loads(preview(bundled, "birthday-gift", "-f", "json").stdout)
    assert report["customer"] == "c-0001"  # the first with a first name
    versions = report["steps"][0]["versions"]
    french = [v for v in versions if v["language"] == "fr"]
    assert [(v["tone"], v["subject"]) for v in french] == [
        ("buddy", "Joyeux anniversaire, Amelia !")
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["birthday-gif"], "no playbook 'birthday-gif'"),
        (["birthday-gift", "--customer", "c-00001"], "no customer 'c-00001'"),
        (["birthday-gift", "--send-to", "everyone"], "--send-to takes `seeds`"),
        (["birthday-gift", "--send-to", "seeds"], "no seed list: add `seeds:`"),
    ],
)
def test_bad_arguments_are_usage_errors(bundled, args, words):
    assert words in preview(bundled, *args, code=2).stderr


class Inbox:
    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 accepted"


def test_test_sends_reach_the_seeds_marked_and_apart_from_customers(bundled):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        project = bundled / "courtship.yaml"
        project.write_text(
            project.read_text()
            + f"""
channels:
  email: {{host: 127.0.0.1, port: {port}, security: none, from: hello@lotus.example.org,
          timeout: 2, local_hostname: courtship.test}}
seeds:
  - {{name: Ana (marketing), email: ana@lotus.example.org}}
  - {{name: Ben (support), email: ben@lotus.example.org}}
"""
        )
        result = preview(bundled, "birthday-gift", "--send-to", "seeds")
    finally:
        controller.stop()
    assert len(inbox.messages) == 6  # three tones, two seeds
    subjects = sorted(str(m["Subject"]) for m in inbox.messages)
    assert all(s.startswith("[TEST birthday-gift · ") for s in subjects)
    assert {str(m["To"]) for m in inbox.messages} == {
        "ana@lotus.example.org",
        "ben@lotus.example.org",
    }
    assert "test send to Ana (marketing) on email (buddy, default language): delivered" in (
        result.stdout
    )
    with sqlite3.connect(bundled / ".courtship" / "state.sqlite") as db:
        assert db.execute("SELECT count(*) FROM test_sends").fetchone()[0] == 6
        assert db.execute("SELECT count(*) FROM sends").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
