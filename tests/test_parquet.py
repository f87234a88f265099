"""Parquet as a source: a file, a folder of files or a glob, typed columns checked as they are,
problems named by file, row and customer id; and the loading-time index kept beside the state,
reused while the base is unchanged."""

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from courtship import sources
from courtship.engine.facts import event_rows, referral_rows
from courtship.intake import INDEX_FOLDER, read_base
from courtship.plugins import installed
from courtship.project import load_project
from courtship.sources import (
    SourceError,
    read_customers_csv,
    read_customers_file,
    read_events_file,
    read_events_jsonl,
)

ROOT = Path(__file__).resolve().parents[1]


def example_base(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The example customers and events, written as Parquet in their contract types."""
    customers = read_customers_csv(ROOT / "examples" / "customers.csv")
    events = read_events_jsonl(ROOT / "examples" / "events.jsonl")
    customers.write_parquet(folder / "customers.parquet")
    events.write_parquet(folder / "events.parquet")
    return customers, events


def test_parquet_reads_as_the_csv_and_json_lines_files_do(tmp_path):
    customers, events = example_base(tmp_path)
    assert_frame_equal(
        read_customers_file(tmp_path / "customers.parquet", format="parquet"), customers
    )
    assert_frame_equal(read_events_file(tmp_path / "events.parquet", format="parquet"), events)


def test_a_folder_or_a_glob_of_parquet_files_is_one_event_table(tmp_path):
    _, events = example_base(tmp_path)
    (tmp_path / "parts").mkdir()
    half = events.height // 2
    events.head(half).write_parquet(tmp_path / "parts" / "a.parquet")
    events.tail(events.height - half).write_parquet(tmp_path / "parts" / "b.parquet")
    assert_frame_equal(read_events_file(tmp_path / "parts", format="parquet"), events)
    assert_frame_equal(read_events_file(tmp_path / "parts" / "*.parquet", format="parquet"), events)
    since = events["at"].sort()[half]
    later = read_events_file(tmp_path / "parts", format="parquet", since=since)
    assert later["at"].min() > since


def test_a_naive_moment_in_parquet_names_the_file_row_and_customer(tmp_path):
    frame = pl.DataFrame(
        {
            "customer_id": ["c-1", "c-2"],
            "type": ["order", "order"],
            "at": [datetime(2026, 11, 20, 10), datetime(2026, 11, 21, 10)],
        }
    )
    frame.write_parquet(tmp_path / "events.parquet")
    with pytest.raises(SourceError) as caught:
        read_events_file(tmp_path / "events.parquet", format="parquet")
    assert caught.value.path == tmp_path / "events.parquet"
    assert caught.value.field == "at"
    assert "row 1, customer_id 'c-1'" in caught.value.message


def test_a_typed_column_out_of_bounds_in_parquet_is_named(tmp_path):
    frame = pl.DataFrame(
        {"customer_id": ["c-1", "c-2", "c-2"], "cadence_days": [3, -1, 4]},
        schema={"customer_id": pl.String(), "cadence_days": pl.Int64()},
    )
    frame.write_parquet(tmp_path / "customers.parquet")
    with pytest.raises(SourceError) as caught:
        read_customers_file(tmp_path / "customers.parquet", format="parquet")
    assert caught.value.field == "cadence_days"
    assert "'-1' is not a whole number of days (row 2, customer_id 'c-2')" in str(caught.value)


def test_parquet_of_text_cells_reads_as_the_same_csv_and_json_lines_do(tmp_path, monkeypatch):
    """The same clean cells, written as text in Parquet, give the same customers and events
    (one pass or the careful way)."""
    text = pl.read_csv(ROOT / "examples" / "customers.csv", infer_schema=False)
    text.write_parquet(tmp_path / "customers.parquet")
    events = pl.read_ndjson(ROOT / "examples" / "events.jsonl", infer_schema_length=None)
    events.write_parquet(tmp_path / "events.parquet")
    customers = read_customers_csv(ROOT / "examples" / "customers.csv")
    expected = read_events_jsonl(ROOT / "examples" / "events.jsonl")
    for careful in (False, True):
        if careful:
            monkeypatch.setattr(sources, "_customers_parquet_at_speed", lambda *_: None)
            monkeypatch.setattr(sources, "_events_parquet_at_speed", lambda *_: None)
        read = read_customers_file(tmp_path / "customers.parquet", format="parquet")
        assert_frame_equal(read, customers)
        read = read_events_file(tmp_path / "events.parquet", format="parquet")
        assert_frame_equal(read, expected)


def test_parquet_text_is_taken_as_written_and_an_empty_cell_is_null(tmp_path, monkeypatch):
    frame = pl.DataFrame(
        {
            "customer_id": ["c-1", "c-2"],
            "first_name": ["Ann ", "\tBo"],
            "email": ["", "bo@example.org"],
            "city": ["São Paulo", "Zürich"],
        }
    )
    frame.write_parquet(tmp_path / "customers.parquet")
    events = pl.DataFrame(
        {
            "customer_id": ["c-1", "c-2"],
            "type": ["order", "visit"],
            "at": ["2026-11-20T10:15:00Z", "2026-11-20T10:16:00Z"],
            "channel": ["", " web"],
        }
    )
    events.write_parquet(tmp_path / "events.parquet")
    fast = read_customers_file(tmp_path / "customers.parquet", format="parquet")
    assert fast["first_name"].to_list() == ["Ann ", "\tBo"]
    assert fast["email"].to_list() == [None, "bo@example.org"]
    fast_events = read_events_file(tmp_path / "events.parquet", format="parquet")
    assert fast_events["channel"].to_list() == [None, " web"]
    monkeypatch.setattr(sources, "_customers_parquet_at_speed", lambda *_: None)
    monkeypatch.setattr(sources, "_events_parquet_at_speed", lambda *_: None)
    assert_frame_equal(read_customers_file(tmp_path / "customers.parquet", format="parquet"), fast)
    assert_frame_equal(read_events_file(tmp_path / "events.parquet", format="parquet"), fast_events)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("timezone", " UTC", "' UTC' is not a known IANA time zone"),
        ("stage", "active ", "'active ' is not one of"),
        ("customer_id", "c-2 ", "'c-2 ' has space at an end"),
        ("customer_id", "\u00a0c-2", "has space at an end"),
        ("cadence_days", " 7", "' 7' is not a whole number of days"),
        ("birthday", "2001-02-03 ", "'2001-02-03 ' is not a date"),
    ],
)
def test_a_parquet_customer_cell_with_space_is_an_error_where_its_value_must_be_exact(
    tmp_path, column, value, message
):
    frame = pl.DataFrame({"customer_id": ["c-1", "c-2"], "row": [1, 2]})
    frame = frame.with_columns(
        pl.when(pl.col("row") == 2).then(pl.lit(value)).alias(column)
        if column != "customer_id"
        else pl.when(pl.col("row") == 2).then(pl.lit(value)).otherwise("customer_id").alias(column)
    ).drop("row")
    frame.write_parquet(tmp_path / "customers.parquet")
    with pytest.raises(SourceError) as caught:
        read_customers_file(tmp_path / "customers.parquet", format="parquet")
    error = caught.value
    assert (error.path, error.field) == (tmp_path / "customers.parquet", column)
    assert message in error.message and "row 2" in error.message and error.hint


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("amount", " 12.5", "' 12.5' is not a number"),
        ("customer_id", "", "the event has no value"),
    ],
)
def test_a_parquet_event_cell_with_space_is_an_error_where_its_value_must_be_exact(
    tmp_path, column, value, message
):
    frame = pl.DataFrame(
        {
            "customer_id": ["c-1", "c-2"],
            "type": ["order", "order"],
            "at": ["2026-11-20T10:15:00Z", "2026-11-20T10:16:00Z"],
            "amount": ["3", "4"],
        }
    ).with_columns(
        pl.when(pl.col("type").cum_count() == 2)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    )
    frame.write_parquet(tmp_path / "events.parquet")
    with pytest.raises(SourceError) as caught:
        read_events_file(tmp_path / "events.parquet", format="parquet")
    error = caught.value
    assert (error.path, error.field) == (tmp_path / "events.parquet", column)
    assert message in error.message and "row 2" in error.message and error.hint


def test_a_glob_matching_nothing_and_a_file_that_is_not_parquet_are_named(tmp_path):
    with pytest.raises(SourceError, match="no file matches"):
        read_events_file(tmp_path / "none-*.parquet", format="parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"holds no \.parquet file"):
        read_events_file(tmp_path / "empty", format="parquet")
    (tmp_path / "events.parquet").write_text("customer_id,type,at\n")
    with pytest.raises(SourceError, match="cannot be read as Parquet") as caught:
        read_events_file(tmp_path / "events.parquet", format="parquet")
    assert caught.value.path == tmp_path / "events.parquet"


def write_project(root: Path, body: str) -> None:
    (root / "playbooks").mkdir()
    (root / "state").mkdir()  # a dry run keeps the index beside a state store that exists
    (root / "courtship.yaml").write_text(body + "state: state/state.sqlite\n")


def test_the_project_file_names_parquet_files_and_the_index_is_reused(tmp_path):
    customers, _ = example_base(tmp_path)
    write_project(tmp_path, "customers: customers.parquet\nevents: events.parquet\n")
    project = load_project(tmp_path)
    first = read_base(project, installed(), dry_run=True)
    assert_frame_equal(first.customers, customers)
    index = tmp_path / "state" / INDEX_FOLDER
    assert (index / "event_rows.parquet").exists()
    # The second run reads the index saved by the first: the same rows as built afresh.
    second = read_base(project, installed(), dry_run=True)
    kept = second.__dict__["_event_rows"][2]
    assert kept is event_rows(second)
    fresh = read_base(project, installed(), dry_run=True)
    fresh.__dict__.pop("_event_rows")
    fresh.__dict__.pop("_referral_rows")
    assert_frame_equal(kept, event_rows(fresh))
    assert_frame_equal(
        second.__dict__["_referral_rows"][2], referral_rows(fresh), check_row_order=False
    )


def test_a_changed_base_builds_the_index_again(tmp_path):
    _, events = example_base(tmp_path)
    write_project(tmp_path, "customers: customers.parquet\nevents: events.parquet\n")
    project = load_project(tmp_path)
    read_base(project, installed(), dry_run=True)
    fewer = events.head(events.height - 3)
    fewer.write_parquet(tmp_path / "events.parquet")
    again = read_base(project, installed(), dry_run=True)
    rows = again.__dict__["_event_rows"][2]
    again.__dict__.pop("_event_rows")
    assert_frame_equal(rows, event_rows(again))


def test_a_damaged_index_is_built_again(tmp_path):
    example_base(tmp_path)
    write_project(tmp_path, "customers: customers.parquet\nevents: events.parquet\n")
    project = load_project(tmp_path)
    read_base(project, installed(), dry_run=True)
    (tmp_path / "state" / INDEX_FOLDER / "event_rows.parquet").write_text("not parquet")
    base = read_base(project, installed(), dry_run=True)
    rows = base.__dict__["_event_rows"][2]
    base.__dict__.pop("_event_rows")
    assert_frame_equal(rows, event_rows(base))


def test_the_parquet_source_type_reads_a_glob(tmp_path):
    _, events = example_base(tmp_path)
    write_project(
        tmp_path,
        "sources:\n  customers: {type: parquet, path: customers.parquet}\n"
        "  events: {type: parquet, path: 'event*.parquet'}\n",
    )
    base = read_base(load_project(tmp_path), installed(), dry_run=True)
    assert_frame_equal(base.events.cast(events.schema), events)  # held as categories
    assert base.__dict__["_event_rows"][2] is event_rows(base)


def test_the_parquet_source_takes_no_at_format(tmp_path):
    example_base(tmp_path)
    write_project(
        tmp_path,
        "sources:\n  customers: {type: parquet, path: customers.parquet}\n"
        "  events: {type: parquet, path: events.parquet, format: '%Y'}\n",
    )
    with pytest.raises(SourceError, match="no such setting"):
        read_base(load_project(tmp_path), installed(), dry_run=True)


def test_a_dry_run_creates_no_state_folder_for_the_index(tmp_path):
    example_base(tmp_path)
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "courtship.yaml").write_text(
        "customers: customers.parquet\nevents: events.parquet\nstate: state/state.sqlite\n"
    )
    project = load_project(tmp_path)
    base = read_base(project, installed(), dry_run=True)
    assert base.__dict__["_event_rows"][2] is event_rows(base)
    assert not (tmp_path / "state").exists()
    read_base(project, installed(), dry_run=False)
    assert (tmp_path / "state" / INDEX_FOLDER / "fingerprint.json").exists()


def text_project(folder: Path) -> None:
    """The example customers and events as the bundled project reads them (CSV, JSON Lines)."""
    import shutil

    shutil.copy(ROOT / "examples" / "customers.csv", folder / "customers.csv")
    shutil.copy(ROOT / "examples" / "events.jsonl", folder / "events.jsonl")
    write_project(folder, "customers: customers.csv\nevents: events.jsonl\n")


def test_text_files_are_parsed_once_per_change(tmp_path):
    import os

    text_project(tmp_path)
    project = load_project(tmp_path)
    first = read_base(project, installed(), dry_run=False)
    index = tmp_path / "state" / INDEX_FOLDER
    assert (index / "read.json").exists()
    # The same files (same sizes and modification times): the copy is read, not the files.
    customers = tmp_path / "customers.csv"
    status = customers.stat()
    text = customers.read_text()
    customers.write_text(text.replace("Ava", "Eva", 1))  # same size
    os.utime(customers, ns=(status.st_atime_ns, status.st_mtime_ns))
    kept = read_base(project, installed(), dry_run=False)
    assert_frame_equal(kept.customers, first.customers)
    assert_frame_equal(kept.events, first.events)
    assert kept.__dict__["_event_rows"][2] is event_rows(kept)
    # A file touched is parsed again: the edit is read.
    customers.touch()
    again = read_base(project, installed(), dry_run=False)
    assert again.customers["first_name"].to_list() != first.customers["first_name"].to_list()


def test_a_damaged_copy_of_the_parsed_base_is_parsed_again(tmp_path):
    text_project(tmp_path)
    project = load_project(tmp_path)
    first = read_base(project, installed(), dry_run=False)
    (tmp_path / "state" / INDEX_FOLDER / "read_events.parquet").write_text("not parquet")
    again = read_base(project, installed(), dry_run=False)
    assert_frame_equal(again.events, first.events)
    assert_frame_equal(again.customers, first.customers)


def test_a_text_file_with_an_error_after_a_kept_copy_names_its_line(tmp_path):
    text_project(tmp_path)
    project = load_project(tmp_path)
    read_base(project, installed(), dry_run=False)
    with (tmp_path / "events.jsonl").open("a") as out:
        out.write('{"customer_id": "c-0001", "type": "order", "at": "yesterday"}\n')
    lines = len((tmp_path / "events.jsonl").read_text().splitlines())
    with pytest.raises(SourceError) as raised:
        read_base(project, installed(), dry_run=False)
    assert f"events.jsonl:{lines}" in str(raised.value), str(raised.value)
