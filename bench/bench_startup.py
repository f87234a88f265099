"""Start-up of the commands a user types, against `python -c pass` in the same run.

    .venv/bin/python bench/bench_startup.py [--runs 7]

Each command is started as a user starts it (the `courtship` script of the venv, in the
repository, with the bundled courtship.yaml), timed wall clock from start to exit; the median of
``--runs``. Targets (issue 10): `courtship --help` and `courtship validate` of the bundled library
each under 0.4 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COURTSHIP = Path(sys.executable).parent / "courtship"
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "courtship --help": [str(COURTSHIP), "--help"],
    "courtship validate": [str(COURTSHIP), "validate"],
    "courtship plan (bundled)": [str(COURTSHIP), "plan", "--at", "2026-11-23T15:00:00Z"],
}


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    baseline = median_seconds(COMMANDS["python -c pass"], runs)
    print(f"{'command':<28} {'median':>8} {'ratio to python':>16}")
    for name, argv in COMMANDS.items():
        seconds = median_seconds(argv, runs)
        print(f"{name:<28} {seconds:>7.3f}s {seconds / baseline:>15.1f}x")


if __name__ == "__main__":
    main()
