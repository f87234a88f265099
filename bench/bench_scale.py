"""`courtship run --executor dask` at scale: 1,000,000 and 10,000,000 customers x 50 playbooks,
planned and run to the outbox on a LocalCluster of this machine, from Parquet files each part
reads itself; time, peak memory per worker and in total, and the ratio of times 10 M / 1 M.

    .venv/bin/pip install -q -c constraints.txt -e '.[dask]' -r bench/requirements.txt
    .venv/bin/python bench/bench_scale.py                          # 1 M and 10 M
    .venv/bin/python bench/bench_scale.py --customers 1000000 3000000 --baseline

The base is `bench_engine.py`'s generator (fixed seed, ~10.7 events a customer), made in chunks
of `--part` customers (each its own ids, half of its referrals to friends in the next chunk, so
referral facts cross parts), written once to `--folder` (default /tmp/courtship-scale) as
`customers/part-NNNN.parquet` and `events/part-NNNN.parquet` (each chunk's events beside its
customers: a part reads its own pair of files) and reused by later runs. A base of N customers is
the first N / part files. The playbooks are `bench_engine.py`'s 50.

Each `courtship run` is a fresh process: wall time and the driver's peak RSS by `/usr/bin/time`,
each worker's peak RSS from the run's summary, and the total resident memory of the whole process
tree (driver, scheduler, nannies, workers) sampled every half second. `--baseline` also runs the
smallest base in one process (`--executor process`), in the same run, for the ratio. Figures go
to `bench/results/scale.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
COURTSHIP = str(Path(sys.executable).parent / "courtship")
AT = "2026-11-23T15:00:00Z"


def write_chunks(folder: Path, chunks: int, part: int, seed: int) -> None:
    """Chunks 0 … chunks-1 of the base, each written once (a chunk already there is kept)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_engine import generate_base

    now = dt.datetime.fromisoformat(AT)
    (folder / "customers").mkdir(parents=True, exist_ok=True)
    (folder / "events").mkdir(parents=True, exist_ok=True)
    for number in range(chunks):
        people, happenings = (
            folder / kind / f"part-{number:04d}.parquet" for kind in ("customers", "events")
        )
        if people.exists() and happenings.exists():
            continue
        began = time.perf_counter()
        base = generate_base(part, seed + number, now)
        mine, other = f"c{number:04d}-", f"c{number + 1:04d}-"  # the last chunk's: outsiders
        friend = pl.col("friend_id")
        # half the referrals to friends of the next chunk: the referral graph crosses parts
        cross = friend.str.slice(2).cast(pl.Int64, strict=False) % 2 == 1
        events = base.events.with_columns(
            pl.col("customer_id").str.replace("c-", mine, literal=True),
            pl.when(friend.str.starts_with("c-") & cross)
            .then(friend.str.replace("c-", other, literal=True))
            .otherwise(
                friend.str.replace("c-", mine, literal=True).str.replace(
                    "x-", f"x{number:04d}-", literal=True
                )
            )
            .alias("friend_id"),
        )
        customers = base.customers.with_columns(
            pl.col("customer_id").str.replace("c-", mine, literal=True)
        )
        customers.write_parquet(people.with_suffix(".tmp"))
        events.write_parquet(happenings.with_suffix(".tmp"))
        people.with_suffix(".tmp").replace(people)
        happenings.with_suffix(".tmp").replace(happenings)
        took = time.perf_counter() - began
        print(f"chunk {number}: {part} customers, {events.height} events, {took:.1f} s", flush=True)
        del base, events, customers
    (folder / "chunks.json").write_text(
        json.dumps({"chunks": max(_chunks_of(folder), chunks), "part": part})
    )


def _chunks_of(folder: Path) -> int:
    marker = folder / "chunks.json"
    return json.loads(marker.read_text())["chunks"] if marker.exists() else 0


