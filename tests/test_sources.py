"""Reading the customer file and the event file: shapes, types, and every way input is refused."""

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from courtship.sources import (
    CUSTOMER_SCHEMA,
    EVENT_SCHEMA,
    CustomerBase,
    SourceError,
    empty_events,
    read_customers_csv,
    read_events_csv,
    read_events_jsonl,
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(reader, path: Path) -> SourceError:
    with pytest.raises(SourceError) as caught:
        reader(path)
    return caught.value


# ── customers: what a good file becomes ──────────────────────────────────


def test_customers_have_the_contract_columns_types_and_order(tmp_path):
    path = write(
        tmp_path,
        "customers.csv",
        "\ufeffcustomer_id, first_name ,birthday,tags,consent_email,consent_sms,cadence_days,team\n"
        "c-1,  Maya ,1992-02-29, vip ; yoga;;vip,YES,0,14,blue\n"
        "c-2,,,,,,,\n"
        "\n"
        "c-3,Ben,1900-05-01,,False,no, 7 ,\n",
    )
    customers = read_customers_csv(path)
    assert customers.columns == [*CUSTOMER_SCHEMA, "team"]
    assert dict(customers.schema) == {**CUSTOMER_SCHEMA, "team": pl.String()}
    assert customers.height == 3  # the blank line is not a customer
    maya, empty, ben = customers.iter_rows(named=True)
    assert maya["first_name"] == "Maya"
    assert maya["birthday"] == date(1992, 2, 29)
    assert maya["tags"] == ["vip", "yoga"]
    assert (maya["consent_email"], maya["consent_sms"], maya["consent_instagram"]) == (
        True,
        False,
        None,
    )
    assert maya["cadence_days"] == 14
    assert maya["team"] == "blue"
    assert all(value is None for key, value in empty.items() if key != "customer_id")
    assert (ben["consent_email"], ben["consent_sms"], ben["cadence_days"]) == (False, False, 7)
    assert ben["timezone"] is None and ben["stage"] is None


def test_a_multi_line_cell_keeps_line_numbers_right(tmp_path):
    path = write(
        tmp_path,
        "customers.csv",
        'customer_id,city,birthday\nc-1,"Leeds\nWest Yorkshire",1990-01-01\nc-2,York,1990-02-30\n',
    )
    error = refused(read_customers_csv, path)
    assert str(error).startswith(f"{path}:4: birthday: '1990-02-30' is not a date")


# ── customers: every refusal names the file, the line and the field ──────


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("first_name\nMaya\n", 1, "customer_id", "the required column is missing"),
        ("customer_id,email,email\nc-1,a,b\n", 1, "email", "the column appears twice"),
        ("customer_id,,city\nc-1,a,b\n", 1, "column 2", "the column has no name"),
        ("", 1, None, "the file is empty"),
        ("customer_id\nc-1\nc-2\nc-1\n", 4, "customer_id", "'c-1' appears twice (first on line 2)"),
        ("customer_id,city\nc-1,Leeds\n,York\n", 3, "customer_id", "the cell is empty"),
        (
            "customer_id,birthday\nc-1,1990-01-01\nc-2,1990-13-01\n",
            3,
            "birthday",
            "'1990-13-01' is not a date (YYYY-MM-DD)",
        ),
        ("customer_id,signup_date\nc-1,17/05/2024\n", 2, "signup_date", "'17/05/2024' is not"),
        ("customer_id,consent_sms\nc-1,maybe\n", 2, "consent_sms", "'maybe' is not true or false"),
        ("customer_id,cadence_days\nc-1,2.5\n", 2, "cadence_days", "'2.5' is not a whole number"),
        ("customer_id,cadence_days\nc-1,-3\n", 2, "cadence_days", "'-3' is not a whole number"),
        ("customer_id,stage\nc-1,Active\n", 2, "stage", "'Active' is not one of new, onboarding"),
        ("customer_id,tone\nc-1,rude\n", 2, "tone", "'rude' is not one of buddy, salesy, direct"),
        (
            "customer_id,preferred_channel\nc-1,fax\n",
            2,
            "preferred_channel",
            "'fax' is not one of email, sms, instagram",
        ),
        (
            "customer_id,timezone\nc-1,Europe/London\nc-2,Mars/Olympus\n",
            3,
            "timezone",
            "'Mars/Olympus' is not a known IANA time zone",
        ),
    ],
)
def test_customer_file_refusals(tmp_path, text, line, field, message):
    path = write(tmp_path, "customers.csv", text)
    error = refused(read_customers_csv, path)
    assert (error.path, error.line, error.field) == (path, line, field)
    assert message in error.message
    place = f"{path}:{line}: {field}: " if field else f"{path}:{line}: "
    assert str(error).startswith(place + error.message)
    assert error.hint and str(error).endswith("; " + error.hint)


