"""The state store: what Courtship remembers between runs, in one SQLite file.

- ``runs``: the moments evaluated (the next run's window starts at the latest);
- ``fired``: when a playbook last fired for a customer (limits, once a year, re-entry);
- ``streaks/<playbook>@<moment>.parquet`` beside the database: for each ``becomes`` playbook, the
  customers whose condition held at the last run, since when, and whether it fired — columnar,
  because a condition may hold for most of the base;
- ``enrollments``: sequences waiting on a ``wait`` step, with the step and moment they resume;
- ``sends``: every decided message, keyed by an idempotency key (the outbox);
- ``facts`` and ``tagged``: what ``set``, ``tag`` and ``untag`` steps recorded (``tags``, the
  table of earlier versions, is read into ``tagged`` when the store is opened);
- ``consent_changes``: consent withdrawn (an unsubscribe, STOP, a bounce, a complaint) or given
  back (START), by customer or by address, from a moment on, with the callback that said so;
- ``callbacks``: what providers told ``courtship serve``: delivery receipts by provider id,
  inbound messages, bounces and complaints (``courtship.callbacks``).
- ``<name>.sending`` beside the database: the messages a provider accepted whose ``delivered`` is
  not committed yet (delivery commits in batches), so neither a crash nor a commit that fails on a
  full disk sends them again.

The store is in SQLite's WAL mode: ``courtship serve`` reads and records callbacks while a run
writes, and a batch of outbox changes is one short commit.

The tables have a version (``meta.schema_version``, :data:`SCHEMA_VERSION`): opening a store of
an older version runs the :data:`MIGRATIONS` it misses, in one transaction; a store of a newer
version is refused. The same store on PostgreSQL, for many workers on one state, is
``courtship.state_postgres.PostgresStore`` (:func:`open_store` picks by the setting).

Every SQLite failure is a :class:`StateError` (a full disk a :class:`DiskFull`), with what to do.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from courtship.engine.carry import Aggregates
    from courtship.project import Project

#: The tables of version 1, the first one (its stores record no version): every later version
#: starts from them. ``CREATE … IF NOT EXISTS``, so that a store of a still earlier shape (one
#: that misses a table added before versions were recorded) gets them all.
_TABLES_1 = """
CREATE TABLE IF NOT EXISTS runs (at TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS fired (
    playbook TEXT, customer_id TEXT, at TEXT, PRIMARY KEY (playbook, customer_id, at));
CREATE TABLE IF NOT EXISTS enrollments (
    playbook TEXT, customer_id TEXT, started_at TEXT, step INTEGER, due_at TEXT,
    status TEXT, context TEXT, PRIMARY KEY (playbook, customer_id, started_at));
CREATE TABLE IF NOT EXISTS sends (
    key TEXT PRIMARY KEY, customer_id TEXT, playbook TEXT, channel TEXT, category TEXT,
    tone TEXT, dedup_key TEXT, at TEXT, due_at TEXT, status TEXT, subject TEXT, text TEXT,
    channels TEXT, addresses TEXT, hours_since_last_inbound REAL, unsubscribe_url TEXT,
    max_segments INTEGER, attempts INTEGER DEFAULT 0, provider_id TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS sends_due ON sends (status, due_at);
CREATE TABLE IF NOT EXISTS attempts (
    key TEXT, attempt INTEGER, at TEXT, channel TEXT, status TEXT, reason TEXT,
    PRIMARY KEY (key, attempt));
CREATE INDEX IF NOT EXISTS sends_customer ON sends (customer_id, at);
CREATE TABLE IF NOT EXISTS facts (
    customer_id TEXT, fact TEXT, value TEXT, type TEXT, at TEXT, PRIMARY KEY (customer_id, fact));
CREATE TABLE IF NOT EXISTS tags (customer_id TEXT, tag TEXT, PRIMARY KEY (customer_id, tag));
CREATE TABLE IF NOT EXISTS tagged (
    customer_id TEXT, tag TEXT, present INTEGER, PRIMARY KEY (customer_id, tag));
CREATE TABLE IF NOT EXISTS consent_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, channel TEXT, customer_id TEXT,
    address TEXT, change TEXT, scope TEXT, source TEXT, detail TEXT);
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, source TEXT, kind TEXT, channel TEXT,
    provider_id TEXT, address TEXT, send_key TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS callbacks_kind ON callbacks (kind, channel, address);
CREATE TABLE IF NOT EXISTS decisions (
    at TEXT, customer_id TEXT, recipient_id TEXT, playbook TEXT, version TEXT, step INTEGER,
    step_id TEXT, category TEXT, template TEXT, to_whom TEXT, wanted TEXT, channel TEXT,
    tone TEXT, status TEXT, guard TEXT, reason TEXT, due_at TEXT, key TEXT, decided_by TEXT,
    PRIMARY KEY (at, playbook, customer_id, recipient_id, step_id, key));
CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, at);
CREATE INDEX IF NOT EXISTS decisions_recipient ON decisions (recipient_id, at);
CREATE TABLE IF NOT EXISTS assignments (
    playbook TEXT, customer_id TEXT, step_id TEXT, arm TEXT, at TEXT,
    PRIMARY KEY (playbook, customer_id, step_id));
CREATE TABLE IF NOT EXISTS test_sends (
    at TEXT, seed TEXT, playbook TEXT, step_id TEXT, language TEXT, tone TEXT, channel TEXT,
    address TEXT, subject TEXT, status TEXT, reason TEXT);
"""

#: The version of the tables this Courtship reads and writes (``meta.schema_version``). A store
#: of an older version is migrated when it is opened; one of a newer version is refused.
SCHEMA_VERSION = 2

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);\n"

#: A new store's tables, at ``SCHEMA_VERSION``.
SCHEMA = _TABLES_1 + _META


@dataclass(frozen=True)
class Migration:
    """What brings a store from version ``version - 1`` to ``version``: SQL run in the same
    transaction as the other migrations of one opening and the new version's record."""

    version: int
    what: str
    sqlite: str
    #: the same for a store on PostgreSQL (whose first version is 2)
    postgres: str = ""


#: Every migration, oldest first (``docs/operations.md`` lists them).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "the store records its schema version (table meta); the tags of the earliest stores "
        "(table tags) are read into tagged once, here, instead of at every opening",
        _TABLES_1 + "INSERT OR IGNORE INTO tagged SELECT customer_id, tag, 1 FROM tags;\n" + _META,
    ),
)


