"""The steady run: what the last run aggregated per customer, carried to this one.

Aggregating every customer's events (orders, visits, sends, conversations, their local dates)
is most of the cost of a moment's facts, and between two hourly runs it changes for few
customers. ``FactHistory.at`` keeps what it aggregated (:class:`Aggregates`), the state store
saves it beside itself when the run is recorded, and the next run aggregates anew only the
customers whose aggregates can differ:

- an event or a send of theirs falls between the two moments;
- one leaves a counting window between them (``orders_last_90d``, ``messages_sent_30d``);
- their events or sends are not those the last run counted (a fingerprint per customer of
  each: an edited, back-dated or removed event, a send recorded by the last run itself);
- their time zone changed (local dates and the days with an order are taken in it).

Everyone else's aggregates are the same at both moments, by construction: the facts that
depend on the clock (``days_since_last_order``, windows of the calendar …) are derived from
the aggregates at the moment itself, for everyone. Kept aggregates are used only from the same
customer file (the same ids in the same order), the same code, and the run just before this
one; otherwise every customer is aggregated, as on a first run. ``docs/engine.md`` ("The
steady run") is the contract.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

import courtship

if TYPE_CHECKING:
    from courtship.engine.facts import FactHistory
    from courtship.sources import CustomerBase

#: The column of the fingerprint of each customer's events, and of their sends.
EVENTS_MARK, SENDS_MARK = "_events_mark", "_sends_mark"


@dataclass
class Aggregates:
    """What ``FactHistory.at`` aggregated per customer row at ``moment`` (``frame``: the row,
    the time zone, the aggregates and their local dates), with what they were counted from:
    the customer file (``customers``, its mark), the events' loading-time index (``index``,
    its mark, when the events are those indexed) and a fingerprint per customer of their
    events and of their sends (``marks``)."""

    moment: datetime
    customers: int
    index: str | None
    frame: pl.DataFrame
    marks: Marks

    def save(self, folder: Path) -> None:
        """Into ``folder``: the table, then what it was counted from (written last: the pair
        is whole or not read). Older ones are removed."""
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _stamp(self.moment)
        table, about = folder / f"aggregates@{stamp}.arrow", folder / f"aggregates@{stamp}.json"
        partial = table.with_suffix(".tmp")
        pl.concat([self.frame, self.marks.frame()], how="horizontal").write_ipc(partial)
        partial.replace(table)
        partial = about.with_suffix(".json.tmp")
        partial.write_text(json.dumps(self._about()), encoding="utf-8")
        partial.replace(about)
        for old in folder.glob("aggregates@*"):
            if old not in (table, about):
                old.unlink(missing_ok=True)

    def _about(self) -> dict[str, object]:
        return {
            "moment": self.moment.isoformat(),
            "customers": self.customers,
            "index": self.index,
            "code": code_mark(),
            "columns": self.frame.columns,
        }


def load(folder: Path, moment: datetime, customers: int) -> Aggregates | None:
    """The aggregates saved at ``moment`` for this customer file by this code, or None (none
    saved, another file, another version, a damaged file: a cache, never an error)."""
    about_file = folder / f"aggregates@{_stamp(moment)}.json"
    try:
        about = json.loads(about_file.read_text(encoding="utf-8"))
        if about["customers"] != customers or about["code"] != code_mark():
            return None
        table = pl.read_ipc(about_file.with_suffix(".arrow"))
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError):
        return None
    columns = list(about["columns"])
    if table.columns != [*columns, EVENTS_MARK, SENDS_MARK]:
        return None
    from courtship.engine.facts import ROW

    frame = table.select(columns).with_columns(pl.col(ROW).set_sorted())
    marks = Marks.known(table.select(EVENTS_MARK, SENDS_MARK))
    return Aggregates(moment, customers, about["index"], frame, marks)


def _stamp(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def code_mark() -> str:
    """What the aggregates depend on of the code: Courtship's and polars' versions and the
    source of the facts engine."""
    digest = hashlib.sha256(f"{courtship.__version__} {pl.__version__}".encode())
    for name in ("facts.py", "carry.py"):
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


class Marks:
    """The fingerprints per customer row of their events and of their sends (``EVENTS_MARK``,
    ``SENDS_MARK``), worked out when first asked (a dry run that keeps nothing never does)."""

    def __init__(self, events: pl.DataFrame | pl.Series, sends: pl.DataFrame, height: int) -> None:
        self._events, self._sends, self._height = events, sends, height
        self._frame: pl.DataFrame | None = None

    @classmethod
    def known(cls, frame: pl.DataFrame) -> Marks:
        made = cls(frame.get_column(EVENTS_MARK), frame.clear(), frame.height)
        made._frame = frame
        return made

    def frame(self) -> pl.DataFrame:
        if self._frame is None:
            events = self._events
            if isinstance(events, pl.DataFrame):
                events = marks(events, self._height)
            sends = marks(self._sends, self._height)
            self._frame = pl.DataFrame([events.alias(EVENTS_MARK), sends.alias(SENDS_MARK)])
        return self._frame

    def events(self) -> pl.Series:
        return self.frame().get_column(EVENTS_MARK)


def marks(rows: pl.DataFrame, height: int) -> pl.Series:
    """A fingerprint per customer row (``height`` rows) of their event rows (``ROW``, kind,
    at, channel, amount): 0 for a customer without any."""
    from courtship.engine.facts import ROW

    summed = (
        rows.lazy()
        .group_by(ROW)
        .agg(pl.struct("kind", "at", "channel", "amount").hash(seed=20261201).sum().alias("m"))
        .collect()
    )
    found = pl.zeros(height, pl.UInt64(), eager=True)
    found.scatter(summed.get_column(ROW), summed.get_column("m"))
    return found


def moved(moment_us: int, now_us: int, windows: dict[str, timedelta]) -> pl.Expr:
    """The events that make a customer's aggregates differ between ``moment`` and ``now``
    (either order): one between them, or one leaving a counting window of its kind
    (``windows``) between them."""
    early, late = min(moment_us, now_us), max(moment_us, now_us)
    kind, at = pl.col("kind"), pl.col("at")
    test = (at > early) & (at <= late)
    for name, span in windows.items():
        width = span // timedelta(microseconds=1)
        test = test | (kind == name) & (at >= early - width) & (at < late - width)
    return test


def changed_rows(
    kept: Aggregates,
    events: pl.LazyFrame,
    now_us: int,
    windows: dict[str, timedelta],
    current: pl.DataFrame,
    timezones: pl.Series,
) -> pl.Series:
    """The customer rows whose aggregates at now can differ from ``kept`` (sorted): see the
    module's list. ``events`` are this run's (events and sends), ``current`` this run's
    fingerprints (``EVENTS_MARK``, ``SENDS_MARK``)."""
    from courtship.engine.facts import ROW

    then_us = _stamp(kept.moment)
    near = (
        events.filter(moved(then_us, now_us, windows))
        .select(pl.col(ROW).cast(pl.UInt32()))
        .collect()
        .get_column(ROW)
    )
    differ = (
        (current.get_column(EVENTS_MARK) != kept.marks.frame().get_column(EVENTS_MARK))
        | (current.get_column(SENDS_MARK) != kept.marks.frame().get_column(SENDS_MARK))
        | (timezones != kept.frame.get_column("timezone"))
    )
    flags = differ.fill_null(True)
    flags.scatter(near, True)
    return flags.arg_true().cast(pl.UInt32()).alias(ROW)


def patched(derived: pl.DataFrame | pl.LazyFrame, redone: pl.DataFrame) -> pl.LazyFrame:
    """``derived`` with the rows of ``redone`` (sorted by row; its columns a subset of those
    of ``derived``) in place of its own."""
    from courtship.engine.facts import ROW

    renewed = [name for name in redone.columns if name != ROW]
    fresh = redone.select(
        ROW, pl.lit(True).alias("_changed"), *(pl.col(n).alias(f"_new_{n}") for n in renewed)
    )
    joined = derived.lazy().join(fresh.lazy(), on=ROW, how="left", maintain_order="left")
    columns = derived.collect_schema().names()
    return joined.with_columns(
        pl.when(pl.col("_changed")).then(pl.col(f"_new_{n}")).otherwise(pl.col(n)).alias(n)
        for n in renewed
    ).select(columns)


# ── carrying the last run's aggregates to this moment ─────────────────────


def index_mark(base: CustomerBase) -> str | None:
    """The mark of the loading-time index the base's events were numbered from
    (``courtship.intake.with_index``), while these are still its customers and events."""
    kept = base.__dict__.get("_index_mark")
    if kept is not None and kept[0] is base.customers and kept[1] is base.events:
        return str(kept[2])
    return None


def current_marks(history: FactHistory) -> Marks:
    """This run's fingerprints per customer of their events and of their sends. The events'
    are those kept when the events are the very ones the kept aggregates counted (the same
    index): only the sends are fingerprinted again. Messages heard through ``courtship
    serve`` (events given to a loaded base, :func:`courtship.engine.facts.heard_rows`) are
    fingerprinted with the sends, at every run: the index's own fingerprints stay whole."""
    from courtship.engine.facts import event_rows, heard_rows

    found = history.__dict__.get("_marks")
    if found is not None:
        return found
    kept, index = history.carried, index_mark(history.base)
    same = kept is not None and index is not None and kept.index == index
    heard = heard_rows(history.base)
    own = event_rows(history.base) if heard is None else heard[0]
    sent = (
        history.sent
        if heard is None
        else pl.concat([history.sent, heard[1]], how="vertical_relaxed")
    )
    events = kept.marks.events() if same and kept else own
    found = Marks(events, sent, history.customers.height)
    history.__dict__["_marks"] = found
    return found


