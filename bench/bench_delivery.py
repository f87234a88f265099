"""Delivery throughput: messages a second from the outbox table to a channel (issue 10, item 4).

    .venv/bin/python bench/bench_delivery.py [--outbox 20000] [--smtp 5000] [--workers 4]
                                             [--folder DIR ...] [--no-outbox] [--no-smtp]

A project of N customers who signed up, one welcome email each, is decided and recorded as
`courtship run` does (not timed); then the dispatch is timed, with the channels, lanes and retry
policy `courtship run` builds from courtship.yaml:

- **outbox**: every message written to the outbox folder (`channels.email.via: outbox`): a
  `.json` and its readable `.txt` per message, only the `.json` (`text_copy: false`), and one
  line per message in a JSON Lines file (`format: jsonl`); in the temporary folder (the disk)
  and in /dev/shm (memory). Beside each folder, the **baseline**: as many files created and
  written with plain `os.open`/`os.write`/`os.close` in the same folder, in the same minute
  (what the filesystem gives, with nothing of Courtship);
- **smtp**: every message to an aiosmtpd server on 127.0.0.1 in another process, which accepts
  and counts them, with 1 and `--workers` SMTP sessions; the peer as aiosmtpd is (no
  PIPELINING), then told to offer PIPELINING (aiosmtpd serves a pipelined group in order), then
  in the benchmark's own process (sharing its interpreter). Beside each peer, the **baseline**:
  the same emails, built beforehand, sent by a plain `smtplib` client over one connection
  (`sendmail`, one command at a time): what the peer takes, with nothing of Courtship.

The figures are messages per second of the dispatch, from the first `sending` commit to the
last `delivered` commit, and their ratio to the baseline of the same minute. The same script
runs on the code before issue 10 (without lanes, it builds the channels as that code did; a
format it does not know is reported as such), so it compares both in one sitting. Targets:
outbox >= 5,000/s on the disk (the best format), SMTP >= 500/s (`--workers` sessions, to
aiosmtpd as it is, in its own process).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import smtplib
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

AT = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)
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
  - send: {channel: email, template: hello}
"""


def make_project(
    root: Path, customers: int, email: str, state: str = "state: state.sqlite", extra: str = ""
) -> Path:
    """A welcome playbook for ``customers`` who signed up, its email channel set to ``email``,
    its state store as ``state`` says (a line of courtship.yaml), ``extra`` lines added."""
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "welcome.yaml").write_text(WELCOME)
    (root / "playbooks" / "templates" / "hello.md").write_text(
        "---\nsubject: Welcome, {{ first_name }}\n---\nHi {{ first_name }}, welcome to Lotus!\n"
    )
    rows, events = [HEADER], []
    for n in range(customers):
        cid = f"c{n:06d}"
        rows.append(
            f"{cid},Ann{n},Lee,{cid}@example.org,+1202555{n % 10000:04d},,UTC,en,Leeds,p,"
            "1990-01-01,2026-11-23,new,,email,0,direct,true,true,false"
        )
        events.append(
            json.dumps({"customer_id": cid, "type": "signup", "at": "2026-11-23T12:00:00Z"})
        )
    (root / "customers.csv").write_text("\n".join(rows) + "\n")
    (root / "events.jsonl").write_text("\n".join(events) + "\n")
    (root / "courtship.yaml").write_text(
        "playbooks: playbooks\ncustomers: customers.csv\nevents: events.jsonl\n"
        f"{state}\nbrand: {{name: Lotus, url: https://lotus.example.org}}\n{extra}"
        f"channels:\n  email: {email}\n"
    )
    return root


