"""The file sources `csv` and `jsonl`: the contract, column mapping, `since`, errors."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import courtship_files
import polars as pl
import pytest
from courtship_files import CSVSource, JSONLinesSource

import courtship
from courtship.plugins import PluginError, Registry, get_plugin_manager
from courtship.sources import (
    CUSTOMER_SCHEMA,
    EVENT_SCHEMA,
    SourceError,
    apply_column_mapping,
    read_customers_csv,
    read_events_csv,
    read_events_jsonl,
)
from courtship.testing import SourceContract

ROOT = Path(__file__).resolve().parents[1]
SINCE = datetime(2024, 5, 2, tzinfo=UTC)

CUSTOMERS_CSV = """\
customer_id,first_name,birthday,tags,consent_email,cadence_days,shoe_size
c-1,Ada,1990-01-02,vip; early,yes,14,38
c-2,Bo,,,no,,
c-3,Cy,1985-12-31,early,1,7,44
"""
EVENTS = [
    {"customer_id": "c-1", "type": "signup", "at": "2024-05-01T09:00:00Z"},
    {"customer_id": "c-1", "type": "order", "at": "2024-05-01T12:00:00+02:00", "amount": 42.5},
    {"customer_id": "c-2", "type": "visit", "at": "2024-05-02T00:00:00Z", "channel": "web"},
    {"customer_id": "c-2", "type": "order", "at": "2024-05-02T00:00:01Z", "amount": 10},
    {"customer_id": "c-3", "type": "referral", "at": "2024-05-03T08:30:00Z", "friend_id": "c-1"},
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def write_events_csv(path, records, names=("customer_id", "type", "at", "amount")):
    lines = [",".join(names)]
    for record in records:
        lines.append(",".join(str(record.get(name, "")) for name in names))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def registry(courtship_plugin_manager):
    """The files plugin registered on a fresh plugin manager, as core would load it."""
    courtship_plugin_manager.register(courtship_files, "courtship_files")
    try:
        yield Registry(courtship_plugin_manager)
    finally:
        courtship_plugin_manager.unregister(courtship_files)


@pytest.fixture
def make(registry, tmp_path):
    """``make(settings, role)``: the source the registry builds, rooted at ``tmp_path``."""

    def build(settings, role="events"):
        return registry.sources()[settings["type"]].create(settings, role, tmp_path)

    return build


# -- the contract --------------------------------------------------------------------------------


class TestCSVSource(SourceContract):
    @pytest.fixture
    def source_customers(self, tmp_path, make):
        (tmp_path / "customers.csv").write_text(CUSTOMERS_CSV)
        return make({"type": "csv", "path": "customers.csv"}, "customers")

    @pytest.fixture
    def source_events(self, tmp_path, make):
        write_events_csv(tmp_path / "events.csv", EVENTS)
        return make({"type": "csv", "path": "events.csv"}, "events")

    @pytest.fixture
    def since(self):
        return SINCE


class TestJSONLinesSource(SourceContract):
    @pytest.fixture
    def source_customers(self, tmp_path, make):
        rows = [
            {"id": "c-1", "first_name": "Ada", "tags": ["vip", "early"], "consent_email": True},
            {"id": "c-2", "cadence_days": 14, "birthday": "1990-01-02"},
        ]
        write_jsonl(tmp_path / "customers.jsonl", rows)
        settings = {"type": "jsonl", "path": "customers.jsonl", "columns": {"customer_id": "id"}}
        return make(settings, "customers")

    @pytest.fixture
    def source_events(self, tmp_path, make):
        write_jsonl(tmp_path / "events.jsonl", EVENTS)
        return make({"type": "jsonl", "path": "events.jsonl"}, "events")

    @pytest.fixture
    def since(self):
        return SINCE


class TestMappedCSVSource(SourceContract):
    """Another company's export: its own column names and its own way of writing times."""

    @pytest.fixture
    def source_customers(self, tmp_path, make):
        (tmp_path / "crm.csv").write_text("Client,Given name\nk1,Ada\nk2,Bo\n")
        columns = {"customer_id": "Client", "first_name": "Given name"}
        return make({"type": "csv", "path": "crm.csv", "columns": columns}, "customers")

    @pytest.fixture
    def source_events(self, tmp_path, make):
        (tmp_path / "log.csv").write_text(
            "Client,What,When\nk1,order,01/05/2024 09:00 +0000\nk1,visit,03/05/2024 10:00 +0200\n"
        )
        settings = {
            "type": "csv",
            "path": "log.csv",
            "columns": {"customer_id": "Client", "type": "What", "at": "When"},
            "format": "%d/%m/%Y %H:%M %z",
        }
        return make(settings, "events")

    @pytest.fixture
    def since(self):
        return SINCE


# -- the same frames as the core readers ---------------------------------------------------------


def test_the_bundled_examples_read_as_the_core_readers_read_them(registry):
    sources = registry.sources()
    customers = sources["csv"].create({"path": "examples/customers.csv"}, "customers", ROOT)
    events = sources["jsonl"].create({"path": "examples/events.jsonl"}, "events", ROOT)
    assert customers.read().equals(read_customers_csv(ROOT / "examples/customers.csv"))
    assert events.read().equals(read_events_jsonl(ROOT / "examples/events.jsonl"))


