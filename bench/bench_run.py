"""The whole path a user runs: `courtship run` from the files to the outbox or to an SMTP peer,
timed step by step with its peak memory, beside plain polars reading the same files in the same
run.

    .venv/bin/pip install -q -r bench/requirements.txt
    .venv/bin/python bench/bench_run.py                       # 1,000,000 customers x 50 playbooks
    .venv/bin/python bench/bench_run.py --customers 100000    # quicker
    .venv/bin/python bench/bench_run.py --data /tmp/base-1m   # generate once, reuse after

The base is `bench_engine.py`'s generator (fixed seed, ~10.7 events a customer), written as
`customers.csv` and `events.csv` and as Parquet (`customers.parquet`, `events.parquet`, the
same rows, typed as a warehouse writes them: `at` an instant, the dates dates) in a scratch
folder, or in `--data` (kept, and reused when it holds them); the playbooks are
`bench_engine.py`'s 50 (the bundled ones and their variations). Each `courtship run` is a
fresh process: `/usr/bin/time` gives its wall time and peak RSS, `COURTSHIP_TIMINGS`
its steps (load: validate and read; decide: facts to rendered messages; record; deliver). For
each format:

1. **first run** at the moment, to the outbox (`delivery.outbox`, every channel);
2. **next hour, unchanged**: the run an hour later on the same state and files;
3. **next hour, 1 % changed**: an hour later again, with one new event (a visit) for 1 % of the
   customers in the events file (a copy of the state, so each format starts alike);
4. **to SMTP**: the first run again on a fresh state, email to an aiosmtpd peer on 127.0.0.1 in
   another process (`--smtp-workers` sessions), the other channels to the outbox; the peer's
   count must equal the emails delivered.

Targets (issue 10): from Parquet at most 20 s to the outbox, from CSV at most 25 s, peak RSS at
most 3 GB; the steady run's decisions (2 and 3) under 1 s. The figures go to
`bench/results/run-<customers>.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
COURTSHIP = str(Path(sys.executable).parent / "courtship")
AT = "2026-11-23T15:00:00Z"
NEXT = "2026-11-23T16:00:00Z"
AFTER = "2026-11-23T17:00:00Z"
CHANGED_AT = "2026-11-23T16:30:00.000000Z"


def timed_run(project: Path, at: str) -> dict[str, Any]:
    """One `courtship run` in its own process: wall seconds, peak RSS in MB, each step's
    seconds, messages delivered (or the error it stopped with)."""
    command = ["/usr/bin/time", "-f", "%e %M", COURTSHIP, "run", "--at", at]
    command += ["--project", str(project), "-q", "-f", "json"]
    env = {"CI": "1", "PATH": "/usr/bin:/bin", "COURTSHIP_TIMINGS": "1"}
    env["COURTSHIP_UNSUBSCRIBE_SECRET"] = "bench-run-secret"  # marketing emails need the link
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = done.stderr.strip().splitlines()
    if done.returncode not in (0, 1) or not done.stdout.strip():
        return {"error": (lines or ["no output"])[0][:300]}
    seconds, kilobytes = lines[-1].split()
    steps = next((json.loads(line)["seconds"] for line in lines if '"seconds"' in line), {})
    summary = json.loads(done.stdout)
    return {
        "seconds": float(seconds),
        "peak_rss_mb": int(kilobytes) // 1024,
        "steps": steps,
        "delivered": summary["delivered"],
    }


def project(
    folder: Path, playbooks: Path, customers: Path, events: Path, channels: str = ""
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "courtship.yaml").write_text(
        f"playbooks: {playbooks}\ncustomers: {customers}\nevents: {events}\n"
        f"state: {folder / 'state' / 'state.sqlite'}\n"
        "brand: {name: Lotus & Co, url: https://lotus.example.org, signature: Sam}\n"
        f"delivery: {{outbox: {folder / 'outbox'}}}\n" + channels
    )
    return folder


def base_files(data: Path, customers: int, playbooks: int, seed: int) -> dict[str, Path]:
    """The base and playbooks in ``data``, generated unless a run with the same figures left
    them there."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_engine import write_playbooks
    from bench_simulate import write_base

    mark = data / "made.json"
    wanted = {"customers": customers, "playbooks": playbooks, "seed": seed, "parquet": "typed"}
    if not (mark.exists() and json.loads(mark.read_text()) == wanted):
        shutil.rmtree(data / "playbooks", ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True)
        write_playbooks(data / "playbooks", playbooks, seed)
        write_base(data, customers, seed)
        # Typed, as a warehouse writes Parquet: instants and dates as such, not text.
        for name in ("customers", "events"):
            typed = pl.read_csv(data / f"{name}.csv", try_parse_dates=True)
            typed.write_parquet(data / f"{name}.parquet")
        mark.write_text(json.dumps(wanted))
    return {
        "playbooks": data / "playbooks",
        "customers.csv": data / "customers.csv",
        "events.csv": data / "events.csv",
        "customers.parquet": data / "customers.parquet",
        "events.parquet": data / "events.parquet",
    }


