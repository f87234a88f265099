"""Delivery from a state store on PostgreSQL, beside SQLite, in one sitting (issue 13).

    .venv/bin/python bench/bench_postgres.py [--messages 5000] [--workers 4]
        [--url postgresql://postgres@127.0.0.1:5432/test]

A project of N customers who signed up, one welcome email each through the outbox channel
(files), is decided and recorded as `courtship run` does (not timed); then the dispatch is
timed, as messages a second:

- **sqlite**: one run on a SQLite store (the baseline);
- **postgres, 1 worker**: one run on a store in a fresh schema of the server at ``--url``;
- **postgres, N workers**: ``--workers`` processes dispatching the same outbox at once (each
  takes its own batches with ``FOR UPDATE SKIP LOCKED``), from the first start to the last end.

Each message delivered exactly once is checked (the outbox folder holds one file per key, the
store says ``delivered`` for every row). Ratios against the SQLite run of the same sitting are
what to compare: the machine's load moves all three alike.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_delivery import AT
from bench_delivery import make_project as delivery_project


def make_project(root: Path, customers: int, state: str) -> Path:
    """bench_delivery's project, to the outbox, on the store ``state`` names."""
    no_quiet = "quiet_hours: {start: '23:59', end: '00:00'}\n"
    return delivery_project(root, customers, "{via: outbox}", state=state, extra=no_quiet)


def record(root: Path) -> None:
    """Decide and record the moment (untimed)."""
    from courtship.cli.common import load, open_state

    loaded = load(root, quiet=True, dry_run=False)
    state = open_state(loaded.project, dry_run=False)
    state.claim()
    loaded.engine.record(loaded.engine.plan(loaded.base, AT, state), state)
    state.close()


def deliver(root: Path) -> int:
    """Dispatch what is due, as `courtship run` does after recording: messages delivered."""
    from courtship.cli import run as cli_run
    from courtship.cli.common import open_state, project_or_fail
    from courtship.delivery import Dispatcher, RetryPolicy

    project = project_or_fail(root)
    state = open_state(project, dry_run=False)
    state.claim()
    lanes = cli_run.build_lanes(project)
    channels = {name: lane.build() for name, lane in lanes.items()}
    report = Dispatcher(state, channels, RetryPolicy(), lanes=lanes).dispatch(AT)
    state.close()
    return sum(report.delivered.values())


def _worker(root: str, start: object, done: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    done.put(deliver(Path(root)))  # type: ignore[attr-defined]


def timed(root: Path, workers: int) -> tuple[int, float]:
    """Messages delivered and seconds, by ``workers`` processes at once."""
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    processes = [
        context.Process(target=_worker, args=(str(root), start, done)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    time.sleep(3)  # the processes import the engine before the clock starts
    began = time.perf_counter()
    start.set()
    delivered = sum(done.get() for _ in processes)
    seconds = time.perf_counter() - began
    for process in processes:
        process.join()
    return delivered, seconds


def check(root: Path, messages: int) -> None:
    files = list((root / ".courtship" / "outbox").rglob("*.json"))
    assert len(files) == messages, f"{len(files)} files in the outbox for {messages} messages"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "COURTSHIP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    import psycopg

    schemas = [f"courtship_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    admin = psycopg.connect(args.url, autocommit=True)
    results = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            cases = [("sqlite", "state: state.sqlite", 1)]
            for schema, workers in zip(schemas, (1, args.workers), strict=True):
                admin.execute(f"CREATE SCHEMA {schema}")
                separator = "&" if "?" in args.url else "?"
                url = f"{args.url}{separator}options=-csearch_path%3D{schema}"
                cases.append((f"postgres, {workers} worker(s)", f"state: '{url}'", workers))
            for number, (name, state, workers) in enumerate(cases):
                root = make_project(Path(scratch) / str(number), args.messages, state)
                record(root)
                delivered, seconds = timed(root, workers)
                assert delivered == args.messages, (name, delivered)
                check(root, args.messages)
                results.append((name, delivered / seconds))
    finally:
        for schema in schemas:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
    baseline = results[0][1]
    for name, rate in results:
        print(f"{name:24} {rate:8.0f} messages/s   {rate / baseline:5.2f} x sqlite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
