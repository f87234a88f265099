"""Many workers on one PostgreSQL state: four real `courtship run` processes on the same moment,
each with its own SMTP peer on 127.0.0.1 (so the peer knows its worker's pid), all counting
into one ledger by X-Courtship-Key. The moment is decided once; the workers share the outbox
(the first worker's messages are held at its peer until a second worker delivers too, so the
sharing is certain, not a matter of timing); each message arrives exactly once — also when a
peer SIGKILLs its worker mid-batch, with a rerun after."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from conftest import HEADER, POSTGRES, customer
from test_delivery import free_port

from courtship.state_postgres import PostgresStore

AT = "2026-11-23T15:00:00Z"
WORKERS = 4
CUSTOMERS = 150  # more than two batches of 64: every worker can get a share


class Ledger:
    """What all the peers accepted, in order; the gate that holds the first worker's messages
    until a second worker delivers."""

    def __init__(self, gate: int = 2) -> None:
        self.gate = gate  # how many workers deliver before the first is answered
        self.keys: list[str] = []
        self.message_ids: list[str] = []
        self.by_worker: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.delivering: set[int] = set()
        self.together = threading.Event()
        self.killed: tuple[int, str] | None = None  # the worker killed, and at which key

    def message_id_of(self, key: str) -> set[str]:
        return {i for k, i in zip(self.keys, self.message_ids, strict=True) if k == key}


class WorkerPeer:
    """The SMTP server of worker ``number`` (process ``pid``): accepts into the ledger; with
    ``kill`` = (n, "before"|"after"), the first worker to reach its n-th message is SIGKILLed,
    before accepting it (answering 421) or just after accepting it (no answer reaches it)."""

    def __init__(self, ledger: Ledger, number: int) -> None:
        self.ledger = ledger
        self.number = number
        self.pid = 0
        self.accepted = 0
        self.kill: tuple[int, str] | None = None
        #: (n, application_name): just after accepting the n-th message, the server ends the
        #: worker's connections (pg_terminate_backend), as a database restart or a network cut
        self.cut: tuple[int, str] | None = None

    async def handle_DATA(self, server, session, envelope):
        ledger = self.ledger
        with ledger.lock:
            ledger.delivering.add(self.number)
            if len(ledger.delivering) >= ledger.gate:
                ledger.together.set()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, ledger.together.wait, 60):
            return "451 no second worker ever delivered"
        email = message_from_bytes(envelope.content, policy=policy.default)
        key = email["X-Courtship-Key"]
        with ledger.lock:
            self.accepted += 1
            kill = self.kill and ledger.killed is None and self.accepted == self.kill[0]
            if kill and self.kill[1] == "before":
                ledger.killed = (self.number, key)
                os.kill(self.pid, signal.SIGKILL)
                return "421 going away"  # never accepted
            ledger.keys.append(key)
            ledger.message_ids.append(email["Message-ID"])
            ledger.by_worker[self.number] += 1
            if kill:
                ledger.killed = (self.number, key)
                os.kill(self.pid, signal.SIGKILL)  # accepted, but the worker never hears so
            if self.cut and self.accepted == self.cut[0]:
                ledger.killed = (self.number, key)
                cut_connections(self.cut[1])
        return "250 accepted"


def cut_connections(application: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application,),
        ).fetchall()
    assert ended, "the worker had no connection to cut"


def worker_project(root: Path, smtp_port: int) -> Path:
    """One worker's project: the same playbook, customers and state as every other's; its own
    SMTP peer."""
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "welcome.yaml").write_text(
        "id: welcome\ntitle: Welcome\nstage: new\ncategory: transactional\n"
        "trigger: {event: signup}\nrespond:\n  - send: {channel: email, template: hello}\n"
    )
    (root / "playbooks" / "templates" / "hello.md").write_text(
        "---\nsubject: Welcome, {{ first_name }}\n---\nHi {{ first_name }}, welcome!\n"
    )
    ids = [f"c{i:03d}" for i in range(1, CUSTOMERS + 1)]
    (root / "customers.csv").write_text(
        "\n".join([HEADER, *(customer(c, preferred="email") for c in ids)]) + "\n"
    )
    (root / "events.jsonl").write_text(
        "".join(
            f'{{"customer_id": "{c}", "type": "signup", "at": "2026-11-23T12:00:00Z"}}\n'
            for c in ids
        )
    )
    (root / "courtship.yaml").write_text(
        f"""\
