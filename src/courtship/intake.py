"""Reading the customer base for a run: through the source plugins of ``sources:``, or the files of
``customers:`` and ``events:``, with an event cache for incremental sources.

With ``sources.events.incremental: true``, the events already read are kept in
``events.parquet`` beside the state store, and each run asks the source only for events after the
latest one it has (``read(since)``: a ``WHERE at > :since`` for SQL). Facts still see the whole
history; the source is spared re-reading it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from courtship.plugins import Registry
from courtship.project import Project
from courtship.sources import (
    CustomerBase,
    SourceError,
    check_attribute_columns,
    empty_events,
    read_customers_csv,
    read_events_csv,
    read_events_jsonl,
    read_source,
)

CACHE_FILE = "events.parquet"


def read_base(project: Project, registry: Registry, *, dry_run: bool) -> CustomerBase:
    """The customers and their events, as the project file says. Raises ``SourceError``."""
    if project.sources:
        return _from_sources(project, registry, dry_run=dry_run)
    if project.customers is None:
        raise SourceError(
            project.root / "courtship.yaml",
            None,
            "customers",
            "the project file names no customers",
            "add customers: path/to/customers.csv, or a sources: section",
        )
    customers = read_customers_csv(project.customers, facts=registry.facts() | project.attributes)
    check_attribute_columns(customers, project.attributes, project.root / "courtship.yaml")
    if project.events is None:
        events = empty_events()
    elif project.events.suffix == ".csv":
        events = read_events_csv(project.events)
    else:
        events = read_events_jsonl(project.events)
    return CustomerBase(customers, events)


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


def _cache_path(project: Project) -> Path:
    folder = project.state.parent if project.state else project.root / ".courtship"
    return folder / CACHE_FILE
