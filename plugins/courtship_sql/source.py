"""The SQL source: a table or a query, read through SQLAlchemy into polars."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import sqltypes

from courtship.catalogue import FactSpec
from courtship.channels import remember
from courtship.sources import (
    SourceError,
    SourceSettings,
    normalise_customers,
    normalise_events,
    utc_instant,
)

DEFAULT_URL = "sqlite:///courtship.db"
REQUIRED = {"customers": ("customer_id",), "events": ("customer_id", "type", "at")}


class SQLSource:
    """Customers or events from a table or a query; each ``read()`` runs one ``SELECT``.

    Connections are not pooled: each read opens one and closes it. Timestamps without a zone
    are UTC (PostgreSQL sessions are set to UTC, so comparisons agree).
    """

    def __init__(self, settings: Mapping[str, Any], role: str, root: Path) -> None:
        known = {"url", "url_env", "table", "schema", "query", "columns"}
        if role == "events":
            known.add("at_column")
        config = SourceSettings(settings, role, root, known=known)
        self.role = role
        self._config = config
        self.columns = config.columns()
        self._named_columns = dict(self.columns)  # as written, before at_column joins them
        self.table = config.text("table")
        self.schema = config.text("schema")
        self.query = config.text("query")
        if (self.table is None) == (self.query is None):
            raise config.error(
                "table",
                "both table and query are set" if self.table else "neither table nor query is set",
                "name a table (table: events) or write a query (query: SELECT …), one of them",
            )
        if self.schema is not None and self.query is not None:
            raise config.error("schema", "schema goes with table, not query", "drop schema")
        if self.query is not None:
            self.query = self.query.rstrip().rstrip(";").rstrip()
        self.at_column: str | None = None
        if role == "events":
            at_column = config.text("at_column")
            mapped = self.columns.get("at")
            if at_column and mapped and at_column != mapped:
                raise config.error(
                    "at_column",
                    f"'{at_column}' is not the column columns.at names ('{mapped}')",
                    "keep one of the two settings",
                )
            self.at_column = at_column or mapped or "at"
            if self.at_column != "at":
                self.columns["at"] = self.at_column
        if self.table is not None:
            name = f"{self.schema}.{self.table}" if self.schema else self.table
            self.where = f"table {name}"
        else:
            self.where = f"{role} query"
        self.url, self.url_setting, self.shown_url = _database_url(config, Path(root))
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        what = f"table={self.table!r}" if self.table else "query=…"
        return f"SQLSource(role={self.role!r}, url={self.shown_url!r}, {what})"

    # ── reading ──────────────────────────────────────────────────────────

    def read(
        self, since: datetime | None = None, *, facts: Mapping[str, FactSpec] | None = None
    ) -> pl.DataFrame:
        """The customers (``since`` ignored; columns named like ``facts``, those plugins
        declare, read as their types), or the events with ``at > since``."""
        since = utc_instant(since) if since is not None and self.role == "events" else None
        with self._connect() as connection:
            if self.table is not None:
                types = self._table_columns(connection)
                self._check_columns(list(types), "the table has")
                statement = self.statement(since, list(types), types.get(self._at_name()))
            else:
                statement = self.statement(since)
            try:
                result = connection.execute(statement)
                keys = list(result.keys())
                rows = result.fetchall()
            except exc.DBAPIError as error:
                raise self._failure(connection, error, since) from None
        if self.query is not None:
            self._check_columns(keys, "the query returns")
        frame = _frame(self.where, keys, rows)
        if self.role == "customers":
            return normalise_customers(frame, where=self.where, columns=self.columns, facts=facts)
        return normalise_events(
            frame, where=self.where, columns=self.columns, since=since, naive_as_utc=True
        )

    def statement(
        self,
        since: datetime | None = None,
        columns: Sequence[str] | None = None,
        at_type: sa.types.TypeEngine[Any] | None = None,
    ) -> sa.Executable:
        """The ``SELECT`` a read sends: ``columns`` of the table (all when None) or the query,
        and for events after ``since`` a ``WHERE <at_column> > :since`` with ``since`` bound."""
        if self.table is not None:
            names = [sa.column(name) for name in columns] if columns else [sa.literal_column("*")]
            select = sa.select(*names).select_from(sa.table(self.table, schema=self.schema))
            at = sa.column(self._at_name())
        else:
            assert self.query is not None
            if since is None:
                return sa.text(self.query)
            source = sa.text(self.query).columns(sa.column(self._at_name())).subquery("source")
            select = sa.select(sa.literal_column("*")).select_from(source)
            at = source.c[self._at_name()]
        if since is None:
            return select
        return select.where(at > self._since_parameter(utc_instant(since), at_type))

    def _at_name(self) -> str:
        return self.at_column or "at"

    def _since_parameter(
        self, since: datetime, at_type: sa.types.TypeEngine[Any] | None
    ) -> sa.BindParameter[Any]:
        """``since``, bound. Times kept as text (SQLite keeps every time as text) are compared
        as text from the day before, which holds every later instant whatever its offset and
        separator; the exact ``at > since`` is then applied to the rows read."""
        if self.url.get_backend_name() == "sqlite" or isinstance(at_type, sqltypes.String):
            day = (since - timedelta(days=1)).strftime("%Y-%m-%d")
            return sa.bindparam("since", day, type_=sa.String())
        return sa.bindparam("since", since, type_=sa.DateTime(timezone=True))

    # ── the database ─────────────────────────────────────────────────────

    def engine(self) -> Engine:
        """The SQLAlchemy engine (made once; no pool)."""
        if self._engine is None:
            try:
                engine = sa.create_engine(self.url, poolclass=NullPool)
            except exc.NoSuchModuleError:
                raise self._config.error(
                    self.url_setting,
                    f"SQLAlchemy knows no database '{self.url.drivername}'",
                    "write a URL such as sqlite:///shop.db or postgresql+psycopg://shop@db/shop",
                ) from None
            except ImportError as error:
                raise self._config.error(
                    self.url_setting,
                    f"the driver for {self.url.drivername} is not installed ({error.name})",
                    "for PostgreSQL: pip install 'courtship[postgres]'",
                ) from None
            if self.url.get_backend_name() == "postgresql":
                sa.event.listen(engine, "connect", _utc_session)
            self._engine = engine
        return self._engine

    def close(self) -> None:
        """Let go of the engine (there are no pooled connections to close)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _connect(self) -> Connection:
        engine = self.engine()
        try:
            return engine.connect()
        except exc.DBAPIError as error:
            raise self._config.error(
                self.url_setting,
                f"cannot connect to {self.shown_url}: {self._reason(error)}",
                "check the URL, and that the database is running and lets you in",
            ) from None

    def _reason(self, error: BaseException) -> str:
        """The driver's words, first line, without the password."""
        original = getattr(error, "orig", None) or error
        text = str(original).strip().splitlines()[0] if str(original).strip() else ""
        text = text or type(original).__name__
        if self.url.password:
            text = text.replace(str(self.url.password), "***")
        return text

    def _table_columns(self, connection: Connection) -> dict[str, sa.types.TypeEngine[Any]]:
        assert self.table is not None
        inspector = sa.inspect(connection)
        try:
            exists = inspector.has_table(self.table, schema=self.schema)
        except exc.DBAPIError as error:
            raise SourceError(
                self.where, None, None, f"cannot look the table up: {self._reason(error)}", ""
            ) from None
        if not exists:
            try:
                names = sorted(inspector.get_table_names(schema=self.schema))
                names += sorted(inspector.get_view_names(schema=self.schema))
            except exc.DBAPIError:
                names = []
            known = ", ".join(names) if names else "none"
            raise self._config.error(
                "table",
                f"no table '{self.table}' in the database"
                + (f" (schema {self.schema})" if self.schema else ""),
                f"the tables there: {known}",
            )
        return {
            column["name"]: column["type"]
            for column in inspector.get_columns(self.table, schema=self.schema)
        }

    def _check_columns(self, present: Sequence[str], has: str) -> None:
        """Every column the contract needs, and every column ``columns`` names, is there."""
        available = ", ".join(present) or "no columns"
        for ours, theirs in self.columns.items():
            if theirs not in present:
                setting = "at_column" if ours == "at" and "at" not in self._named_columns else ""
                named_by = setting or f"columns.{ours}"
                raise SourceError(
                    self.where,
                    None,
                    theirs,
                    f"no such column ({named_by} names it)",
                    f"{has}: {available}",
                )
        for ours in REQUIRED[self.role]:
            if ours not in self.columns and ours not in present:
                raise SourceError(
                    self.where,
                    None,
                    ours,
                    "no such column",
                    f"{has}: {available}; name yours with columns: {{{ours}: <your column>}}",
                )

    def _failure(
        self, connection: Connection, error: exc.DBAPIError, since: datetime | None
    ) -> SourceError:
        reason = self._reason(error)
        if self.query is None:
            return SourceError(
                self.where,
                None,
                None,
                f"the database refused to read it: {reason}",
                "check that the database user may read the table",
            )
        if since is not None:
            # The query may be fine and at_column the problem: try it alone, reading no row.
            connection.rollback()
            probe = sa.select(sa.literal_column("*")).select_from(
                sa.text(self.query).columns().subquery("source")
            )
            try:
                keys = list(connection.execute(probe.limit(0)).keys())
            except exc.DBAPIError:
                keys = None
            if keys is not None:
                at = self._at_name()
                if at not in keys:
                    return SourceError(
                        self.where,
                        None,
                        at,
                        "no such column (at_column names it)",
                        "the query returns: " + ", ".join(keys),
                    )
                return SourceError(
                    self.where,
                    None,
                    at,
                    f"cannot be compared with a time: {reason}",
                    "at_column must be a timestamp column, or ISO 8601 text",
                )
        return SourceError(
            self.where,
            None,
            None,
            f"the query failed: {reason}",
            f"check {self._config.name('query')}",
        )


