"""Reading the customer base for a run: through the source plugins of ``sources:``, or the files of
``customers:`` and ``events:``, with an event cache for incremental sources.

With ``sources.events.incremental: true``, the events already read are kept in
``events.parquet`` beside the state store, and each run asks the source only for events after the
latest one it has (``read(since)``: a ``WHERE at > :since`` for SQL). Facts still see the whole
history; the source is spared re-reading it.

Files of text (CSV, JSON Lines) are parsed once per change: the base as read is kept in ``index/``
too (``read_customers.parquet``, ``read_events.parquet``, ``read.json``), under the files'
fingerprint below, the declared facts they were typed by and the readers' source.

Beside the state too, in ``index/``, the loading-time index of the base (each event numbered by
its customer's row, in customer order; the referrals numbered the same way: see
``courtship.engine.facts.event_rows``), saved with a fingerprint of what it was built from: the
files' paths, sizes and modification times (for ``customers:``/``events:``), or a hash of the
customers' ids and the events (for ``sources:``). A run whose fingerprint matches reads the
index instead of building it; any other builds it and saves it again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

import courtship
from courtship.plugins import Registry
from courtship.project import Project
from courtship.sources import (
    CustomerBase,
    SourceError,
    check_attribute_columns,
    compact,
    empty_events,
    is_glob,
    parquet_files,
    read_customers_file,
    read_events_file,
    read_source,
)

CACHE_FILE = "events.parquet"


def read_base(project: Project, registry: Registry, *, dry_run: bool) -> CustomerBase:
    """The customers and their events, as the project file says, with the loading-time index
    read from beside the state when the base has not changed (built and saved when it has).
    Raises ``SourceError``."""
    if project.sources:
        base = compact(_from_sources(project, registry, dry_run=dry_run))
        with_index(base, _index_folder(project, dry_run), _content_mark(base))
        return base
    try:
        mark = _files_mark(project)  # before reading: a file changed meanwhile is read again
    except (OSError, SourceError):
        mark = None  # a missing file: reading it names it
    if mark is None:
        return _from_files(project, registry)
    place = _index_folder(project, dry_run)
    # Text files (CSV, JSON Lines) are parsed once per change: the base as read is kept too.
    facts = registry.facts() | project.attributes
    declared = sorted((name, repr(spec)) for name, spec in facts.items())
    read_as = json.dumps([mark, _readers_mark(), declared])
    text = any(
        path is not None and file_format(path, "") in ("csv", "jsonl")
        for path in (project.customers, project.events)
    )
    base = _read_parsed(place[0], read_as) if text else None
    if base is None:
        base = _from_files(project, registry)
        if text and place[1]:
            _save_parsed(place[0], read_as, base)
    with_index(base, place, mark)
    return base


def _from_files(project: Project, registry: Registry) -> CustomerBase:
    if project.customers is None:
        raise SourceError(
            project.root / "courtship.yaml",
            None,
            "customers",
            "the project file names no customers",
            "add customers: path/to/customers.csv, or a sources: section",
        )
    customers = read_customers_file(
        project.customers,
        format=file_format(project.customers, "csv"),
        facts=registry.facts() | project.attributes,
    )
    check_attribute_columns(customers, project.attributes, project.root / "courtship.yaml")
    if project.events is None:
        events = empty_events()
    else:
        events = read_events_file(project.events, format=file_format(project.events, "jsonl"))
    # Read in pieces (streaming), kept whole: the engine filters and joins them many times.
    return compact(CustomerBase(customers.rechunk(), events))


def file_format(path: Path, default: str) -> str:
    """How ``customers:`` or ``events:`` is written, by its name: ``.csv``, ``.jsonl``, or
    Parquet (``.parquet``, a folder, or a glob); ``default`` for any other name."""
    if path.suffix.lower() == ".parquet" or path.is_dir() or is_glob(path):
        return "parquet"
    if path.suffix.lower() == ".csv":
        return "csv"
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    return default


def _create(project: Project, registry: Registry, role: str, settings: dict[str, Any]) -> Any:
    available = registry.sources()
    kind = settings.get("type")
    if kind not in available:
        raise SourceError(
            project.root / "courtship.yaml",
            None,
            f"sources.{role}.type",
            f"no source plugin '{kind}'",
            f"installed source types: {', '.join(sorted(available)) or 'none'}",
        )
    return available[kind].create(settings, role, project.root)


def _from_sources(project: Project, registry: Registry, *, dry_run: bool) -> CustomerBase:
    settings = {role: dict(value) for role, value in project.sources.items()}
    if "customers" not in settings:
        raise SourceError(
            project.root / "courtship.yaml",
            None,
            "sources.customers",
            "no customer source",
            "add sources: {customers: {type: csv, path: ...}}",
        )
    customers = read_source(
        _create(project, registry, "customers", settings["customers"]),
        facts=registry.facts() | project.attributes,
        where=f"sources.customers ({settings['customers'].get('type')})",
    )
    check_attribute_columns(customers, project.attributes, project.root / "courtship.yaml")
    if "events" not in settings:
        return CustomerBase(customers, empty_events())
    incremental = bool(settings["events"].pop("incremental", False))
    source = _create(project, registry, "events", settings["events"])
    if not incremental:
        return CustomerBase(customers, source.read(None))
    cache = _cache_path(project)
    known = _read_cache(cache)
    since = known["at"].max() if known is not None and known.height else None
    fresh = source.read(since)
    events = fresh if known is None else pl.concat([known, fresh], how="diagonal_relaxed")
    if not dry_run and fresh.height:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".tmp")
        events.write_parquet(partial)
        partial.replace(cache)  # atomic: a crash leaves the old cache whole
    return CustomerBase(customers, events)


def _read_cache(cache: Path) -> pl.DataFrame | None:
    """The events read so far; None when there are none, or the file is damaged (or not
    ours): it is a cache of what the source holds, read again from the start."""
    if not cache.exists():
        return None
    try:
        known = pl.read_parquet(cache)
    except (pl.exceptions.PolarsError, OSError, ValueError):
        return None
    at = known.schema.get("at")
    if not {"customer_id", "type"} <= set(known.columns) or not isinstance(at, pl.Datetime):
        return None
    return known


def _cache_folder(project: Project) -> Path:
    return project.state.parent if project.state else project.root / ".courtship"


def _index_folder(project: Project, dry_run: bool) -> tuple[Path, bool]:
    """Where the index is kept, and whether it may be written there: a dry run (plan,
    simulate) writes it only beside a state store that exists, and never creates the folder."""
    folder = _cache_folder(project)
    return folder / INDEX_FOLDER, not dry_run or folder.is_dir()


def _cache_path(project: Project) -> Path:
    return _cache_folder(project) / CACHE_FILE


# ── the loading-time index, kept across runs ─────────────────────────────

#: The folder beside the state that holds the index and its fingerprint.
INDEX_FOLDER = "index"
_INDEX_PARTS = ("event_rows", "referral_rows")
_MARK_FILE = "fingerprint.json"
#: The index's columns and their types: an index kept in another layout is built again.
_INDEX_LAYOUT = 2  # 2: the channel held as a category


def _files_mark(project: Project) -> str:
    """What the index of the files of ``customers:`` and ``events:`` was built from: each
    file's path, size and modification time (and the versions that built it)."""
    files: list[Path] = []
    for path in (project.customers, project.events):
        if path is not None:
            files.extend(parquet_files(path) if file_format(path, "") == "parquet" else [path])
    stats = []
    for file in files:
        status = file.stat()
        stats.append([str(file.resolve()), status.st_size, status.st_mtime_ns])
    return json.dumps(["files", courtship.__version__, pl.__version__, _INDEX_LAYOUT, stats])