playbooks: playbooks
customers: customers.csv
events: events.jsonl
state_env: COURTSHIP_STATE_URL
quiet_hours: {{start: "23:59", end: "00:00"}}
brand: {{name: Lotus, url: https://lotus.example.org}}
channels:
  email: {{host: 127.0.0.1, port: {smtp_port}, security: none, from: hello@lotus.example.org,
          timeout: 90, local_hostname: courtship.test}}
"""
    )
    return root


@pytest.fixture
def workers(tmp_path, postgres_url):
    """Four worker projects on one PostgreSQL state, each with its peer; yields (ledger,
    peers, roots, url)."""
    ledger = Ledger()
    peers, controllers, roots = [], [], []
    for number in range(WORKERS):
        peer = WorkerPeer(ledger, number)
        controller = Controller(peer, hostname="127.0.0.1", port=free_port())
        controller.start()
        peers.append(peer)
        controllers.append(controller)
        roots.append(worker_project(tmp_path / f"worker{number}", controller.port))
    yield ledger, peers, roots, postgres_url
    for controller in controllers:
        controller.stop()


def spawn(root: Path, url: str) -> subprocess.Popen:
    courtship = Path(sys.executable).parent / "courtship"
    return subprocess.Popen(
        [str(courtship), "run", "--at", AT, "--project", str(root), "-q", "-f", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ | {"COURTSHIP_STATE_URL": url},
    )


def run_all(peers: list[WorkerPeer], roots: list[Path], url: str) -> list[subprocess.Popen]:
    processes = [spawn(root, url) for root in roots]
    for peer, process in zip(peers, processes, strict=True):
        peer.pid = process.pid
    for process in processes:
        process.communicate(timeout=240)
    return processes


def recorded(url: str) -> tuple[Counter[str], int, int]:
    """The outbox's statuses, the moments recorded, and the decisions recorded."""
    store = PostgresStore(url)
    try:
        statuses = Counter(status for (status,) in store.db.execute("SELECT status FROM sends"))
        return statuses, store.count("runs"), len(store.decisions())
    finally:
        store.close()


def test_four_workers_on_one_moment_deliver_each_message_exactly_once(workers):
    ledger, peers, roots, url = workers
    processes = run_all(peers, roots, url)
    for process in processes:
        assert process.returncode == 0, process.stderr.read().decode()
    assert sorted(ledger.keys) == sorted(set(ledger.keys))  # nothing twice
    assert len(ledger.keys) == CUSTOMERS  # nothing lost
    assert len(ledger.by_worker) >= 2, ledger.by_worker  # the outbox was shared
    statuses, runs, decisions = recorded(url)
    assert statuses == {"delivered": CUSTOMERS}
    assert (runs, decisions) == (1, CUSTOMERS)  # decided and recorded once


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing_it_knew_of(workers, when):
    """The first worker to reach its 10th message is SIGKILLed: ``before`` the peer accepts it
    (421), or just ``after`` (the 250 never reaches it). Its batch (up to 64 rows, marked
    ``sending``, 9 or 10 of them accepted and noted in ``accepted``) is taken over by the live
    workers, or by the rerun: what it noted is recorded delivered, never sent again; the rest
    goes out once. Proved: with ``before``, every message exactly once; with ``after``, every
    message once except at most the one the peer accepted as the worker died (it had no time
    to note it), which arrives a second time with the same Message-ID."""
    ledger, peers, roots, url = workers
    for peer in peers:
        peer.kill = (10, when)
    processes = run_all(peers, roots, url)
    assert ledger.killed is not None
    victim = ledger.killed[0]
    for number, process in enumerate(processes):
        if number == victim:
            assert process.returncode == -signal.SIGKILL
        else:
            assert process.returncode == 0, process.stderr.read().decode()
    rerun = spawn(roots[victim], url)
    _out, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err.decode()
    counts = Counter(ledger.keys)
    assert len(counts) == CUSTOMERS  # nothing lost
    doubled = {key for key, times in counts.items() if times > 1}
    if when == "before":
        assert doubled == set()
    else:
        assert doubled <= {ledger.killed[1]} and max(counts.values()) <= 2
        for key in doubled:
            assert len(ledger.message_id_of(key)) == 1  # the same Message-ID: a relay drops it
    statuses, runs, decisions = recorded(url)
    assert statuses == {"delivered": CUSTOMERS}
    assert (runs, decisions) == (1, CUSTOMERS)


def test_a_worker_whose_database_connection_is_cut_stops_and_the_rerun_sends_the_rest(
    tmp_path, postgres_url
):
    """One worker; the server ends its connections just after the peer accepted its 10th
    message. The worker cannot note that acceptance: it stops at once (exit 1, saying the
    connection was lost, no traceback) and starts no other send. Its batch was `sending`, the 9
    acceptances before were noted: the rerun records those delivered and sends the rest, so
    every message arrives once, except at most the 10th, again with the same Message-ID."""
    application = f"courtship-cut-{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}&application_name={application}"
    ledger = Ledger(gate=1)
    peer = WorkerPeer(ledger, 0)
    peer.cut = (10, application)
    controller = Controller(peer, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        root = worker_project(tmp_path / "worker", controller.port)
        first = spawn(root, url)
        _out, err = first.communicate(timeout=240)
        assert first.returncode == 1, err.decode()
        said = err.decode()
        assert "the connection to the state store was lost" in said, said
        assert "Traceback" not in said
        assert len(ledger.keys) == 10  # it started no send after the cut
        peer.cut = None
        rerun = spawn(root, url)
        _out, err = rerun.communicate(timeout=240)
        assert rerun.returncode == 0, err.decode()
    finally:
        controller.stop()
    counts = Counter(ledger.keys)
    assert len(counts) == CUSTOMERS
    doubled = {key for key, times in counts.items() if times > 1}
    assert doubled <= {ledger.killed[1]} and max(counts.values()) <= 2
    for key in doubled:
        assert len(ledger.message_id_of(key)) == 1
    statuses, runs, decisions = recorded(url)
    assert statuses == {"delivered": CUSTOMERS}
    assert (runs, decisions) == (1, CUSTOMERS)
