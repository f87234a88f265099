"""`courtship run` end to end, against real peers on 127.0.0.1: an SMTP server (aiosmtpd) and an
HTTP server speaking Twilio's Messages API. What the peers received is counted by idempotency
key: nothing lost, nothing doubled — also across provider failures and a SIGKILL mid-run."""

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from courtship.cli import app
from courtship.testing import HTTPPeer, PeerResponse

ACCOUNT_SID = "AC" + "0" * 32
AT = "2026-11-23T15:00:00Z"
HEADER = (
    "customer_id,first_name,last_name,email,phone,instagram_id,timezone,language,city,persona,"
    "birthday,signup_date,stage,tags,preferred_channel,cadence_days,tone,consent_email,"
    "consent_sms,consent_instagram"
)
WELCOME = """\
id: welcome
title: Welcome
stage: new
category: transactional
trigger: {event: signup}
respond:
  - send: {channel: preferred, fallback: [email], template: hello}
"""
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SMTPPeer:
    """Counts the messages it accepted, by X-Courtship-Key; can be told to fail or to kill."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.answer: str | None = None
        self.kill_at: tuple[int, int] | None = None  # (nth message, pid): SIGKILL, no answer
        self.kill_after_accepting: tuple[int, int] | None = None  # accept the nth, then SIGKILL
        self.message_ids: list[str] = []
        self.seen = 0
        self.lock = threading.Lock()
        self.arrivals: list[float] = []  # time.monotonic() of each accepted message
        self.sessions: set[tuple[str, int]] = set()  # the client ends of the connections
        self.drop_at: int | None = None  # the nth message: the connection closed, no answer

    async def handle_DATA(self, server, session, envelope):
        if self.answer:
            return self.answer
        email = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.arrivals.append(time.monotonic())
            self.sessions.add(session.peer)
            self.seen += 1
            if self.drop_at and self.seen == self.drop_at:
                server.transport.close()  # the content came, the answer never goes
                return "451 not accepted"
            if self.kill_at and self.seen == self.kill_at[0]:
                os.kill(self.kill_at[1], signal.SIGKILL)
                return "421 going away"  # never accepted: the client is dead anyway
            self.keys.append(email["X-Courtship-Key"])
            self.message_ids.append(email["Message-ID"])
            if self.kill_after_accepting and self.seen == self.kill_after_accepting[0]:
                os.kill(self.kill_after_accepting[1], signal.SIGKILL)
        return "250 accepted"


class TwilioPeer:
    """Answers as Twilio's Messages API does; counts accepted messages by body marker."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.mode = "ok"
        self.kill_at: tuple[int, int] | None = None
        self.seen = 0

    def __call__(self, request):
        assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        self.seen += 1
        if self.kill_at and self.seen == self.kill_at[0]:
            os.kill(self.kill_at[1], signal.SIGKILL)
            return PeerResponse(503, {"code": 20503, "message": "gone"})
        if self.mode == "429":
            return PeerResponse(
                429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "120"}
            )
        if self.mode == "500":
            return PeerResponse(500, {"code": 20500, "message": "Internal Server Error"})
        if self.mode == "garbage":
            return PeerResponse(200, "<html>not json</html>")
        if self.mode == "slow":
            return PeerResponse(201, {"sid": "SM1", "status": "queued"}, delay=0.6)
        if self.mode == "invalid":
            return PeerResponse(
                400, {"code": 21211, "message": "The 'To' number is not a valid phone number."}
            )
        self.accepted.append(form["To"])
        return PeerResponse(201, {"sid": f"SM{len(self.accepted):032d}", "status": "queued"})


