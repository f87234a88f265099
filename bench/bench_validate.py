"""Benchmark: validate 500 playbooks, against the target of under one second.

Generates COUNT playbooks (default 500) into a temporary folder — copies of the bundled playbooks in
``playbooks/``, each copy with its own ids (``welcome-007``) and its references (``depends_on``,
``suppresses``) renamed to match, beside one copy of ``playbooks/templates`` — then times:

- ``courtship.validate.validate_files`` over all of them, REPEAT times (median, min, per playbook);
- as a baseline, in the same run, plain ``yaml.safe_load`` + ``jsonschema`` validation of the same
  files against ``schemas/playbook.schema.json`` (and the same with libyaml's ``CSafeLoader``);
- the command line end to end once: ``courtship validate FOLDER --format json``;
- one run under cProfile, whose hotspots it prints.

Exits 1 when the median of validate_files exceeds the target (1.0 s unless --target says).
Run it from the checkout: ``.venv/bin/python bench/bench_validate.py`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from courtship.schema import load_schema
from courtship.validate import validate_files
from courtship.yamlload import load_text

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "playbooks"
RESULTS = ROOT / "bench" / "results"


# ── the corpus ────────────────────────────────────────────────────────────


def _replace_at(lines: list[str], line: int, col: int, old: str, new: str) -> None:
    """Replace the scalar ``old`` (plain or quoted) that starts at ``line``:``col`` by ``new``."""
    row = lines[line - 1]
    start = col - 1
    if row[start : start + 1] in ("'", '"'):
        start += 1
    if row[start : start + len(old)] != old:
        raise ValueError(f"expected {old!r} at {line}:{col}, found {row[col - 1 :]!r}")
    lines[line - 1] = row[:start] + new + row[start + len(old) :]


def _renamed(text: str, rename: Callable[[str], str]) -> str:
    """``text`` with its id and the ids it refers to renamed, everything else byte for byte."""
    doc = load_text(text, "playbook.yaml")
    if not isinstance(doc.data, dict):
        raise ValueError("not a playbook")
    edits: list[tuple[int, int, str]] = []  # (line, col, old id)
    if isinstance(doc.data.get("id"), str):
        mark = doc.positions[("id",)]
        edits.append((mark.line, mark.col, doc.data["id"]))
    for key in ("depends_on", "suppresses"):
        for index, target in enumerate(doc.data.get(key) or []):
            mark = doc.positions[(key, index)]
            edits.append((mark.line, mark.col, target))
    lines = text.split("\n")
    for line, col, old in sorted(edits, reverse=True):  # right to left keeps columns valid
        _replace_at(lines, line, col, old, rename(old))
    return "\n".join(lines)


def generate(folder: Path, count: int) -> list[Path]:
    """COUNT playbooks in ``folder``: copies of the bundled ones, with distinct ids."""
    sources = sorted(BUNDLED.glob("*.yaml"))
    texts = [source.read_text(encoding="utf-8") for source in sources]
    ids = [load_text(text, "x").data["id"] for text in texts]
    shutil.copytree(BUNDLED / "templates", folder / "templates")
    files: list[Path] = []
    for copy in range(math.ceil(count / len(sources))):
        present = set(ids[: count - copy * len(sources)])  # the last copy may be partial

        def rename(old: str, copy: int = copy, present: set[str] = present) -> str:
            # A reference to a playbook the (partial) last copy lacks goes to the first copy.
            return f"{old}-{copy if old in present else 0:03d}"

        for source, text in zip(sources, texts, strict=True):
            if len(files) == count:
                break
            file = folder / f"{source.stem}-{copy:03d}.yaml"
            file.write_text(_renamed(text, rename), encoding="utf-8")
            files.append(file)
    return files


# ── timing ────────────────────────────────────────────────────────────────


def timed(function: Callable[[], Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def baseline(files: list[Path], loader: Any) -> Callable[[], int]:
    """Plain YAML loading plus JSON Schema validation of every file; returns the error count."""
    validator = jsonschema.Draft202012Validator(load_schema())

    def run() -> int:
        errors = 0
        for file in files:
            data = yaml.load(file.read_text(encoding="utf-8"), Loader=loader)
            errors += sum(1 for _ in validator.iter_errors(data))
        return errors

    return run


def run_cli(folder: Path) -> tuple[float, int, dict[str, Any] | None]:
    """``courtship validate FOLDER --format json``, end to end: (seconds, exit code, output)."""
    script = Path(sys.executable).with_name("courtship")
    command = [str(script)] if script.exists() else [shutil.which("courtship") or "courtship"]
    command += ["validate", str(folder), "--format", "json"]
    env = {key: value for key, value in os.environ.items() if key != "GITHUB_ACTIONS"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    try:
        output = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(done.stderr[-2000:])
        output = None
    return seconds, done.returncode, output


def profile(files: list[Path], top: int, save: Path | None) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    validate_files(files)
    profiler.disable()
    if save is not None:
        profiler.dump_stats(save)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


# ── report ────────────────────────────────────────────────────────────────


def _row(name: str, times: list[float], count: int) -> str:
    median, best = statistics.median(times), min(times)
    return f"  {name:<38} {median:8.3f} s {best:8.3f} s {median / count * 1000:9.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="playbooks to generate (500)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each (7)")
    parser.add_argument("--target", type=float, default=1.0, help="median to stay under, s (1.0)")
    parser.add_argument("--top", type=int, default=15, help="profile lines to print (15)")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI run")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument(
        "--save", action="store_true", help=f"write figures and profile to {RESULTS}"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="courtship-bench-") as tmp:
        folder = Path(tmp)
        files = generate(folder, args.count)
        sources = len(list(BUNDLED.glob("*.yaml")))
        templates = len(list((folder / "templates").glob("*.md")))

        cold_start = time.perf_counter()
        report = validate_files(files)  # warm-up: schema, catalogue and imports load once
        cold = time.perf_counter() - cold_start
        findings = len(report.findings)

        times = timed(lambda: validate_files(files), args.repeat)
        safe = timed(baseline(files, yaml.SafeLoader), args.repeat)
        fast_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        csafe = timed(baseline(files, fast_loader), args.repeat)
        cli = None if args.no_cli else run_cli(folder)
        if args.save:
            RESULTS.mkdir(parents=True, exist_ok=True)
        save = RESULTS / "validate.prof" if args.save else None
        hotspots = "" if args.no_profile else profile(files, args.top, save)

    median = statistics.median(times)
    count = args.count
    print(
        f"Courtship validate benchmark: {count} playbooks ({sources} bundled, copied with "
        f"distinct ids), {templates} templates"
    )
    print(
        f"Python {platform.python_version()}, PyYAML {yaml.__version__} "
        f"(libyaml {'yes' if yaml.__with_libyaml__ else 'no'}), jsonschema "
        f"{_version('jsonschema')}, {os.cpu_count()} CPUs, {args.repeat} runs each"
    )
    print()
    print(f"  {'':<38} {'median':>10} {'min':>10} {'per playbook':>12}")
    print(_row("courtship validate_files", times, count))
    print(_row("baseline: yaml.safe_load + jsonschema", safe, count))
    print(_row("baseline: CSafeLoader + jsonschema", csafe, count))
    print()
    print(f"  first run (cold caches)                {cold:8.3f} s")
    print(f"  findings in the corpus                 {findings:8d}")
    print(f"  courtship / safe_load baseline         {median / statistics.median(safe):8.2f} x")
    print(f"  courtship / CSafeLoader baseline       {median / statistics.median(csafe):8.2f} x")
    if cli is not None:
        seconds, code, output = cli
        summary = output["summary"] if output else "no JSON output"
        print(f"  CLI end to end (1 run)                 {seconds:8.3f} s  exit {code}, {summary}")
    verdict = "PASS" if median <= args.target else "FAIL"
    print()
    print(f"  target: median <= {args.target:.3f} s for {count} playbooks: {verdict}")
    if findings:
        print(f"  warning: the generated corpus has {findings} findings; the bundled playbooks")
        print("  are not clean, so this run did not time the all-valid path")
    if hotspots:
        print()
        print("cProfile of one validate_files run (cumulative, then own time):")
        print(hotspots)

    if args.save:
        figures = {
            "count": count,
            "repeat": args.repeat,
            "validate_files": {"median": median, "min": min(times), "runs": times},
            "baseline_safe_load": {"median": statistics.median(safe), "min": min(safe)},
            "baseline_csafe_load": {"median": statistics.median(csafe), "min": min(csafe)},
            "cold": cold,
            "cli": cli[0] if cli else None,
            "findings": findings,
            "target": args.target,
            "pass": verdict == "PASS",
        }
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (RESULTS / f"validate-{stamp}.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if verdict == "PASS" else 1


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
