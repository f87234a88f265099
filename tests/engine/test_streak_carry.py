"""A becomes playbook's streaks, carried from the last run by row number (same customer file)
or by customer id (another file), say the same: who fires, since when, and what is kept."""

import datetime as dt

import polars as pl
import pytest

from courtship.engine.facts import ROW
from courtship.engine.triggers import MARK, _streaks_from_state

NOW = dt.datetime(2026, 11, 23, 16, tzinfo=dt.UTC)
UTC_US = pl.Datetime("us", "UTC")


def current(truths: list[bool]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            ROW: pl.Series(range(len(truths)), dtype=pl.UInt32()),
            "customer_id": [f"c{n}" for n in range(len(truths))],
            "_true": truths,
        }
    )


def saved(rows: list[int], since_days: list[int], fired: list[bool], mark: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": [f"c{n}" for n in rows],
            ROW: pl.Series(rows, dtype=pl.UInt32()),
            "true_since": pl.Series([NOW - dt.timedelta(days=d) for d in since_days], dtype=UTC_US),
            "fired": fired,
            MARK: pl.Series([mark] * len(rows), dtype=pl.UInt64()),
        }
    )


@pytest.mark.parametrize("hold", [dt.timedelta(0), dt.timedelta(days=2)])
def test_by_row_and_by_id_agree(hold):
    truths = [True, False, True, True, True, False, True]
    previous = saved([0, 1, 3, 4, 6], [5, 1, 1, 3, 0], [True, False, False, False, False], 7)
    by_row = _streaks_from_state(current(truths), previous, hold, NOW, 7)
    by_id = _streaks_from_state(current(truths), previous, hold, NOW, 8)  # another file's mark
    assert by_row.equals(by_id)
    assert by_row.get_column("customer_id").to_list() == ["c0", "c2", "c3", "c4", "c6"]
    # c2 is new (true since now); c0 fired already; with a hold, only c4 (3 days) fires now
    fires = by_row.filter(pl.col("_fires")).get_column("customer_id").to_list()
    assert fires == (["c2", "c3", "c4", "c6"] if not hold else ["c4"])


def test_rows_out_of_order_or_repeated_are_matched_by_joining():
    truths = [True, True, True]
    shuffled = saved([2, 0, 0], [4, 4, 1], [False, True, False], 7)
    carried = _streaks_from_state(current(truths), shuffled, dt.timedelta(days=2), NOW, 7)
    assert carried.height == 4  # row 0 twice, as a join of the saved rows gives it
    assert carried.filter(pl.col(ROW) == 2).get_column("_fires").to_list() == [True]