def _database_url(config: SourceSettings, root: Path) -> tuple[URL, str, str]:
    """(the URL, the setting it came from, how messages show it: never with a password)."""
    if config.has("url") and config.has("url_env"):
        raise config.error(
            "url_env",
            "both url and url_env are set",
            "keep url_env when the URL holds a password, else url",
        )
    if config.has("url_env"):
        setting = "url_env"
        text = config.env("url_env")
        shown = f"${config.text('url_env')}"
    else:
        setting = "url"
        text = config.text("url", DEFAULT_URL) or DEFAULT_URL
        shown = ""
    try:
        url = sa.make_url(text)
    except (exc.ArgumentError, ValueError):
        raise config.error(
            setting,
            "is not a database URL" + (f": '{text}'" if setting == "url" else ""),
            "write dialect+driver://user@host/database, such as sqlite:///shop.db or "
            "postgresql+psycopg://shop@db.internal/shop",
        ) from None
    if setting == "url_env" and url.password:
        remember(str(url.password), str(config.text("url_env")))  # the password alone, too
    if setting == "url" and url.password:
        raise config.error(
            "url",
            "the URL holds a password",
            "secrets never go in courtship.yaml: put the URL in an environment variable and "
            "name it with url_env",
        )
    if url.get_backend_name() == "sqlite":
        database = url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = root / database
            if not path.is_file():
                raise config.error(setting, f"no such SQLite database: {path}", "check the path")
            url = url.set(database=str(path))
    shown = shown or url.render_as_string(hide_password=True)
    if setting == "url_env":
        shown = f"{shown} ({url.get_backend_name()})"
    return url, setting, shown


