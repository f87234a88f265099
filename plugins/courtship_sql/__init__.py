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

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import courtship

if TYPE_CHECKING:
    from courtship.sources import SourceFactory

__all__ = ["DEFAULT_URL", "SQLSource"]

#: Where each name of the plugin lives: imported on first use (``__getattr__``), so loading the
#: plugin to learn what it registers does not import what it needs to read.
_LAZY = {"DEFAULT_URL": "source", "SQLSource": "source"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sql(settings: Mapping[str, Any], role: str, root: Path) -> Any:
    """The sql source, built when a command uses it: importing this plugin stays cheap."""
    from .source import SQLSource

    return SQLSource(settings, role, root)


@courtship.hookimpl
def register_sources(register: Callable[[str, SourceFactory], None]) -> None:
    register("sql", _sql)
