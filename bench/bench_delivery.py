"""Delivery throughput: messages a second from the outbox table to a channel (issue 10, item 4).

    .venv/bin/python bench/bench_delivery.py [--outbox 20000] [--smtp 5000] [--workers 4]
                                             [--folder DIR ...]

A project of N customers who signed up, one welcome email each, is decided and recorded as
`courtship run` does (not timed); then the dispatch is timed, with the channels, lanes and retry
policy `courtship run` builds from courtship.yaml:

- **outbox**: every message written to the outbox folder (`channels.email.via: outbox`), with
  its readable `.txt` and without it (`text_copy: false`), in the temporary folder (the disk)
  and in /dev/shm (memory): creating files is most of the outbox's time, and on a disk others
  write to as well it is the disk's speed that is measured more than the channel's;
- **smtp**: every message to an aiosmtpd server on 127.0.0.1 in another process, which accepts
  and counts them (`workers` SMTP sessions, each kept for all its messages).

The figures are messages per second of the dispatch, from the first `sending` commit to the
last `delivered` commit. The same script runs on the code before issue 10 (without lanes, it
builds the channels as that code did), so `git stash; python bench/bench_delivery.py; git stash
pop` compares both in one sitting. Targets: outbox >= 5,000/s, SMTP >= 500/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import socket
import sys
import tempfile
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


def _serve_smtp(port: int, ready: Any, stop: Any, counted: Any) -> None:
    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            counted.value += 1
            return "250 accepted"

    controller = Controller(Count(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    options = parser.parse_args()
    ok = True
    places = options.folder or [Path(tempfile.gettempdir())]
    if not options.folder and Path("/dev/shm").is_dir():
        places.append(Path("/dev/shm"))
    for place in places:
        for text_copy in (True, False):
            with tempfile.TemporaryDirectory(dir=place) as folder:
                root = make_project(
                    Path(folder) / "outbox",
                    options.outbox,
                    "{via: outbox}" if text_copy else "{via: outbox, text_copy: false}",
                )
                sent, seconds, _summary = dispatch(root)
                files = len(list((root / ".courtship" / "outbox").glob("*.json")))
                rate = sent / seconds
                print(
                    f"outbox in {place} ({'.json and .txt' if text_copy else 'only .json'}): "
                    f"{sent} messages ({files} files) in {seconds:.2f} s: {rate:,.0f}/s"
                )
                ok &= sent == files == options.outbox
                if place == places[0] and text_copy:
                    ok &= rate >= 5_000
    with tempfile.TemporaryDirectory() as folder:
        context = multiprocessing.get_context("spawn")
        ready, stop, counted = context.Event(), context.Event(), context.Value("i", 0)
        port = free_port()
        peer = context.Process(target=_serve_smtp, args=(port, ready, stop, counted))
        peer.start()
        ready.wait(30)
        email = (
            f"{{host: 127.0.0.1, port: {port}, security: none, from: hello@lotus.example.org, "
            f"local_hostname: bench.test, workers: {options.workers}}}"
        )
        try:
            root = make_project(Path(folder) / "smtp", options.smtp, email)
            sent, seconds, _summary = dispatch(root)
        finally:
            stop.set()
            peer.join(30)
        rate = sent / seconds
        print(
            f"smtp ({options.workers} workers): {sent} messages ({counted.value} at the peer) "
            f"in {seconds:.2f} s: {rate:,.0f}/s"
        )
        ok &= sent == counted.value == options.smtp and rate >= 500
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
