"""Customers and events read from files: the source types ``csv``, ``jsonl`` and ``parquet``.

Settings (``sources.customers`` or ``sources.events`` in ``courtship.yaml``)::

    sources:
      customers:
        type: csv
        path: examples/customers.csv     # relative to the project root
        columns: {customer_id: id}       # optional: our name: the file's column
      events:
        type: jsonl                      # or csv
        path: data/events.jsonl
        format: "%d/%m/%Y %H:%M %z"      # optional, csv/jsonl events only: how `at` is written

``type: parquet`` takes a file, a folder of ``.parquet`` files or a glob as ``path``.

Rows are checked like the customer and event files of ``docs/data.md``; a bad cell is reported
with its file, line and column (the file's name for a renamed column).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import courtship

if TYPE_CHECKING:
    from courtship.sources import SourceFactory

__all__ = ["CSVSource", "FileSource", "JSONLinesSource", "ParquetSource"]

#: Where each name of the plugin lives: imported on first use (``__getattr__``), so loading the
#: plugin to learn what it registers does not import what it needs to read.
_LAZY = {
    "CSVSource": "source",
    "FileSource": "source",
    "JSONLinesSource": "source",
    "ParquetSource": "source",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _csv(settings: Mapping[str, Any], role: str, root: Path) -> Any:
    """The csv source, built when a command uses it: importing this plugin stays cheap."""
    from .source import CSVSource

    return CSVSource(settings, role, root)


def _jsonl(settings: Mapping[str, Any], role: str, root: Path) -> Any:
    """The jsonl source, built when a command uses it: importing this plugin stays cheap."""
    from .source import JSONLinesSource

    return JSONLinesSource(settings, role, root)


def _parquet(settings: Mapping[str, Any], role: str, root: Path) -> Any:
    """The parquet source, built when a command uses it: importing this plugin stays cheap."""
    from .source import ParquetSource

    return ParquetSource(settings, role, root)


@courtship.hookimpl
def register_sources(register: Callable[[str, SourceFactory], None]) -> None:
    register("csv", _csv)
    register("jsonl", _jsonl)
    register("parquet", _parquet)