def _utc_session(dbapi_connection: Any, connection_record: Any) -> None:
    """Every PostgreSQL session in UTC, so a timestamp without a zone is read as UTC there too."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
    finally:
        cursor.close()
    dbapi_connection.commit()


def _frame(where: str, keys: list[str], rows: Sequence[Sequence[Any]]) -> pl.DataFrame:
    """Rows → a frame with one column per result column, typed from the driver's values.

    A column whose values polars cannot hold in one type (SQLite lets a column mix them),
    or that holds JSON objects or values polars does not know, is kept as text.
    """
    seen: set[str] = set()
    for name in keys:
        if name in seen:
            raise SourceError(
                where,
                None,
                name,
                "two columns of the result have this name",
                "give each column its own name (… AS other_name)",
            )
        seen.add(name)
    columns: list[pl.Series] = []
    for index, name in enumerate(keys):
        values = [row[index] for row in rows]
        series: pl.Series | None = None
        if not any(isinstance(value, dict) for value in values):
            try:
                series = pl.Series(name, values)
            except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
                series = None
        if series is None or series.dtype == pl.Object():
            series = pl.Series(name, [_text(value) for value in values], dtype=pl.String())
        columns.append(series)
    return pl.DataFrame(columns, height=len(rows)) if columns else pl.DataFrame(height=len(rows))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)