class PipeliningSMTPPeer(SMTPPeer):
    """An SMTPPeer whose server offers PIPELINING (RFC 2920), as Postfix and Exim do."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture
def smtp():
    peer = SMTPPeer()
    controller = Controller(peer, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield peer, controller.port
    controller.stop()


@pytest.fixture(params=["one command at a time", "pipelining"])
def any_smtp(request):
    """The SMTP peer, as it is and offering PIPELINING."""
    peer = PipeliningSMTPPeer() if request.param == "pipelining" else SMTPPeer()
    controller = Controller(peer, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield peer, controller.port
    controller.stop()


@pytest.fixture
def twilio(monkeypatch):
    monkeypatch.setenv("COURTSHIP_TEST_TWILIO_TOKEN", "twilio-secret-token")
    peer = TwilioPeer()
    with HTTPPeer(peer) as server:
        yield peer, server.url


def project(
    root: Path, smtp_port: int, twilio_url: str, customers: list[str], email: str = ""
) -> Path:
    """The project; ``email`` adds settings to channels.email (``workers: 4, rate: 100/s``)."""
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "welcome.yaml").write_text(WELCOME)
    (root / "playbooks" / "templates" / "hello.md").write_text(
        "---\nsubject: Welcome, {{ first_name }}\n---\nHi {{ first_name }}, welcome!\n"
    )
    rows, events = [HEADER], []
    for cid, channel in customers:
        number = f"+1202555{int(cid[1:]):04d}"
        rows.append(
            f"{cid},Ann{cid},Lee,{cid}@example.org,{number},,UTC,en,Leeds,p,1990-01-01,"
            f"2026-11-23,new,,{channel},0,direct,true,true,false"
        )
        events.append(
            json.dumps({"customer_id": cid, "type": "signup", "at": "2026-11-23T12:00:00Z"})
        )
    (root / "customers.csv").write_text("\n".join(rows) + "\n")
    (root / "events.jsonl").write_text("\n".join(events) + "\n")
    (root / "courtship.yaml").write_text(
        f"""\
