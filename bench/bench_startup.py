"""Start-up of the commands a user types, against `python -c pass` in the same run.

    .venv/bin/python bench/bench_startup.py [--runs 9] [--no-plan] [--instructions]

Each command is started as a user starts it (the `courtship` script of the venv), timed wall
clock from start to exit, and by the CPU time (user + system) it took, which a busy machine
inflates less; the median of ``--runs``. The runs go round robin (one of each command, then the
next round), so a change of load touches every command alike. The `validate` runs are in a
scratch copy of the bundled project (courtship.yaml and playbooks/: 16 files, 50 templates):

- ``validate, nothing kept``: ``.courtship/validate.json`` removed before each run;
- ``validate, unchanged``: the answer kept from the run before;
- ``validate, one playbook edited``: before each run one playbook (the next one each round)
  gets another title, so the whole answer is not the one kept: the edited file is read and
  checked (jsonschema imported), each other file is given again from what is kept of it.

With ``--instructions``, each command is also run once under valgrind and the instructions it
executes are counted: a figure the load of a shared machine does not change.

Targets (issue 10): `courtship --help` and `courtship validate` of the bundled library, kept or
after an edit, each under 0.4 s of wall time. Exits 1 when a median misses one (on an idle
machine: the load average is printed before and after).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COURTSHIP = Path(sys.executable).parent / "courtship"
TARGET = 0.4
TARGETS = ("courtship --help", "validate, unchanged", "validate, one playbook edited")


#: As a user's shell starts them: Python keeps the compiled bytecode of the modules it imports
#: (``PYTHONDONTWRITEBYTECODE``, set in some sandboxes, would compile every module of Courtship
#: at every start).
ENVIRONMENT = {
    name: value
    for name, value in os.environ.items()
    if name not in ("PYTHONDONTWRITEBYTECODE", "GITHUB_ACTIONS")
}


def run(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv`` in ``cwd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENVIRONMENT, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def instructions(argv: list[str], cwd: Path) -> int | None:
    """The instructions one run of ``argv`` executes, counted by valgrind (None without it):
    a figure the machine's load does not change."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    if argv[0] == str(COURTSHIP):  # the script's interpreter, under valgrind
        argv = [sys.executable, *argv]
    done = subprocess.run(
        [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *argv],
        cwd=cwd,
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stderr.splitlines():
        if "I   refs:" in line or "I refs:" in line:
            return int(line.rsplit(maxsplit=1)[-1].replace(",", ""))
    return None


def load() -> str:
    return " ".join(f"{figure:.2f}" for figure in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--no-plan", action="store_true", help="skip `courtship plan`")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each command's instructions once with valgrind (slow: ~15 s each)",
    )
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="courtship-startup-"))
    project = scratch / "project"
    project.mkdir()
    shutil.copy(ROOT / "courtship.yaml", project / "courtship.yaml")
    shutil.copytree(ROOT / "playbooks", project / "playbooks")
    playbooks = sorted((project / "playbooks").glob("*.yaml"))
    texts = {file: file.read_bytes() for file in playbooks}
    kept = project / ".courtship" / "validate.json"
    validate = [str(COURTSHIP), "validate"]
    edits = 0

    def nothing_kept() -> None:
        kept.unlink(missing_ok=True)

    def edit_one() -> None:
        """A marketer's edit: another title (what the file says changes, so it is read,
        checked against the schema and checked again; the others are given again)."""
        nonlocal edits
        edits += 1
        file = playbooks[edits % len(playbooks)]
        file.write_bytes(texts[file].replace(b"\ntitle: ", f"\ntitle: (edit {edits}) ".encode(), 1))

    # name → (argv, folder, what to do before each run)
    commands: dict[str, tuple[list[str], Path, Callable[[], None] | None]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], ROOT, None),
        "courtship --help": ([str(COURTSHIP), "--help"], ROOT, None),
        "validate, nothing kept": (validate, project, nothing_kept),
        "validate, unchanged": (validate, project, None),
        "validate, one playbook edited": (validate, project, edit_one),
    }
    if not options.no_plan:
        plan = [str(COURTSHIP), "plan", "--at", "2026-11-23T15:00:00Z"]
        commands["courtship plan (bundled)"] = (plan, ROOT, None)

    print(f"load average before: {load()}")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    # warm-up: the file system's caches, every module's bytecode, and an answer kept
    for argv, folder, _ in commands.values():
        run(argv, folder)
    nothing_kept()
    run(validate, project)
    for _ in range(options.runs):
        for name, (argv, folder, before) in commands.items():
            if before is not None:
                before()
            times[name].append(run(argv, folder))
    print(f"load average after:  {load()}")

    baseline = statistics.median(wall for wall, _ in times["python -c pass"])
    print(f"medians (and the fastest) of {options.runs} runs")
    print(f"{'command':<30} {'wall':>15} {'cpu':>15} {'ratio to python':>16}  target")
    missed = []
    for name, measured in times.items():
        wall = statistics.median(w for w, _ in measured)
        cpu = statistics.median(c for _, c in measured)
        fastest = min(w for w, _ in measured), min(c for _, c in measured)
        verdict = ""
        if name in TARGETS:
            verdict = f"< {TARGET} s: " + ("met" if wall < TARGET else "missed")
            if wall >= TARGET:
                missed.append(name)
        print(
            f"{name:<30} {wall:>6.3f}s ({fastest[0]:.3f}) {cpu:>6.3f}s ({fastest[1]:.3f})"
            f" {wall / baseline:>15.1f}x  {verdict}"
        )
    if options.instructions:
        print("instructions (valgrind), one run each:")
        counted = {}
        for name, (argv, folder, before) in commands.items():
            if name.startswith("courtship plan"):
                continue
            if before is not None:
                before()
            counted[name] = instructions(argv, folder)
        base = counted.get("python -c pass")
        for name, count in counted.items():
            if count is None or not base:
                print(f"{name:<30} (valgrind not found)")
                continue
            print(f"{name:<30} {count / 1e9:>7.3f} G {count / base:>15.1f}x")
    shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