def _content_mark(base: CustomerBase) -> str:
    """What the index of a base read through sources was built from: a hash of the customers'
    ids (in order) and of every event."""
    ids = base.customers.select(pl.col("customer_id").cast(pl.String())).hash_rows(seed=7)
    events = base.events.hash_rows(seed=11) if base.events.height else pl.Series([0])
    columns = [f"{name}:{dtype}" for name, dtype in base.events.schema.items()]
    shape = [base.customers.height, base.events.height, columns]
    return json.dumps(
        [
            "content",
            courtship.__version__,
            pl.__version__,
            _INDEX_LAYOUT,
            shape,
            int((ids * pl.int_range(1, ids.len() + 1, eager=True)).sum() or 0),
            int(events.sum() or 0),
        ]
    )


def with_index(base: CustomerBase, place: tuple[Path, bool], mark: str) -> None:
    """Give ``base`` its loading-time index: read from the folder of ``place`` when saved there
    from the same ``mark``, or built now and saved there when ``place`` allows it (a cache: one
    that cannot be read or written is built again, and nothing else changes)."""
    from courtship.engine.facts import event_rows, referral_rows

    folder, writable = place
    index = _read_index(folder, mark)
    if index is not None:
        # Kept with the base as event_rows and referral_rows keep what they build: tied to
        # these very customer and event frames.
        for part, rows in zip(_INDEX_PARTS, index, strict=True):
            base.__dict__[f"_{part}"] = (base.customers, base.events, rows)
        base.__dict__["_index_mark"] = (base.customers, base.events, mark)
        return
    built = (event_rows(base), referral_rows(base))
    # What the run's aggregates were counted from (``courtship.engine.carry``).
    base.__dict__["_index_mark"] = (base.customers, base.events, mark)
    if writable:
        _keep(folder, _MARK_FILE, mark, dict(zip(_INDEX_PARTS, built, strict=True)))