playbooks: playbooks
customers: customers.csv
events: events.jsonl
state: state.sqlite
brand: {{name: Lotus, url: https://lotus.example.org}}
channels:
  email: {{host: 127.0.0.1, port: {smtp_port}, security: none, from: hello@lotus.example.org,
          timeout: 2, local_hostname: courtship.test{", " + email if email else ""}}}
  sms: {{account_sid: {ACCOUNT_SID}, auth_token_env: COURTSHIP_TEST_TWILIO_TOKEN,
        from: "+12025550100", base_url: "{twilio_url}", timeout: 0.3}}
delivery: {{backoff: 1m, max_attempts: 3}}
"""
    )
    return root


def run(root: Path, at: str = AT):
    result = runner.invoke(app, ["run", "--at", at, "--project", str(root), "-q", "-f", "json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def statuses(root: Path) -> dict[str, str]:
    with sqlite3.connect(root / "state.sqlite") as db:
        return dict(db.execute("SELECT key, status FROM sends"))


def people(n: int, channel: str = "email") -> list[tuple[str, str]]:
    return [(f"c{i:03d}", channel) for i in range(1, n + 1)]


def test_run_delivers_each_message_once_and_a_rerun_sends_nothing(tmp_path, smtp, twilio):
    root = project(tmp_path, smtp[1], twilio[1], [*people(3), ("c004", "sms"), ("c005", "sms")])
    code, summary = run(root)
    assert code == 0
    assert summary["delivered"] == {"email": 3, "sms": 2}
    delivered = {k for k, status in statuses(root).items() if status == "delivered"}
    assert set(smtp[0].keys) <= delivered
    assert len(set(smtp[0].keys)) == len(smtp[0].keys) == 3
    assert sorted(twilio[0].accepted) == ["+12025550004", "+12025550005"]
    assert run(root)[1]["delivered"] == {}
    assert run(root, "2026-11-23T16:00:00Z")[1]["delivered"] == {}
    assert len(smtp[0].keys) == 3 and len(twilio[0].accepted) == 2


@pytest.mark.parametrize("mode", ["429", "500", "garbage", "slow"])
def test_transient_provider_failures_are_retried_later_exactly_once(tmp_path, smtp, twilio, mode):
    peer, url = twilio
    root = project(tmp_path, smtp[1], url, [("c001", "sms")])
    peer.mode = mode
    _, first = run(root)
    assert first["retrying"] == {"sms": 1} and peer.accepted == []
    peer.mode = "ok"
    # one minute later: the backoff (about 1 minute) or Retry-After (120 s) may not be over
    _, soon = run(root, "2026-11-23T15:01:30Z")
    if mode == "429":
        assert soon["delivered"] == {}  # Retry-After: 120 is honoured
    _, _later = run(root, "2026-11-23T15:10:00Z")
    assert len(peer.accepted) == 1
    assert set(statuses(root).values()) == {"delivered"}


def test_smtp_server_down_then_up(tmp_path, twilio):
    port = free_port()
    root = project(tmp_path, port, twilio[1], people(2))
    _, first = run(root)
    assert first["retrying"] == {"email": 2}
    peer = SMTPPeer()
    controller = Controller(peer, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        _, later = run(root, "2026-11-23T15:10:00Z")
    finally:
        controller.stop()
    assert later["delivered"] == {"email": 2}
    assert len(peer.keys) == 2


def test_a_permanent_failure_falls_back_to_the_next_consented_channel(tmp_path, smtp, twilio):
    peer, url = twilio
    peer.mode = "invalid"
    root = project(tmp_path, smtp[1], url, [("c001", "sms")])
    code, summary = run(root)
    assert code == 0
    assert summary["fell_back"] == {"sms → email": 1} and summary["delivered"] == {"email": 1}
    assert len(smtp[0].keys) == 1


def test_a_permanent_failure_without_fallback_is_recorded_with_the_reason(tmp_path, smtp, twilio):
    smtp[0].answer = "550 5.1.1 mailbox unavailable"
    root = project(tmp_path, smtp[1], twilio[1], people(1))
    code, summary = run(root)
    assert code == 1
    [failure] = summary["failures"]
    assert "550" in failure["reason"]
    with sqlite3.connect(root / "state.sqlite") as db:
        [(status, error)] = db.execute("SELECT status, error FROM sends WHERE channel = 'email'")
    assert status == "failed" and "mailbox unavailable" in error


def test_retries_stop_after_max_attempts(tmp_path, smtp, twilio):
    peer, url = twilio
    peer.mode = "500"
    root = project(tmp_path, smtp[1], url, [("c001", "sms")])
    for minute in ("15:00", "15:30", "16:30"):
        run(root, f"2026-11-23T{minute}:00Z")
    # three attempts on sms (max_attempts: 3), then the email fallback
    assert peer.seen == 3
    assert len(smtp[0].keys) == 1


def spawn(root: Path, at: str = AT) -> subprocess.Popen:
    courtship = Path(sys.executable).parent / "courtship"
    return subprocess.Popen(
        [str(courtship), "run", "--at", at, "--project", str(root), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


@pytest.mark.parametrize("victim", ["smtp", "twilio"])
def test_a_run_killed_midway_loses_nothing_and_doubles_nothing(tmp_path, smtp, twilio, victim):
    customers = people(12) + [(f"c{i:03d}", "sms") for i in range(13, 25)]
    root = project(tmp_path, smtp[1], twilio[1], customers)
    process = spawn(root)
    peer = smtp[0] if victim == "smtp" else twilio[0]
    peer.kill_at = (5, process.pid)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    received_before = len(smtp[0].keys) + len(twilio[0].accepted)
    assert received_before < 24  # killed midway
    peer.kill_at = None
    rerun = spawn(root)
    _out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err.decode()
    assert len(smtp[0].keys) == len(set(smtp[0].keys)) == 12
    assert sorted(twilio[0].accepted) == sorted(f"+1202555{i:04d}" for i in range(13, 25))
    assert set(statuses(root).values()) == {"delivered"}


def test_secrets_in_the_project_file_are_refused(tmp_path, smtp, twilio):
    root = project(tmp_path, smtp[1], twilio[1], people(1))
    text = (root / "courtship.yaml").read_text()
    (root / "courtship.yaml").write_text(
        text.replace("timeout: 2,", "timeout: 2, password: hunter2,")
    )
    result = runner.invoke(app, ["run", "--at", AT, "--project", str(root)])
    assert result.exit_code == 1
    assert "'password' would put a secret in the project file" in result.stderr
    assert "hunter2" not in result.output


# ── runs that overlap, and a state store that is lost ───────────────────


@pytest.mark.parametrize("later", [AT, "2026-11-23T15:05:00Z"], ids=["same", "overlapping"])
def test_runs_started_together_deliver_each_message_once(tmp_path, smtp, twilio, later):
    """Five trials of two `courtship run` processes started at the same instant on one state
    store (a cron job overlapping a manual run): the second waits for the first, then finds
    its moment recorded and everything delivered. Zero doubles at the peer. (Both run the same
    code from the same instant up to the claim of the store: a claim that let both decide
    would double in most trials, not in a rare one.)"""
    for trial in range(5):
        root = project(tmp_path / f"trial-{trial}", smtp[1], twilio[1], people(6))
        before = len(smtp[0].keys)
        first, second = spawn(root, AT), spawn(root, later)
        outcomes = [(*p.communicate(timeout=120), p.returncode) for p in (first, second)]
        for _out, err, code in outcomes:
            assert code in (0, 2), err.decode()  # 2: an earlier moment after a later one
            assert b"Traceback" not in err
        mine = smtp[0].keys[before:]
        assert len(mine) == len(set(mine)) == 6, f"trial {trial}: {len(mine)} messages"
        assert set(statuses(root).values()) == {"delivered"}


def test_a_run_waits_for_the_one_holding_the_store_then_gives_up_clearly(tmp_path, smtp, twilio):
    from courtship.state import StateStore

    root = project(tmp_path, smtp[1], twilio[1], people(1))
    holder = StateStore(root / "state.sqlite")
    holder.claim()
    try:
        result = runner.invoke(app, ["run", "--at", AT, "--project", str(root), "--wait", "0.2"])
        assert result.exit_code == 1
        assert "another run holds the state store" in result.output
        assert smtp[0].keys == []
    finally:
        holder.close()
    assert run(root)[1]["delivered"] == {"email": 1}


def test_a_moment_earlier_than_the_last_run_is_refused(tmp_path, smtp, twilio):
    root = project(tmp_path, smtp[1], twilio[1], people(2))
    assert run(root, "2026-11-23T16:00:00Z")[1]["delivered"] == {"email": 2}
    result = runner.invoke(app, ["run", "--at", AT, "--project", str(root)])
    assert result.exit_code == 2
    assert "runs go forward in time" in result.output
    assert len(smtp[0].keys) == 2


@pytest.mark.parametrize("damage", ["truncated", "removed", "garbage"])
def test_a_state_store_that_existed_and_is_lost_stops_the_run(tmp_path, smtp, twilio, damage):
    """Opened as a new store, it would send the lookback window again."""
    root = project(tmp_path, smtp[1], twilio[1], people(3))
    assert run(root)[1]["delivered"] == {"email": 3}
    store = root / "state.sqlite"
    if damage == "truncated":
        store.write_bytes(b"")
    elif damage == "removed":
        store.unlink()
    else:
        store.write_bytes(b"this is not a database, but it is not empty either" * 100)
    result = runner.invoke(app, ["run", "--at", AT, "--project", str(root)])
    assert result.exit_code == 1, result.output
    assert "state.sqlite" in result.output and "restore it from a backup" in result.output
    assert "Traceback" not in result.output
    assert len(smtp[0].keys) == 3  # nothing sent again


def test_a_state_path_that_is_a_folder_is_a_clear_error(tmp_path, smtp, twilio):
    root = project(tmp_path, smtp[1], twilio[1], people(1))
    (root / "state.sqlite").mkdir()
    result = runner.invoke(app, ["run", "--at", AT, "--project", str(root)])
    assert result.exit_code == 2
    assert f"courtship.yaml:4:8: state: {root / 'state.sqlite'} is a folder, not a state " in (
        result.output
    )


def test_the_crash_window_is_one_message_with_its_message_id_kept(tmp_path, smtp, twilio):
    """What no local bookkeeping closes, measured: the process dies after the peer accepted a
    message and before `delivered` is committed. That one message goes out again on the next run,
    with the same Message-ID, so a relay or mail client that drops repeated Message-IDs shows it
    once; every other message arrives exactly once (docs/operations.md, "Crashes")."""
    root = project(tmp_path, smtp[1], twilio[1], people(8))
    process = spawn(root)
    smtp[0].kill_after_accepting = (3, process.pid)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    smtp[0].kill_after_accepting = None
    rerun = spawn(root)
    _out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err.decode()
    keys = smtp[0].keys
    assert len(set(keys)) == 8 and len(keys) == 9
    (doubled,) = [key for key in set(keys) if keys.count(key) == 2]
    ids = smtp[0].message_ids
    assert len(set(ids)) == 8
    assert ids[keys.index(doubled)] == ids[len(keys) - 1 - keys[::-1].index(doubled)]
    assert set(statuses(root).values()) == {"delivered"}


# ── throughput: workers, kept sessions, the rate limit ────────────────────────────────


def test_one_worker_sends_every_message_over_one_smtp_session(tmp_path, smtp, twilio):
    root = project(tmp_path, smtp[1], twilio[1], people(12))
    assert run(root)[1]["delivered"] == {"email": 12}
    assert len(smtp[0].sessions) == 1
    assert len(smtp[0].keys) == len(set(smtp[0].keys)) == 12


def test_several_workers_each_keep_their_own_session(tmp_path, smtp, twilio):
    root = project(tmp_path, smtp[1], twilio[1], people(30), email="workers: 3")
    assert run(root)[1]["delivered"] == {"email": 30}
    assert 1 <= len(smtp[0].sessions) <= 3
    assert len(smtp[0].keys) == len(set(smtp[0].keys)) == 30
    assert set(statuses(root).values()) == {"delivered"}


@pytest.mark.parametrize("workers", [1, 4])
def test_the_rate_is_honoured_across_workers_at_a_real_smtp_peer(tmp_path, smtp, twilio, workers):
    """20 messages at 50/s arrive no faster than one per 20 ms: the first to the last take at
    least 380 ms, and not much longer. The peer sees arrivals, not starts: a message delayed on
    a loaded machine shortens the gap after it, so each bound allows 40 ms of that (unpaced,
    the 20 arrive within about 80 ms: the bounds still tell paced from unpaced)."""
    root = project(
        tmp_path, smtp[1], twilio[1], people(20), email=f"workers: {workers}, rate: 50/s"
    )
    assert run(root)[1]["delivered"] == {"email": 20}
    arrivals = smtp[0].arrivals
    assert len(arrivals) == 20
    span = arrivals[-1] - arrivals[0]
    assert 0.38 - 0.04 <= span < 2.5
    # any 10 in a row span at least 9 intervals: no burst anywhere in the run
    assert min(arrivals[i + 9] - arrivals[i] for i in range(11)) >= 0.18 - 0.04


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("rate: fast", "8:61: error schema[channels] 'fast' is not a valid rate (rate); it must"),
        ("rate: 0/s", "8:61: error schema[channels] '0/s' is not a valid rate (rate)"),
        ("workers: 0", "8:64: error schema[channels] workers: 0 is less than the minimum of 1"),
    ],
)
def test_a_bad_rate_or_workers_is_a_located_error(tmp_path, smtp, twilio, setting, said):
    """The value's line and column in courtship.yaml, and nothing sent."""
    root = project(tmp_path, smtp[1], twilio[1], people(1), email=setting)
    result = runner.invoke(app, ["run", "--at", AT, "--project", str(root), "-q"])
    assert result.exit_code != 0
    assert f"courtship.yaml:{said}" in result.output
    assert smtp[0].keys == []


def test_a_run_killed_with_several_workers_in_flight_doubles_at_most_one_per_worker(
    tmp_path, any_smtp, twilio
):
    """Four workers, 40 messages, the process SIGKILLed just after the peer accepted its 10th:
    no batch of `delivered` is committed yet at that point (a batch holds up to 64), so only the
    acceptances noted in state.sqlite.sending keep them from going out again. What the next
    run may double is what no bookkeeping sees: a message the peer accepted whose worker had
    not noted it yet, at most one per worker (4). Every key arrives; each double keeps its
    Message-ID; every row ends delivered."""
    root = project(tmp_path, any_smtp[1], twilio[1], people(40), email="workers: 4")
    process = spawn(root)
    any_smtp[0].kill_after_accepting = (10, process.pid)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    any_smtp[0].kill_after_accepting = None
    before = len(any_smtp[0].keys)
    assert before < 40  # killed in flight
    rerun = spawn(root)
    _out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err.decode()
    keys, ids = any_smtp[0].keys, any_smtp[0].message_ids
    assert len(set(keys)) == 40
    assert len(keys) - 40 <= 4
    for key in {key for key in keys if keys.count(key) > 1}:
        assert len({ids[i] for i, k in enumerate(keys) if k == key}) == 1
    assert set(statuses(root).values()) == {"delivered"}


def test_a_connection_dropped_mid_batch_retries_that_message_and_loses_none(
    tmp_path, any_smtp, twilio
):
    """Three workers, 30 messages; the peer closes one session after the 12th message's content
    came, without answering it. That message waits to retry (the peer may have it: here it did
    not keep it); its worker opens a new session for its next message, the others go on; the
    retry, a few minutes later, delivers it. Every key arrives once."""
    peer, port = any_smtp
    root = project(tmp_path, port, twilio[1], people(30), email="workers: 3")
    peer.drop_at = 12
    _, first = run(root)
    assert (first["delivered"], first["retrying"]) == ({"email": 29}, {"email": 1})
    peer.drop_at = None
    _, later = run(root, "2026-11-23T15:10:00Z")
    assert later["delivered"] == {"email": 1}
    assert len(peer.keys) == len(set(peer.keys)) == 30
    assert set(statuses(root).values()) == {"delivered"}


class FakeClock:
    """A clock that moves only when slept on: the rate limiter's schedule, without waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("rate", "interval"), [("50/s", 0.02), ("120/m", 0.5), ("3600/h", 1.0)])
def test_the_pace_spaces_every_start_by_the_rate(rate, interval):
    from courtship.delivery import Pace, Rate

    clock = FakeClock()
    pace = Pace(Rate.parse(rate), clock, clock.sleep)
    starts = [pace.wait() for _ in range(10)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == pytest.approx([interval] * 9)
    clock.now += 60  # idle for a minute: no burst to catch up
    again = [pace.wait() for _ in range(3)]
    assert again[1] - again[0] == pytest.approx(interval)


@pytest.mark.parametrize("text", ["50", "0/s", "5/d", "-1/s", "1.5/s", ""])
def test_a_rate_that_is_no_count_per_second_minute_or_hour_is_refused(text):
    from courtship.delivery import Rate

    with pytest.raises(ValueError, match="write a count per s, m or h, such as 50/s"):
        Rate.parse(text)


def test_accepted_messages_noted_in_their_slots_are_delivered_by_the_next_claim(tmp_path):
    """A batch the provider accepted, noted slot by slot, its commit never made (the process
    died): the next run that claims the store records every one delivered, so none goes out
    again; a message left `sending` without a note is due again."""
    import datetime as dt

    from test_hostile_files import outbox_rows

    from courtship.state import StateStore

    now = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)
    store = StateStore(tmp_path / "state.sqlite")
    store.record(now, {}, outbox_rows(5))
    store.claim()
    store.db.execute("UPDATE sends SET status = 'sending'")
    store.db.commit()
    for slot, key in enumerate(["key-0000", "key-0002", "key-0004"]):
        store.note_accepted(key, f"id-{slot}", slot * 20)
    store.close()
    again = StateStore(tmp_path / "state.sqlite")
    again.claim()
    rows = dict(again.db.execute("SELECT key, status || ' ' || ifnull(provider_id, '') FROM sends"))
    assert rows == {
        "key-0000": "delivered id-0",
        "key-0001": "sending ",
        "key-0002": "delivered id-1",
        "key-0003": "sending ",
        "key-0004": "delivered id-2",
    }
    again.close()
    third = StateStore(tmp_path / "state.sqlite")
    third.claim()  # the notes were cleared once recorded
    assert third.db.execute("SELECT count(*) FROM sends WHERE status = 'sending'").fetchone() == (
        2,
    )
    third.close()


def test_the_store_is_in_wal_mode(tmp_path, smtp, twilio):
    root = project(tmp_path, smtp[1], twilio[1], people(1))
    run(root)
    with sqlite3.connect(root / "state.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
