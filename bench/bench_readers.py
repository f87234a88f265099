"""How fast Courtship reads a customer base from files, against plain polars of the same file.

Writes the benchmark's own base (``bench_engine.generate_base``: 1,000,000 customers and their
~10.7 M events by default) as CSV, JSON Lines and Parquet in a temporary folder, then times, in
the same run, each Courtship reader (typed and checked, line-aware errors) against the plain
polars read of the same file (``pl.read_csv``, ``pl.read_ndjson``, ``pl.scan_parquet``), and the
ratio. Then ``courtship plan`` twice on an unchanged base: the second reuses the loading-time
index kept beside the state (see docs/operations.md, "The cache beside the state").

    .venv/bin/pip install -q -r bench/requirements.txt
    .venv/bin/python bench/bench_readers.py --customers 200000      # a quicker run
    .venv/bin/python bench/bench_readers.py                         # 1,000,000 customers
    .venv/bin/python bench/bench_readers.py --data /work/bench-data/base-1m --repeat 3

The files are removed afterwards (``--keep`` keeps them and prints the folder). ``--data``
reads the files of a base already written (``bench_run.py``'s, say) instead, and writes nothing
into it. Each file is read by polars and by Courtship in turn, ``--repeat`` times, the best of
each kept, with the load average beside it; the exit status is 1 when a ratio is over
``--limit`` (1.5, the target of issue 10).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))

from bench_engine import DEFAULT_NOW, generate_base

from courtship.sources import (
    read_customers_file,
    read_events_file,
)


def write_base(folder: Path, customers: int, seed: int) -> dict[str, int]:
    """The base as customers/events in .csv, .jsonl and .parquet; the row counts."""
    base = generate_base(customers, seed, dt.datetime.fromisoformat(DEFAULT_NOW))
    people = base.customers
    text = people.with_columns(
        pl.col("tags").list.join(";"),
        *(
            pl.col(c).cast(pl.String()).str.to_lowercase()
            for c in people.columns
            if people.schema[c] == pl.Boolean()
        ),
    )
    text.write_csv(folder / "customers.csv")
    text.write_ndjson(folder / "customers.jsonl")
    people.write_parquet(folder / "customers.parquet")
    events = base.events.with_columns(
        pl.col("at").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ").alias("at")
    )
    events.write_csv(folder / "events.csv")
    events.write_ndjson(folder / "events.jsonl")
    base.events.write_parquet(folder / "events.parquet")
    (folder / "events").mkdir()
    for part, chunk in enumerate(base.events.iter_slices(base.events.height // 4 + 1)):
        chunk.write_parquet(folder / "events" / f"part-{part}.parquet")
    return {"customers": people.height, "events": base.events.height}


def timed(action: Callable[[], Any], repeat: int) -> float:
    """The best of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
        del result
    return best


def timed_in_turn(
    theirs: Callable[[], Any], mine: Callable[[], Any], repeat: int
) -> tuple[float, float]:
    """The best of ``repeat`` runs of each, run in turn (polars, then Courtship), so a burst of
    load on the shared machine falls on both."""
    best_theirs, best_mine = float("inf"), float("inf")
    for _ in range(repeat):
        best_theirs = min(best_theirs, timed(theirs, 1))
        best_mine = min(best_mine, timed(mine, 1))
    return best_theirs, best_mine


def plain(path: Path) -> Callable[[], pl.DataFrame]:
    if path.suffix == ".csv":
        return lambda: pl.read_csv(path)
    if path.suffix == ".jsonl":
        return lambda: pl.read_ndjson(path, infer_schema_length=None)
    return lambda: pl.scan_parquet(path).collect()


def ours(path: Path, role: str) -> Callable[[], pl.DataFrame]:
    kind = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}[path.suffix]
    if role == "customers":
        return lambda: read_customers_file(path, format=kind)
    return lambda: read_events_file(path, format=kind)


def plan_twice(folder: Path, customers: str, events: str) -> tuple[float, float]:
    """``courtship plan`` on the base, then again on the unchanged base (index reused)."""
    project = folder / "project"
    if project.exists():
        shutil.rmtree(project)
    (project / "playbooks" / "templates").mkdir(parents=True)
    (project / "state").mkdir()  # as after a first run: a dry plan keeps its index there
    (project / "playbooks" / "thanks.yaml").write_text(
        "id: thanks\ntitle: Thanks\nstage: active\ncategory: transactional\n"
        "trigger: {event: order}\nrespond:\n  - send: {channel: email, template: thanks}\n",
        encoding="utf-8",
    )
    (project / "playbooks" / "templates" / "thanks.md").write_text(
        "Thank you, {{ first_name }}!\n", encoding="utf-8"
    )
    (project / "courtship.yaml").write_text(
        f"playbooks: playbooks\ncustomers: {folder / customers}\nevents: {folder / events}\n"
        "state: state/state.sqlite\n",
        encoding="utf-8",
    )
    courtship = Path(sys.executable).parent / "courtship"
    command = [str(courtship), "plan", "--at", DEFAULT_NOW, "--format", "csv"]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=project, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"courtship plan failed:\n{done.stderr[-2000:]}")
    return times[0], times[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--no-plan", action="store_true", help="skip the courtship plan runs")
    parser.add_argument(
        "--data", type=Path, help="read the files of this base (written before) instead"
    )
    parser.add_argument("--limit", type=float, default=1.5, help="exit 1 when a ratio is over this")
    args = parser.parse_args(argv)
    folder = args.data or Path(tempfile.mkdtemp(prefix="courtship-bench-readers-"))
    over: list[str] = []
    try:
        if args.data is None:
            start = time.perf_counter()
            counts = write_base(folder, args.customers, args.seed)
            print(
                f"{counts['customers']:,} customers, {counts['events']:,} events written in "
                f"{time.perf_counter() - start:.1f} s to {folder}"
            )
        print(f"{'file':<20} {'courtship':>10} {'polars':>10} {'ratio':>7}  load (1 min)")
        for name, role in [
            ("customers.csv", "customers"),
            ("customers.jsonl", "customers"),
            ("customers.parquet", "customers"),
            ("events.csv", "events"),
            ("events.jsonl", "events"),
            ("events.parquet", "events"),
        ]:
            path = folder / name
            if not path.exists():
                continue
            theirs, mine = timed_in_turn(plain(path), ours(path, role), args.repeat)
            ratio = mine / theirs
            print(
                f"{name:<20} {mine:>9.2f}s {theirs:>9.2f}s {ratio:>6.2f}x  "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )
            if ratio > args.limit:
                over.append(name)
        if not args.no_plan and args.data is None:
            first, second = plan_twice(folder, "customers.parquet", "events.parquet")
            print(f"courtship plan (parquet): first {first:.1f} s, unchanged base {second:.1f} s")
    finally:
        if args.data is None and args.keep:
            print(f"kept {folder}")
        elif args.data is None:
            shutil.rmtree(folder, ignore_errors=True)
    if over:
        print(f"over {args.limit}x: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