def customer_file_mark(base: CustomerBase) -> int:
    from courtship.engine.facts import customer_file_mark as mark

    return mark(base)


def carry_on(history: FactHistory, now: datetime) -> pl.DataFrame | None:
    """The aggregates at ``now``: the kept ones, with the customers whose aggregates can differ
    aggregated anew (None when the kept ones cannot be carried: a later moment, another
    customer file)."""
    from courtship.engine.facts import ROW, WINDOWS, _epoch_us, at_rows

    kept = history.carried
    height = history.customers.height
    if kept is None or kept.moment > now or kept.frame.height != height:
        return None
    if kept.customers != customer_file_mark(history.base):
        return None
    timezones = history.customers.get_column("timezone")
    rows = changed_rows(
        kept, history.both(), _epoch_us(now), WINDOWS, current_marks(history).frame(), timezones
    )
    flags = pl.zeros(height, pl.Boolean(), eager=True)
    flags.scatter(rows, True)
    mine = pl.lit(flags).gather(pl.col(ROW))
    events = pl.concat([history.numbered.filter(mine), history.sent.filter(mine)])
    chosen = history.customers.select(ROW, "timezone").filter(pl.lit(flags))
    redone = history._aggregated(events, chosen, now)
    history.__dict__["aggregated"] = redone.height
    return at_rows(kept.frame, redone)  # the changed customers' rows, in place


def kept_aggregates(history: FactHistory, now: datetime, derived: pl.DataFrame) -> Aggregates:
    """What this moment aggregated, for the next run to carry on."""
    return Aggregates(
        now,
        customer_file_mark(history.base),
        index_mark(history.base),
        derived,
        current_marks(history),
    )