def _keep(folder: Path, mark_file: str, mark: str, frames: dict[str, pl.DataFrame]) -> None:
    """Write ``frames`` (``<name>.parquet``) into ``folder``, then ``mark`` into ``mark_file``,
    last: what a crash cuts short is never read (``_kept``). A cache: a full disk or a folder
    we may not write leaves it out, and it is made again next time."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / mark_file).unlink(missing_ok=True)  # the old one is no longer whole
        for name, frame in frames.items():
            partial = folder / f"{name}.tmp"
            # one row group: read back as whole columns, with nothing to put together
            frame.write_parquet(partial, compression="lz4", row_group_size=max(1, frame.height))
            partial.replace(folder / f"{name}.parquet")
        partial = folder / f"{mark_file}.tmp"
        partial.write_text(mark, encoding="utf-8")
        os.replace(partial, folder / mark_file)
    except (OSError, pl.exceptions.PolarsError):
        for leftover in folder.glob("*.tmp"):
            leftover.unlink(missing_ok=True)


def _kept(
    folder: Path, mark_file: str, mark: str, names: tuple[str, ...]
) -> tuple[pl.DataFrame, ...] | None:
    """The frames ``_keep`` wrote under the same ``mark``, or None (none, another mark, a
    damaged file)."""
    try:
        if (folder / mark_file).read_text(encoding="utf-8") != mark:
            return None
        # whole columns (not one chunk a row group): the engine filters and joins them often
        return tuple(pl.read_parquet(folder / f"{name}.parquet").rechunk() for name in names)
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None


#: The base as read from text files, kept beside the index, and what it was read from.
_PARSED = ("read_customers", "read_events")
_PARSED_MARK = "read.json"


def _readers_mark() -> str:
    """The readers' own source: a copy read by other readers is not read."""
    import hashlib

    from courtship import sources

    return hashlib.sha256(Path(sources.__file__).read_bytes()).hexdigest()[:16]


def _read_parsed(folder: Path, mark: str) -> CustomerBase | None:
    """The base as read from the same files with the same declared facts, or None."""
    kept = _kept(folder, _PARSED_MARK, mark, _PARSED)
    # held as categories even in a copy kept before they were
    return None if kept is None else compact(CustomerBase(*kept))


def _save_parsed(folder: Path, mark: str, base: CustomerBase) -> None:
    """Keep the base as read (a cache: one that cannot be written is read again next time)."""
    _keep(
        folder, _PARSED_MARK, mark, dict(zip(_PARSED, (base.customers, base.events), strict=True))
    )


def _read_index(folder: Path, mark: str) -> tuple[pl.DataFrame, ...] | None:
    return _kept(folder, _MARK_FILE, mark, _INDEX_PARTS)