def test_csv_events_read_as_the_core_reader_reads_them(tmp_path):
    path = write_events_csv(tmp_path / "events.csv", EVENTS)
    source = CSVSource({"path": "events.csv"}, "events", tmp_path)
    assert source.read().equals(read_events_csv(path))


def test_customers_from_json_lines_are_typed_like_the_csv(tmp_path):
    rows = [
        {"customer_id": "c-1", "tags": ["b", "a", "a"], "consent_sms": "yes", "cadence_days": 7.0},
        {"customer_id": 2, "birthday": "2000-02-29", "consent_sms": False, "note": {"x": 1}},
    ]
    write_jsonl(tmp_path / "c.jsonl", rows)
    frame = JSONLinesSource({"path": "c.jsonl"}, "customers", tmp_path).read()
    assert frame.schema == pl.Schema({**CUSTOMER_SCHEMA, "note": pl.String()})
    assert frame.get_column("customer_id").to_list() == ["c-1", "2"]
    assert frame.get_column("tags").to_list() == [["a", "b"], None]
    assert frame.get_column("consent_sms").to_list() == [True, False]
    assert frame.get_column("cadence_days").to_list() == [7, None]
    assert frame.get_column("note").to_list() == [None, '{"x": 1}']


# -- column mapping ------------------------------------------------------------------------------


def test_mapped_columns_take_our_names_and_others_stay(tmp_path):
    (tmp_path / "c.csv").write_text("Client,stage,Nick\nk1,active,Adi\n")
    settings = {"path": "c.csv", "columns": {"customer_id": "Client", "first_name": "Nick"}}
    frame = CSVSource(settings, "customers", tmp_path).read()
    assert frame.columns == list(CUSTOMER_SCHEMA)
    row = {name: value for name, value in frame.row(0, named=True).items() if value is not None}
    assert row == {"customer_id": "k1", "first_name": "Adi", "stage": "active"}


def test_a_bad_value_in_a_mapped_column_is_called_by_both_names(tmp_path):
    (tmp_path / "c.csv").write_text("Client,Level\nk1,active\nk2,gold\n")
    settings = {"path": "c.csv", "columns": {"customer_id": "Client", "stage": "Level"}}
    with pytest.raises(SourceError) as caught:
        CSVSource(settings, "customers", tmp_path).read()
    assert (caught.value.line, caught.value.field) == (3, "Level (stage)")
    assert str(caught.value).startswith(f"{tmp_path / 'c.csv'}:3: Level (stage): 'gold' is not")


def test_a_mapped_column_that_is_missing_is_named_with_its_setting(tmp_path):
    (tmp_path / "e.jsonl").write_text('{"client": "k1", "type": "visit", "at": "2024-05-01Z"}\n')
    settings = {"path": "e.jsonl", "columns": {"customer_id": "client_id"}}
    with pytest.raises(SourceError) as caught:
        JSONLinesSource(settings, "events", tmp_path).read()
    assert str(caught.value) == (
        f"{tmp_path / 'e.jsonl'}: client_id: no such column (columns.customer_id names it); "
        "the columns are: client, type, at"
    )


def test_a_csv_header_missing_the_mapped_column_is_line_1(tmp_path):
    (tmp_path / "c.csv").write_text("id,first_name\nk1,Ada\n")
    with pytest.raises(SourceError) as caught:
        CSVSource(
            {"path": "c.csv", "columns": {"customer_id": "Client"}}, "customers", tmp_path
        ).read()
    assert (caught.value.line, caught.value.field) == (1, "Client")


def test_a_column_already_called_like_a_mapped_name_is_refused(tmp_path):
    frame = pl.DataFrame({"customer_id": ["x"], "client": ["k1"]})
    with pytest.raises(SourceError, match=r"columns\.customer_id names 'client'"):
        apply_column_mapping(frame, {"customer_id": "client"}, where="crm.csv", line=1)


def test_one_column_may_feed_two_and_names_may_swap():
    frame = pl.DataFrame({"a": [1], "b": [2], "c": [3]})
    mapped = apply_column_mapping(frame, {"b": "a", "a": "b", "x": "c", "y": "c"})
    assert mapped.to_dicts() == [{"b": 1, "a": 2, "x": 3, "y": 3}]


# -- since ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_read_since_keeps_only_later_events(tmp_path, kind):
    if kind == "csv":
        write_events_csv(tmp_path / "events.csv", EVENTS)
    else:
        write_jsonl(tmp_path / "events.jsonl", EVENTS)
    source = {"csv": CSVSource, "jsonl": JSONLinesSource}[kind](
        {"path": f"events.{kind}"}, "events", tmp_path
    )
    at = lambda frame: frame.get_column("at").to_list()  # noqa: E731
    assert len(at(source.read())) == 5
    assert at(source.read(SINCE)) == [
        datetime(2024, 5, 2, 0, 0, 1, tzinfo=UTC),
        datetime(2024, 5, 3, 8, 30, tzinfo=UTC),
    ]
    # An event at the very instant of `since` was already read.
    assert at(source.read(SINCE - timedelta(microseconds=1)))[0] == SINCE
    # Zones are compared as instants.
    paris = SINCE.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert source.read(paris).equals(source.read(SINCE))
    assert source.read(datetime(2030, 1, 1, tzinfo=UTC)).schema == source.read().schema


