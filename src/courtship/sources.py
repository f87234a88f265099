"""Reading the customer file and the event file into the shapes the facts engine expects.

Both readers normalise column-wise with polars and refuse bad input with a ``SourceError`` that
names the file, the line and the field, so a marketer can fix the cell and run again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from courtship.catalogue import builtin_catalogue

UTC_DATETIME = pl.Datetime("us", "UTC")

#: The customer file's columns, in the order of ``docs/data.md``, with their types.
CUSTOMER_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "first_name": pl.String(),
    "last_name": pl.String(),
    "email": pl.String(),
    "phone": pl.String(),
    "instagram_id": pl.String(),
    "timezone": pl.String(),
    "language": pl.String(),
    "city": pl.String(),
    "persona": pl.String(),
    "birthday": pl.Date(),
    "signup_date": pl.Date(),
    "stage": pl.String(),
    "tags": pl.List(pl.String()),
    "preferred_channel": pl.String(),
    "cadence_days": pl.Int64(),
    "tone": pl.String(),
    "consent_email": pl.Boolean(),
    "consent_sms": pl.Boolean(),
    "consent_instagram": pl.Boolean(),
}
REQUIRED_CUSTOMER_COLUMNS: tuple[str, ...] = ("customer_id",)
DATE_COLUMNS: tuple[str, ...] = ("birthday", "signup_date")
BOOLEAN_COLUMNS: tuple[str, ...] = ("consent_email", "consent_sms", "consent_instagram")
ENUM_COLUMNS: tuple[str, ...] = ("stage", "preferred_channel", "tone")
TRUE_WORDS: tuple[str, ...] = ("true", "yes", "1")
FALSE_WORDS: tuple[str, ...] = ("false", "no", "0")

#: The event columns always present (null when an event does not have the field).
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "type": pl.String(),
    "at": UTC_DATETIME,
    "channel": pl.String(),
    "amount": pl.Float64(),
    "friend_id": pl.String(),
    "playbook": pl.String(),
    "category": pl.String(),
}
REQUIRED_EVENT_FIELDS: tuple[str, ...] = ("customer_id", "type", "at")
TEXT_EVENT_FIELDS: tuple[str, ...] = (
    "customer_id",
    "type",
    "channel",
    "friend_id",
    "playbook",
    "category",
)

#: The ISO 8601 shapes an event's ``at`` may take; each must end with ``Z`` or an offset.
DATETIME_FORMATS: tuple[str, ...] = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
NAIVE_DATETIME_FORMATS: tuple[str, ...] = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


class SourceError(ValueError):
    """A problem in a customer or event file, placed at a file, a line and a field.

    ``line`` is 1-based (a CSV header is line 1); it is ``None`` when the problem is the whole
    file. ``field`` is ``None`` when the problem is not in one field (a line that is not JSON).
    """

    def __init__(
        self, path: Path | str, line: int | None, field: str | None, message: str, hint: str = ""
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        self.message = message
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        place = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        text = (
            f"{place}: {self.field}: {self.message}" if self.field else f"{place}: {self.message}"
        )
        return f"{text}; {self.hint}" if self.hint else text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.line, self.field, self.message, self.hint))


@dataclass
class CustomerBase:
    """The whole customer base: one row per customer, and everything that happened to them."""

    customers: pl.DataFrame
    events: pl.DataFrame

    @classmethod
    def read(cls, customers: Path, events: Path | None = None) -> CustomerBase:
        """Read a customer CSV and, when given, an event file (``.csv`` or JSON Lines)."""
        if events is None:
            return cls(read_customers_csv(customers), empty_events())
        if events.suffix.lower() == ".csv":
            return cls(read_customers_csv(customers), read_events_csv(events))
        return cls(read_customers_csv(customers), read_events_jsonl(events))


def empty_events() -> pl.DataFrame:
    """An event table with no events and the columns every event table has."""
    return pl.DataFrame(schema=EVENT_SCHEMA)


# ── customers ────────────────────────────────────────────────────────────


def read_customers_csv(path: Path) -> pl.DataFrame:
    """Read the customer file: the columns of ``docs/data.md``, typed, in that order.

    Missing optional columns are added as nulls; other columns are kept (as text) after them.
    Blank cells are null; ``tags`` are split on ``;`` (unique, sorted); consents accept
    true/false, yes/no and 1/0 in any case.
    """
    path = Path(path)
    header = _csv_header(path)
    try:
        raw = pl.read_csv(path, infer_schema=False, raise_if_empty=False)
    except pl.exceptions.PolarsError as error:
        raise _csv_failure(path, error) from None
    raw = raw.rename(lambda name: name.strip().lstrip("\ufeff"))
    raw = raw.with_columns(_blank_to_null(pl.col(name)) for name in raw.columns)
    # A blank line reads as a row of nulls: it is not a customer.
    raw = raw.with_row_index("_row").filter(pl.any_horizontal(pl.exclude("_row").is_not_null()))
    for name in REQUIRED_CUSTOMER_COLUMNS:
        if name not in header:
            raise SourceError(
                path, 1, name, "the required column is missing", f"add a `{name}` column"
            )
    raw = raw.with_columns(
        pl.lit(None, pl.String()).alias(name) for name in CUSTOMER_SCHEMA if name not in header
    )
    _check_customers(path, raw)
    typed = raw.select(
        pl.col("customer_id"),
        *(_customer_column(name) for name in CUSTOMER_SCHEMA if name != "customer_id"),
        *(pl.col(name) for name in raw.columns if name not in CUSTOMER_SCHEMA and name != "_row"),
    )
    return typed


def _customer_column(name: str) -> pl.Expr:
    column = pl.col(name)
    if name in DATE_COLUMNS:
        return column.str.to_date("%Y-%m-%d", strict=False)
    if name in BOOLEAN_COLUMNS:
        return parse_boolean(column).alias(name)
    if name == "cadence_days":
        return column.cast(pl.Int64(), strict=False)
    if name == "tags":
        return (
            column.str.split(";")
            .list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
            .list.unique()
            .list.sort()
        )
    return column


def _check_customers(path: Path, raw: pl.DataFrame) -> None:
    """Find every kind of problem; report the one on the earliest line (then the leftmost)."""
    id_ = pl.col("customer_id")
    problems: list[tuple[str, pl.Expr, str, str]] = [
        ("customer_id", id_.is_null(), "the cell is empty", "every customer needs an id"),
        (
            "customer_id",
            id_.is_not_null() & ~id_.is_first_distinct(),
            "'{value}' appears twice (first on line {first})",
            "customer ids must be unique",
        ),
    ]
    for name in DATE_COLUMNS:
        unparsed = pl.col(name).str.to_date("%Y-%m-%d", strict=False).is_null()
        problems.append(
            (
                name,
                pl.col(name).is_not_null() & unparsed,
                "'{value}' is not a date (YYYY-MM-DD)",
                "fix or empty the cell",
            )
        )
    for name in BOOLEAN_COLUMNS:
        problems.append(
            (
                name,
                pl.col(name).is_not_null() & parse_boolean(pl.col(name)).is_null(),
                "'{value}' is not true or false",
                "write true/false, yes/no or 1/0, or empty the cell",
            )
        )
    days = pl.col("cadence_days").cast(pl.Int64(), strict=False)
    problems.append(
        (
            "cadence_days",
            pl.col("cadence_days").is_not_null() & (days.is_null() | (days < 0)),
            "'{value}' is not a whole number of days",
            "write a whole number such as 14, or empty the cell",
        )
    )
    for name in ENUM_COLUMNS:
        values = builtin_catalogue().facts[name].values
        problems.append(
            (
                name,
                pl.col(name).is_not_null() & ~pl.col(name).is_in(list(values)),
                "'{value}' is not one of " + ", ".join(values),
                "use one of the listed values, or empty the cell",
            )
        )
    zones = raw.get_column("timezone").drop_nulls().unique().to_list()
    unknown = [zone for zone in zones if not is_time_zone(zone)]
    problems.append(
        (
            "timezone",
            pl.col("timezone").is_in(unknown),
            "'{value}' is not a known IANA time zone",
            "use a name such as Europe/London, or empty the cell for the default",
        )
    )
    rows = raw.select(
        pl.col("_row").filter(bad).first().alias(str(index))
        for index, (_, bad, _, _) in enumerate(problems)
    ).row(0)
    hits = [(row, index) for index, row in enumerate(rows) if row is not None]
    if not hits:
        return
    row, index = min(hits)
    field, _, message, hint = problems[index]
    value = raw.filter(pl.col("_row") == row).get_column(field).item()
    first_line = None
    if field == "customer_id" and value is not None:
        first = raw.filter(id_ == value).get_column("_row").min()
        first_line = _csv_line_of_row(path, int(first)) if isinstance(first, int) else None
    raise SourceError(
        path,
        _csv_line_of_row(path, row),
        field,
        message.format(value=value, first=first_line),
        hint,
    )


def is_time_zone(name: str) -> bool:
    """``name`` is an IANA time zone this machine knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def parse_boolean(column: pl.Expr) -> pl.Expr:
    """true/false, yes/no, 1/0 in any case → a boolean; anything else → null."""
    word = column.str.strip_chars().str.to_lowercase()
    return (
        pl.when(word.is_in(TRUE_WORDS))
        .then(True)
        .when(word.is_in(FALSE_WORDS))
        .then(False)
        .otherwise(None)
    )


