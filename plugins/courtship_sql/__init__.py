"""Customers and events read from a SQL database: the source type ``sql`` (SQLAlchemy 2).

Settings (``sources.customers`` or ``sources.events`` in ``courtship.yaml``)::

    sources:
      customers:
        type: sql
        url: sqlite:///shop.db           # default sqlite:///courtship.db, relative to the project
        table: customers                 # or query: SELECT … (one of the two)
        schema: crm                      # optional, with table
        columns: {customer_id: id}       # optional: our name: the table's column
      events:
        type: sql
        url_env: SHOP_DB_URL             # an environment variable holding the URL (passwords)
        table: events
        at_column: created_at            # events only; default columns.at, else at

A URL with a password is refused in ``url``: put it in an environment variable and name that
with ``url_env``. Events are read incrementally: ``read(since)`` sends ``WHERE at > :since`` to
the database as a bound parameter. PostgreSQL needs a driver: ``pip install 'courtship[postgres]'``.
"""

from __future__ import annotations

from collections.abc import Callable

import courtship
from courtship.sources import SourceFactory

from .source import DEFAULT_URL, SQLSource

__all__ = ["DEFAULT_URL", "SQLSource"]


@courtship.hookimpl
def register_sources(register: Callable[[str, SourceFactory], None]) -> None:
    register("sql", SQLSource)