def test_since_without_a_zone_is_refused(tmp_path):
    write_jsonl(tmp_path / "events.jsonl", EVENTS)
    with pytest.raises(ValueError, match="time zone"):
        JSONLinesSource({"path": "events.jsonl"}, "events", tmp_path).read(datetime(2024, 5, 2))


# -- the `format` of `at` ------------------------------------------------------------------------


def test_at_format_that_does_not_match_names_the_line(tmp_path):
    (tmp_path / "e.csv").write_text(
        "customer_id,type,at\nc-1,visit,01/05/2024 09:00 +0000\nc-1,visit,2024-05-01T09:00Z\n"
    )
    settings = {"path": "e.csv", "format": "%d/%m/%Y %H:%M %z"}
    with pytest.raises(SourceError) as caught:
        CSVSource(settings, "events", tmp_path).read()
    assert str(caught.value) == (
        f"{tmp_path / 'e.csv'}:3: at: '2024-05-01T09:00Z' does not match the format "
        "%d/%m/%Y %H:%M %z; fix the time"
    )


def test_an_at_format_without_a_zone_is_a_settings_error(tmp_path):
    with pytest.raises(SourceError) as caught:
        CSVSource({"path": "e.csv", "format": "%d/%m/%Y %H:%M"}, "events", tmp_path)
    assert caught.value.path == tmp_path / "courtship.yaml"
    assert caught.value.field == "sources.events.format"
    assert "has no time zone" in caught.value.message


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "role", "field", "message"),
    [
        ({}, "events", "sources.events.path", "the setting is missing"),
        ({"path": ""}, "events", "sources.events.path", "'' is not a non-empty text"),
        ({"path": "c.csv", "pth": "x"}, "customers", "sources.customers.pth", "no such setting"),
        ({"path": "c.csv", "format": "%z"}, "customers", "sources.customers.format", "no such"),
        ({"path": "c.csv", "columns": ["a"]}, "events", "sources.events.columns", "must map"),
        ({"path": "c.csv", "columns": {"at": 3}}, "events", "sources.events.columns.at", "not a"),
        ({"path": "c.csv"}, "orders", "sources.orders", "is not something a source reads"),
    ],
)
def test_wrong_settings_name_the_setting(tmp_path, settings, role, field, message):
    with pytest.raises(SourceError) as caught:
        CSVSource(settings, role, tmp_path)
    assert caught.value.path == tmp_path / "courtship.yaml"
    assert caught.value.field == field
    assert message in caught.value.message


def test_a_misspelt_setting_gets_a_suggestion(tmp_path):
    with pytest.raises(SourceError, match="did you mean 'columns'"):
        CSVSource({"path": "c.csv", "colums": {}}, "customers", tmp_path)


def test_the_path_is_relative_to_the_project_root(tmp_path):
    source = CSVSource({"type": "csv", "path": "data/c.csv"}, "customers", tmp_path)
    with pytest.raises(SourceError) as caught:
        source.read()
    assert caught.value.path == tmp_path / "data" / "c.csv"
    assert str(caught.value).endswith("no such file; check the path")


# -- registration --------------------------------------------------------------------------------


def test_the_entry_points_register_every_source_type(monkeypatch):
    monkeypatch.delenv("COURTSHIP_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("COURTSHIP_DISABLE_PLUGINS", raising=False)
    sources = Registry(get_plugin_manager()).sources()
    assert {name: spec.plugin for name, spec in sources.items()}.items() >= {
        "csv": "courtship_files",
        "jsonl": "courtship_files",
        "sql": "courtship_sql",
    }.items()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in ("courtship_files", "courtship_sql"):
        assert f'{name} = "{name}"' in pyproject
        assert f'"plugins/{name}"' in pyproject


def test_a_source_type_registered_twice_names_both_plugins(registry, courtship_plugin_manager):
    class Rival:
        @courtship.hookimpl
        def register_sources(self, register):
            register("csv", CSVSource)

    courtship_plugin_manager.register(Rival(), "acme_csv")
    with pytest.raises(PluginError) as caught:
        registry.sources()
    message = str(caught.value)
    assert message.startswith("source 'csv' is registered by both plugin")
    assert "'courtship_files'" in message
    assert "'acme_csv'" in message


def test_the_events_frame_has_the_contract_columns_first(tmp_path):
    write_jsonl(tmp_path / "e.jsonl", [{**EVENTS[0], "topic": "shoes"}])
    frame = JSONLinesSource({"path": "e.jsonl"}, "events", tmp_path).read()
    assert frame.columns == [*EVENT_SCHEMA, "topic"]