def test_the_exact_message_of_a_bad_date(tmp_path):
    path = write(tmp_path, "customers.csv", "customer_id,birthday\nc-1,1990-13-01\n")
    assert str(refused(read_customers_csv, path)) == (
        f"{path}:2: birthday: '1990-13-01' is not a date (YYYY-MM-DD); fix or empty the cell"
    )


def test_the_earliest_line_is_reported_first(tmp_path):
    path = write(
        tmp_path,
        "customers.csv",
        "customer_id,timezone,birthday\nc-1,UTC,1990-01-01\nc-2,UTC,1990-00-01\nc-3,Nowhere,\n",
    )
    error = refused(read_customers_csv, path)
    assert (error.line, error.field) == (3, "birthday")


def test_a_line_with_too_many_cells(tmp_path):
    path = write(tmp_path, "customers.csv", "customer_id,city\nc-1,Leeds\nc-2,York,UK\n")
    error = refused(read_customers_csv, path)
    assert (error.line, error.field) == (3, None)
    assert str(error).startswith(f"{path}:3: the line has 3 cells but the header 2")


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(b"customer_id,city\nc-1,Leeds\nc-2,K\xf6ln\n")
    error = refused(read_customers_csv, path)
    assert (error.path, error.line) == (path, 3)
    assert "not UTF-8" in str(error)


def test_a_missing_file(tmp_path):
    for reader in (read_customers_csv, read_events_jsonl, read_events_csv):
        error = refused(reader, tmp_path / "nope.csv")
        assert str(error).startswith(f"{tmp_path / 'nope.csv'}: no such file")


# ── events: what a good file becomes ─────────────────────────────────────


def test_events_jsonl_shape_types_and_extra_fields(tmp_path):
    path = write(
        tmp_path,
        "events.jsonl",
        '{"customer_id": "c-1", "type": "order", "at": "2026-11-20T10:15:00Z", "amount": 12.5,'
        ' "channel": "web", "sku": "A1"}\n'
        "\n"
        '{"customer_id": 7, "type": "visit", "at": "2026-11-20 10:15:00+01:00", "score": 3}\n'
        '{"customer_id": "c-2", "type": "order", "at": "2026-11-20T10:15:00.5-05:30",'
        ' "amount": "20"}\n'
        '{"customer_id": "c-2", "type": "referral", "at": "2026-11-20T10:15+13:00",'
        ' "friend_id": "c-3", "channel": ""}\n',
    )
    events = read_events_jsonl(path)
    assert events.columns == [*EVENT_SCHEMA, "sku", "score"]
    assert {name: events.schema[name] for name in EVENT_SCHEMA} == EVENT_SCHEMA
    assert events.get_column("customer_id").to_list() == ["c-1", "7", "c-2", "c-2"]
    assert events.get_column("at").to_list() == [
        datetime(2026, 11, 20, 10, 15, tzinfo=UTC),
        datetime(2026, 11, 20, 9, 15, tzinfo=UTC),
        datetime(2026, 11, 20, 15, 45, 0, 500_000, tzinfo=UTC),
        datetime(2026, 11, 19, 21, 15, tzinfo=UTC),
    ]
    assert events.get_column("amount").to_list() == [12.5, None, 20.0, None]
    assert events.get_column("channel").to_list() == ["web", None, None, None]
    assert events.get_column("friend_id").to_list() == [None, None, None, "c-3"]
    assert events.get_column("sku").to_list() == ["A1", None, None, None]
    assert events.get_column("score").to_list() == [None, 3, None, None]


def test_a_field_of_mixed_types_is_kept_as_text(tmp_path):
    path = write(
        tmp_path,
        "events.jsonl",
        '{"customer_id": "c-1", "type": "open", "at": "2026-11-20T10:15:00Z", "x": 1}\n'
        '{"customer_id": "c-1", "type": "open", "at": "2026-11-20T10:15:00Z", "x": {"a": 1}}\n',
    )
    assert read_events_jsonl(path).get_column("x").to_list() == ["1", '{"a": 1}']


