"""The file sources: one class, three formats."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from courtship.catalogue import FactSpec
from courtship.sources import (
    ZONE_DIRECTIVES,
    SourceSettings,
    read_customers_file,
    read_events_file,
)


class FileSource:
    """Customers or events from one file; the file is read again on every ``read()``."""

    format: ClassVar[str]

    def __init__(self, settings: Mapping[str, Any], role: str, root: Path) -> None:
        at_format = role == "events" and self.format != "parquet"
        known = {"path", "columns"} | ({"format"} if at_format else set())
        config = SourceSettings(settings, role, root, known=known)
        self.role = role
        self.path = config.path("path")
        self.columns = config.columns()
        self.at_format = config.text("format")
        if self.at_format is not None and not any(
            directive in self.at_format for directive in ZONE_DIRECTIVES
        ):
            raise config.error(
                "format",
                f"'{self.at_format}' has no time zone",
                "add %z (+01:00 or +0100) or %#z (also Z), as in %d/%m/%Y %H:%M %z",
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(role={self.role!r}, path={str(self.path)!r})"

    def read(
        self, since: datetime | None = None, *, facts: Mapping[str, FactSpec] | None = None
    ) -> pl.DataFrame:
        """The customers (``since`` ignored; columns named like ``facts``, those plugins
        declare, read as their types), or the events after ``since``."""
        if self.role == "customers":
            return read_customers_file(
                self.path, format=self.format, columns=self.columns, facts=facts
            )
        return read_events_file(
            self.path,
            format=self.format,
            columns=self.columns,
            at_format=self.at_format,
            since=since,
        )


class CSVSource(FileSource):
    """``type: csv``: a header naming the columns, one customer or event per line."""

    format = "csv"


class JSONLinesSource(FileSource):
    """``type: jsonl``: one JSON object per line."""

    format = "jsonl"


class ParquetSource(FileSource):
    """``type: parquet``: a Parquet file, a folder of them or a glob (``data/events-*.parquet``);
    columns already typed (dates, booleans, datetimes with a zone) are checked as they are."""

    format = "parquet"
