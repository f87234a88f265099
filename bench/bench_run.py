"""The whole path a user runs: `courtship run` from the files to the outbox, timed with its peak
memory, beside plain polars reading the same files in the same run.

    .venv/bin/pip install -q -r bench/requirements.txt
    .venv/bin/python bench/bench_run.py                       # 1,000,000 customers x 50 playbooks
    .venv/bin/python bench/bench_run.py --customers 100000    # quicker

The base is `bench_engine.py`'s generator (fixed seed, ~10.7 events a customer), written as
`customers.csv` and `events.csv` (and as Parquet when the files plugin reads it) in a scratch
folder; the playbooks are `bench_engine.py`'s 50 (the bundled ones and their variations). Each
`courtship run` is a fresh process (`/usr/bin/time` gives its wall time and peak RSS): the first
run at the moment, then the next hour's run on the same state (the steady run). Targets (issue
10): from Parquet at most 20 s to the outbox, from CSV at most 25 s, peak RSS at most 3 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
COURTSHIP = str(Path(sys.executable).parent / "courtship")
AT = "2026-11-23T15:00:00Z"
NEXT = "2026-11-23T16:00:00Z"


def timed_run(project: Path, at: str) -> dict[str, float | int | str]:
    """One `courtship run` in its own process: wall seconds, peak RSS in MB, messages (or the
    error it stopped with)."""
    command = ["/usr/bin/time", "-f", "%e %M", COURTSHIP, "run", "--at", at]
    command += ["--project", str(project), "-q", "-f", "json"]
    done = subprocess.run(
        command, capture_output=True, text=True, env={"CI": "1", "PATH": "/usr/bin:/bin"}
    )
    if done.returncode not in (0, 1) or not done.stdout.strip():
        return {"error": done.stderr.strip().splitlines()[0][:300]}
    seconds, kilobytes = done.stderr.strip().splitlines()[-1].split()
    summary = json.loads(done.stdout)
    return {
        "seconds": float(seconds),
        "peak_rss_mb": int(kilobytes) // 1024,
        "delivered": sum(summary["delivered"].values()),
    }


def project(folder: Path, playbooks: Path, customers: Path, events: Path) -> Path:
    (folder / "courtship.yaml").write_text(
        f"playbooks: {playbooks}\ncustomers: {customers}\nevents: {events}\n"
        f"state: {folder / 'state' / 'state.sqlite'}\n"
        "brand: {name: Lotus & Co, url: https://lotus.example.org, signature: Sam}\n"
        f"delivery: {{outbox: {folder / 'outbox'}}}\n"
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--playbooks", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_engine import write_playbooks
    from bench_simulate import write_base

    results: dict[str, object] = {"customers": args.customers, "playbooks": args.playbooks}
    with tempfile.TemporaryDirectory(prefix="courtship-bench-run-") as scratch:
        folder = Path(scratch)
        write_playbooks(folder / "playbooks", args.playbooks, args.seed)
        customers, events, count = write_base(folder, args.customers, args.seed)
        results["events"] = count
        began = time.perf_counter()
        pl.read_csv(customers)
        pl.read_csv(events)
        results["plain polars, both CSV files"] = round(time.perf_counter() - began, 2)
        formats = {"csv": (customers, events)}
        try:
            pl.read_csv(customers).write_parquet(folder / "customers.parquet")
            pl.read_csv(events).write_parquet(folder / "events.parquet")
            began = time.perf_counter()
            pl.read_parquet(folder / "customers.parquet")
            pl.read_parquet(folder / "events.parquet")
            results["plain polars, both Parquet files"] = round(time.perf_counter() - began, 2)
            formats["parquet"] = (folder / "customers.parquet", folder / "events.parquet")
        except (OSError, pl.exceptions.PolarsError) as error:
            print(f"no Parquet: {error}")
        for name, (people, happenings) in formats.items():
            run_folder = folder / name
            run_folder.mkdir()
            where = project(run_folder, folder / "playbooks", people, happenings)
            results[f"run from {name}"] = first = timed_run(where, AT)
            if "error" not in first:
                results[f"next hour from {name}"] = timed_run(where, NEXT)
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "run.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