#: The columns of the ``decisions`` table, in order: the record of every decision of a run.
DECISION_COLUMNS = (
    "at",
    "customer_id",
    "recipient_id",
    "playbook",
    "version",
    "step",
    "step_id",
    "category",
    "template",
    "to_whom",
    "wanted",
    "channel",
    "tone",
    "status",
    "guard",
    "reason",
    "due_at",
    "key",
    "decided_by",
)


#: An experiment's assignment (``assignments``): the first one of a customer's step stands.
ASSIGN = "INSERT OR IGNORE INTO assignments VALUES (?, ?, ?, ?, ?)"

#: The columns a streaks file holds (the engine's mark and row columns besides).
STREAK_COLUMNS = frozenset({"customer_id", "true_since", "fired"})
#: The engine's columns of a streaks file: the mark of the customer file its rows number.
STREAK_MARK, STREAK_ROW = "_file", "_row"


def _streak_columns(file: Path, file_mark: int | None) -> list[str] | None:
    """The columns of a streaks file to read: all of them, or all but the ids (and the mark)
    when its streaks are numbered against the customer file of ``file_mark``."""
    if file_mark is None:
        return None
    names = pl.read_parquet_schema(file)
    if STREAK_MARK not in names or STREAK_ROW not in names:
        return None
    mark = pl.read_parquet(file, columns=[STREAK_MARK], n_rows=1).get_column(STREAK_MARK)
    if mark.len() == 0 or mark[0] != file_mark:
        return None
    return [name for name in names if name not in ("customer_id", STREAK_MARK)]


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


class StateError(Exception):
    """The state store cannot be used as it is: what is wrong, and what to do."""

    reason = ""  # SQLite's words, when it said what failed


class StateBusy(StateError):
    """Another run holds the state store."""


class StateVersionError(StateError):
    """The store was written by a later Courtship (its schema version is newer than this one
    reads), or says no version it could have: it is refused, never misread."""


class StateMisplaced(StateError):
    """``state:`` names something that is no state store (a folder, a file of another kind):
    the project file is wrong, and the message says what the path is."""


