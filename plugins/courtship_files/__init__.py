"""Customers and events read from files: the source types ``csv`` and ``jsonl``.

Settings (``sources.customers`` or ``sources.events`` in ``courtship.yaml``)::

    sources:
      customers:
        type: csv
        path: examples/customers.csv     # relative to the project root
        columns: {customer_id: id}       # optional: our name: the file's column
      events:
        type: jsonl                      # or csv
        path: data/events.jsonl
        format: "%d/%m/%Y %H:%M %z"      # optional, events only: how `at` is written

Rows are checked like the customer and event files of ``docs/data.md``; a bad cell is reported
with its file, line and column (the file's name for a renamed column).
"""

from __future__ import annotations

from collections.abc import Callable

import courtship
from courtship.sources import SourceFactory

from .source import CSVSource, FileSource, JSONLinesSource

__all__ = ["CSVSource", "FileSource", "JSONLinesSource"]


@courtship.hookimpl
def register_sources(register: Callable[[str, SourceFactory], None]) -> None:
    register("csv", CSVSource)
    register("jsonl", JSONLinesSource)