def dispatch(root: Path) -> tuple[int, float, dict[str, Any]]:
    """Decide and record (untimed), then dispatch (timed): messages, seconds, the report."""
    from courtship.cli import run as cli_run
    from courtship.cli.common import load, open_state
    from courtship.delivery import Dispatcher, RetryPolicy

    loaded = load(root, quiet=True, dry_run=False)
    state = open_state(loaded.project, dry_run=False)
    state.claim()
    plan = loaded.engine.plan(loaded.base, AT, state)
    loaded.engine.record(plan, state)
    if hasattr(cli_run, "build_lanes"):
        lanes = cli_run.build_lanes(loaded.project)
        channels = {name: lane.build() for name, lane in lanes.items()}
        dispatcher = Dispatcher(state, channels, RetryPolicy(), lanes=lanes)
    else:  # the code before issue 10
        channels = cli_run.build_channels(loaded.project)
        dispatcher = Dispatcher(state, channels, RetryPolicy())
    started = time.perf_counter()
    report = dispatcher.dispatch(AT)
    seconds = time.perf_counter() - started
    for channel in channels.values():
        close = getattr(channel, "close", None)
        if callable(close):
            close()
    state.close()
    summary = report.as_dict()
    return sum(summary["delivered"].values()), seconds, summary


class Count:
    """An aiosmtpd handler that accepts every message and counts it; with ``pipelining``, its
    server offers PIPELINING in its EHLO answer."""

    def __init__(self, counted: Any) -> None:
        self.counted = counted

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.counted.value += 1
        return "250 accepted"


class PipeliningCount(Count):
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


