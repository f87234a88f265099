"""The readers' one-pass path (a file without a problem) gives exactly what the careful,
field-by-field path gives; a file with a problem is still reported at its line."""

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from courtship import sources
from courtship.sources import SourceError, read_customers_csv, read_events_csv, read_events_jsonl

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
    monkeypatch.setattr(sources, "_events_at_speed", lambda raw, blank_rows=False: None)


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
