"""Reading the customer file and the event file into the shapes the facts engine expects.

Both readers normalise column-wise with polars and refuse bad input with a ``SourceError`` that
names the file, the line and the field, so a marketer can fix the cell and run again.
"""

from __future__ import annotations

import csv
import difflib
import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from courtship.catalogue import FactSpec, builtin_catalogue

UTC_DATETIME = pl.Datetime("us", "UTC")

#: How the readers' one-pass queries run: a CSV file streaming (read in pieces, each typed
#: and checked as it comes, on every core); Parquet, whose columns polars reads apart, in memory
#: (measured faster so on the 1 M base, see bench/README.md).
Engine = Literal["streaming", "in-memory"]
CSV_ENGINE: Engine = "streaming"
PARQUET_ENGINE: Engine = "in-memory"

#: A frame read at once, or one still to be read (a query plan).
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

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

#: Columns of the facts frame that are not catalogue facts: no customer-file column may take
#: these names (names beginning with ``_`` are the engine's own, and never reach the facts).
LOCAL_FACT_COLUMNS: tuple[str, ...] = ("local_date", "local_time", "utc_offset_minutes")

#: The prefix of a declared fact's column read as its type, while a customer table is checked.
PARSED = "_parsed_"

#: The column the readers number rows with (0-based), to name the line of a problem.
ROW = "_row"
_ROW_TAKEN = (
    "the name is taken: Courtship numbers the rows in a column of that name",
    "rename or remove the column",
)