def base_of(folder: Path, customers: int, part: int) -> Path:
    """A folder with the first customers / part chunks (links to them)."""
    chosen = folder / f"base-{customers}"
    if chosen.exists():
        shutil.rmtree(chosen)
    for kind in ("customers", "events"):
        (chosen / kind).mkdir(parents=True)
        for number in range(customers // part):
            name = f"part-{number:04d}.parquet"
            (chosen / kind / name).symlink_to(folder / kind / name)
    return chosen


def project(folder: Path, playbooks: Path, base: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "courtship.yaml").write_text(
        f"playbooks: {playbooks}\ncustomers: {base / 'customers'}\nevents: {base / 'events'}\n"
        f"state: {folder / 'state' / 'state.sqlite'}\n"
        "brand: {name: Lotus & Co, url: https://lotus.example.org, signature: Sam}\n"
        f"delivery: {{outbox: {folder / 'outbox'}}}\n"
    )
    return folder


def tree_rss(pid: int) -> int:
    """The resident memory of a process and all its descendants, in bytes."""
    import psutil

    try:
        top = psutil.Process(pid)
        processes = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def timed_run(where: Path, executor: str) -> dict[str, Any]:
    command = ["/usr/bin/time", "-f", "%e %M", COURTSHIP, "run", "--at", AT]
    command += ["--project", str(where), "-q", "-f", "json", "--executor", executor]
    env = {"CI": "1", "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peak[0] = max(peak[0], tree_rss(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    done.set()
    sampler.join()
    if process.returncode not in (0, 1) or not out.strip():
        return {"error": err.strip()[-1500:]}
    seconds, kilobytes = err.strip().splitlines()[-1].split()
    summary = json.loads(out)
    # /usr/bin/time's peak is the largest of the process and its descendants (the workers):
    # the driver's own is in the run's summary
    result: dict[str, Any] = {
        "seconds": float(seconds),
        "largest_process_peak_rss_mib": int(kilobytes) // 1024,
        "total_peak_rss_mib": peak[0] // 2**20,
        "decided": summary["decided"],
        "delivered": sum(summary["delivered"].values()),
    }
    if "dask" in summary:
        result["parts"] = summary["dask"]["parts"]
        result["driver_peak_rss_mib"] = summary["dask"]["peak_memory_mib"]["driver"]
        result["worker_peak_rss_mib"] = {
            k: v for k, v in summary["dask"]["peak_memory_mib"].items() if k != "driver"
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--part", type=int, default=500_000, help="customers per part (file)")
    parser.add_argument("--playbooks", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/courtship-scale"))
    parser.add_argument("--baseline", action="store_true", help="the smallest base in one process")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_engine import machine_load, write_playbooks

    sizes = sorted(args.customers)
    write_chunks(args.folder, max(sizes) // args.part, args.part, args.seed)
    playbooks = args.folder / "playbooks"
    if not playbooks.exists():
        write_playbooks(playbooks, args.playbooks, args.seed)
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "part": args.part,
        "playbooks": args.playbooks,
        "load_before": machine_load(),
        "runs": {},
    }
    for size in sizes:
        base = base_of(args.folder, size, args.part)
        if args.baseline and size == sizes[0]:
            where = project(args.folder / f"run-{size}-process", playbooks, base)
            results["runs"][f"{size} in one process"] = timed_run(where, "process")
            print(json.dumps(results["runs"], indent=2), flush=True)
        where = project(args.folder / f"run-{size}-dask", playbooks, base)
        results["runs"][f"{size} on dask"] = timed_run(where, "dask")
        print(json.dumps(results["runs"], indent=2), flush=True)
    runs = results["runs"]
    small, large = f"{sizes[0]} on dask", f"{sizes[-1]} on dask"
    if len(sizes) > 1 and "seconds" in runs[small] and "seconds" in runs[large]:
        results["ratio_of_times"] = round(runs[large]["seconds"] / runs[small]["seconds"], 2)
        results["ratio_of_customers"] = sizes[-1] / sizes[0]
    results["load_after"] = machine_load()
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