def with_changes(events: Path, customers: Path, out: Path, share: float) -> int:
    """``events`` and one new visit for ``share`` of the customers (every 1/share-th), written
    to ``out`` in the same format; how many events were added."""
    parquet = events.suffix == ".parquet"
    ids = (pl.read_parquet if parquet else pl.read_csv)(customers, columns=["customer_id"])
    step = max(1, round(1 / share))
    chosen = ids.gather_every(step).get_column("customer_id").cast(pl.String())
    old = pl.read_parquet(events) if parquet else pl.read_csv(events, infer_schema=False)
    at = pl.lit(CHANGED_AT)
    if isinstance(old.schema["at"], pl.Datetime):  # typed Parquet: an instant, as the others
        at = at.str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC")
    fresh = pl.DataFrame({"customer_id": chosen}).with_columns(
        pl.lit("visit").alias("type"), at.alias("at")
    )
    fresh = fresh.cast({name: old.schema[name] for name in fresh.columns if name in old.schema})
    both = pl.concat([old, fresh], how="diagonal_relaxed")
    if parquet:
        both.write_parquet(out)
    else:
        both.write_csv(out)
    return fresh.height


def plain_polars(files: dict[str, Path]) -> dict[str, float]:
    """The baseline: plain polars reading the same files, in this run."""
    seconds = {}
    for name, read in (
        ("customers.csv", pl.read_csv),
        ("events.csv", pl.read_csv),
        ("customers.parquet", lambda f: pl.scan_parquet(f).collect()),
        ("events.parquet", lambda f: pl.scan_parquet(f).collect()),
    ):
        began = time.perf_counter()
        read(files[name])
        seconds[name] = round(time.perf_counter() - began, 2)
    return seconds


def _serve_smtp(port: int, ready: Any, stop: Any, counted: Any) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_delivery import _serve_smtp as serve

    serve(port, ready, stop, counted, False)  # aiosmtpd as it is: no PIPELINING


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--playbooks", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, help="keep the generated base here, and reuse it")
    parser.add_argument("--smtp-workers", type=int, default=4)
    parser.add_argument("--formats", default="parquet,csv", help="parquet, csv or both")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_delivery import free_port

    results: dict[str, Any] = {
        "customers": args.customers,
        "playbooks": args.playbooks,
        "load_before": os.getloadavg()[0],
    }
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="courtship-bench-run-") as scratch:
        folder = Path(scratch)
        files = base_files(args.data or folder / "data", args.customers, args.playbooks, args.seed)
        results["plain polars"] = plain_polars(files)
        for name in args.formats.split(","):
            people, happenings = files[f"customers.{name}"], files[f"events.{name}"]
            figures: dict[str, Any] = {}
            results[f"from {name}"] = figures
            where = project(folder / name, files["playbooks"], people, happenings)
            figures["first run"] = timed_run(where, AT)
            print(name, "first run", figures["first run"], flush=True)
            if "error" in figures["first run"]:
                continue
            figures["next hour, unchanged"] = timed_run(where, NEXT)
            print(name, "next hour", figures["next hour, unchanged"], flush=True)
            changed = folder / f"changed.{name}"
            figures["events added"] = with_changes(happenings, people, changed, 0.01)
            again = project(folder / f"{name}-changed", files["playbooks"], people, changed)
            shutil.copytree(where / "state", again / "state")
            figures["next hour, 1 % changed"] = timed_run(again, AFTER)
            print(name, "1 % changed", figures["next hour, 1 % changed"], flush=True)
            changed.unlink()

            context = multiprocessing.get_context("spawn")
            ready, stop, counted = context.Event(), context.Event(), context.Value("i", 0)
            port = free_port()
            peer = context.Process(target=_serve_smtp, args=(port, ready, stop, counted))
            peer.start()
            ready.wait(60)
            channels = (
                "channels:\n"
                f"  email: {{host: 127.0.0.1, port: {port}, security: none, "
                "from: hello@lotus.example.org, local_hostname: bench.test, "
                f"workers: {args.smtp_workers}}}\n"
                "  sms: {via: outbox}\n  instagram: {via: outbox}\n"
            )
            try:
                smtp = project(
                    folder / f"{name}-smtp", files["playbooks"], people, happenings, channels
                )
                figures["to SMTP"] = timed_run(smtp, AT)
            finally:
                stop.set()
                peer.join(60)
            figures["to SMTP"]["at the peer"] = counted.value
            print(name, "to SMTP", figures["to SMTP"], flush=True)
            emails = figures["to SMTP"].get("delivered", {}).get("email", 0)
            if not emails or emails != counted.value:
                missed.append(f"{name}: {emails} emails delivered, {counted.value} at the peer")
    results["load_after"] = os.getloadavg()[0]
    results["missed"] = missed
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"run-{args.customers}.json").write_text(json.dumps(results, indent=2) + "\n")
    if missed:
        sys.exit("the SMTP peer did not receive every email: " + "; ".join(missed))


if __name__ == "__main__":
    main()