def _serve_smtp(port: int, ready: Any, stop: Any, counted: Any, pipelining: bool) -> None:
    from aiosmtpd.controller import Controller

    handler = PipeliningCount(counted) if pipelining else Count(counted)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Peer:
    """The SMTP peer: in its own process (``process``) or a thread of this one."""

    def __init__(self, process: bool, pipelining: bool) -> None:
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        if process:
            self.ready, self.stop, self.counted = (
                context.Event(),
                context.Event(),
                context.Value("i", 0),
            )
            self.runner: Any = context.Process(
                target=_serve_smtp,
                args=(self.port, self.ready, self.stop, self.counted, pipelining),
            )
        else:
            self.ready, self.stop = threading.Event(), threading.Event()
            self.counted = multiprocessing.Value("i", 0)
            self.runner = threading.Thread(
                target=_serve_smtp,
                args=(self.port, self.ready, self.stop, self.counted, pipelining),
            )

    def __enter__(self) -> Peer:
        self.runner.start()
        self.ready.wait(30)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.runner.join(30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def smtp_baseline(port: int, count: int) -> float:
    """Messages a second a plain smtplib client sends the peer over one connection: the same
    welcome emails, built beforehand (not timed)."""
    from courtship_smtp.channel import SMTPChannel

    from courtship.channels import Message

    channel = SMTPChannel(
        {"host": "127.0.0.1", "port": port, "security": "none", "from": "hello@lotus.example.org"}
    )
    emails = []
    for n in range(count):
        cid = f"c{n:06d}"
        message = Message(
            key=f"welcome:{cid}", customer_id=cid, playbook="welcome", category="transactional",
            channel="email", to=f"{cid}@example.org", subject=f"Welcome, Ann{n}",
            text=f"Hi Ann{n}, welcome to Lotus!\n",
        )  # fmt: skip
        emails.append((message.to, channel.build(message).as_bytes()))
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.test")
    started = time.perf_counter()
    for to, content in emails:
        client.sendmail("hello@lotus.example.org", [to], content)
    seconds = time.perf_counter() - started
    client.quit()
    return count / seconds


def files_baseline(place: Path, count: int) -> float:
    """Files a second created and written (a few hundred bytes each) in ``place``, plainly."""
    data = b'{"text": "Hi, welcome to Lotus!"}\n' * 12
    with tempfile.TemporaryDirectory(dir=place) as folder:
        started = time.perf_counter()
        for n in range(count):
            fd = os.open(f"{folder}/{n}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.close(fd)
        return count / (time.perf_counter() - started)


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


OUTBOX_FORMATS = {
    ".json and .txt": "{via: outbox}",
    "only .json": "{via: outbox, text_copy: false}",
    "jsonl": "{via: outbox, format: jsonl}",
}


def outbox_messages(folder: Path) -> tuple[int, int]:
    """The messages in the outbox folder: as .json files, and as lines of JSON Lines files."""
    if not folder.is_dir():
        return 0, 0
    files = sum(1 for _ in folder.glob("*.json"))
    lines = sum(
        len(path.read_bytes().splitlines())
        for path in [*folder.glob("*.jsonl"), *folder.glob("*.jsonl.part")]
    )
    return files, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outbox", type=int, default=20_000, help="messages to the outbox")
    parser.add_argument("--smtp", type=int, default=5_000, help="messages to the SMTP peer")
    parser.add_argument("--workers", type=int, default=4, help="SMTP workers (sessions)")
    parser.add_argument(
        "--folder",
        action="append",
        type=Path,
        help="where the outbox projects go (repeatable: one run per folder; default: the "
        "temporary folder, and /dev/shm too when it exists, to tell the disk from the channel)",
    )
    parser.add_argument("--no-outbox", action="store_true", help="skip the outbox runs")
    parser.add_argument("--no-smtp", action="store_true", help="skip the SMTP runs")
    options = parser.parse_args()
    ok = True
    places = options.folder or [Path(tempfile.gettempdir())]
    if not options.folder and Path("/dev/shm").is_dir():
        places.append(Path("/dev/shm"))
    print(f"load average {load()} at the start")
    for place in places if not options.no_outbox else []:
        baseline = files_baseline(place, options.outbox)
        print(f"outbox in {place}: baseline {baseline:,.0f} files/s (load {load()})")
        best = 0.0
        for label, email in OUTBOX_FORMATS.items():
            with tempfile.TemporaryDirectory(dir=place) as folder:
                root = make_project(Path(folder) / "outbox", options.outbox, email)
                sent, seconds, _summary = dispatch(root)
                files, lines = outbox_messages(root / ".courtship" / "outbox")
                written = lines if label == "jsonl" else files
                rate = sent / seconds
                if label == "jsonl" and not lines:
                    print(f"  {label}: not supported by this code (it wrote {files} files)")
                    continue
                print(
                    f"  {label}: {sent} messages ({written} written) in {seconds:.2f} s: "
                    f"{rate:,.0f}/s, {rate / baseline:.2f} x the baseline (load {load()})"
                )
                ok &= sent == written == options.outbox
                best = max(best, rate)
        if place == places[0]:
            ok &= best >= 5_000
    for process, pipelining in [(True, False), (True, True), (False, False)]:
        if options.no_smtp:
            break
        where = "its own process" if process else "this process"
        offers = "offering PIPELINING" if pipelining else "aiosmtpd as it is"
        with Peer(process, pipelining) as peer:
            baseline = smtp_baseline(peer.port, options.smtp)
            print(
                f"smtp to a peer in {where}, {offers}: baseline {baseline:,.0f}/s (load {load()})"
            )
            for workers in sorted({1, options.workers}):
                email = (
                    f"{{host: 127.0.0.1, port: {peer.port}, security: none, "
                    f"from: hello@lotus.example.org, local_hostname: bench.test, "
                    f"workers: {workers}}}"
                )
                before = peer.counted.value
                with tempfile.TemporaryDirectory() as folder:
                    root = make_project(Path(folder) / "smtp", options.smtp, email)
                    sent, seconds, _summary = dispatch(root)
                counted = peer.counted.value - before
                rate = sent / seconds
                print(
                    f"  {workers} worker{'s' if workers > 1 else ''}: {sent} messages ({counted} "
                    f"at the peer) in {seconds:.2f} s: {rate:,.0f}/s, {rate / baseline:.2f} x the "
                    f"baseline (load {load()})"
                )
                ok &= sent == counted == options.smtp
                if process and not pipelining and workers == options.workers:
                    ok &= rate >= 500
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