def _blank_to_null(column: pl.Expr) -> pl.Expr:
    text = column.str.strip_chars()
    return pl.when(text != "").then(text)


# ── CSV helpers: headers, line numbers, unreadable files ─────────────────


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the line it starts on (blank lines are records too, as for polars)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        start = 1
        for record in reader:
            yield start, record
            start = reader.line_num + 1


def _csv_header(path: Path) -> list[str]:
    if not path.is_file():
        raise SourceError(path, None, None, "no such file", "check the path")
    try:
        record = next(_csv_records(path), None)
    except UnicodeDecodeError as error:
        raise SourceError(
            path,
            _first_undecodable_line(path),
            None,
            f"the file is not UTF-8 text ({error.reason})",
            "save it as UTF-8",
        ) from None
    except csv.Error as error:
        raise SourceError(
            path, 1, None, f"the header is not CSV ({error})", "fix the first line"
        ) from None
    if record is None or not any(cell.strip() for cell in record[1]):
        raise SourceError(path, 1, None, "the file is empty", "the first line names the columns")
    names = [cell.strip().lstrip("\ufeff") for cell in record[1]]
    for position, name in enumerate(names):
        if not name:
            raise SourceError(
                path, 1, f"column {position + 1}", "the column has no name", "name every column"
            )
        if name in names[:position]:
            raise SourceError(
                path, 1, name, "the column appears twice", "keep one column of each name"
            )
    return names