#: The years a date or a moment may fall in: those a calendar (Python's) can hold.
FIRST_YEAR, LAST_YEAR = 1, 9999
#: The first and the last instant of those years, in UTC: comparing with them is cheaper than
#: taking each moment's year.
CALENDAR_START = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
CALENDAR_END = datetime(LAST_YEAR, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_YEARS_HINT = f"write a year from {FIRST_YEAR} to {LAST_YEAR}, or empty the cell"

#: How deep a JSON line may nest (polars itself reads no deeper than 1024 levels).
MAX_JSON_DEPTH = 64

#: Per fact type: what a value that cannot be read as it is not, and how to write one.
FACT_TEXT_FORMS: dict[str, tuple[str, str]] = {
    "number": ("a number", "write a number such as 42.5"),
    "integer": ("a whole number", "write a whole number such as 1200"),
    "boolean": ("true or false", "write true/false, yes/no or 1/0"),
    "date": ("a date (YYYY-MM-DD)", "write it like 2026-11-20"),
    "datetime": (
        "a date and time with a zone (ISO 8601)",
        "write it like 2026-11-20T10:15:00Z",
    ),
}

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


@dataclass(frozen=True)
class _Place:
    """Where rows come from, to place a problem: a file (a row is a line) or a table or query.

    ``line_of`` maps a row (0-based, as ``_row`` numbers them) to the line it starts on; without
    it rows are results of a query, named by their position and customer id. ``header_line`` is
    where a missing column is reported (1 for CSV; None for JSON Lines and tables). ``names``
    maps our column names to the source's, so a renamed column is called by both names.
    """

    path: Path | str
    line_of: Callable[[int], int] | None = None
    header_line: int | None = None
    names: Mapping[str, str] = field(default_factory=dict)

    def name_of(self, name: str) -> str:
        their = self.names.get(name)
        return f"{their} ({name})" if their and their != name else name

    def position(self, row: int) -> str:
        return f"line {self.line_of(row)}" if self.line_of else f"row {row + 1}"

    def error(self, raw: pl.DataFrame, row: int, name: str, message: str, hint: str) -> SourceError:
        if self.line_of is not None:
            return SourceError(self.path, self.line_of(row), self.name_of(name), message, hint)
        where = f"row {row + 1}"
        if name != "customer_id" and "customer_id" in raw.columns and "_row" in raw.columns:
            ids = raw.filter(pl.col("_row") == row).get_column("customer_id")
            if ids.len() and ids[0] is not None:
                where += f", customer_id '{ids[0]}'"
        return SourceError(self.path, None, self.name_of(name), f"{message} ({where})", hint)

    def missing(self, name: str, message: str, hint: str) -> SourceError:
        return SourceError(self.path, self.header_line, self.name_of(name), message, hint)


def _csv_place(path: Path, names: Mapping[str, str] | None = None) -> _Place:
    return _Place(path, lambda row: _csv_line_of_row(path, row), 1, dict(names or {}))


def _jsonl_place(path: Path, names: Mapping[str, str] | None = None) -> _Place:
    return _Place(path, lambda row: _jsonl_line_of_row(path, row), None, dict(names or {}))


@dataclass
class CustomerBase:
    """The whole customer base: one row per customer, and everything that happened to them."""

    customers: pl.DataFrame
    events: pl.DataFrame

    @classmethod
    def read(
        cls,
        customers: Path,
        events: Path | None = None,
        *,
        facts: Mapping[str, FactSpec] | None = None,
    ) -> CustomerBase:
        """Read a customer CSV and, when given, an event file (``.csv`` or JSON Lines).
        ``facts``: the declared facts columns are read as (see :func:`read_customers_csv`)."""
        people = read_customers_csv(customers, facts=facts)
        if events is None:
            return cls(people, empty_events())
        if events.suffix.lower() == ".csv":
            return cls(people, read_events_csv(events))
        return cls(people, read_events_jsonl(events))


#: The events' columns of few distinct texts (or mostly empty), held as categories.
_FEW_TEXTS = ("type", "channel", "friend_id", "playbook", "category")


def compact(base: CustomerBase) -> CustomerBase:
    """The base with its events in one piece, their columns of few distinct texts held as
    categories: a text cell costs 16 bytes even when empty, a category 4 (at 10 million events,
    360 MB less held through the whole run). The values, and what filters and joins find, are
    the same."""
    schema = base.events.schema
    few = [name for name in _FEW_TEXTS if schema.get(name) == pl.String()]
    events = base.events.with_columns(pl.col(few).cast(pl.Categorical())) if few else base.events
    # In one piece, put together after the cast: fewer bytes to copy (half the time).
    return CustomerBase(base.customers, events.rechunk())


def empty_events() -> pl.DataFrame:
    """An event table with no events and the columns every event table has."""
    return pl.DataFrame(schema=EVENT_SCHEMA)


# ── customers ────────────────────────────────────────────────────────────


def read_customers_csv(path: Path, *, facts: Mapping[str, FactSpec] | None = None) -> pl.DataFrame:
    """Read the customer file: the columns of ``docs/data.md``, typed, in that order.

    Missing optional columns are added as nulls; other columns are kept (as text) after them.
    Blank cells are null; ``tags`` are split on ``;`` (unique, sorted); consents accept
    true/false, yes/no and 1/0 in any case. An other column named like one of ``facts`` (the
    facts plugins declare: ``Registry.facts()``, or a whole catalogue's) is read as that fact's
    type instead, and a cell that is not of it is an error; a column named like a fact
    Courtship computes is an error.
    """
    path = Path(path)
    fast = _customers_csv_at_speed(path, {}, facts)
    if fast is not None:
        return fast
    return _customers_from_text(_csv_place(path), _read_csv_text(path, trim=False), facts)


def _customers_from_text(
    place: _Place,
    raw: pl.DataFrame,
    facts: Mapping[str, FactSpec] | None = None,
    *,
    trim: bool = True,
) -> pl.DataFrame:
    """Check and type a frame of text columns (one row per customer; ``_row`` numbers them).
    ``trim`` false: text is taken as written (Parquet's), only an empty cell made null, and a
    customer id with space at an end refused."""
    if "_row" not in raw.columns:
        raw = raw.with_row_index("_row")
    # Trimmed, a blank cell null: only the columns with a cell to change are rewritten.
    text = [name for name, dtype in raw.schema.items() if name != "_row" and dtype == pl.String()]
    raw = raw.with_columns(
        _blank_to_null(pl.col(name), trim=trim) for name in untrimmed(raw, text, trim=trim)
    )
    # A blank line reads as a row of nulls: it is not a customer (it has no id, so a file
    # whose every row has one has no blank line to leave out).
    if "customer_id" not in raw.columns or raw.get_column("customer_id").null_count():
        raw = raw.filter(pl.any_horizontal(pl.exclude("_row").is_not_null()))
    for name in REQUIRED_CUSTOMER_COLUMNS:
        if name not in raw.columns:
            raise place.missing(name, "the required column is missing", f"add a `{name}` column")
    extras = [name for name in raw.columns if name not in CUSTOMER_SCHEMA and name != "_row"]
    _check_extra_names(place, extras)
    declared = declared_extras(extras, facts)
    raw = raw.with_columns(
        pl.lit(None, pl.String()).alias(name) for name in CUSTOMER_SCHEMA if name not in raw.columns
    )
    # Each declared fact's column is parsed once: checked, then kept, from the same column.
    raw = raw.with_columns(
        fact_from_text(pl.col(name), spec.type).alias(PARSED + name)
        for name, spec in declared.items()
    )
    # Typed and checked in one pass: only when a row has a problem is it looked for, to name
    # the earliest (``_check_customers``).
    problems = _customer_problems(raw, declared, trim=trim)
    typed = (
        raw.lazy()
        .select(
            pl.col("customer_id"),
            *(
                _customer_column(name, raw.schema[name])
                for name in CUSTOMER_SCHEMA
                if name != "customer_id"
            ),
            *(pl.col(PARSED + name if name in declared else name).alias(name) for name in extras),
            pl.any_horizontal(bad for _, bad, _, _ in problems).alias(ROW),
        )
        .collect()
    )
    if typed.height and typed.get_column(ROW).any():
        _check_customers(place.path, raw, place, declared, problems)
    return typed.drop(ROW)


#: The customer columns whose every cell with a space to trim is a problem already (it does
#: not parse, or is not a listed value or a known zone; a consent is trimmed as it is read),
#: and ``tags`` (:func:`_careful_tags`): the others are looked at for cells to trim.
_TRIMMED_AS_READ: tuple[str, ...] = (
    *DATE_COLUMNS,
    *BOOLEAN_COLUMNS,
    *ENUM_COLUMNS,
    "cadence_days",
    "timezone",
    "tags",
)
#: The prefix of the columns the customer reader keeps a cell's text in while it checks it
#: (``_row...`` is no customer file's column: ``_row`` is refused, ``_row_...`` left to the
#: careful way).
_TEXT_OF = "_row_text_"
#: The consents' words as the fast reader takes them (any other case: the careful way).
_TRUE_CELLS = [form for word in TRUE_WORDS for form in (word, word.title(), word.upper())]
_FALSE_CELLS = [form for word in FALSE_WORDS for form in (word, word.title(), word.upper())]


def _customers_csv_at_speed(
    path: Path, mapping: Mapping[str, str], facts: Mapping[str, FactSpec] | None
) -> pl.DataFrame | None:
    """The customer file read as :func:`_customers_at_speed` reads a table; None when the
    careful way is to read it. A problem with the header or ``mapping`` raises here."""
    frame = _scan_csv_mapped(path, mapping)
    if frame is None:
        return None
    return _customers_at_speed(frame, _csv_place(path, mapping), facts, CSV_ENGINE)


def _scan_csv_mapped(path: Path, mapping: Mapping[str, str]) -> pl.LazyFrame | None:
    """The CSV file as text, its columns renamed by ``mapping``; None when polars cannot
    take the mapping (the careful way then says why). A problem with the header raises."""
    names = _csv_header(path)
    frame = pl.scan_csv(
        path, infer_schema=False, with_column_names=lambda _: names, raise_if_empty=False
    )
    try:
        return apply_column_mapping(frame, mapping, where=path, line=1)
    except pl.exceptions.PolarsError:
        return None


def _customers_parquet_at_speed(
    path: Path, files: list[Path], mapping: Mapping[str, str], facts: Mapping[str, FactSpec] | None
) -> pl.DataFrame | None:
    """The customers of Parquet ``files`` (all of one schema) read as
    :func:`_customers_at_speed` reads a table; None when the careful way is to read them."""
    schemas = [pl.read_parquet_schema(_readable_parquet(file)) for file in files]
    if any(schema != schemas[0] for schema in schemas) or not schemas[0]:
        return None
    where = _parquet_place(path, files)
    frame = apply_column_mapping(pl.scan_parquet(files), mapping, where=where)
    place = _Place(where, names=dict(mapping))
    return _customers_at_speed(frame, place, facts, PARQUET_ENGINE, trim=False)


def _customers_at_speed(
    frame: pl.LazyFrame,
    place: _Place,
    facts: Mapping[str, FactSpec] | None,
    engine: Engine,
    *,
    trim: bool = True,
) -> pl.DataFrame | None:
    """The customers of ``frame`` (a file still to be read: text, or a customer column already
    in its contract type) read, typed and checked as :func:`_customers_from_text` does it, in
    one query (run by ``engine``: polars reads and types on every core), then checked in bulk:
    a cell that does not parse is one whose typed value is null and text is not (null counts
    compared), a date out of the calendar is found by the first and the last. None when a
    customer has a problem, a cell needs trimming, a line is blank, an id is repeated, a column
    is of another type, or polars cannot read the file: the caller then reads it the careful
    way, which names the line. A column named like a computed fact raises here as there.
    ``trim`` false (Parquet): text is taken as written, only an empty cell is to change."""
    try:
        given = frame.collect_schema()
        columns = given.names()
        if "customer_id" not in columns or any(name.startswith(ROW) for name in columns):
            return None
        typed_as_is = {
            name
            for name, dtype in given.items()
            if name in TYPED_CUSTOMER_COLUMNS and dtype == CUSTOMER_SCHEMA[name]
        }
        # Whole numbers, booleans and nulls as text, as ``_as_text`` writes them; other types
        # as it does, the careful way.
        as_text = [
            name
            for name, dtype in given.items()
            if name not in typed_as_is
            and (dtype in (pl.Null(), pl.Boolean()) or dtype.is_integer())
        ]
        if any(
            dtype != pl.String() and name not in typed_as_is and name not in as_text
            for name, dtype in given.items()
        ):
            return None
        frame = frame.with_columns(pl.col(name).cast(pl.String()) for name in as_text)
        extras = [name for name in columns if name not in CUSTOMER_SCHEMA]
        _check_extra_names(place, extras)
        declared = declared_extras(extras, facts)
        frame = frame.with_columns(
            pl.lit(None, pl.String()).alias(name) for name in CUSTOMER_SCHEMA if name not in columns
        ).with_columns(
            fact_from_text(pl.col(name), spec.type).alias(PARSED + name)
            for name, spec in declared.items()
        )
        # A blank line has no id. The listed values are checked on the result (the distinct
        # ones: several times quicker than looking each up).
        problems = [pl.col("customer_id").is_null()]
        for name in BOOLEAN_COLUMNS:
            cell = pl.col(name)
            if name not in typed_as_is:
                problems.append(cell.is_not_null() & ~cell.is_in(_TRUE_CELLS + _FALSE_CELLS))
        problems += [bad for _, bad, _, _ in _declared_problems(declared)]
        # A declared fact is trimmed as it is read, but an empty cell is then no blank one.
        problems += [pl.col(name).str.contains(_UNTRIMMED) for name in declared]
        text = [
            name
            for name in (*CUSTOMER_SCHEMA, *extras)
            if name not in _TRIMMED_AS_READ and name not in declared and name not in as_text
        ]  # (a number written as text has no space)
        parsed = [name for name in (*DATE_COLUMNS, "cadence_days") if name not in typed_as_is]
        tags = pl.col("tags")
        typed_tags = "tags" in typed_as_is
        typed = frame.select(
            pl.col("customer_id"),
            *(
                pl.col(name) if name in typed_as_is else _fast_customer_column(name)
                for name in CUSTOMER_SCHEMA
                if name != "customer_id"
            ),
            *(pl.col(PARSED + name if name in declared else name).alias(name) for name in extras),
            *(pl.col(name).alias(_TEXT_OF + name) for name in (*parsed, "tags")),
            pl.any_horizontal(problems).alias(ROW),  # the customer's problem
            _may_need_trimming(text, trim=trim, exactly=_MATCHED_EXACTLY).alias(_MAYBE_UNTRIMMED),
            (_careful_tag_lists(tags) if typed_tags else _may_have_space_at_an_end(tags)).alias(
                _CAREFUL_TAGS
            ),
        ).collect(engine=engine)
    except pl.exceptions.PolarsError:
        return None
    if typed.height == 0:
        return typed.select(*CUSTOMER_SCHEMA, *extras)
    if typed.get_column(ROW).any() or _needs_trimming(
        typed, text, trim=trim, exactly=_MATCHED_EXACTLY
    ):
        return None
    for name in parsed:  # a cell that does not parse is null typed, not as text
        if typed.get_column(name).null_count() != typed.get_column(_TEXT_OF + name).null_count():
            return None
    id_ = pl.col("customer_id")
    whole = typed.select(  # the checks of whole columns, side by side
        *(pl.col(name).drop_nulls().unique().implode() for name in (*ENUM_COLUMNS, "timezone")),
        pl.any_horizontal(  # a date no calendar holds, or days < 0
            *(
                (~pl.col(name).is_between(CALENDAR_START.date(), CALENDAR_END.date())).any()
                for name in DATE_COLUMNS
            ),
            (pl.col("cadence_days") < 0).any(),
        ).alias(ROW),
        (id_ > id_.shift(1)).all().alias(_IDS_IN_ORDER),
    ).row(0, named=True)
    if whole[ROW]:
        return None
    for name in ENUM_COLUMNS:
        if not set(whole[name]) <= set(builtin_catalogue().facts[name].values):
            return None
    if not all(is_time_zone(zone) for zone in whole["timezone"]):
        return None
    if not whole[_IDS_IN_ORDER] and not _ids_unique(typed.get_column("customer_id")):
        return None
    careful = typed.get_column(_CAREFUL_TAGS)
    typed = typed.with_columns(_sorted_tags(typed, careful, split=not typed_tags))
    return typed.select(*CUSTOMER_SCHEMA, *extras)


#: Where the customer reader notes that the ids are in increasing order (so none repeated).
_IDS_IN_ORDER = "_row_ids_in_order"


def _ids_unique(ids: pl.Series) -> bool:
    """No id repeated among ``ids`` (none null): the distinct ones counted, a hash of every id.
    (The reader first compares each id with the next: ids in increasing order, as an export
    sorted by id has them, are unique, and told so several times faster.)"""
    ids = ids.rechunk()  # counted several times faster so
    return ids.n_unique() == ids.len()


def _fast_customer_column(name: str) -> pl.Expr:
    """The text customer column ``name`` in its contract type, as :func:`_customer_column`
    reads it when its cells are clean (the fast reader checks they are): consents in the
    words of ``_TRUE_CELLS`` and ``_FALSE_CELLS``, ``tags`` only split (``_sorted_tags``)."""
    column = pl.col(name)
    if name in DATE_COLUMNS:
        return column.str.to_date("%Y-%m-%d", strict=False, cache=False)
    if name in BOOLEAN_COLUMNS:
        true = pl.when(column.is_in(_TRUE_CELLS)).then(True)
        return true.when(column.is_not_null()).then(False).alias(name)
    if name == "tags":
        return column.str.split(";")
    return _customer_column(name, pl.String())


def declared_extras(
    columns: Iterable[str], facts: Mapping[str, FactSpec] | None
) -> dict[str, FactSpec]:
    """The facts of ``facts`` that ``columns`` (a customer table's other columns) hold: those
    plugins declared (core facts and the customer-file columns are left out)."""
    if not facts:
        return {}
    core = builtin_catalogue().facts
    return {
        name: facts[name]
        for name in columns
        if name in facts and name not in core and name not in CUSTOMER_SCHEMA
    }


def check_other_columns(extras: Iterable[str], where: Path | str = "the customers") -> None:
    """The customer table's other columns (beyond :data:`CUSTOMER_SCHEMA`) may reach the
    facts: one named like a fact Courtship computes, or a local column, raises
    :class:`SourceError` at ``where``."""
    _check_extra_names(_Place(where), extras)


def _check_extra_names(place: _Place, extras: Iterable[str]) -> None:
    """A column named like a fact Courtship computes (or a local column) would be mistaken for
    it: refused, rather than left out of the facts or let override them."""
    core = builtin_catalogue().facts
    for name in extras:
        if name in core:
            raise place.missing(
                name,
                "the column is named like a fact Courtship computes (see the facts catalogue), "
                "and the customer file does not override computed facts",
                "rename or remove the column; to use its values, declare a fact of the new "
                "name in a plugin (register_facts)",
            )
        if name in LOCAL_FACT_COLUMNS:
            raise place.missing(
                name,
                "the column is named like a column Courtship adds to the facts",
                "rename or remove the column",
            )


def fact_from_text(text: pl.Expr, kind: str) -> pl.Expr:
    """Text (trimmed) read as a fact of catalogue type ``kind``; null when it cannot be.

    number and integer (a whole number; ``1200.0`` is 1200), boolean (true/false, yes/no, 1/0),
    date (``YYYY-MM-DD``; a longer ISO text is read by its first ten characters), datetime (ISO
    8601 with a zone), list (``;``-separated, trimmed, once each, sorted); string and enum stay
    text.
    """
    text = text.str.strip_chars()
    if kind == "number":
        return text.cast(pl.Float64(), strict=False)
    if kind == "integer":
        number = text.cast(pl.Float64(), strict=False)
        return pl.when(number == number.round()).then(number).cast(pl.Int64())
    if kind == "boolean":
        return parse_boolean(text)
    if kind == "date":
        day = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        return pl.when(_in_calendar(day)).then(day)
    if kind == "datetime":
        moment = parse_instant(text)
        return pl.when(_in_calendar(moment)).then(moment)
    if kind == "list":
        return (
            text.str.split(";")
            .list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
            .list.unique()
            .list.sort()
        )
    return text


def fact_problem(
    name: str, spec: FactSpec, parsed: pl.Expr | None = None
) -> tuple[pl.Expr, str, str] | None:
    """For the text column ``name`` holding the declared fact ``spec``: the cells that are not
    of its type, what is wrong with one (``{value}`` for the cell) and the hint; None for a
    type every text is (string, list). ``parsed``: the column already read as the type
    (``fact_from_text``), to read it once."""
    column = pl.col(name)
    if parsed is None:
        parsed = fact_from_text(column, spec.type)
    origin = f"fact {spec.name}, declared by plugin {spec.source}"
    if spec.type == "enum":
        values = ", ".join(spec.values).replace("{", "{{").replace("}", "}}")
        return (
            column.is_not_null() & ~parsed.is_in(list(spec.values)),
            f"'{{value}}' is not one of {values} ({origin})",
            "use one of the listed values, or empty the cell",
        )
    if spec.type not in FACT_TEXT_FORMS:
        return None
    what, how = FACT_TEXT_FORMS[spec.type]
    return (
        column.is_not_null() & parsed.is_null(),
        f"'{{value}}' is not {what} ({origin})",
        f"{how}, or empty the cell",
    )


def _customer_column(name: str, dtype: pl.DataType | None = None) -> pl.Expr:
    """The customer column ``name`` in its contract type, from text or (``dtype``, the type
    it has already: a Parquet file's date, boolean, whole number or list of text) as it is."""
    column = pl.col(name)
    typed = dtype == CUSTOMER_SCHEMA[name]
    if name in DATE_COLUMNS:
        return column if typed else column.str.to_date("%Y-%m-%d", strict=False)
    if name in BOOLEAN_COLUMNS:
        return column if typed else parse_boolean(column).alias(name)
    if name == "cadence_days":
        return column if typed else column.cast(pl.Int64(), strict=False)
    if name == "tags":
        return _tag_list(column if typed else column.str.split(";"))
    return column


def _tag_list(tags: pl.Expr) -> pl.Expr:
    """A list of tags trimmed, without empty ones, once each, sorted."""
    return tags.list.eval(pl.element().str.strip_chars().filter(pl.element() != "").unique().sort())


#: How many tags a cell may have for :func:`_tags_out_of_order` to compare them one by one (a
#: cell with more is sorted).
_TAGS_COMPARED = 8


def _tags_out_of_order(tags: pl.Series, text: pl.Series | None = None) -> pl.Series:
    """The rows (indexes) whose list of tags is not already sorted, once each: only the lists
    of two tags or more are looked at (most customers have fewer), each tag compared in bulk
    with the next, rather than each list sorted. ``text``: the cells the lists were split
    from; those of two tags or more with a space or an empty tag (:func:`_careful_tags`) are
    marked too (a cell of one tag is marked in the one pass, ``_may_have_space_at_an_end``)."""
    lengths = tags.list.len().fill_null(0)
    mask = lengths > 1
    several = mask.arg_true()
    if not several.len():
        return several
    # (a filter of a list column measured several times faster than a gather of its rows)
    frame = pl.DataFrame({"tags": tags.filter(mask), "length": lengths.filter(mask)})
    longest = int(frame.get_column("length").max() or 0)
    tag = pl.col("tags").list
    neighbours = [
        (tag.get(i, null_on_oob=True) < tag.get(i + 1, null_on_oob=True))
        | (pl.col("length") <= i + 1)
        for i in range(min(longest, _TAGS_COMPARED) - 1)
    ]
    in_order = pl.all_horizontal(neighbours) & (pl.col("length") <= _TAGS_COMPARED)
    if text is not None:
        frame = frame.with_columns(text.filter(mask).alias("text"))
        in_order = in_order & ~_careful_tags(pl.col("text"))
    return several.filter(~frame.select(in_order.fill_null(False)).to_series())


def _sorted_tags(typed: pl.DataFrame, careful: pl.Series, *, split: bool) -> pl.Series:
    """The ``tags`` column of ``typed`` (split only, or a list as it was given; as it was in
    ``_TEXT_OF``) as :func:`_customer_column` reads it: the lists ``careful`` marks or that
    are not in order read again the careful way, the others kept as they are."""
    tags = typed.get_column("tags")
    text = typed.get_column(_TEXT_OF + "tags") if split else None
    again = pl.concat([careful.fill_null(False).arg_true(), _tags_out_of_order(tags, text)])
    again = again.unique() if again.len() else again
    if not again.len():
        return tags
    given = typed.get_column(_TEXT_OF + "tags").gather(again).to_frame("tags")
    lists = _blank_to_null(pl.col("tags")).str.split(";") if split else pl.col("tags")
    fixed = given.select(_tag_list(lists)).to_series()
    height = typed.height
    index = pl.int_range(height, eager=True, dtype=pl.UInt32()).scatter(
        again, pl.int_range(height, height + again.len(), eager=True, dtype=pl.UInt32())
    )
    return pl.concat([tags, fixed.cast(tags.dtype)]).gather(index).alias("tags")


def _careful_tag_lists(tags: pl.Expr) -> pl.Expr:
    """The lists of tags (a Parquet file's) :func:`_sorted_tags` reads again the careful way:
    a tag that is null, empty or has a space (the tags joined, then searched)."""
    nulls = tags.list.drop_nulls().list.len() != tags.list.len()
    return nulls | _careful_tags(tags.list.join(";"))  # an empty tag: ";;", or one at an end


def _careful_tags(text: pl.Expr) -> pl.Expr:
    """The ``tags`` cells :func:`_plain_tags` does not read as :func:`_customer_column` does:
    a space somewhere, an empty tag (``;;``, a ``;`` at either end) or an empty cell."""
    return (
        text.str.contains_any([*_SPACES, ";;"])
        | text.str.starts_with(";")
        | text.str.ends_with(";")
        | (text.str.len_bytes() == 0)
    )


#: The customer columns a frame may hold already typed (the others are text).
TYPED_CUSTOMER_COLUMNS: tuple[str, ...] = (*DATE_COLUMNS, *BOOLEAN_COLUMNS, "cadence_days", "tags")


def check_attribute_columns(
    customers: pl.DataFrame, attributes: Mapping[str, FactSpec], where: Path | str
) -> None:
    """Every attribute the project file declares is a column of the customers: one that is
    not raises :class:`SourceError` at ``where`` (the project file) naming it."""
    from courtship.catalogue.attributes import unknown_attribute_hint

    columns = [name for name in customers.columns if name not in CUSTOMER_SCHEMA]
    for name in attributes:
        if name not in customers.columns:
            raise SourceError(
                where,
                None,
                f"attributes.{name}",
                f"the customers have no column {name}",
                unknown_attribute_hint(name, columns),
            )


def type_declared_facts(
    customers: pl.DataFrame,
    facts: Mapping[str, FactSpec] | None,
    *,
    where: Path | str = "the customers",
) -> pl.DataFrame:
    """A customer table (the contract's shape) whose other columns named like declared facts
    are still text, those columns read as their facts' types; the rest is left as it is.

    For customers read by a source that does not take ``facts``, or built by hand. Checked in
    bulk; a cell that is not of its fact's type raises :class:`SourceError` at ``where``, naming
    the row and the customer id (a file's reader, given ``facts``, names the line instead).
    """
    extras = [name for name in customers.columns if name not in CUSTOMER_SCHEMA]
    _check_extra_names(_Place(where), extras)
    declared = {
        name: spec
        for name, spec in declared_extras(extras, facts).items()
        if customers.schema[name] == pl.String()
    }
    if not declared:
        return customers
    parsed = customers.select(
        "customer_id",
        *declared,
        *(fact_from_text(pl.col(n), spec.type).alias(PARSED + n) for n, spec in declared.items()),
    )
    problems = [
        (name, *problem)
        for name, spec in declared.items()
        if (problem := fact_problem(name, spec, pl.col(PARSED + name))) is not None
    ]
    if problems:
        rows = parsed.select(
            pl.int_range(pl.len(), dtype=pl.UInt32()).filter(bad).first().alias(str(index))
            for index, (_, bad, _, _) in enumerate(problems)
        ).row(0)
        hits = [(row, index) for index, row in enumerate(rows) if row is not None]
        if hits:
            row, index = min(hits)
            name, _, message, hint = problems[index]
            value = customers.get_column(name)[row]
            raw = customers.select("customer_id", name).with_row_index("_row")
            raise _Place(where).error(raw, row, name, message.format(value=value), hint)
    return customers.with_columns(parsed.get_column(PARSED + name).alias(name) for name in declared)


def _check_customers(
    path: Path,
    raw: pl.DataFrame,
    place: _Place | None = None,
    declared: Mapping[str, FactSpec] | None = None,
    problems: list[tuple[str, pl.Expr, str, str]] | None = None,
) -> None:
    """Find every kind of problem; report the one on the earliest line (then the leftmost).
    ``declared``: the other columns that hold facts plugins declared, checked against their
    types too (``problems``: those of :func:`_customer_problems`, when already built)."""
    place = place or _csv_place(path)
    id_ = pl.col("customer_id")
    if problems is None:
        problems = _customer_problems(raw, declared)
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
    first = None
    if field == "customer_id" and value is not None:
        first_row = raw.filter(id_ == value).get_column("_row").min()
        first = place.position(int(first_row)) if isinstance(first_row, int) else None
    raise place.error(raw, row, field, message.format(value=value, first=first), hint)


def _customer_problems(
    raw: pl.DataFrame, declared: Mapping[str, FactSpec] | None = None, *, trim: bool = True
) -> list[tuple[str, pl.Expr, str, str]]:
    """Every kind of problem a customer row may have: the column, the rows that have it, what
    is wrong (``{value}``, and ``{first}`` for a repeated id) and the hint. ``trim`` false
    (text taken as written): an id with space at an end is one."""
    id_ = pl.col("customer_id")
    zones = raw.get_column("timezone").drop_nulls().unique().to_list()
    spaced = [] if trim else [_SPACED_ID]
    return [
        ("customer_id", id_.is_null(), "the cell is empty", "every customer needs an id"),
        *spaced,
        (
            "customer_id",
            id_.is_not_null() & ~id_.is_first_distinct(),
            "'{value}' appears twice (first on {first})",
            "customer ids must be unique",
        ),
        *_cell_problems(raw.schema, [zone for zone in zones if not is_time_zone(zone)]),
        *_declared_problems(declared),
    ]


#: A customer id with space at an end, where text is taken as written (Parquet): an event's id
#: would never match it.
_SPACED_ID: tuple[str, pl.Expr, str, str] = (
    "customer_id",
    pl.col("customer_id").str.contains(r"^\s|\s$"),
    "'{value}' has space at an end (a Parquet file's text is taken as written)",
    "write the id without the space: ids are matched exactly",
)


def _cell_problems(
    schema: Mapping[str, pl.DataType], unknown_zones: list[str]
) -> list[tuple[str, pl.Expr, str, str]]:
    """The problems a customer-file cell may have on its own (not a repeated id, not a declared
    fact's): dates, consents, cadence, the listed values, and ``unknown_zones``."""
    problems: list[tuple[str, pl.Expr, str, str]] = []
    for name in DATE_COLUMNS:
        parsed = _customer_column(name, schema[name])
        problems.append(
            (
                name,
                pl.col(name).is_not_null() & parsed.is_null(),
                "'{value}' is not a date (YYYY-MM-DD)",
                "fix or empty the cell",
            )
        )
        in_calendar = parsed.is_null() | parsed.is_between(
            CALENDAR_START.date(), CALENDAR_END.date()
        )
        problems.append((name, ~in_calendar, "'{value}' is a date no calendar holds", _YEARS_HINT))
    for name in BOOLEAN_COLUMNS:
        problems.append(
            (
                name,
                pl.col(name).is_not_null() & _customer_column(name, schema[name]).is_null(),
                "'{value}' is not true or false",
                "write true/false, yes/no or 1/0, or empty the cell",
            )
        )
    days = _customer_column("cadence_days", schema["cadence_days"])
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
    problems.append(
        (
            "timezone",
            pl.col("timezone").is_in(unknown_zones),
            "'{value}' is not a known IANA time zone",
            "use a name such as Europe/London, or empty the cell for the default",
        )
    )
    return problems


def _declared_problems(
    declared: Mapping[str, FactSpec] | None,
) -> list[tuple[str, pl.Expr, str, str]]:
    """The cells of the declared facts' columns that are not of their types (each read in its
    ``PARSED`` column)."""
    problems: list[tuple[str, pl.Expr, str, str]] = []
    for name, spec in (declared or {}).items():
        problem = fact_problem(name, spec, pl.col(PARSED + name))
        if problem is not None:
            problems.append((name, *problem))
    return problems


def _in_calendar(moment: pl.Expr) -> pl.Expr:
    """A date or moment in the years a calendar holds (true where it is null)."""
    return moment.is_null() | moment.dt.year().is_between(FIRST_YEAR, LAST_YEAR)


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


def _blank_to_null(column: pl.Expr, *, trim: bool = True) -> pl.Expr:
    """A text cell trimmed (unless ``trim`` is false: Parquet's, taken as written), null when
    it is then empty."""
    text = column.str.strip_chars() if trim else column
    return pl.when(text != "").then(text)


def untrimmed(frame: pl.DataFrame, names: Iterable[str], *, trim: bool = True) -> set[str]:
    """The text columns among ``names`` with a cell ``_blank_to_null`` would change (space at
    either end, or empty; only empty when ``trim`` is false), found in one vectorised pass."""
    names = list(names)
    if not names or frame.height == 0:
        return set()
    if not trim:
        empty = frame.select((pl.col(n) == "").any().alias(n) for n in names).row(0)
        return {name for name, hit in zip(names, empty, strict=True) if hit}
    # A cheap test first (:func:`_may_need_trimming`); the exact one only where it finds one.
    maybe = frame.select(_may_need_trimming([n]).any().alias(n) for n in names).row(0)
    names = [name for name, hit in zip(names, maybe, strict=True) if hit]
    if not names:
        return set()
    found = frame.select(
        (
            (pl.col(n).str.strip_chars().str.len_bytes() != pl.col(n).str.len_bytes())
            | (pl.col(n).str.len_bytes() == 0)
        )
        .any()
        .alias(n)
        for n in names
    ).row(0)
    return {name for name, hit in zip(names, found, strict=True) if hit}


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
        if name == ROW:
            raise SourceError(path, 1, name, *_ROW_TAKEN)
        if is_pattern(name):
            raise SourceError(path, 1, name, *_PATTERN)
    return names


#: Why a column may not be named ``*`` or ``^…$``.
_PATTERN = (
    "the name reads as a pattern of column names (polars takes * for all of them, ^…$ for "
    "those that match)",
    "rename the column",
)


def is_pattern(name: str) -> bool:
    """A column name polars reads as a pattern of names, not as the name."""
    return name == "*" or (name.startswith("^") and name.endswith("$"))


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
    raw = _read_jsonl_raw(path)
    if raw.width == 0:
        return empty_events()
    return _normalise_events(path, raw, lambda row: _jsonl_line_of_row(path, row))


def _read_jsonl_raw(path: Path) -> pl.DataFrame:
    """A JSON Lines file as a frame, one row per object (no columns when there is none)."""
    if not path.is_file():
        raise SourceError(path, None, None, "no such file", "check the path")
    if path.stat().st_size == 0:
        return pl.DataFrame()
    if _may_nest_deep(path):  # polars takes minutes over a struct hundreds of levels deep
        return _read_jsonl_slowly(path)
    try:
        frame = pl.read_ndjson(path, infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return _read_jsonl_slowly(path)  # it refuses a field named _row itself
    if ROW in frame.columns or any(is_pattern(name) for name in frame.columns):
        return _read_jsonl_slowly(path)  # to name the line
    return frame


def read_events_csv(path: Path) -> pl.DataFrame:
    """Read an event file in CSV: a header naming the fields, one event per line."""
    path = Path(path)
    fast = _events_csv_at_speed(path)
    if fast is not None:
        return fast
    return _events_from_csv_text(_csv_place(path), _read_csv_text(path, trim=False))


def _events_from_csv_text(place: _Place, raw: pl.DataFrame) -> pl.DataFrame:
    """Events from a CSV read as text (not yet trimmed); blank lines are no events."""
    for name in REQUIRED_EVENT_FIELDS:
        if name not in raw.columns:
            raise place.missing(name, "the required column is missing", f"add a `{name}` column")
    return _normalise_event_frame(place, raw, blank_rows=True)


def _read_csv_text(path: Path, *, trim: bool = True) -> pl.DataFrame:
    """A CSV file as text columns: names trimmed, ``_row`` added; cells trimmed and blank ones
    null unless ``trim`` is false (the caller then does it, once)."""
    _csv_header(path)
    try:
        raw = pl.read_csv(path, infer_schema=False, raise_if_empty=False)
    except pl.exceptions.PolarsError as error:
        raise _csv_failure(path, error) from None
    raw = raw.rename(lambda name: name.strip().lstrip("\ufeff"))
    if trim:
        raw = raw.with_columns(_blank_to_null(pl.col(name)) for name in raw.columns)
    return raw.with_row_index("_row")


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
                except RecursionError:
                    value = _TOO_DEEP  # deeper than Python's stack: refused just below
                if value is _TOO_DEEP or _depth(value) > MAX_JSON_DEPTH:
                    raise SourceError(
                        path,
                        number,
                        None,
                        f"the line nests values deeper than {MAX_JSON_DEPTH} levels",
                        "write one flat JSON object per line, such as "
                        '{"customer_id": "c-1", "type": "order", "at": "2026-11-20T10:15:00Z"}',
                    )
                if not isinstance(value, dict):
                    raise SourceError(
                        path,
                        number,
                        None,
                        f"the line is a JSON {type(value).__name__}, not an object",
                        'write one JSON object per line, such as {"customer_id": …}',
                    )
                if ROW in value:
                    raise SourceError(path, number, ROW, *_ROW_TAKEN)
                for name in value:
                    if is_pattern(name):
                        raise SourceError(path, number, name, *_PATTERN)
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


_TOO_DEEP = object()


def _may_nest_deep(path: Path) -> bool:
    """Some line opens more than :data:`MAX_JSON_DEPTH` objects or lists (whether they nest
    is for the line-by-line reader to say)."""
    with path.open("rb") as handle:
        return any(line.count(b"{") + line.count(b"[") > MAX_JSON_DEPTH for line in handle)


def _depth(value: Any) -> int:
    """How deep a JSON value nests (a scalar is 0, ``{}`` is 1), counted without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


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
    return _normalise_event_frame(_Place(path, line_of), raw)


def _normalise_event_frame(
    place: _Place, raw: pl.DataFrame, *, blank_rows: bool = False, trim: bool = True
) -> pl.DataFrame:
    """Type the standard fields, check them, and keep every other field as its own column.
    ``blank_rows``: a row whose cells are all blank is no event (a blank CSV line), left out.
    ``trim`` false (a Parquet file's): text is taken as written, only an empty cell null.

    The events are typed and checked in one pass (:func:`_events_at_speed`); only when that
    finds something wrong (or an unusual shape) are they checked again field by field, to
    report the first problem at its line."""
    fast = _events_at_speed(raw, blank_rows=blank_rows, trim=trim)
    if fast is not None:
        return fast
    if "_row" not in raw.columns:
        raw = raw.with_row_index("_row")
    raw = raw.with_columns(
        _blank_to_null(pl.col(name), trim=trim)
        for name, dtype in raw.schema.items()
        if dtype == pl.String()
    )
    if blank_rows:
        raw = raw.filter(pl.any_horizontal(pl.exclude("_row").is_not_null()))

    def fail(bad: pl.Expr, field: str, message: str, hint: str) -> None:
        hit = raw.filter(bad).select("_row", field).head(1)
        if hit.height:
            row, value = hit.row(0)
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            raise place.error(raw, row, field, message.format(value=text), hint)

    for name in REQUIRED_EVENT_FIELDS:
        if name not in raw.columns:
            raise place.error(
                raw,
                0,
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
    raw = raw.with_columns(_blank_to_null(pl.col(name), trim=trim) for name in TEXT_EVENT_FIELDS)

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

    fail(
        ~_in_calendar(parsed_at),
        "at",
        "'{value}' is a moment no calendar holds (in UTC)",
        f"write a moment from the year {FIRST_YEAR} to {LAST_YEAR}",
    )
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


#: The shape nearly every ``at`` takes, parsed first (the others, and errors, on the slow path).
_COMMON_AT_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"


def _events_at_speed(
    raw: pl.DataFrame, *, blank_rows: bool = False, trim: bool = True
) -> pl.DataFrame | None:
    """The events typed as :func:`_normalise_event_frame` types them, in one vectorised pass;
    None when any event has a problem or a field an unusual type (the caller then checks field
    by field, to name the line). Every ``at`` must be a datetime with a zone or ISO 8601 text
    like ``2026-11-20T10:15:00.123Z``; other shapes the slow path reads are left to it."""
    schema = raw.schema
    if any(name not in schema for name in REQUIRED_EVENT_FIELDS):
        return None
    present = {name: schema[name] for name in EVENT_SCHEMA if name in schema}
    if any(present[name].is_nested() for name in TEXT_EVENT_FIELDS if name in present):
        return None
    amount_type = present.get("amount", pl.Null())
    if not (amount_type == pl.String() or amount_type.is_numeric() or amount_type == pl.Null()):
        return None
    at_type = present["at"]
    if at_type == pl.String():
        at = pl.col("at").str.to_datetime(
            _COMMON_AT_FORMAT, strict=False, time_zone="UTC", cache=False
        )
    elif isinstance(at_type, pl.Datetime) and at_type.time_zone is not None:
        at = pl.col("at").dt.convert_time_zone("UTC")
    else:
        return None
    frame = raw.lazy().drop(ROW, strict=False)
    # Text as the slow path leaves it: trimmed, a blank cell null. Only the columns with a cell
    # to trim or blank are rewritten (a clean column is kept as it is, not copied).
    text = [n for n, dtype in schema.items() if n != ROW and dtype == pl.String()]
    dirty = untrimmed(raw, text, trim=trim)
    frame = frame.with_columns(
        _blank_to_null(pl.col(name), trim=trim)
        if dtype == pl.String()
        else pl.col(name).cast(pl.String())
        for name, dtype in schema.items()
        if name in dirty or (name in TEXT_EVENT_FIELDS and dtype != pl.String())
    )
    if blank_rows and (dirty or any(raw.get_column(n).null_count() for n in schema if n != ROW)):
        frame = frame.filter(pl.any_horizontal(pl.all().is_not_null()))
    amount = pl.col("amount").cast(pl.Float64(), strict=False) if "amount" in present else None
    at = at.cast(UTC_DATETIME)
    bad = (
        pl.col("customer_id").is_null()
        | pl.col("type").is_null()
        | at.is_null()
        | ~at.is_between(CALENDAR_START, CALENDAR_END)  # the years FIRST_YEAR to LAST_YEAR
    )
    if amount is not None and amount_type == pl.String():
        bad = bad | (pl.col("amount").is_not_null() & amount.is_null())
    extras = [name for name in schema if name not in EVENT_SCHEMA and name != ROW]
    typed = frame.select(
        pl.col("customer_id", "type"),
        at.alias("at"),
        *(
            (pl.col(name) if name in present else pl.lit(None, pl.String())).alias(name)
            if name != "amount"
            else (amount if amount is not None else pl.lit(None, pl.Float64())).alias(name)
            for name in ("channel", "amount", "friend_id", "playbook", "category")
        ),
        *(pl.col(name) for name in extras),
        bad.alias(ROW),  # the name no field may take: the row's problem
    ).collect()
    if typed.height and typed.get_column(ROW).any():
        return None
    return typed.drop(ROW)


#: The fixed shapes of ``at`` (digits in fixed places, ``Z`` for UTC) polars parses several
#: times faster than the general ISO 8601 format; the first events choose one.
_FIXED_AT_FORMATS: tuple[str, ...] = (
    "%Y-%m-%dT%H:%M:%S.%6fZ",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S.%3fZ",
    "%Y-%m-%dT%H:%M:%S.%9fZ",
)
#: How many of the first events choose the shape ``at`` is parsed in.
_AT_SAMPLE = 1000
#: A text cell ``_blank_to_null`` would change: empty, or with space at either end.
_UNTRIMMED = r"^$|^\s|\s$"
#: Every character that is space (Python's idea of it holds Unicode's, which polars trims):
#: those ``str.isspace`` says are (tests/test_fast_readers.py checks), written out, for going
#: over every code point took 50 ms of each command's start.
_SPACES: tuple[str, ...] = (
    *"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680",
    *"\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a",
    *"\u2028\u2029\u202f\u205f\u3000",
)
#: Where the readers mark, in one pass, the rows with a cell that may need trimming.
_MAYBE_UNTRIMMED = "_row_maybe_untrimmed"
#: Where the customer reader marks the rows whose ``tags`` ``_sorted_tags`` reads carefully.
_CAREFUL_TAGS = "_row_careful_tags"


def _may_need_trimming(
    names: Iterable[str], *, trim: bool = True, exactly: Iterable[str] = ()
) -> pl.Expr:
    """A row with a cell that may need trimming among the text columns ``names``: empty, or
    whose first or last byte is not a visible ASCII character (a space, a control character,
    or a byte of a character beyond ASCII, as every Unicode space is). Two comparisons a cell,
    each of one byte; the exact test (:func:`_needs_trimming`) settles the rows it marks (a
    name ending in ``é``, say) and those only. When ``trim`` is false (Parquet: text taken as
    written), a cell that may be empty (one comparison), or one of ``exactly`` (a customer id)
    that may have space at an end."""
    if not trim:
        exactly = set(exactly)
        return pl.any_horizontal(
            _may_have_space_at_an_end(pl.col(name))
            if name in exactly
            # an empty cell (or one beginning with a space or a control character) sorts first
            else pl.col(name) < "!"
            for name in names
        )
    return pl.any_horizontal(_may_have_space_at_an_end(pl.col(name)) for name in names)


#: The customer columns matched exactly (an event's customer to the customer): in a Parquet
#: file, whose text is taken as written, a customer id with space at an end is refused.
_MATCHED_EXACTLY: tuple[str, ...] = ("customer_id",)


def _may_have_space_at_an_end(text: pl.Expr) -> pl.Expr:
    """A text cell empty, or that begins or ends with a byte that is no visible ASCII
    character: the only cells ``_blank_to_null`` may change (and a few more)."""
    first = ~text.is_between(pl.lit("!"), pl.lit("\x80"), closed="left")  # "" sorts first
    last = text.cast(pl.Binary()).bin.get(-1, null_on_oob=True)  # the last byte
    return first | ~last.is_between(ord("!"), 0x7F)


def _needs_trimming(
    frame: pl.DataFrame, names: Iterable[str], *, trim: bool = True, exactly: Iterable[str] = ()
) -> bool:
    """Some row marked by :func:`_may_need_trimming` has a cell to trim among ``names`` (when
    ``trim`` is false: an empty cell, or one of ``exactly`` with space at an end)."""
    names, exactly = list(names), set(exactly)
    if not names or not frame.get_column(_MAYBE_UNTRIMMED).any():
        return False
    maybe = frame.select(*names, _MAYBE_UNTRIMMED).filter(pl.col(_MAYBE_UNTRIMMED))
    exact = maybe.select(
        pl.any_horizontal(
            pl.col(n).str.contains(_UNTRIMMED) if trim or n in exactly else pl.col(n) == ""
            for n in names
        )
    )
    return bool(exact.to_series().any())


def _at_parser(sample: pl.Series) -> tuple[pl.Expr, bool]:
    """How to parse the text column ``at`` into UTC instants: in the fixed shape every one of
    ``sample`` (the first events' ``at``) has, else in the general ISO 8601 format with a zone;
    and whether that shape leaves no room for a space (so ``at`` needs no trimming). A value
    of another shape parses to null, and its event is then read the careful way."""
    known = sample.drop_nulls()
    for form in _FIXED_AT_FORMATS:
        parsed = known.str.to_datetime(form, strict=False, time_unit="us", cache=False)
        if known.len() and not parsed.null_count():
            at = pl.col("at").str.to_datetime(form, strict=False, time_unit="us", cache=False)
            return at.dt.replace_time_zone("UTC"), True
    at = pl.col("at").str.to_datetime(_COMMON_AT_FORMAT, strict=False, time_zone="UTC", cache=False)
    return at.cast(UTC_DATETIME), False


def _events_csv_at_speed(
    path: Path, mapping: Mapping[str, str] | None = None, since: datetime | None = None
) -> pl.DataFrame | None:
    """The events of a CSV file as :func:`_events_frame_at_speed` reads a table; None when the
    careful way is to read it. A problem with the header or ``mapping`` raises here."""
    frame = _scan_csv_mapped(path, mapping or {})
    if frame is None:
        return None
    return _events_frame_at_speed(frame, since, CSV_ENGINE)


def _events_parquet_at_speed(
    files: list[Path], mapping: Mapping[str, str] | None, since: datetime | None
) -> pl.DataFrame | None:
    """The events of Parquet ``files`` (all of one schema) as :func:`_events_frame_at_speed`
    reads a table; None when the careful way (file by file) is to read them."""
    schemas = [pl.read_parquet_schema(_readable_parquet(file)) for file in files]
    if any(schema != schemas[0] for schema in schemas) or not schemas[0]:
        return None
    frame = apply_column_mapping(pl.scan_parquet(files), mapping or {}, where=files[0])
    return _events_frame_at_speed(frame, since, PARQUET_ENGINE, trim=False)


def _events_frame_at_speed(
    frame: pl.LazyFrame, since: datetime | None, engine: Engine, *, trim: bool = True
) -> pl.DataFrame | None:
    """The events of ``frame`` (a file still to be read), typed as
    :func:`_normalise_event_frame` types them, in one query (run by ``engine``: polars reads,
    parses ``at`` and checks every event on every core), only those after ``since``; None
    when an event has a problem, a cell needs trimming, a line is blank, a field is of an
    unusual type or polars cannot read the file: the caller then reads it the careful way,
    which names the line. ``trim`` false (Parquet): text is taken as written, only an empty
    cell is to change."""
    try:
        schema = frame.collect_schema()
        if any(name not in schema for name in REQUIRED_EVENT_FIELDS) or any(
            name.startswith(ROW) for name in schema
        ):
            return None
        if any(schema[name].is_nested() for name in TEXT_EVENT_FIELDS if name in schema):
            return None
        at_type = schema["at"]
        if at_type == pl.String():
            sample = frame.select("at").head(_AT_SAMPLE).collect().get_column("at")
            at, fixed = _at_parser(sample)
        elif isinstance(at_type, pl.Datetime) and at_type.time_zone is not None:
            at, fixed = pl.col("at").dt.convert_time_zone("UTC").cast(UTC_DATETIME), True
        else:
            return None
        amount_type = schema.get("amount", pl.Null())
        if not (amount_type == pl.String() or amount_type.is_numeric() or amount_type == pl.Null()):
            return None
        amount = pl.col("amount").cast(pl.Float64(), strict=False) if "amount" in schema else None
        # A blank line has no customer_id: it is a problem here, left out the careful way.
        problem = (
            pl.col("customer_id").is_null()
            | pl.col("type").is_null()
            | at.is_null()
            | ~at.is_between(CALENDAR_START, CALENDAR_END)  # the years FIRST_YEAR to LAST_YEAR
        )
        if amount_type == pl.String():  # a number with space, as " 12.5", does not parse
            problem = problem | (pl.col("amount").is_not_null() & amount.is_null())  # type: ignore[union-attr]
        if not fixed:  # the general format may take space the careful way trims
            problem = problem | pl.col("at").str.contains_any(list(_SPACES))
        # Text with space to trim, or empty: the careful way trims it (a fixed ``at`` has none).
        text = [
            n for n, dtype in schema.items() if n not in ("at", "amount") and dtype == pl.String()
        ]
        extras = [name for name in schema if name not in EVENT_SCHEMA]
        typed = frame.select(
            *(
                (
                    pl.col(name).cast(pl.String()) if name in schema else pl.lit(None, pl.String())
                ).alias(name)
                for name in ("customer_id", "type", "channel", "friend_id", "playbook", "category")
            ),
            at.alias("at"),
            (amount if amount is not None else pl.lit(None, pl.Float64())).alias("amount"),
            *(pl.col(name) for name in extras),
            problem.alias(ROW),  # the name no column may take: the event's problem
            _may_need_trimming(text, trim=trim).alias(_MAYBE_UNTRIMMED),
        )
        typed = typed.select(*EVENT_SCHEMA, *extras, ROW, _MAYBE_UNTRIMMED)
        if since is not None:
            typed = typed.filter(
                pl.col(ROW) | pl.col(_MAYBE_UNTRIMMED) | (pl.col("at") > utc_instant(since))
            )
        events = typed.collect(engine=engine)
    except pl.exceptions.PolarsError:
        return None
    if events.height and (events.get_column(ROW).any() or _needs_trimming(events, text, trim=trim)):
        return None
    events = events.drop(ROW, _MAYBE_UNTRIMMED)
    if since is not None:  # the rows kept only to be checked
        events = filter_since(events, since)
    return events


def _normal_iso(text: pl.Expr) -> pl.Expr:
    """A date and time written with a space or a lower-case ``t``/``z``, in canonical form."""
    return text.str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]", "${1}T").str.replace(r"z$", "Z")


def parse_instant(text: pl.Expr) -> pl.Expr:
    """ISO 8601 text with a zone (``Z`` or ``±hh:mm``) → a UTC instant; null when it is not one."""
    normal = _normal_iso(text)
    return pl.coalesce(
        [normal.str.to_datetime(form, strict=False, time_zone="UTC") for form in DATETIME_FORMATS]
    ).cast(UTC_DATETIME)


# ── sources: the public API of source plugins ────────────────────────────

#: What a source reads: ``sources.customers`` and ``sources.events`` in ``courtship.yaml``.
ROLES: tuple[str, ...] = ("customers", "events")
#: The project file that holds the sources' settings (named in settings errors).
SETTINGS_FILE = "courtship.yaml"


@runtime_checkable
class Source(Protocol):
    """Reads one kind of data: ``role`` is ``"customers"`` or ``"events"``.

    ``read()`` returns a frame shaped exactly like the file readers' output: for customers the
    whole customer base (``since`` is ignored), typed as :data:`CUSTOMER_SCHEMA`, in that order,
    other columns after, as text. A customer source may also take a keyword ``facts`` (the
    facts plugins declare; see :func:`read_source`) and read the other columns named like one
    as its type, as :func:`normalise_customers` does given them. For events: those with
    ``at > since`` (all when ``since`` is None), typed as :data:`EVENT_SCHEMA` (``at`` a UTC
    instant), other fields after. Bad data raises a :class:`SourceError` that names where it
    is (a file and line, a table and column).
    """

    role: str

    def read(self, since: datetime | None = None) -> pl.DataFrame: ...


def read_source(
    source: Source,
    since: datetime | None = None,
    *,
    facts: Mapping[str, FactSpec] | None = None,
    where: Path | str = "the customers",
) -> pl.DataFrame:
    """``source.read(since)``; for customers, the other columns named like ``facts`` (those
    plugins declare) read as their types. A source whose ``read`` takes a ``facts`` keyword is
    given them, to check them as it reads (and name the line); any other is read as before and
    its result typed after (:func:`type_declared_facts`, naming the row)."""
    if source.role != "customers":
        return source.read(since)
    try:
        accepts = "facts" in inspect.signature(source.read).parameters
    except (TypeError, ValueError):
        accepts = False
    read: Callable[..., pl.DataFrame] = source.read
    frame = read(since, facts=facts) if accepts and facts else read(since)
    return type_declared_facts(frame, facts, where=where)


#: ``factory(settings, role, root)``: the settings of ``sources.<role>`` (a plain mapping, ``type``
#: included), the role (``customers`` or ``events``) and the project's root folder, which relative
#: paths are read from. Raises :class:`SourceError` naming the setting when the settings are wrong.
SourceFactory = Callable[[Mapping[str, Any], str, Path], Source]


class SourceSettings:
    """The settings of one source, read with errors that name the setting.

    ``SourceSettings(settings, "events", root, known={"path", "columns"})`` checks the role and
    refuses a setting it does not know (``type`` is always allowed), with a did-you-mean. Every
    error is a :class:`SourceError` placed at ``courtship.yaml``, field ``sources.<role>.<key>``.
    """

    def __init__(
        self, settings: Mapping[str, Any], role: str, root: Path, *, known: Iterable[str]
    ) -> None:
        self.values = dict(settings or {})
        self.role = role
        self.root = Path(root)
        self.file = self.root / SETTINGS_FILE
        if role not in ROLES:
            raise SourceError(
                self.file,
                None,
                f"sources.{role}",
                f"'{role}' is not something a source reads",
                "name the source customers or events",
            )
        allowed = {"type", *known}
        for key in self.values:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else "settings: " + ", ".join(sorted(allowed))
                )
                raise self.error(str(key), "this source has no such setting", hint)

    def name(self, key: str) -> str:
        """``sources.<role>.<key>``: how messages name the setting."""
        return f"sources.{self.role}.{key}"

    def error(self, key: str, message: str, hint: str = "") -> SourceError:
        """A :class:`SourceError` about the setting ``key``."""
        return SourceError(self.file, None, self.name(key), message, hint)

    def has(self, key: str) -> bool:
        return self.values.get(key) is not None

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        """A non-empty text setting, ``default`` when absent; ``required`` refuses absence."""
        value = self.values.get(key)
        if value is None:
            if required and default is None:
                raise self.error(key, "the setting is missing", f"add {key}: to the source")
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"{value!r} is not a non-empty text", f"write {key}: <text>")
        return value.strip()

    def path(self, key: str = "path") -> Path:
        """A required file path, relative to the project root (an absolute one stays as is)."""
        return self.root / str(self.text(key, required=True))

    def choice(self, key: str, options: Iterable[str], default: str | None = None) -> str | None:
        """A setting that must be one of ``options``."""
        value = self.text(key, default)
        options = tuple(options)
        if value is not None and value not in options:
            raise self.error(key, f"'{value}' is not one of {', '.join(options)}")
        return value

    def columns(self) -> dict[str, str]:
        """The ``columns`` mapping, ``{our_name: their_name}`` (empty when absent)."""
        value = self.values.get("columns")
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(
                "columns",
                "must map our column names to yours",
                "write columns: {customer_id: client_id}",
            )
        mapping: dict[str, str] = {}
        for ours, theirs in value.items():
            if not isinstance(ours, str) or not isinstance(theirs, str) or not theirs.strip():
                raise self.error(
                    f"columns.{ours}",
                    f"{theirs!r} is not a column name",
                    "write our name: your column's name",
                )
            mapping[ours] = theirs.strip()
        return mapping

    def env(self, key: str) -> str:
        """The value of the environment variable the setting ``key`` names (never logged)."""
        variable = self.text(key, required=True)
        assert variable is not None
        value = os.environ.get(variable)
        if not value:
            raise self.error(
                key,
                f"the environment variable {variable} is not set",
                f"export {variable}=… before running; secrets never go in {SETTINGS_FILE}",
            )
        from courtship.redaction import remember

        remember(value, variable)  # so that no error or output ever shows it
        return value


def apply_column_mapping(
    frame: Frame,
    mapping: Mapping[str, str],
    *,
    where: Path | str = "the data",
    line: int | None = None,
) -> Frame:
    """Rename the source's columns to ours: ``mapping`` is ``columns: {our_name: their_name}``.

    Columns the mapping does not name are kept. One of their columns may feed several of ours.
    A mapped column that is missing, or a column that is already called by a name the mapping
    gives to another, raises :class:`SourceError` at ``where`` (and ``line``, for a header).
    """
    if not mapping:
        return frame
    columns = frame.collect_schema().names()
    present = [name for name in columns if name != "_row"]
    for ours, theirs in mapping.items():
        if theirs not in columns:
            raise SourceError(
                where,
                line,
                theirs,
                f"no such column (columns.{ours} names it)",
                "the columns are: " + ", ".join(present) if present else "there are no columns",
            )
    theirs_mapped = set(mapping.values())
    for name in present:
        if name in mapping and name not in theirs_mapped:
            raise SourceError(
                where,
                line,
                name,
                f"the column is there, but columns.{name} names '{mapping[name]}' for it",
                f"drop the columns.{name} setting, or rename or remove the column",
            )
    out: list[pl.Expr] = []
    for name in columns:
        targets = [ours for ours, theirs in mapping.items() if theirs == name]
        if not targets:
            out.append(pl.col(name))
        out.extend(pl.col(name).alias(ours) for ours in targets)
    return frame.select(out)


def filter_since(events: pl.DataFrame, since: datetime | None) -> pl.DataFrame:
    """The events with ``at`` after ``since`` (all of them when ``since`` is None)."""
    if since is None:
        return events
    return events.filter(pl.col("at") > pl.lit(utc_instant(since), UTC_DATETIME))


def utc_instant(moment: datetime) -> datetime:
    """``moment`` in UTC; a moment without a zone is refused (``ValueError``)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"since must carry a time zone, not {moment.isoformat()}")
    return moment.astimezone(UTC)


def normalise_customers(
    frame: pl.DataFrame,
    *,
    where: Path | str,
    line_of: Callable[[int], int] | None = None,
    columns: Mapping[str, str] | None = None,
    facts: Mapping[str, FactSpec] | None = None,
    trim: bool = True,
) -> pl.DataFrame:
    """A customer frame of any column types (a query's result, JSON) → the contract's shape.

    Values go through the customer file's own checks and types: ``columns`` is applied first;
    dates may be dates or ``YYYY-MM-DD`` text, consents booleans, 0/1 or words, ``tags`` a list
    or ``;``-separated text, ``cadence_days`` a whole number. Other columns are kept as text,
    except those named like one of ``facts`` (declared by plugins), read as its type (a
    datetime as an instant, UTC when it has no zone). Problems name ``where`` and the line
    (``line_of(row)``, for a file) or the row of the result. ``trim`` false (a Parquet
    file's): text is taken as written, an empty cell null, an id with space at an end refused.
    """
    place = _Place(where, line_of, None, dict(columns or {}))
    frame = apply_column_mapping(frame, columns or {}, where=where)
    if "_row" not in frame.columns:
        frame = frame.with_row_index("_row")
    if frame.width == 1:  # nothing but _row: no customer at all
        return pl.DataFrame(schema=CUSTOMER_SCHEMA)
    return _customers_from_text(place, _as_text(place, frame), facts, trim=trim)


def normalise_events(
    frame: pl.DataFrame,
    *,
    where: Path | str,
    line_of: Callable[[int], int] | None = None,
    columns: Mapping[str, str] | None = None,
    since: datetime | None = None,
    naive_as_utc: bool = False,
    trim: bool = True,
) -> pl.DataFrame:
    """An event frame of any column types → the contract's shape, only ``at > since``.

    ``columns`` is applied first. ``at`` may be ISO 8601 text with a zone or a datetime with a
    zone; with ``naive_as_utc`` (databases whose timestamps carry no zone) a datetime or text
    without a zone is read as UTC. Problems name ``where`` and the line or row. ``trim``
    false (a Parquet file's): text is taken as written, an empty cell null.
    """
    place = _Place(where, line_of, None, dict(columns or {}))
    frame = apply_column_mapping(frame, columns or {}, where=where)
    if "_row" not in frame.columns:
        frame = frame.with_row_index("_row")
    if frame.height == 0 and all(name in frame.columns for name in REQUIRED_EVENT_FIELDS):
        extras = [name for name in frame.columns if name not in EVENT_SCHEMA and name != "_row"]
        return pl.concat([empty_events(), frame.select(extras).clear()], how="horizontal")
    for name in REQUIRED_EVENT_FIELDS:
        if name not in frame.columns:
            raise place.missing(
                name, "no such column", "every event needs customer_id, type and at"
            )
    if naive_as_utc:
        frame = _naive_at_as_utc(place, frame)
    return filter_since(_normalise_event_frame(place, frame, trim=trim), since)


def _naive_at_as_utc(place: _Place, frame: pl.DataFrame) -> pl.DataFrame:
    dtype = frame.schema["at"]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return frame.with_columns(pl.col("at").dt.replace_time_zone("UTC"))
    if dtype != pl.String():
        return frame
    text = _blank_to_null(pl.col("at"))
    naive = pl.coalesce(
        [
            _normal_iso(text).str.to_datetime(form, strict=False, time_zone="UTC")
            for form in NAIVE_DATETIME_FORMATS
        ]
    )
    parsed = pl.coalesce([parse_instant(text), naive.cast(UTC_DATETIME)])
    bad = frame.filter(text.is_not_null() & parsed.is_null()).select("_row", "at").head(1)
    if bad.height:
        row, value = bad.row(0)
        raise place.error(
            frame,
            row,
            "at",
            f"'{value}' is not a date and time (ISO 8601)",
            "store a timestamp, or text like 2026-11-20T10:15:00Z",
        )
    return frame.with_columns(parsed.alias("at"))


def _as_text(place: _Place, frame: pl.DataFrame) -> pl.DataFrame:
    """Every column (but ``_row``) as the text a customer CSV would hold."""
    out: list[pl.Series] = []
    for series in frame.get_columns():
        name, dtype = series.name, series.dtype
        if name == "_row" or dtype == pl.String():
            out.append(series)
        elif name in TYPED_CUSTOMER_COLUMNS and dtype == CUSTOMER_SCHEMA[name]:
            out.append(series)  # already in its contract type: checked as it is
        elif dtype in (pl.Null(), pl.Boolean()) or dtype.is_integer():
            out.append(series.cast(pl.String()))
        elif dtype.is_float() or dtype.is_decimal():
            numbers = series.cast(pl.Float64())
            known = numbers.drop_nulls()
            # whole numbers a float holds exactly (beyond 2^53, or 9.2e18, no integer fits)
            whole = bool(((known == known.floor()) & (known.abs() <= 2**53)).all())
            out.append(
                numbers.cast(pl.Int64()).cast(pl.String()) if whole else series.cast(pl.String())
            )
        elif dtype == pl.Date():
            out.append(series.dt.to_string("%Y-%m-%d"))
        elif isinstance(dtype, pl.Datetime):
            if name in DATE_COLUMNS:
                out.append(series.dt.date().dt.to_string("%Y-%m-%d"))
            else:  # ISO 8601 in UTC (a time without a zone is taken as UTC, as for events)
                utc = (
                    series.dt.replace_time_zone("UTC")
                    if dtype.time_zone is None
                    else series.dt.convert_time_zone("UTC")
                )
                out.append(utc.dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"))
        elif isinstance(dtype, pl.List | pl.Array) and not dtype.inner.is_nested():
            out.append(
                series.cast(pl.List(dtype.inner))
                .list.eval(pl.element().cast(pl.String()))
                .list.join(";")
                .alias(name)
            )
        else:
            out.append(
                pl.Series(
                    name,
                    [None if v is None else json.dumps(v, default=str) for v in series.to_list()],
                    dtype=pl.String(),
                )
            )
    return pl.DataFrame(out)


def read_customers_file(
    path: Path,
    *,
    format: str = "csv",
    columns: Mapping[str, str] | None = None,
    facts: Mapping[str, FactSpec] | None = None,
) -> pl.DataFrame:
    """The customer file in CSV (``format="csv"``) or JSON Lines (``"jsonl"``), with the
    ``columns`` mapping applied (their names in errors); like :func:`read_customers_csv`,
    ``facts`` included."""
    path = Path(path)
    mapping = dict(columns or {})
    if format == "csv":
        fast = _customers_csv_at_speed(path, mapping, facts)
        if fast is not None:
            return fast
        raw = apply_column_mapping(_read_csv_text(path, trim=False), mapping, where=path, line=1)
        return _customers_from_text(_csv_place(path, mapping), raw, facts)
    if format == "jsonl":
        raw = _read_jsonl_raw(path)
        if raw.width == 0:
            return pl.DataFrame(schema=CUSTOMER_SCHEMA)
        return normalise_customers(
            raw,
            where=path,
            line_of=lambda row: _jsonl_line_of_row(path, row),
            columns=mapping,
            facts=facts,
        )
    if format == "parquet":
        files = parquet_files(path)
        fast = _customers_parquet_at_speed(path, files, mapping, facts)
        if fast is not None:
            return fast
        frames = [pl.read_parquet(_readable_parquet(file)) for file in files]
        raw = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        if raw.width == 0:
            return pl.DataFrame(schema=CUSTOMER_SCHEMA)
        return normalise_customers(
            raw, where=_parquet_place(path, files), columns=mapping, facts=facts, trim=False
        )
    raise ValueError(f"unknown customer file format {format!r}; use csv, jsonl or parquet")


def read_events_file(
    path: Path,
    *,
    format: str = "jsonl",
    columns: Mapping[str, str] | None = None,
    at_format: str | None = None,
    since: datetime | None = None,
) -> pl.DataFrame:
    """The event file in JSON Lines (``format="jsonl"``) or CSV (``"csv"``), with the
    ``columns`` mapping applied, ``at`` read with ``at_format`` when given (a strftime format
    that has a zone: ``%z``), only the events after ``since``; like :func:`read_events_jsonl`."""
    path = Path(path)
    mapping = dict(columns or {})
    if format == "csv":
        if at_format is None:
            fast = _events_csv_at_speed(path, mapping, since)
            if fast is not None:
                return fast
        place = _csv_place(path, mapping)
        raw = apply_column_mapping(_read_csv_text(path, trim=False), mapping, where=path, line=1)
        for name in REQUIRED_EVENT_FIELDS:
            if name not in raw.columns:
                raise place.missing(
                    name, "the required column is missing", f"add a `{name}` column"
                )
    elif format == "jsonl":
        place = _jsonl_place(path, mapping)
        raw = _read_jsonl_raw(path)
        if raw.width == 0:
            return empty_events()
        raw = apply_column_mapping(raw, mapping, where=path)
    elif format == "parquet":
        return read_events_parquet(path, columns=mapping, since=since)
    else:
        raise ValueError(f"unknown event file format {format!r}; use jsonl, csv or parquet")
    if "_row" not in raw.columns:
        raw = raw.with_row_index("_row")
    if at_format is not None and "at" in raw.columns:
        raw = _parse_at_with(place, raw, at_format)
    return filter_since(_normalise_event_frame(place, raw, blank_rows=format == "csv"), since)


#: strftime directives that give a time zone (an offset, or ``Z`` with ``%#z``).
ZONE_DIRECTIVES: tuple[str, ...] = ("%z", "%:z", "%::z", "%#z")


def _parse_at_with(place: _Place, raw: pl.DataFrame, at_format: str) -> pl.DataFrame:
    """Read ``at`` with a strftime format that names the zone; the first mismatch is an error."""
    if raw.schema["at"] != pl.String():
        bad = raw.filter(pl.col("at").is_not_null()).select("_row", "at").head(1)
        if bad.height:
            row, value = bad.row(0)
            raise place.error(
                raw, row, "at", f"{json.dumps(value, default=str)} is not text", "write it as text"
            )
        return raw
    text = _blank_to_null(pl.col("at"))
    parsed = text.str.to_datetime(at_format, strict=False, time_zone="UTC").cast(UTC_DATETIME)
    bad = raw.filter(text.is_not_null() & parsed.is_null()).select("_row", "at").head(1)
    if bad.height:
        row, value = bad.row(0)
        raise place.error(
            raw, row, "at", f"'{value}' does not match the format {at_format}", "fix the time"
        )
    return raw.with_columns(parsed.alias("at"))


# ── Parquet: a file, a folder of files, or a glob ────────────────────────


def is_glob(path: Path | str) -> bool:
    """``path`` is a pattern of file names (``*``, ``?`` or ``[``)."""
    return any(mark in str(path) for mark in "*?[")


def parquet_files(path: Path) -> list[Path]:
    """The Parquet files ``path`` names: itself, a folder's ``*.parquet`` files (in name order)
    or those a glob matches (in name order). None of them is an error."""
    path = Path(path)
    if is_glob(path):
        anchor = Path(path.anchor) if path.is_absolute() else Path()
        pattern = str(path.relative_to(anchor)) if path.is_absolute() else str(path)
        files = sorted(p for p in anchor.glob(pattern) if p.is_file())
        if not files:
            raise SourceError(path, None, None, "no file matches", "check the pattern")
        return files
    if path.is_dir():
        files = sorted(p for p in path.glob("*.parquet") if p.is_file())
        if not files:
            raise SourceError(
                path, None, None, "the folder holds no .parquet file", "check the folder"
            )
        return files
    if not path.is_file():
        raise SourceError(path, None, None, "no such file", "check the path")
    return [path]


def _readable_parquet(file: Path) -> Path:
    """``file``, whose schema could be read: a file that is not Parquet is a SourceError."""
    try:
        schema = pl.read_parquet_schema(file)
    except (pl.exceptions.PolarsError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SourceError(
            file, None, None, f"the file cannot be read as Parquet ({first})", "write it again"
        ) from None
    for name in schema:
        if name == ROW:
            raise SourceError(file, None, name, *_ROW_TAKEN)
        if is_pattern(name):
            raise SourceError(file, None, name, *_PATTERN)
    return file


def _parquet_place(path: Path, files: list[Path]) -> Path:
    """What a problem in these files names: the one file, or the folder or glob (rows are then
    numbered across the files, in name order)."""
    return files[0] if len(files) == 1 else Path(path)


def read_events_parquet(
    path: Path, *, columns: Mapping[str, str] | None = None, since: datetime | None = None
) -> pl.DataFrame:
    """The events of a Parquet file, a folder of them or a glob: ``at`` a datetime with a zone
    (or ISO 8601 text), checked like an event file's; a problem names its file and row (and
    customer id). Only the events after ``since``."""
    files = parquet_files(Path(path))
    fast = _events_parquet_at_speed(files, columns, since)
    if fast is not None:
        return fast
    frames = []
    for file in files:
        frame = pl.read_parquet(_readable_parquet(file))
        if frame.width == 0:
            continue
        frames.append(normalise_events(frame, where=file, columns=columns, since=since, trim=False))
    if not frames:
        return empty_events()
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
