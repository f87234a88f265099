"""The readers' one-pass path (a file without a problem) gives exactly what the careful,
field-by-field path gives; a file with a problem is still reported at its line."""

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from courtship import sources
from courtship.catalogue import FactSpec
from courtship.sources import (
    SourceError,
    read_customers_csv,
    read_customers_file,
    read_events_csv,
    read_events_file,
    read_events_jsonl,
)

ROOT = Path(__file__).resolve().parents[1]

EVENTS_CSV = """\
customer_id,type,at,channel,amount,friend_id,note
 c-1 ,order,2026-11-20T10:15:00Z,web, 42.5,,  first
c-2,visit,2026-11-20T10:15:00.123456+01:00,, ,,

c-3,referral,2026-11-21T08:00:00z,,,c-9,
"""

EVENTS_JSONL = """\
{"customer_id": 7, "type": "order", "at": "2026-11-20T10:15:00Z", "amount": 3}
{"customer_id": " c-2 ", "type": "visit", "at": "2026-11-20T10:15:00+02:00", "extra": "  x "}

{"customer_id": "c-3", "type": "open", "at": "2026-11-21T08:00:00.5Z", "amount": null}
"""


def careful(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame goes the field-by-field way."""
    monkeypatch.setattr(sources, "_events_at_speed", lambda raw, **_: None)
    monkeypatch.setattr(sources, "_events_csv_at_speed", lambda *_: None)
    monkeypatch.setattr(sources, "_customers_csv_at_speed", lambda *_: None)
    monkeypatch.setattr(sources, "_customers_parquet_at_speed", lambda *_: None)
    monkeypatch.setattr(sources, "_events_parquet_at_speed", lambda *_: None)


@pytest.mark.parametrize(
    ("name", "text", "reader"),
    [
        ("events.csv", EVENTS_CSV, read_events_csv),
        ("events.jsonl", EVENTS_JSONL, read_events_jsonl),
    ],
)
def test_the_one_pass_events_are_the_careful_ones(tmp_path, monkeypatch, name, text, reader):
    path = tmp_path / name
    path.write_text(text)
    fast = reader(path)
    assert fast.height == 3
    careful(monkeypatch)
    assert_frame_equal(fast, reader(path))


def test_the_spaces_the_readers_look_for_are_every_character_python_says_is_one():
    spaces = tuple(chr(code) for code in range(0x110000) if chr(code).isspace())
    assert spaces == sources._SPACES


def test_the_example_files_read_the_same_both_ways(monkeypatch):
    events = read_events_jsonl(ROOT / "examples" / "events.jsonl")
    customers = read_customers_csv(ROOT / "examples" / "customers.csv")
    careful(monkeypatch)
    assert_frame_equal(events, read_events_jsonl(ROOT / "examples" / "events.jsonl"))
    assert customers.height > 0


def test_a_space_for_the_t_is_read_off_the_fast_path(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("customer_id,type,at\nc-1,order,2026-11-20 10:15Z\n")
    assert read_events_csv(path)["at"].dt.hour().to_list() == [10]


def test_a_problem_after_many_good_lines_is_named_at_its_line(tmp_path):
    path = tmp_path / "events.csv"
    good = "c-1,order,2026-11-20T10:15:00Z,1\n" * 5000
    path.write_text("customer_id,type,at,amount\n" + good + "c-2,order,2026-11-20T10:15:00Z,x\n")
    with pytest.raises(SourceError) as caught:
        read_events_csv(path)
    assert (caught.value.line, caught.value.field) == (5002, "amount")


def test_a_customer_problem_after_many_good_lines_is_named_at_its_line(tmp_path):
    path = tmp_path / "customers.csv"
    good = "".join(f"c-{n},2000-01-01\n" for n in range(3000))
    path.write_text("customer_id,birthday\n" + good + "c-x,2000-02-30\n")
    with pytest.raises(SourceError) as caught:
        read_customers_csv(path)
    assert (caught.value.line, caught.value.field) == (3002, "birthday")


# ── the streaming CSV readers ─────────────────────────────────────────────


@pytest.mark.parametrize(
    "at",
    [
        "2026-11-20T10:15:00.123456Z",
        "2026-11-20T10:15:00Z",
        "2026-11-20T10:15:00.123Z",
        "2026-11-20T10:15:00.123456789Z",
        "2026-11-20T10:15:00+01:00",  # no fixed shape: the general format, still in one pass
    ],
)
def test_a_clean_event_file_is_read_in_one_pass_as_the_careful_way_reads_it(
    tmp_path, monkeypatch, at
):
    path = tmp_path / "events.csv"
    lines = [f"c-{n},order,{at},web,{n}.5,,x{n}" for n in range(50)]
    path.write_text("customer_id,type,at,channel,amount,friend_id,note\n" + "\n".join(lines))
    fast = sources._events_csv_at_speed(path)
    assert fast is not None and fast.height == 50
    careful(monkeypatch)
    assert_frame_equal(fast, read_events_csv(path))


@pytest.mark.parametrize(
    "at",
    [
        "2026-11-20T10:15:00Z",  # another shape than the first events': read the careful way
        "+026-11-20T10:15:00.123456Z",
        "2026-11-20T10:15:60.123456Z",
        "2026-11-20t10:15:00.123456Z",
        "2026-11-20T10:15:00.123456z",
        "2026-11-20 10:15:00.123456Z",
        " 2026-11-20T10:15:00.123456Z",
    ],
)
def test_an_at_of_another_shape_after_the_first_events_reads_as_the_careful_way(
    tmp_path, monkeypatch, at
):
    path = tmp_path / "events.csv"
    good = "c-1,order,2026-11-20T10:15:00.000001Z\n" * 1500
    path.write_text(f"customer_id,type,at\n{good}c-2,order,{at}\n")
    fast = read_events_csv(path)
    careful(monkeypatch)
    assert_frame_equal(fast, read_events_csv(path))


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("0000-11-20T10:15:00.123456Z", "is a moment no calendar holds"),
        ("-026-11-20T10:15:00.123456Z", "is a moment no calendar holds"),
        ("2026-02-30T10:15:00.123456Z", "is not a date and time"),
        ("2026-11-20T10:15:00.123456", "has no time zone"),
    ],
)
def test_an_at_the_fast_parse_refuses_is_named_at_its_line_with_a_hint(tmp_path, at, message):
    path = tmp_path / "events.csv"
    good = "c-1,order,2026-11-20T10:15:00.000001Z\n" * 1500
    path.write_text(f"customer_id,type,at\n{good}c-2,order,{at}\n")
    with pytest.raises(SourceError) as caught:
        read_events_csv(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (path, 1502, "at")
    assert message in error.message and error.hint


def test_only_the_events_after_since_are_read_in_one_pass(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "customer_id,type,at\nc-1,order,2026-11-20T10:15:00Z\nc-2,order,2026-11-22T10:15:00Z\n"
    )
    since = datetime(2026, 11, 21, tzinfo=UTC)
    assert read_events_file(path, format="csv", since=since)["customer_id"].to_list() == ["c-2"]
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,type,at\nc-1,order,2026-11-20T10:15:00Z\nc-2,,2026-11-22T10:15Z\n")
    with pytest.raises(SourceError) as caught:  # an event before since is checked all the same
        read_events_file(bad, format="csv", since=since)
    assert (caught.value.line, caught.value.field) == (3, "type")


CUSTOMERS_CSV = """\
customer_id,first_name,city,birthday,tags,consent_email,consent_sms,cadence_days,timezone,note
c-1,Ann,New York,2001-09-18,yoga;coffee;yoga,TRUE,no,7,Europe/London,x
c-2,Bo,Paris,,vip,Yes,False,,Asia/Tokyo,
c-3,Cy,Los Angeles,1999-12-31,a;b;c,1,0,14,,y
c-4,Di,Rome,1980-01-01,,true,false,0,America/New_York,
"""


def test_a_clean_customer_file_is_read_in_one_pass_as_the_careful_way_reads_it(
    tmp_path, monkeypatch
):
    path = tmp_path / "customers.csv"
    path.write_text(CUSTOMERS_CSV)
    fast = sources._customers_csv_at_speed(path, {}, None)
    assert fast is not None
    assert fast["tags"].to_list() == [["coffee", "yoga"], ["vip"], ["a", "b", "c"], None]
    careful(monkeypatch)
    assert_frame_equal(fast, read_customers_csv(path))


@pytest.mark.parametrize(
    "cell",
    [
        "c;b;a;d;e;f;g;h;i;j",  # more tags than are compared one by one: sorted
        "yoga; coffee",  # a tag to trim
        "yoga;;coffee",  # an empty tag
        ";yoga",
        '""',  # an empty cell
        "  ",
    ],
)
def test_tags_the_one_pass_does_not_read_plainly_are_read_the_careful_way(
    tmp_path, monkeypatch, cell
):
    path = tmp_path / "customers.csv"
    path.write_text(f"customer_id,tags\nc-1,{cell}\nc-2,b;a\n")
    fast = read_customers_csv(path)
    careful(monkeypatch)
    assert_frame_equal(fast, read_customers_csv(path))


@pytest.mark.parametrize(
    "cell",
    [
        "Ann\u00a0",
        "\tAnn",
        "Ann ",
        " Ann",
        "Ann\u3000",
        '""',
        "An\u2003n",
        "\u2028Ann",
        "Ann\x85",
        "\u1680Ann\u202f",
        "Ann\x0b",
        "Zoé",  # a last byte beyond ASCII that is no space: looked at closely, kept
        "Émile",
    ],
)
def test_a_name_with_space_at_an_end_is_trimmed_as_the_careful_way_trims_it(
    tmp_path, monkeypatch, cell
):
    path = tmp_path / "customers.csv"
    path.write_text(f"customer_id,first_name\nc-1,{cell}\nc-2,Bo Lee\n", encoding="utf-8")
    fast = read_customers_csv(path)
    careful(monkeypatch)
    assert_frame_equal(fast, read_customers_csv(path))


@pytest.mark.parametrize(
    ("cell", "column", "message"),
    [
        ("tRuE", "consent_email", None),  # a case the one pass does not take: read carefully
        ("maybe", "consent_email", "is not true or false"),
        ("-3", "cadence_days", "is not a whole number of days"),
        ("0000-01-01", "birthday", "is a date no calendar holds"),
        ("2001-02-30", "birthday", "is not a date"),
        ("Mars/Olympus", "timezone", "is not a known IANA time zone"),
        ("gold", "stage", "is not one of"),
    ],
)
def test_a_customer_cell_the_one_pass_refuses_is_named_at_its_line(
    tmp_path, monkeypatch, cell, column, message
):
    path = tmp_path / "customers.csv"
    good = "".join(f"c-{n},\n" for n in range(2000))
    path.write_text(f"customer_id,{column}\n{good}c-x,{cell}\n")
    if message is None:
        fast = read_customers_csv(path)
        careful(monkeypatch)
        assert_frame_equal(fast, read_customers_csv(path))
        return
    with pytest.raises(SourceError) as caught:
        read_customers_csv(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (path, 2002, column)
    assert message in error.message and error.hint


@pytest.mark.parametrize(
    ("ids", "line"), [(["c-1", "c-2", "c-2", "c-3"], 4), (["c-3", "c-1", "c-2", "c-1"], 5)]
)
def test_a_repeated_id_is_refused_whether_the_ids_are_in_order_or_not(tmp_path, ids, line):
    path = tmp_path / "customers.csv"
    path.write_text("customer_id\n" + "\n".join(ids) + "\n")
    with pytest.raises(SourceError) as caught:
        read_customers_csv(path)
    assert (caught.value.line, caught.value.field) == (line, "customer_id")
    assert "appears twice" in caught.value.message


def test_a_repeated_id_far_down_is_named_at_its_line_and_the_first(tmp_path):
    path = tmp_path / "customers.csv"
    good = "".join(f"c-{n}\n" for n in range(2000))
    path.write_text(f"customer_id\n{good}c-7\n")
    with pytest.raises(SourceError) as caught:
        read_customers_csv(path)
    error = caught.value
    assert (error.line, error.field) == (2002, "customer_id")
    assert "first on line 9" in error.message


def typed_customers() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": ["c-1", "c-2", "c-3", "c-4"],
            "instagram_id": [17841408122196587, None, 3, 4],
            "birthday": [date(2001, 9, 18), None, date(1999, 12, 31), date(1980, 1, 1)],
            "tags": [["yoga", "coffee", "yoga"], ["vip"], None, []],
            "cadence_days": [7, None, 0, 14],
            "consent_email": [True, False, None, True],
            "note": ["x", None, "y", "z"],
        }
    )


def test_a_clean_typed_parquet_file_is_read_in_one_pass_as_the_careful_way_reads_it(
    tmp_path, monkeypatch
):
    path = tmp_path / "customers.parquet"
    typed_customers().write_parquet(path)
    fast = sources._customers_parquet_at_speed(path, [path], {}, None)
    assert fast is not None
    assert fast["tags"].to_list() == [["coffee", "yoga"], ["vip"], None, []]
    careful(monkeypatch)
    assert_frame_equal(fast, read_customers_file(path, format="parquet"))


@pytest.mark.parametrize(
    "tags",
    [[" yoga", "coffee"], ["yoga", None], ["", "a"], ["b;a"], ["b", "a", "b"], [""]],
)
def test_parquet_tags_the_one_pass_does_not_read_plainly_are_read_the_careful_way(
    tmp_path, monkeypatch, tags
):
    path = tmp_path / "customers.parquet"
    typed_customers().with_columns(pl.Series("tags", [tags, ["vip"], None, []])).write_parquet(path)
    fast = read_customers_file(path, format="parquet")
    careful(monkeypatch)
    assert_frame_equal(fast, read_customers_file(path, format="parquet"))


def test_a_parquet_customer_problem_is_named_by_its_row_and_id(tmp_path):
    path = tmp_path / "customers.parquet"
    typed_customers().with_columns(pl.Series("cadence_days", [7, None, -1, 14])).write_parquet(path)
    with pytest.raises(SourceError) as caught:
        read_customers_file(path, format="parquet")
    error = caught.value
    assert (error.path, error.field) == (path, "cadence_days")
    assert "row 3, customer_id 'c-3'" in error.message and error.hint


def typed_events() -> pl.DataFrame:
    at = [datetime(2026, 11, 20, 10, n, tzinfo=UTC) for n in range(4)]
    return pl.DataFrame(
        {
            "customer_id": ["c-1", "c-2", "c-3", "c-4"],
            "type": ["order", "visit", "order", "open"],
            "at": pl.Series(at).dt.convert_time_zone("Europe/Paris"),
            "amount": [1, None, 3, 4],
            "channel": [7, None, 8, 9],  # numbers as text, as the careful way writes them
            "note": ["x", None, "y", "z"],
        }
    )


def test_clean_parquet_events_are_read_in_one_pass_as_the_careful_way_reads_them(
    tmp_path, monkeypatch
):
    folder = tmp_path / "events"
    folder.mkdir()
    typed_events().head(2).write_parquet(folder / "part-0.parquet")
    typed_events().tail(2).write_parquet(folder / "part-1.parquet")
    since = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    fast = sources._events_parquet_at_speed(sources.parquet_files(folder), {}, since)
    assert fast is not None and fast["customer_id"].to_list() == ["c-2", "c-3", "c-4"]
    careful(monkeypatch)
    assert_frame_equal(fast, read_events_file(folder, format="parquet", since=since))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("type", "", "the event has no value"),  # empty: no value (text is taken as written)
        ("customer_id", None, "the event has no value"),
    ],
)
def test_a_parquet_event_problem_is_named_by_its_file_row_and_id(tmp_path, column, value, message):
    folder = tmp_path / "events"
    folder.mkdir()
    typed_events().head(2).write_parquet(folder / "part-0.parquet")
    bad = (
        typed_events()
        .tail(2)
        .with_columns(
            pl.when(pl.col("customer_id") == "c-4")
            .then(pl.lit(value))
            .otherwise(pl.col(column))
            .alias(column)
        )
    )
    bad.write_parquet(folder / "part-1.parquet")
    with pytest.raises(SourceError) as caught:
        read_events_file(folder, format="parquet")
    error = caught.value
    assert (error.path, error.field) == (folder / "part-1.parquet", column)
    assert message in error.message and "row 2" in error.message and error.hint


DECLARED = {
    "points": FactSpec("points", "integer", source="loyalty"),
    "vip": FactSpec("vip", "boolean", source="loyalty"),
    "crm_since": FactSpec("crm_since", "date", source="crm"),
    "segment": FactSpec("segment", "string", source="crm"),
    "level": FactSpec("level", "enum", values=("gold", "silver"), source="crm"),
    "hobbies": FactSpec("hobbies", "list", source="crm"),
}
DECLARED_CSV = """\
customer_id,points,vip,crm_since,segment,level,hobbies
c-1,12,yes,2026-01-02,north,gold,b;a
c-2,,,,,,
c-3,1200.0,no,2026-01-03,south,silver,c
"""


@pytest.mark.parametrize(
    ("text", "at_speed"),
    [
        (DECLARED_CSV, True),
        (DECLARED_CSV.replace("north", "  north "), False),
        (DECLARED_CSV.replace("b;a", "b; a"), True),  # a declared list's tags are trimmed
        (DECLARED_CSV.replace(",c\n", ',""\n'), False),
    ],
)
def test_declared_facts_are_read_in_one_pass_as_the_careful_way_reads_them(
    tmp_path, monkeypatch, text, at_speed
):
    path = tmp_path / "customers.csv"
    path.write_text(text)
    assert (sources._customers_csv_at_speed(path, {}, DECLARED) is not None) is at_speed
    fast = read_customers_csv(path, facts=DECLARED)
    careful(monkeypatch)
    assert_frame_equal(fast, read_customers_csv(path, facts=DECLARED))


def test_a_declared_fact_the_one_pass_refuses_is_named_at_its_line(tmp_path):
    path = tmp_path / "customers.csv"
    good = "".join(f"c-{n},{n}\n" for n in range(2000))
    path.write_text(f"customer_id,points\n{good}c-x,many\n")
    with pytest.raises(SourceError) as caught:
        read_customers_csv(path, facts=DECLARED)
    error = caught.value
    assert (error.line, error.field) == (2002, "points")
    assert "declared by plugin loyalty" in error.message and error.hint