def test_empty_event_files(tmp_path):
    assert read_events_jsonl(write(tmp_path, "a.jsonl", "")).schema == empty_events().schema
    assert read_events_jsonl(write(tmp_path, "b.jsonl", "\n\n")).schema == empty_events().schema
    assert dict(empty_events().schema) == EVENT_SCHEMA


def test_events_csv(tmp_path):
    path = write(
        tmp_path,
        "events.csv",
        "customer_id,type,at,amount,note\n"
        "c-1,order,2026-11-20T10:15:00Z,3,hi\n"
        "c-2,visit,2026-11-20T10:15:00+02:00,,\n",
    )
    events = read_events_csv(path)
    assert events.columns == [*EVENT_SCHEMA, "note"]
    assert events.get_column("amount").to_list() == [3.0, None]
    assert events.get_column("at").to_list()[1] == datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
    assert events.get_column("note").to_list() == ["hi", None]


def test_customer_base_reads_both_files(tmp_path):
    customers = write(tmp_path, "customers.csv", "customer_id\nc-1\n")
    events = write(tmp_path, "events.csv", "customer_id,type,at\nc-1,visit,2026-01-01T00:00Z\n")
    base = CustomerBase.read(customers, events)
    assert (base.customers.height, base.events.height) == (1, 1)
    assert CustomerBase.read(customers).events.height == 0


# ── events: every refusal names the file, the line and the field ─────────

GOOD = '{"customer_id": "c-1", "type": "visit", "at": "2026-11-20T10:15:00Z"}\n'


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        ('{"customer_id": "c-1", "type": "visit"', None, "the line is not valid JSON"),
        ('["c-1", "visit"]', None, "the line is a JSON list, not an object"),
        ('{"type": "visit", "at": "2026-11-20T10:15:00Z"}', "customer_id", "has no value"),
        ('{"customer_id": " ", "type": "visit", "at": "2026-11-20T10:15:00Z"}', "customer_id", ""),
        ('{"customer_id": "c-1", "at": "2026-11-20T10:15:00Z"}', "type", "has no value"),
        ('{"customer_id": "c-1", "type": "visit", "at": null}', "at", "has no value"),
        (
            '{"customer_id": "c-1", "type": "visit", "at": "2026-11-20T10:15:00"}',
            "at",
            "'2026-11-20T10:15:00' has no time zone",
        ),
        (
            '{"customer_id": "c-1", "type": "visit", "at": "20 Nov 2026"}',
            "at",
            "'20 Nov 2026' is not a date and time (ISO 8601)",
        ),
        (
            '{"customer_id": "c-1", "type": "visit", "at": "2026-02-30T10:15:00Z"}',
            "at",
            "is not a date and time",
        ),
        (
            '{"customer_id": "c-1", "type": "order", "at": "2026-11-20T10:15Z", "amount": "12,5"}',
            "amount",
            "'12,5' is not a number",
        ),
    ],
)
def test_event_file_refusals(tmp_path, bad, field, message):
    path = write(tmp_path, "events.jsonl", GOOD + "\n" + bad + "\n" + GOOD)
    error = refused(read_events_jsonl, path)
    assert (error.path, error.line, error.field) == (path, 3, field)
    assert message in error.message
    place = f"{path}:3: {field}: " if field else f"{path}:3: "
    assert str(error).startswith(place)


def test_a_time_that_is_a_number_is_refused(tmp_path):
    path = write(tmp_path, "events.jsonl", '{"customer_id": "c-1", "type": "visit", "at": 17}\n')
    error = refused(read_events_jsonl, path)
    assert (error.line, error.field) == (1, "at")
    assert "17 is not a date and time" in str(error)


def test_a_field_no_event_has(tmp_path):
    path = write(tmp_path, "events.jsonl", '{"customer_id": "c-1", "type": "visit"}\n')
    error = refused(read_events_jsonl, path)
    assert (error.line, error.field) == (1, "at")


def test_event_csv_refusals(tmp_path):
    missing = write(tmp_path, "a.csv", "customer_id,at\nc-1,2026-11-20T10:15:00Z\n")
    error = refused(read_events_csv, missing)
    assert (error.line, error.field, error.message) == (1, "type", "the required column is missing")
    bad_time = write(
        tmp_path, "b.csv", "customer_id,type,at\nc-1,visit,2026-11-20T10:15Z\nc-1,visit,soon\n"
    )
    error = refused(read_events_csv, bad_time)
    assert str(error).startswith(f"{bad_time}:3: at: 'soon' is not a date and time")