def _csv_line_of_row(path: Path, row: int) -> int:
    """The line a data row (0-based, after the header) starts on."""
    for index, (line, _) in enumerate(_csv_records(path)):
        if index == row + 1:
            return line
    return row + 2


def _csv_failure(path: Path, error: Exception) -> SourceError:
    """Turn a polars CSV error into a SourceError at the first line that cannot be read."""
    try:
        records = list(_csv_records(path))
    except UnicodeDecodeError as decode:
        return SourceError(
            path,
            _first_undecodable_line(path),
            None,
            f"the file is not UTF-8 text ({decode.reason})",
            "save it as UTF-8",
        )
    except csv.Error as bad:
        return SourceError(path, None, None, f"the file is not valid CSV ({bad})", "fix the file")
    width = len(records[0][1]) if records else 0
    for line, record in records[1:]:
        if record and len(record) > width:
            return SourceError(
                path,
                line,
                None,
                f"the line has {len(record)} cells but the header {width}",
                "remove the extra cells, or quote a cell that contains a comma",
            )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return SourceError(path, None, None, f"the file cannot be read as CSV ({first_line})", "")


def _first_undecodable_line(path: Path) -> int:
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


# ── events ───────────────────────────────────────────────────────────────


def read_events_jsonl(path: Path) -> pl.DataFrame:
    """Read an event file in JSON Lines: one object per line, blank lines allowed."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(path, None, None, "no such file", "check the path")
    if path.stat().st_size == 0:
        return empty_events()
    try:
        raw = pl.read_ndjson(path, infer_schema_length=None)
    except pl.exceptions.PolarsError:
        raw = _read_jsonl_slowly(path)
    if raw.width == 0:
        return empty_events()
    return _normalise_events(path, raw, lambda row: _jsonl_line_of_row(path, row))


def read_events_csv(path: Path) -> pl.DataFrame:
    """Read an event file in CSV: a header naming the fields, one event per line."""
    path = Path(path)
    header = _csv_header(path)
    try:
        raw = pl.read_csv(path, infer_schema=False, raise_if_empty=False)
    except pl.exceptions.PolarsError as error:
        raise _csv_failure(path, error) from None
    raw = raw.rename(lambda name: name.strip().lstrip("\ufeff"))
    raw = raw.with_columns(_blank_to_null(pl.col(name)) for name in raw.columns)
    raw = raw.with_row_index("_row").filter(pl.any_horizontal(pl.exclude("_row").is_not_null()))
    for name in REQUIRED_EVENT_FIELDS:
        if name not in header:
            raise SourceError(
                path, 1, name, "the required column is missing", f"add a `{name}` column"
            )
    return _normalise_events(path, raw, lambda row: _csv_line_of_row(path, row))


def _read_jsonl_slowly(path: Path) -> pl.DataFrame:
    """Parse line by line, to place a bad line or to settle fields of mixed types."""
    rows: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as error:
                    raise SourceError(
                        path,
                        number,
                        None,
                        f"the line is not valid JSON ({error.msg})",
                        "write one JSON object per line",
                    ) from None
                if not isinstance(value, dict):
                    raise SourceError(
                        path,
                        number,
                        None,
                        f"the line is a JSON {type(value).__name__}, not an object",
                        'write one JSON object per line, such as {"customer_id": …}',
                    )
                rows.append(value)
    except UnicodeDecodeError as error:
        raise SourceError(
            path,
            _first_undecodable_line(path),
            None,
            f"the file is not UTF-8 text ({error.reason})",
            "save it as UTF-8",
        ) from None
    if not rows:
        return pl.DataFrame()
    names: dict[str, None] = {}
    for value in rows:
        names.update(dict.fromkeys(value))
    columns: dict[str, pl.Series] = {}
    for name in names:
        values = [value.get(name) for value in rows]
        try:
            columns[name] = pl.Series(name, values)
        except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
            # Mixed types in one field: keep the text of each value.
            text = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            columns[name] = pl.Series(name, text, dtype=pl.String())
    frame = pl.DataFrame(columns, height=len(rows))
    return frame.with_row_index("_row")


def _jsonl_line_of_row(path: Path, row: int) -> int:
    """The line of the ``row``-th event (0-based), skipping blank lines."""
    index = -1
    with path.open(encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                index += 1
                if index == row:
                    return number
    return row + 1


def _normalise_events(path: Path, raw: pl.DataFrame, line_of: Callable[[int], int]) -> pl.DataFrame:
    """Type the standard fields, check them, and keep every other field as its own column."""
    if "_row" not in raw.columns:
        raw = raw.with_row_index("_row")
    raw = raw.with_columns(
        _blank_to_null(pl.col(name)) for name, dtype in raw.schema.items() if dtype == pl.String()
    )

    def fail(bad: pl.Expr, field: str, message: str, hint: str) -> None:
        hit = raw.filter(bad).select("_row", field).head(1)
        if hit.height:
            row, value = hit.row(0)
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            raise SourceError(path, line_of(row), field, message.format(value=text), hint)

    for name in REQUIRED_EVENT_FIELDS:
        if name not in raw.columns:
            raise SourceError(
                path,
                line_of(0),
                name,
                "the event has no such field",
                "every event needs customer_id, type and at",
            )
        fail(
            pl.col(name).is_null(),
            name,
            "the event has no value",
            "every event needs customer_id, type and at",
        )
    raw = raw.with_columns(
        pl.lit(None, dtype).alias(name)
        for name, dtype in EVENT_SCHEMA.items()
        if name not in raw.columns
    )
    schema = raw.schema
    for name in TEXT_EVENT_FIELDS:
        dtype = schema[name]
        if dtype.is_nested():
            fail(
                pl.col(name).is_not_null(),
                name,
                "{value} is not text",
                "write a string or a number",
            )
        elif dtype != pl.String():
            raw = raw.with_columns(pl.col(name).cast(pl.String()))
    raw = raw.with_columns(_blank_to_null(pl.col(name)) for name in TEXT_EVENT_FIELDS)

    amount = schema["amount"]
    if amount == pl.String():
        parsed_amount = pl.col("amount").cast(pl.Float64(), strict=False)
        fail(
            pl.col("amount").is_not_null() & parsed_amount.is_null(),
            "amount",
            "'{value}' is not a number",
            "write a number such as 42.5, or leave the field out",
        )
    elif amount.is_numeric() or amount == pl.Null():
        parsed_amount = pl.col("amount").cast(pl.Float64())
    else:
        fail(
            pl.col("amount").is_not_null(),
            "amount",
            "{value} is not a number",
            "write a number such as 42.5, or leave the field out",
        )
        parsed_amount = pl.col("amount").cast(pl.Float64())

    if schema["at"] == pl.String():
        parsed_at = parse_instant(pl.col("at"))
        naive = pl.coalesce(
            [
                _normal_iso(pl.col("at")).str.to_datetime(form, strict=False)
                for form in NAIVE_DATETIME_FORMATS
            ]
        )
        fail(
            parsed_at.is_null() & naive.is_not_null(),
            "at",
            "'{value}' has no time zone",
            "add Z for UTC or an offset such as +01:00",
        )
        fail(
            parsed_at.is_null(),
            "at",
            "'{value}' is not a date and time (ISO 8601)",
            "write it like 2026-11-20T10:15:00Z",
        )
    elif isinstance(schema["at"], pl.Datetime) and schema["at"].time_zone is not None:
        parsed_at = pl.col("at").dt.convert_time_zone("UTC").cast(UTC_DATETIME)
    else:
        fail(
            pl.lit(True),
            "at",
            "{value} is not a date and time (ISO 8601)",
            "write it like 2026-11-20T10:15:00Z",
        )
        parsed_at = pl.col("at")

    extras = [name for name in raw.columns if name not in EVENT_SCHEMA and name != "_row"]
    return raw.select(
        *(pl.col(name) for name in REQUIRED_EVENT_FIELDS[:2]),
        parsed_at.alias("at"),
        pl.col("channel"),
        parsed_amount.alias("amount"),
        pl.col("friend_id"),
        pl.col("playbook"),
        pl.col("category"),
        *(pl.col(name) for name in extras),
    )


def _normal_iso(text: pl.Expr) -> pl.Expr:
    """A date and time written with a space or a lower-case ``t``/``z``, in canonical form."""
    return text.str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]", "${1}T").str.replace(r"z$", "Z")


def parse_instant(text: pl.Expr) -> pl.Expr:
    """ISO 8601 text with a zone (``Z`` or ``±hh:mm``) → a UTC instant; null when it is not one."""
    normal = _normal_iso(text)
    return pl.coalesce(
        [normal.str.to_datetime(form, strict=False, time_zone="UTC") for form in DATETIME_FORMATS]
    ).cast(UTC_DATETIME)