class DiskFull(StateError):
    """The disk (or a size limit) is full: nothing more can be written until space is freed."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the disk is full: {what}; free space and run again")


#: The errors of ``write()`` that mean no more space: the disk, a quota, a file size limit.
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class _Connection(sqlite3.Connection):
    """A connection whose failures are a :class:`StateError` saying what is wrong with the
    store (full, damaged, unwritable), never a bare ``sqlite3`` error."""

    where: Path | None = None

    def _failed(self, error: sqlite3.Error) -> StateError:
        code = getattr(error, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or "disk is full" in str(error) or self._no_room(code):
            return DiskFull(f"cannot write the state store {self.where} ({error})")
        failure = StateError(
            f"{self.where}: the state store failed ({error}); if it is damaged, restore it "
            "from a backup"
        )
        failure.reason = str(error)
        return failure

    def _no_room(self, code: int | None) -> bool:
        """An I/O error on a disk with next to no space left: WAL's shared-memory file (or the
        log itself) could not grow, which SQLite reports as an I/O error, not as a full disk."""
        if code is None or code & 0xFF != sqlite3.SQLITE_IOERR or self.where is None:
            return False
        import shutil

        try:
            return shutil.disk_usage(self.where.parent).free < 1 << 20
        except OSError:
            return False

    def execute(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args)
        except sqlite3.DatabaseError as error:
            raise self._failed(error) from None

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executemany(*args)
        except sqlite3.DatabaseError as error:
            raise self._failed(error) from None

    def executescript(self, *args: Any) -> sqlite3.Cursor:
        try:
            return super().executescript(*args)
        except sqlite3.DatabaseError as error:
            raise self._failed(error) from None

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.DatabaseError as error:
            raise self._failed(error) from None

    def __exit__(self, *exc: Any) -> Any:
        try:
            return super().__exit__(*exc)
        except sqlite3.DatabaseError as error:
            raise self._failed(error) from None


class StateStore:
    """The SQLite state store. ``StateStore(None)`` is an in-memory store (a dry run's).

    Beside the file, ``<name>.id`` marks that the store exists: a store that existed and is
    now missing, empty or unreadable is an error, never a fresh start (which would send the
    lookback window again). ``claim()`` is held by the run that writes, so two runs on one
    store take turns. (``courtship.state_postgres.PostgresStore`` is the same store on
    PostgreSQL, for many workers.)"""

    #: What orders rows as they were inserted (the decisions of a run, the test sends).
    INSERTION_ORDER = "rowid"
    #: An enrollment held back at a message (not at a ``wait``).
    HELD_AT_SEND = "json_extract(context, '$.at') = 'send'"

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.streaks_folder = path.parent / "streaks" if path is not None else None
        #: the last run's aggregates per customer (``courtship.engine.carry``)
        self.aggregates_folder = path.parent / "aggregates" if path is not None else None
        self._streaks: dict[str, tuple[dt.datetime, pl.DataFrame]] = {}
        self._claim: Any = None
        self._accepted: _AcceptedJournal | None = None
        marker = _marker(path) if path is not None else None
        if path is not None:
            _check_place(path)
        if marker is not None and marker.exists():
            _check_existing(path, marker)  # type: ignore[arg-type]
        try:
            with _writing(path, "open the state store"):
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(path) if path else ":memory:", factory=_Connection)
                db.where = path
                if path is not None:  # readers (serve, history) and the one writer together
                    db.execute("PRAGMA journal_mode = WAL")
                    db.execute("PRAGMA synchronous = FULL")  # a commit survives a power cut
                self.db: sqlite3.Connection = db
                self._migrate()
                if marker is not None and not marker.exists():
                    marker.write_text(
                        "This file marks that the state store beside it exists. If the store "
                        "is lost,\nCourtship stops instead of starting afresh. Remove this "
                        "file only to start over.\n"
                    )
        except StateError as error:
            if (marker is not None and marker.exists()) or isinstance(
                error, DiskFull | StateVersionError
            ):
                raise
            raise StateMisplaced(
                f"{path} is not a state store Courtship can read ({error.reason or error}); "
                "point it at the store's file (a name that is not there yet starts a new store)"
            ) from None

    def close(self) -> None:
        self.release()
        self.db.close()

    # ── the schema's version ───────────────────────────────────────────────
    def schema_version(self) -> int:
        """The version of the store's tables: 0 for a store with none yet, 1 for one written
        before versions were recorded (it has no ``meta`` table)."""
        tables = self._tables()
        if "meta" not in tables:
            return 1 if tables else 0
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return _version_of(row[0] if row else None, self._where())

    def _tables(self) -> set[str]:
        rows = self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}

    def _where(self) -> str:
        return str(self.path) if self.path is not None else "the state store in memory"

    def _migrate(self) -> None:
        """Bring the store to ``SCHEMA_VERSION``: a new one gets the tables, an older one the
        migrations it misses, all in one transaction with the new version's record (a failure
        changes nothing); a store of a newer version is refused, never misread."""
        if self.schema_version() == SCHEMA_VERSION:
            return
        self.db.execute("BEGIN IMMEDIATE")  # one opening migrates; another waits, then sees it
        try:
            script = self._migration_script(self.schema_version())
            for statement in _statements(script):
                self.db.execute(statement)
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def _migration_script(self, version: int) -> str:
        """The SQL that brings a store of ``version`` to ``SCHEMA_VERSION``."""
        if version > SCHEMA_VERSION:
            raise StateVersionError(
                f"{self._where()}: the state store is of schema version {version}, newer than "
                f"this Courtship reads ({SCHEMA_VERSION}); a later Courtship has migrated it: "
                "run that version or a later one on it (pip install -U courtship), never an "
                "older one"
            )
        if version == 0:
            return SCHEMA
        return "".join(m.sqlite for m in MIGRATIONS if m.version > version)

    # ── one writer at a time ───────────────────────────────────────────────
    def claim(self, wait: float = 0.0) -> None:
        """Hold the store for one run (an exclusive lock on ``<name>.lock``, released when the
        run ends or its process dies). Waits up to ``wait`` seconds for another run to end,
        then raises ``StateBusy``."""
        if self.path is None or self._claim is not None:
            return
        import fcntl
        import time

        with _writing(self.path, "hold the state store"):
            lock = open(self.path.with_name(self.path.name + ".lock"), "a+")  # noqa: SIM115
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    lock.seek(0)
                    holder = lock.read().strip() or "another process"
                    lock.close()
                    raise StateBusy(
                        f"{self.path}: another run holds the state store ({holder}); it "
                        "delivers what is due, so this one has nothing to add: try again when "
                        "it has ended, or give --wait SECONDS"
                    ) from None
                time.sleep(0.05)
        try:
            with _writing(self.path, "hold the state store"):
                lock.truncate(0)
                lock.write(f"pid {os.getpid()}")
                lock.flush()
                self._accepted = _AcceptedJournal(self.path.with_name(self.path.name + ".sending"))
        except BaseException:
            lock.close()
            raise
        self._claim = lock
        self._settle_accepted()

    def release(self) -> None:
        if self._accepted is not None:
            self._accepted.close()
            self._accepted = None
        if self._claim is not None:
            self._claim.close()  # closing the file releases the lock
            self._claim = None

    # ── a provider's acceptance, kept when the store cannot be written ─────
    #: How many accepted messages ``<name>.sending`` holds at once: delivery commits at least
    #: this often (``commit_outbox``).
    ACCEPTED_SLOTS = 64

    def note_accepted(self, key: str, provider_id: str | None, slot: int = 0) -> None:
        """A provider accepted the message ``key``: noted in slot ``slot`` of ``<name>.sending``
        (space set aside when the store was claimed, overwritten in place) before ``delivered``
        is committed, so neither a crash nor a commit that fails (a full disk) sends it again:
        the next run that claims the store records it delivered. Each message of a batch has
        its own slot (``0 <= slot < ACCEPTED_SLOTS``): workers write them at once, without a
        lock."""
        if self._accepted is not None:
            self._accepted.write(slot, key, provider_id)

    def forget_accepted(self) -> None:
        """The noted acceptances are committed (``commit_outbox``): the slots are free again."""
        if self._accepted is not None:
            self._accepted.clear()

    def _settle_accepted(self) -> None:
        """What the last run noted as accepted and did not commit: delivered now."""
        assert self._accepted is not None
        noted = self._accepted.read()
        if not noted:
            return
        with self.db:
            self.db.executemany(
                "UPDATE sends SET status = 'delivered', provider_id = ?, error = NULL "
                "WHERE key = ? AND status = 'sending'",
                [(provider_id, key) for key, provider_id in noted],
            )
        self._accepted.clear()

    def last_run(self) -> dt.datetime | None:
        row = self.db.execute("SELECT max(at) FROM runs").fetchone()
        return dt.datetime.fromisoformat(row[0]) if row and row[0] else None

    def _frame(
        self, query: str, schema: dict[str, Any], params: Iterable[Any] = ()
    ) -> pl.DataFrame:
        rows = self.db.execute(query, tuple(params)).fetchall()
        return pl.DataFrame(rows, schema=schema, orient="row")

    def fired(self) -> pl.DataFrame:
        """playbook, customer_id, last (the latest moment it fired), times."""
        frame = self._frame(
            "SELECT playbook, customer_id, max(at), count(*) FROM fired GROUP BY 1, 2",
            {"playbook": pl.String, "customer_id": pl.String, "last": pl.String, "times": pl.Int64},
        )
        return frame.with_columns(pl.col("last").str.to_datetime(time_zone="UTC"))

    # ── streaks of ``becomes`` conditions ──────────────────────────────────
    def load_streaks(
        self, playbook: str, moment: dt.datetime, *, file_mark: int | None = None
    ) -> pl.DataFrame | None:
        """The streaks saved by the run at ``moment``; None when there are none for that very
        moment (a crash between recording and saving them: the engine reads the data instead).
        Streaks numbered against the customer file of ``file_mark`` may come without their
        ``customer_id``: their rows say whose they are (reading the ids is most of the cost)."""
        if self.streaks_folder is None:
            saved = self._streaks.get(playbook)
            return saved[1] if saved and saved[0] == moment else None
        file = self._streak_file(playbook, moment)
        if not file.exists():
            return None
        # The streaks are a cache of what the data tells (the engine reads the data without
        # them, as after a crash): a damaged file is put aside (<name>.damaged, removed by the
        # next save) and rebuilt, never an error.
        try:
            columns = _streak_columns(file, file_mark)
            frame = pl.read_parquet(file, columns=columns)
        except (pl.exceptions.PolarsError, OSError, ValueError):
            frame = None
        wanted = STREAK_COLUMNS if columns is None else STREAK_COLUMNS - {"customer_id"}
        if frame is None or not set(frame.columns) >= wanted:
            file.replace(file.with_suffix(".damaged"))
            return None
        return frame

    def has_streaks(self, playbook: str, moment: dt.datetime) -> bool:
        """Whether the run at ``moment`` saved streaks of ``playbook`` that can be read,
        without reading them (a file's schema only; a damaged one is put aside)."""
        if self.streaks_folder is None:
            return self.load_streaks(playbook, moment) is not None
        file = self._streak_file(playbook, moment)
        if not file.exists():
            return False
        try:
            columns = set(pl.read_parquet_schema(file))
        except (pl.exceptions.PolarsError, OSError, ValueError):
            columns = set()
        if not columns >= STREAK_COLUMNS:
            file.replace(file.with_suffix(".damaged"))
            return False
        return True

    def save_streaks(self, moment: dt.datetime, streaks: dict[str, pl.DataFrame]) -> None:
        """Save each playbook's streaks in a file named for the run's moment, then remove the
        older ones: a file is either whole or absent."""
        for playbook, frame in streaks.items():
            if self.streaks_folder is None:
                self._streaks[playbook] = (moment, frame)
                continue
            file = self._streak_file(playbook, moment)
            partial = file.with_suffix(".tmp")
            try:  # the moment is recorded: without this file the next run reads the data
                with _writing(partial, "save the streaks of a becomes playbook"):
                    self.streaks_folder.mkdir(parents=True, exist_ok=True)
                    # lz4: read and written in half the time of the default, for 2.5x the room
                    frame.write_parquet(partial, compression="lz4")
            except DiskFull:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(file)
            for old in self.streaks_folder.glob(f"{playbook}@*"):
                if old != file:
                    old.unlink(missing_ok=True)

    # ── the last run's aggregates, for the next (the steady run) ─────────────
    @property
    def keeps_aggregates(self) -> bool:
        """Whether runs keep their aggregates beside this store (a SQLite file's)."""
        return self.aggregates_folder is not None

    def aggregates(self, customers: int) -> Aggregates | None:
        """The aggregates the last run kept, for the customer file of this mark; None when
        there are none to carry on (a cache: the facts are then aggregated whole)."""
        last = self.last_run()
        if self.aggregates_folder is None or last is None:
            return None
        from courtship.engine.carry import load

        return load(self.aggregates_folder, last, customers)

    def save_aggregates(self, aggregates: Aggregates | None) -> None:
        """Keep a run's aggregates for the next run. A cache: one that cannot be written
        (a full disk) is left out, and the next run aggregates everyone."""
        if self.aggregates_folder is None or aggregates is None:
            return
        try:
            aggregates.save(self.aggregates_folder)
        except (OSError, pl.exceptions.PolarsError):
            for leftover in self.aggregates_folder.glob("*.tmp"):
                leftover.unlink(missing_ok=True)

    def _streak_file(self, playbook: str, moment: dt.datetime) -> Path:
        assert self.streaks_folder is not None
        stamp = int(moment.timestamp() * 1_000_000)
        return self.streaks_folder / f"{playbook}@{stamp}.parquet"

    def sends(self) -> pl.DataFrame:
        frame = self._frame(
            "SELECT customer_id, at, channel, playbook, category, dedup_key, status FROM sends",
            {
                "customer_id": pl.String,
                "at": pl.String,
                "channel": pl.String,
                "playbook": pl.String,
                "category": pl.String,
                "dedup_key": pl.String,
                "status": pl.String,
            },
        )
        return frame.with_columns(pl.col("at").str.to_datetime(time_zone="UTC"))

    def waiting_enrollments(self) -> list[dict[str, Any]]:
        """Every sequence waiting (after a ``wait``, or at a message held back), soonest due
        first: playbook, customer_id, started_at, step, due_at and the context it keeps."""
        rows = self.db.execute(
            "SELECT playbook, customer_id, started_at, step, due_at, context FROM enrollments "
            "WHERE status = 'waiting' ORDER BY due_at, playbook, customer_id, started_at"
        ).fetchall()
        return [
            {
                "playbook": p,
                "customer_id": c,
                "started_at": dt.datetime.fromisoformat(s),
                "step": step,
                "due_at": dt.datetime.fromisoformat(d),
                "context": json.loads(ctx),
            }
            for p, c, s, step, d, ctx in rows
        ]

    def due_enrollments(self, now: dt.datetime) -> list[dict[str, Any]]:
        """The waiting sequences due at ``now``."""
        return [e for e in self.waiting_enrollments() if e["due_at"] <= now]

    def active_enrollments(self) -> set[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT playbook, customer_id FROM enrollments WHERE status = 'waiting'"
        ).fetchall()
        return {(p, c) for p, c in rows}

    def set_facts(self) -> pl.DataFrame:
        return self._frame(
            "SELECT customer_id, fact, value, type FROM facts",
            {"customer_id": pl.String, "fact": pl.String, "value": pl.String, "type": pl.String},
        )

    def set_tags(self) -> pl.DataFrame:
        """What ``tag`` and ``untag`` steps said last of each customer's tag: present or not."""
        return self._frame(
            "SELECT customer_id, tag, present FROM tagged",
            {"customer_id": pl.String, "tag": pl.String, "present": pl.Int64},
        )

    def dedup_keys(self) -> set[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT customer_id, dedup_key FROM sends WHERE dedup_key IS NOT NULL"
        ).fetchall()
        return {(c, k) for c, k in rows}

    def send_keys(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT key FROM sends")}

    # ── writing: one transaction per evaluated moment ─────────────────────
    def record(
        self,
        now: dt.datetime,
        changes: dict[str, list[tuple[Any, ...]]],
        outbox: Sequence[tuple[Any, ...]] = (),
        decisions: Sequence[tuple[Any, ...]] = (),
        assignments: Sequence[tuple[str, str, str, str, str]] = (),
    ) -> None:
        """Record what a moment decided, all or nothing: its changes (firings, enrollments,
        facts, tags), its outbox rows (the ``sends`` table's columns, in order) and the record
        of its decisions (``DECISION_COLUMNS``), kept from the first run of that moment, and the
        experiments' assignments (``record_assignments``)."""
        with self.db:
            first = self.db.execute("INSERT OR IGNORE INTO runs VALUES (?)", (_iso(now),)).rowcount
            if first:
                self.db.executemany(
                    f"INSERT OR IGNORE INTO decisions VALUES ({', '.join('?' * 19)})",
                    list(decisions),
                )
            self.db.executemany(
                "INSERT OR IGNORE INTO fired VALUES (?, ?, ?)", changes.get("fired", [])
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO enrollments VALUES (?, ?, ?, ?, ?, ?, ?)",
                changes.get("enrollments", []),
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO sends VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                list(outbox),
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO facts VALUES (?, ?, ?, ?, ?)", changes.get("facts", [])
            )
            # in the order the steps ran: the last tag or untag of a tag is what stays
            self.db.executemany(
                "INSERT OR REPLACE INTO tagged VALUES (?, ?, ?)", changes.get("tags", [])
            )
            self.db.executemany(ASSIGN, list(assignments))

    # ── the record of decisions ────────────────────────────────────────────
    def has_run(self, moment: dt.datetime) -> bool:
        """Whether a run recorded ``moment``."""
        row = self.db.execute("SELECT 1 FROM runs WHERE at = ?", (_iso(moment),)).fetchone()
        return row is not None

    def previous_run(self, moment: dt.datetime) -> dt.datetime | None:
        """The last run before ``moment``."""
        row = self.db.execute("SELECT max(at) FROM runs WHERE at < ?", (_iso(moment),)).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row and row[0] else None

    def decisions(
        self, *, at: dt.datetime | None = None, customer_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The recorded decisions of the run at ``at`` and/or about ``customer_id`` (as the
        subject or the recipient), in the order decided, each with what became of its message:
        ``delivery`` (the outbox status), ``delivered_channel``, ``subject``, ``text``,
        ``error`` and ``attempts`` (None for a message that never entered the outbox), and the
        latest ``receipt`` its provider called back with (``delivered``, ``undelivered (error
        30003)``, ``failed``; None without one)."""
        where, params = [], []
        if at is not None:
            where.append("d.at = ?")
            params.append(_iso(at))
        if customer_id is not None:
            where.append("(d.customer_id = ? OR d.recipient_id = ?)")
            params += [customer_id, customer_id]
        columns = ", ".join(f"d.{c}" for c in DECISION_COLUMNS)
        rows = self.db.execute(
            f"SELECT {columns}, s.status, s.channel, s.subject, s.text, s.error, s.attempts, "
            "s.provider_id, (SELECT c.kind || coalesce(' (' || c.detail || ')', '') "
            "FROM callbacks c WHERE c.send_key = d.key AND d.status = 'send' AND c.kind IN "
            "('delivered', 'undelivered', 'failed') ORDER BY c.at DESC, c.id DESC LIMIT 1) "
            "FROM decisions d LEFT JOIN sends s ON s.key = d.key AND "
            "d.status = 'send' "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + f"ORDER BY d.at, d.{self.INSERTION_ORDER}",
            params,
        ).fetchall()
        extra = (
            "delivery",
            "delivered_channel",
            "subject",
            "text",
            "error",
            "attempts",
            "provider_id",
            "receipt",
        )
        out = []
        for row in rows:
            entry = dict(zip((*DECISION_COLUMNS, *extra), row, strict=True))
            entry["decided_by"] = json.loads(entry["decided_by"] or "{}")
            out.append(entry)
        return out

    def fired_at(self, moment: dt.datetime, customer_id: str) -> set[str]:
        """The playbooks that fired for ``customer_id`` at the run of ``moment``."""
        rows = self.db.execute(
            "SELECT playbook FROM fired WHERE at = ? AND customer_id = ?",
            (_iso(moment), customer_id),
        ).fetchall()
        return {row[0] for row in rows}

    # ── test sends to the seed list (``courtship preview --send-to seeds``) ──
    def record_test_send(self, at: dt.datetime, **row: str | None) -> None:
        """One test send to a seed: kept apart from ``sends``, so no fact, cap or cadence of a
        customer ever counts it."""
        columns = ("seed", "playbook", "step_id", "language", "tone", "channel", "address")
        values = [row.get(c) for c in (*columns, "subject", "status", "reason")]
        with self.db:
            self.db.execute(
                "INSERT INTO test_sends VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_iso(at), *values),
            )

    def test_sends(self) -> list[dict[str, Any]]:
        names = ("at", "seed", "playbook", "step_id", "language", "tone", "channel", "address")
        names += ("subject", "status", "reason")
        rows = self.db.execute(
            f"SELECT {', '.join(names)} FROM test_sends ORDER BY at, {self.INSERTION_ORDER}"
        ).fetchall()
        return [dict(zip(names, row, strict=True)) for row in rows]

    # ── the outbox, as delivery moves its rows along ───────────────────────
    def due_sends(self, now: dt.datetime, statuses: Sequence[str]) -> list[dict[str, Any]]:
        """The outbox rows in one of ``statuses`` that are due at ``now``, oldest first."""
        found = self.db.execute(
            f"SELECT * FROM sends WHERE status IN ({','.join('?' * len(statuses))}) "
            "AND due_at <= ? ORDER BY due_at, key",
            (*statuses, _iso(now)),
        )
        names = [column[0] for column in found.description]
        return [dict(zip(names, row, strict=True)) for row in found.fetchall()]

    def due_batches(
        self, now: dt.datetime, statuses: Sequence[str], size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """The outbox rows due at ``now``, a batch at a time, for one worker to send. Here all
        of them at once: the run that holds a SQLite store is its only sender (``claim``). A
        store shared by many workers hands each its own batches of at most ``size``."""
        rows = self.due_sends(now, statuses)
        if rows:
            yield rows

    @contextmanager
    def deciding(self, wait: float = 0.0) -> Iterator[None]:
        """Held while a run decides and records its moment. A SQLite store is held for the
        whole run already (``claim``); a store shared by many workers lets one decide at a time
        and the others wait (up to ``wait`` seconds), then find the moment recorded."""
        yield

    def mark_sending(self, key: str, attempt: int) -> None:
        """Committed before a channel sees the message: a crash after it resumes here."""
        with self.db:
            self.db.execute(
                "UPDATE sends SET status = 'sending', attempts = ? WHERE key = ?", (attempt, key)
            )

    def mark_delivered(self, key: str, provider_id: str | None) -> None:
        with self.db:
            self.db.execute(
                "UPDATE sends SET status = 'delivered', provider_id = ?, error = NULL "
                "WHERE key = ?",
                (provider_id, key),
            )

    def mark_retry(self, key: str, due: dt.datetime, reason: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE sends SET status = 'retry', due_at = ?, error = ? WHERE key = ?",
                (_iso(due), reason, key),
            )

    def move_to_channel(self, key: str, channel: str, reason: str) -> None:
        """A fallback: the message waits again, on ``channel``, with why the last one failed."""
        with self.db:
            self.db.execute(
                "UPDATE sends SET channel = ?, status = 'pending', attempts = 0, error = ? "
                "WHERE key = ?",
                (channel, reason, key),
            )

    def mark_failed(self, key: str, reason: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE sends SET status = 'failed', error = ? WHERE key = ?", (reason, key)
            )

    def log_attempt(
        self, key: str, attempt: int, now: dt.datetime, channel: str, status: str, reason: str
    ) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?)",
                (key, attempt, _iso(now), channel, status, reason),
            )

    def commit_outbox(self, batch: OutboxBatch) -> None:
        """A batch of outbox changes in one transaction, in the order a message goes through
        them: moves to a fallback channel, ``sending`` marks, then outcomes and attempts."""
        with self.db:
            self.db.executemany(
                "UPDATE sends SET channel = ?, status = 'pending', attempts = 0, error = ? "
                "WHERE key = ?",
                [(channel, reason, key) for key, channel, reason in batch.moves],
            )
            self.db.executemany(
                "UPDATE sends SET status = 'sending', attempts = ? WHERE key = ?",
                [(attempt, key) for key, attempt in batch.sending],
            )
            self.db.executemany(
                "UPDATE sends SET status = 'delivered', provider_id = ?, error = NULL "
                "WHERE key = ?",
                [(provider_id, key) for key, provider_id in batch.delivered],
            )
            self.db.executemany(
                "UPDATE sends SET status = 'retry', due_at = ?, error = ? WHERE key = ?",
                [(_iso(due), reason, key) for key, due, reason in batch.retries],
            )
            self.db.executemany(
                "UPDATE sends SET status = 'failed', error = ? WHERE key = ?",
                [(reason, key) for key, reason in batch.failures],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (key, attempt, _iso(now), channel, status, reason)
                    for key, attempt, now, channel, status, reason in batch.attempts
                ],
            )

    def waiting_sends(self) -> int:
        """Messages that wait for a later run: held back at their step of a sequence by a
        guard (quiet hours, cadence, caps), or in the outbox to retry."""
        retries = self.db.execute(
            "SELECT count(*) FROM sends WHERE status IN ('deferred', 'retry')"
        ).fetchone()[0]
        held = self.db.execute(
            f"SELECT count(*) FROM enrollments WHERE status = 'waiting' AND {self.HELD_AT_SEND}"
        ).fetchone()[0]
        return int(retries) + int(held)

    def count(self, table: str) -> int:
        assert table in {
            "runs",
            "fired",
            "becomes",
            "enrollments",
            "sends",
            "facts",
            "tags",
            "tagged",
            "attempts",
            "consent_changes",
            "callbacks",
        }
        return int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    # ── what providers told `courtship serve`: consent changes and callbacks ──
    def record_consent_change(
        self,
        at: dt.datetime,
        channel: str,
        change: str,
        scope: str,
        source: str,
        *,
        customer_id: str | None = None,
        address: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Consent on ``channel`` ``withdrawn`` or ``given`` back from ``at`` on, for a
        customer or an address; ``scope`` is ``marketing`` or ``all`` (transactional too)."""
        assert change in ("withdrawn", "given") and scope in ("marketing", "all")
        assert customer_id is not None or address is not None
        with self.db:
            self.db.execute(
                "INSERT INTO consent_changes (at, channel, customer_id, address, change, scope, "
                "source, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (_iso(at), channel, customer_id, address, change, scope, source, detail),
            )

    def consent_changes(self) -> list[dict[str, Any]]:
        """Every consent change, in the order they happened."""
        rows = self.db.execute(
            "SELECT at, channel, customer_id, address, change, scope, source, detail "
            "FROM consent_changes ORDER BY at, id"
        ).fetchall()
        names = ("at", "channel", "customer_id", "address", "change", "scope", "source", "detail")
        out = [dict(zip(names, row, strict=True)) for row in rows]
        for row in out:
            row["at"] = dt.datetime.fromisoformat(row["at"])
        return out

    def record_callback(
        self,
        at: dt.datetime,
        source: str,
        kind: str,
        *,
        channel: str | None = None,
        provider_id: str | None = None,
        address: str | None = None,
        send_key: str | None = None,
        detail: str | None = None,
    ) -> None:
        """One callback: a receipt (``kind`` delivered, undelivered, failed) of the outbox row
        ``send_key`` the provider knows as ``provider_id``, an ``inbound`` message (its text in
        ``detail``), a ``help`` request, a bounce, a soft bounce or a complaint."""
        with self.db:
            self.db.execute(
                "INSERT INTO callbacks (at, source, kind, channel, provider_id, address, "
                "send_key, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (_iso(at), source, kind, channel, provider_id, address, send_key, detail),
            )

    def callbacks(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The callbacks (of one ``kind``), in the order they came."""
        where, params = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        rows = self.db.execute(
            "SELECT at, source, kind, channel, provider_id, address, send_key, detail "
            f"FROM callbacks {where} ORDER BY at, id",
            params,
        ).fetchall()
        names = ("at", "source", "kind", "channel", "provider_id", "address", "send_key", "detail")
        out = [dict(zip(names, row, strict=True)) for row in rows]
        for row in out:
            row["at"] = dt.datetime.fromisoformat(row["at"])
        return out

    def send_of_provider_id(self, provider_id: str) -> dict[str, Any] | None:
        """The outbox row a provider knows by ``provider_id`` (Twilio's MessageSid, an email's
        Message-ID): key, customer_id, channel, category, status, attempts."""
        row = self.db.execute(
            "SELECT key, customer_id, channel, category, status, attempts FROM sends "
            "WHERE provider_id = ?",
            (provider_id,),
        ).fetchone()
        names = ("key", "customer_id", "channel", "category", "status", "attempts")
        return dict(zip(names, row, strict=True)) if row else None

    def soft_bounces_in_a_row(self, channel: str, address: str) -> int:
        """Soft bounces of ``address`` since its last delivery receipt or hard bounce."""
        last = self.db.execute(
            "SELECT max(id) FROM callbacks WHERE channel = ? AND address = ? "
            "AND kind IN ('delivered', 'bounce')",
            (channel, address),
        ).fetchone()[0]
        return int(
            self.db.execute(
                "SELECT count(*) FROM callbacks WHERE channel = ? AND address = ? "
                "AND kind = 'soft-bounce' AND id > ?",
                (channel, address, last or 0),
            ).fetchone()[0]
        )

    # ── simulation (``courtship simulate``): a copy, delivered without channels ──
    @classmethod
    def copy_of(cls, path: Path | str | None, folder: Path) -> StateStore:
        """A copy of the store at ``path`` in ``folder`` (the database through SQLite's backup
        API, its marker and its streaks), to run on without touching the original, which is
        only read. A store marked as existing but missing or broken is refused as a run would;
        without one (``path`` None or never created) the copy starts empty. A PostgreSQL URL:
        its tables are read into a SQLite copy in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / "state.sqlite"
        if isinstance(path, str):
            from courtship.state_postgres import PostgresStore

            return PostgresStore.copy_into(path, cls(copy))
        if path is not None and _marker(path).exists():
            _check_existing(path, _marker(path))
        if path is not None and path.exists():
            try:
                # read only, by a URI that keeps "#" or "?" in a folder name a path
                with sqlite3.connect(_read_only(path), uri=True) as source:
                    target = sqlite3.connect(str(copy))
                    source.backup(target)
                    target.close()
                source.close()
            except sqlite3.DatabaseError as error:
                raise StateError(
                    f"{path}: not a state store Courtship can read ({error}); point `state:` "
                    "at the store's file, or restore it from a backup"
                ) from None
            import shutil

            if _marker(path).exists():
                shutil.copyfile(_marker(path), _marker(copy))
            streaks = path.parent / "streaks"
            if streaks.is_dir():
                shutil.copytree(streaks, folder / "streaks", dirs_exist_ok=True)
        return cls(copy)

    def deliver_simulated(self, now: dt.datetime) -> list[tuple[str, str, str, str]]:
        """Mark every outbox row due at ``now`` delivered, without any channel (provider id
        ``simulated``), and return them: (customer_id, playbook, channel, category)."""
        statuses = ("pending", "deferred", "retry", "sending")
        marks = ",".join("?" * len(statuses))
        with self.db:
            rows = self.db.execute(
                f"SELECT customer_id, playbook, channel, category FROM sends "
                f"WHERE status IN ({marks}) AND due_at <= ? ORDER BY due_at, key",
                (*statuses, _iso(now)),
            ).fetchall()
            self.db.execute(
                f"UPDATE sends SET status = 'delivered', provider_id = 'simulated', "
                f"attempts = attempts + 1, error = NULL "
                f"WHERE status IN ({marks}) AND due_at <= ?",
                (*statuses, _iso(now)),
            )
        return [(c, p, ch, cat) for c, p, ch, cat in rows]

    # ── experiments (``courtship results``) ────────────────────────────────
    def record_assignments(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        """Record the arm each customer was put in, per playbook and step (playbook,
        customer_id, step_id, arm, at): the first assignment stands."""
        if rows:
            with self.db:
                self.db.executemany(ASSIGN, list(rows))

    def assignments(self) -> pl.DataFrame:
        """Every recorded assignment: playbook, customer_id, step_id, arm, at (an instant)."""
        rows = self.db.execute(
            "SELECT playbook, customer_id, step_id, arm, at FROM assignments "
            "ORDER BY playbook, at, customer_id"
        ).fetchall()
        return pl.DataFrame(
            rows,
            schema={n: pl.String() for n in ("playbook", "customer_id", "step_id", "arm", "at")},
            orient="row",
        ).with_columns(pl.col("at").str.to_datetime(time_zone="UTC"))


@dataclass
class OutboxBatch:
    """Outbox changes committed together (``StateStore.commit_outbox``)."""

    moves: list[tuple[str, str, str]] = field(default_factory=list)  # key, channel, reason
    sending: list[tuple[str, int]] = field(default_factory=list)  # key, attempt
    delivered: list[tuple[str, str | None]] = field(default_factory=list)  # key, provider id
    retries: list[tuple[str, dt.datetime, str]] = field(default_factory=list)  # key, due, why
    failures: list[tuple[str, str]] = field(default_factory=list)  # key, reason
    attempts: list[tuple[str, int, dt.datetime, str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(
            (self.moves, self.sending, self.delivered, self.retries, self.failures, self.attempts)
        )


class _AcceptedJournal:
    """The messages a provider accepted and whose ``delivered`` is not committed yet: one fixed
    slot each, in a file whose space is set aside beforehand and overwritten in place, so writing
    needs no new space on a disk that has just filled up, and workers write their own slots at
    once. (A store of an earlier version held one record in the whole file: it is read too.)"""

    SLOT = 1024

    def __init__(self, file: Path) -> None:
        self.size = self.SLOT * StateStore.ACCEPTED_SLOTS
        self.used = False
        self.fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(self.fd).st_size < self.size:
                os.pwrite(self.fd, b" " * self.size, 0)  # the space, taken now
                os.fsync(self.fd)
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, slot: int, key: str, provider_id: str | None) -> None:
        record = json.dumps({"key": key, "provider_id": provider_id}).encode()
        if len(record) >= self.SLOT:  # a provider id too long: the key is what matters
            record = json.dumps({"key": key, "provider_id": None}).encode()
        if len(record) < self.SLOT and 0 <= slot < StateStore.ACCEPTED_SLOTS:
            os.pwrite(self.fd, record.ljust(self.SLOT), slot * self.SLOT)  # else: the commit
            self.used = True

    def read(self) -> list[tuple[str, str | None]]:
        text = os.pread(self.fd, os.fstat(self.fd).st_size, 0)
        whole = _accepted_record(text)  # the one record of an earlier version
        if whole is not None:
            return [whole]
        records = (
            _accepted_record(text[at : at + self.SLOT]) for at in range(0, len(text), self.SLOT)
        )
        return [record for record in records if record is not None]

    def clear(self) -> None:
        if self.used:
            os.pwrite(self.fd, b" " * self.size, 0)
            self.used = False

    def close(self) -> None:
        os.close(self.fd)


def _accepted_record(text: bytes) -> tuple[str, str | None] | None:
    text = text.strip()
    try:
        record = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        return None
    provider_id = record.get("provider_id")
    return record["key"], provider_id if isinstance(provider_id, str) else None


def is_postgres_url(text: str) -> bool:
    """``postgresql://…`` (or ``postgres://``, ``postgresql+psycopg://``): a PostgreSQL store."""
    return re.match(r"^postgres(ql)?(\+psycopg)?://", text.strip(), re.IGNORECASE) is not None


def marker_of(project: Project) -> Path:
    """Where a project on PostgreSQL keeps the id of the store it ran on."""
    return project.root / ".courtship" / "postgres-state.id"


def location_of(project: Project) -> Path | str | None:
    """Where the project's store is: its SQLite file, its PostgreSQL URL (the one in the variable
    ``state_env`` names, read now and kept out of every output as a secret), or None. A
    :class:`StateMisplaced` for a variable that is not set or holds no such URL."""
    if project.state_env:
        variable = project.state_env
        url = os.environ.get(variable, "").strip()
        if not url:
            raise StateMisplaced(
                f"the variable {variable} is not set; export the state store's URL in it "
                "(postgresql://user:password@host:5432/database)"
            )
        from urllib.parse import urlsplit

        from courtship.redaction import remember

        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:  # the URL is printed without it (``postgresql://shop@db/shop``)
            remember(url, variable)
            remember(password, variable)
        if not is_postgres_url(url):
            raise StateMisplaced(
                f"the variable {variable} holds no PostgreSQL URL; it must begin with "
                "postgresql:// (postgresql://user:password@host:5432/database)"
            )
        return url
    return project.state_url or project.state


def open_store(
    location: Path | str | None, *, dry_run: bool = False, marker: Path | None = None
) -> StateStore:
    """The store at ``location``: a SQLite file, a PostgreSQL URL, or None for one in memory.
    A dry run on a store that does not exist yet reads an empty one in memory and creates
    nothing. ``marker``: for PostgreSQL, the project's file that keeps the id of the store it
    ran on (a SQLite store keeps its own, ``<name>.id``)."""
    if isinstance(location, str):
        from courtship.state_postgres import PostgresStore

        return PostgresStore.open(location, create=not dry_run, marker=marker)
    if location is None or (dry_run and not location.exists()):
        return StateStore(None)
    return StateStore(location)


def _statements(script: str) -> list[str]:
    """The statements of a migration script (no ``;`` inside a statement of ours)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def _version_of(value: object, where: str) -> int:
    """The schema version ``meta`` records; an error for one that is no version at all."""
    try:
        version = int(str(value))
    except ValueError:
        version = 0
    if version < 1:
        raise StateVersionError(
            f"{where}: the state store records no schema version Courtship knows ({value!r} in "
            "its table meta); restore it from a backup"
        )
    return version


def _read_only(path: Path) -> str:
    """A URI that reads the store and writes nothing beside it. A WAL store that no connection
    has open has no ``-wal`` file: it is read as immutable, so the reader creates no ``-wal`` or
    ``-shm`` file (``courtship simulate`` leaves the real store byte for byte as it was). With a
    ``-wal`` file (a run that has the store open, or one that was killed), it is read through the
    log, as SQLite's readers do."""
    uri = f"{path.resolve().as_uri()}?mode=ro"  # a URI keeps "#" or "?" in a folder name
    if not path.with_name(path.name + "-wal").exists():
        uri += "&immutable=1"
    return uri


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".id")


@contextmanager
def _writing(path: Path | None, what: str) -> Iterator[None]:
    """A full disk while doing ``what`` is a :class:`DiskFull`."""
    try:
        yield
    except OSError as error:
        if error.errno in NO_SPACE:
            raise DiskFull(f"cannot {what} ({path}: {error.strerror})") from None
        raise
    except pl.exceptions.PolarsError as error:  # polars says "(os error 28)"
        if any(f"(os error {number})" in str(error) for number in NO_SPACE):
            raise DiskFull(f"cannot {what} ({path}: {os.strerror(errno.ENOSPC)})") from None
        raise


def _check_place(path: Path) -> None:
    """``state:`` names a file, or a place where one can be made."""
    if path.is_dir():
        raise StateMisplaced(
            f"{path} is a folder, not a state store; name a file in it, such as "
            f"{path / 'state.sqlite'}"
        )
    if path.exists() and not path.is_file():
        raise StateMisplaced(f"{path} is not a regular file; name a file for the state store")
    if path.parent.exists() and not path.parent.is_dir():
        raise StateMisplaced(f"{path.parent} is a file, not a folder the state store can be in")


def _check_existing(path: Path, marker: Path) -> None:
    """A store marked as existing must still be there, whole."""
    hint = (
        f"restore it from a backup; to start afresh on purpose (everything in the lookback "
        f"window is decided and sent again), remove {marker}"
    )
    if not path.exists():
        raise StateError(f"{path}: the state store is gone, but it existed ({marker}); {hint}")
    if path.stat().st_size == 0:
        raise StateError(f"{path}: the state store is empty, but it held runs before; {hint}")
    db = sqlite3.connect(_read_only(path), uri=True)
    try:
        db.execute("SELECT count(*) FROM runs").fetchone()
        # Every page read once: damage in the middle of the file (a torn copy, stray bytes)
        # shows here, before anything is decided or sent, not halfway through a run.
        problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as error:
        raise StateError(f"{path}: the state store is unreadable ({error}); {hint}") from None
    finally:
        db.close()
    if problems != ["ok"]:
        lines = [line.strip() for text in problems for line in str(text).splitlines()]
        said = "; ".join(line for line in lines if line and not line.startswith("***"))
        raise StateError(f"{path}: the state store is damaged ({said[:300]}); {hint}")
