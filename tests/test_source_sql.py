"""The `sql` source: SQLite files in tmp_path and the PostgreSQL on 127.0.0.1:5432."""

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import courtship_sql
import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from courtship.plugins import Registry
from courtship.sources import CUSTOMER_SCHEMA, EVENT_SCHEMA, SourceError
from courtship.testing import SourceContract

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SINCE = datetime(2024, 5, 2, tzinfo=UTC)
PLUS_2 = timezone(timedelta(hours=2))

CUSTOMERS = [
    {
        "customer_id": "c-1",
        "first_name": "Ada",
        "birthday": date(1990, 1, 2),
        "tags": "vip; early",
        "consent_email": True,
        "cadence_days": 14,
        "stage": "active",
        "shoe_size": Decimal("38.5"),
    },
    {"customer_id": "c-2", "first_name": "Bo", "consent_email": False},
    {"customer_id": "c-3", "first_name": "Cy", "tags": "early", "cadence_days": 7},
]
EVENTS = [
    {"customer_id": "c-1", "type": "signup", "at": datetime(2024, 5, 1, 9, tzinfo=UTC)},
    {
        "customer_id": "c-1",
        "type": "order",
        "at": datetime(2024, 5, 1, 12, tzinfo=PLUS_2),
        "amount": Decimal("42.50"),
        "channel": "web",
    },
    {"customer_id": "c-2", "type": "visit", "at": SINCE, "channel": "app"},
    {
        "customer_id": "c-2",
        "type": "order",
        "at": SINCE + timedelta(seconds=1),
        "amount": Decimal("10"),
    },
    {
        "customer_id": "c-3",
        "type": "referral",
        "at": datetime(2024, 5, 3, 8, 30, tzinfo=UTC),
        "friend_id": "c-1",
    },
]


def customers_table(metadata, *, name="customers", id_column="customer_id", tags=sa.String):
    return sa.Table(
        name,
        metadata,
        sa.Column(id_column, sa.String),
        sa.Column("first_name", sa.String),
        sa.Column("birthday", sa.Date),
        sa.Column("tags", tags),
        sa.Column("consent_email", sa.Boolean),
        sa.Column("cadence_days", sa.Integer),
        sa.Column("stage", sa.String),
        sa.Column("shoe_size", sa.Numeric(4, 1)),
    )


def events_table(metadata, *, name="events", at_type=None, **renamed):
    def named(column):
        return renamed.get(column, column)

    return sa.Table(
        name,
        metadata,
        sa.Column(named("customer_id"), sa.String),
        sa.Column(named("type"), sa.String),
        sa.Column(named("at"), at_type or sa.DateTime(timezone=True)),
        sa.Column("channel", sa.String),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("friend_id", sa.String),
    )


def insert(engine, table, rows):
    columns = [column.name for column in table.columns]
    with engine.begin() as connection:
        connection.execute(
            table.insert(), [{name: row.get(name) for name in columns} for row in rows]
        )


def rename(rows, **renamed):
    return [{renamed.get(key, key): value for key, value in row.items()} for row in rows]


@pytest.fixture
def registry(courtship_plugin_manager):
    courtship_plugin_manager.register(courtship_sql, "courtship_sql")
    try:
        yield Registry(courtship_plugin_manager)
    finally:
        courtship_plugin_manager.unregister(courtship_sql)


@pytest.fixture
def make(registry, tmp_path):
    """``make(settings, role)``: the `sql` source the registry builds, rooted at tmp_path."""
    made = []

    def build(settings, role="events"):
        source = registry.sources()["sql"].create({"type": "sql", **settings}, role, tmp_path)
        made.append(source)
        return source

    yield build
    for source in made:
        source.close()


@pytest.fixture
def shop(tmp_path):
    """``tmp_path/shop.db`` with the tables customers and events; yields its engine."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    metadata = sa.MetaData()
    insert_into = [
        (customers_table(metadata), CUSTOMERS),
        (events_table(metadata), EVENTS),
    ]
    metadata.create_all(engine)
    for table, rows in insert_into:
        insert(engine, table, rows)
    yield engine
    engine.dispose()


def sqlite_table(engine, name, columns, rows):
    """A table of untyped (text) columns, holding ``rows`` exactly as written."""
    metadata = sa.MetaData()
    table = sa.Table(name, metadata, *(sa.Column(column, sa.Text) for column in columns))
    metadata.create_all(engine)
    if rows:
        insert(engine, table, [dict(zip(columns, row, strict=True)) for row in rows])
    return table


# -- the contract, on SQLite ---------------------------------------------------------------------


class TestSQLiteTable(SourceContract):
    @pytest.fixture
    def source_customers(self, shop, make):
        return make({"url": "sqlite:///shop.db", "table": "customers"}, "customers")

    @pytest.fixture
    def source_events(self, shop, make):
        return make({"url": "sqlite:///shop.db", "table": "events"}, "events")

    @pytest.fixture
    def since(self):
        return SINCE


class TestSQLiteQueryWithMapping(SourceContract):
    @pytest.fixture
    def database(self, tmp_path):
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
        metadata = sa.MetaData()
        clients = customers_table(metadata, name="clients", id_column="client")
        log = events_table(metadata, name="log", customer_id="client", type="kind", at="ts")
        metadata.create_all(engine)
        insert(engine, clients, rename(CUSTOMERS, customer_id="client"))
        insert(engine, log, rename(EVENTS, customer_id="client", type="kind", at="ts"))
        yield engine
        engine.dispose()

    @pytest.fixture
    def source_customers(self, database, make):
        settings = {
            "url": "sqlite:///crm.db",
            "query": "SELECT * FROM clients WHERE client LIKE 'c-%' ORDER BY client;",
            "columns": {"customer_id": "client"},
        }
        return make(settings, "customers")

    @pytest.fixture
    def source_events(self, database, make):
        settings = {
            "url": "sqlite:///crm.db",
            "query": "SELECT * FROM log ORDER BY ts",
            "columns": {"customer_id": "client", "type": "kind"},
            "at_column": "ts",
        }
        return make(settings, "events")

    @pytest.fixture
    def since(self):
        return SINCE


# -- reading -------------------------------------------------------------------------------------


def test_customers_are_typed_like_the_customer_file(shop, make):
    frame = make({"url": "sqlite:///shop.db", "table": "customers"}, "customers").read()
    assert frame.schema == pl.Schema({**CUSTOMER_SCHEMA, "shoe_size": pl.String()})
    first = frame.row(0, named=True)
    assert first["birthday"] == date(1990, 1, 2)
    assert first["tags"] == ["early", "vip"]
    assert (first["consent_email"], first["cadence_days"], first["shoe_size"]) == (True, 14, "38.5")
    assert frame.get_column("consent_email").to_list() == [True, False, None]


def test_events_are_typed_and_in_utc(shop, make):
    frame = make({"url": "sqlite:///shop.db", "table": "events"}).read()
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
    assert frame.get_column("at").to_list()[:2] == [
        datetime(2024, 5, 1, 9, tzinfo=UTC),
        # SQLAlchemy's SQLite DateTime stores the wall time of 12:00+02:00 and drops the offset.
        datetime(2024, 5, 1, 12, tzinfo=UTC),
    ]
    assert frame.get_column("amount").to_list() == [None, 42.5, None, 10.0, None]


def test_the_default_database_is_courtship_db_in_the_project(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    sqlite_table(
        engine, "events", ["customer_id", "type", "at"], [("c-1", "visit", "2024-05-01T00:00Z")]
    )
    engine.dispose()
    frame = make({"table": "events"}).read()
    assert frame.get_column("at").to_list() == [datetime(2024, 5, 1, tzinfo=UTC)]


def test_text_times_without_a_zone_are_utc(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    rows = [("c-1", "visit", "2024-05-01 10:00:00"), ("c-1", "visit", "2024-05-01T10:00:00+02:00")]
    sqlite_table(engine, "events", ["customer_id", "type", "at"], rows)
    engine.dispose()
    assert make({"table": "events"}).read().get_column("at").to_list() == [
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 8, tzinfo=UTC),
    ]


def test_an_empty_table_gives_the_contract_columns(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    sqlite_table(engine, "events", ["customer_id", "type", "at", "topic"], [])
    sqlite_table(engine, "customers", ["customer_id", "stage"], [])
    engine.dispose()
    events = make({"table": "events"}).read()
    assert events.columns == [*EVENT_SCHEMA, "topic"]
    assert events.height == 0
    customers = make({"table": "customers"}, "customers").read()
    assert customers.schema == pl.Schema(CUSTOMER_SCHEMA)


# -- since: WHERE at > :since in SQL -------------------------------------------------------------


def captured(source):
    """Every (statement, parameters) the source's engine sends."""
    sent = []
    sa.event.listen(
        source.engine(),
        "before_cursor_execute",
        lambda conn, cursor, statement, parameters, context, many: sent.append(
            (statement, parameters)
        ),
    )
    return sent


def test_since_is_a_bound_parameter_in_the_sql(shop, make):
    source = make({"url": "sqlite:///shop.db", "table": "events"})
    sent = captured(source)
    frame = source.read(SINCE)
    assert frame.get_column("at").to_list() == [
        SINCE + timedelta(seconds=1),
        datetime(2024, 5, 3, 8, 30, tzinfo=UTC),
    ]
    statement, parameters = sent[-1]
    assert "WHERE at > ?" in statement
    assert "2024" not in statement
    assert parameters == ("2024-05-01",)  # the day before: text compares safely from there


def test_since_filters_text_times_of_any_offset_exactly(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    rows = [
        ("c-1", "visit", "2024-05-01T23:59:59Z"),  # before
        ("c-1", "visit", "2024-05-02T00:00:00+00:00"),  # at since: already read
        ("c-1", "visit", "2024-05-01 22:00:00-05:00"),  # 03:00Z the next day: after
        ("c-1", "visit", "2024-05-02T01:00:00+02:00"),  # 23:00Z the day before: before
        ("c-1", "visit", "2024-05-02 00:00:01"),  # no zone: UTC, after
    ]
    sqlite_table(engine, "events", ["customer_id", "type", "at"], rows)
    engine.dispose()
    frame = make({"table": "events"}).read(SINCE)
    assert frame.get_column("at").to_list() == [
        datetime(2024, 5, 2, 3, tzinfo=UTC),
        SINCE + timedelta(seconds=1),
    ]


def test_a_query_is_wrapped_to_filter_on_at_column(shop, make):
    source = make({"url": "sqlite:///shop.db", "query": "SELECT * FROM events ORDER BY at DESC"})
    compiled = source.statement(SINCE).compile()
    assert str(compiled) == (
        "SELECT * \nFROM (SELECT * FROM events ORDER BY at DESC) AS source \n"
        "WHERE source.at > :since"
    )
    assert compiled.params == {"since": "2024-05-01"}
    assert source.read(SINCE).height == 2
    assert str(source.statement()) == "SELECT * FROM events ORDER BY at DESC"


def test_customers_ignore_since_and_send_no_where(shop, make):
    source = make({"url": "sqlite:///shop.db", "table": "customers"}, "customers")
    sent = captured(source)
    assert source.read(SINCE).height == 3
    assert "WHERE" not in sent[-1][0]


# -- column mapping ------------------------------------------------------------------------------


def test_columns_and_at_column_map_their_names_to_ours(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    metadata = sa.MetaData()
    table = events_table(metadata, customer_id="client_id", type="kind", at="created_at")
    metadata.create_all(engine)
    insert(engine, table, rename(EVENTS, customer_id="client_id", type="kind", at="created_at"))
    engine.dispose()
    source = make(
        {
            "table": "events",
            "columns": {"customer_id": "client_id", "type": "kind"},
            "at_column": "created_at",
        }
    )
    sent = captured(source)
    frame = source.read(SINCE)
    assert frame.columns == list(EVENT_SCHEMA)
    assert frame.get_column("customer_id").to_list() == ["c-2", "c-3"]
    assert "WHERE created_at > ?" in sent[-1][0]


# -- errors: the data ----------------------------------------------------------------------------


def test_a_missing_table_names_the_setting_and_lists_the_tables(shop, make):
    with pytest.raises(SourceError) as caught:
        make({"url": "sqlite:///shop.db", "table": "evnts"}).read()
    assert caught.value.field == "sources.events.table"
    assert str(caught.value).endswith(
        "sources.events.table: no table 'evnts' in the database; "
        "the tables there: customers, events"
    )


def test_a_missing_column_names_the_table_and_the_column(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    sqlite_table(engine, "events", ["customer_id", "kind", "at"], [])
    engine.dispose()
    with pytest.raises(SourceError) as caught:
        make({"table": "events"}).read()
    assert str(caught.value) == (
        "table events: type: no such column; the table has: customer_id, kind, at; "
        "name yours with columns: {type: <your column>}"
    )
    with pytest.raises(SourceError) as caught:
        make({"table": "events", "columns": {"type": "what"}}).read()
    assert str(caught.value) == (
        "table events: what: no such column (columns.type names it); "
        "the table has: customer_id, kind, at"
    )
    with pytest.raises(SourceError) as caught:
        make({"table": "events", "columns": {"type": "kind"}, "at_column": "ts"}).read(SINCE)
    assert str(caught.value) == (
        "table events: ts: no such column (at_column names it); "
        "the table has: customer_id, kind, at"
    )


def test_a_bad_value_names_the_table_column_and_row(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    rows = [("c-1", "visit", "2024-05-01T10:00Z"), ("c-2", "visit", "yesterday")]
    sqlite_table(engine, "log", ["client", "type", "created"], rows)
    engine.dispose()
    settings = {"table": "log", "columns": {"customer_id": "client"}, "at_column": "created"}
    with pytest.raises(SourceError) as caught:
        make(settings).read()
    assert str(caught.value) == (
        "table log: created (at): 'yesterday' is not a date and time (ISO 8601) "
        "(row 2, customer_id 'c-2'); store a timestamp, or text like 2026-11-20T10:15:00Z"
    )
    assert (caught.value.line, caught.value.field) == (None, "created (at)")


def test_a_bad_amount_names_the_row(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    rows = [
        ("c-1", "order", "2024-05-01T10:00Z", "12.5"),
        ("c-2", "order", "2024-05-01T00:00Z", "lots"),
    ]
    sqlite_table(engine, "events", ["customer_id", "type", "at", "amount"], rows)
    engine.dispose()
    with pytest.raises(SourceError) as caught:
        make({"table": "events"}).read()
    assert str(caught.value).startswith(
        "table events: amount: 'lots' is not a number (row 2, customer_id 'c-2'); "
    )


def test_bad_customers_name_the_table_column_and_row(tmp_path, make):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    rows = [("c-1", "active"), ("c-2", "vip"), ("c-1", "lapsed")]
    sqlite_table(engine, "customers", ["customer_id", "stage"], rows)
    engine.dispose()
    with pytest.raises(SourceError) as caught:
        make({"table": "customers"}, "customers").read()
    assert str(caught.value).startswith(
        "table customers: stage: 'vip' is not one of new, onboarding, "
    )
    assert "(row 2, customer_id 'c-2'); use one of the listed values" in str(caught.value)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'courtship.db'}")
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE customers SET stage = 'active'"))
    engine.dispose()
    with pytest.raises(SourceError) as caught:
        make({"table": "customers"}, "customers").read()
    assert str(caught.value) == (
        "table customers: customer_id: 'c-1' appears twice (first on row 1) (row 3); "
        "customer ids must be unique"
    )


def test_a_failing_query_says_so(shop, make):
    with pytest.raises(SourceError) as caught:
        make({"url": "sqlite:///shop.db", "query": "SELECT * FROM nope"}).read()
    assert str(caught.value) == (
        "events query: the query failed: no such table: nope; check sources.events.query"
    )


def test_a_query_without_the_at_column_names_it(shop, make):
    query = "SELECT customer_id, type, at AS happened FROM events"
    source = make({"url": "sqlite:///shop.db", "query": query})
    with pytest.raises(SourceError) as caught:
        source.read(SINCE)
    assert str(caught.value) == (
        "events query: at: no such column (at_column names it); "
        "the query returns: customer_id, type, happened"
    )
    with pytest.raises(SourceError) as caught:
        source.read()
    assert str(caught.value).startswith("events query: at: no such column; the query returns:")


def test_two_columns_of_one_name_are_refused(shop, make):
    query = "SELECT e.*, c.customer_id FROM events e JOIN customers c USING (customer_id)"
    with pytest.raises(SourceError) as caught:
        make({"url": "sqlite:///shop.db", "query": query}).read()
    assert str(caught.value) == (
        "events query: customer_id: two columns of the result have this name; "
        "give each column its own name (… AS other_name)"
    )


# -- errors: the settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"url": "not a url", "table": "t"}, "url", "is not a database URL: 'not a url'"),
        ({"url": "nosuchdb://h/db", "table": "t"}, "url", "SQLAlchemy knows no database"),
        ({"url": "sqlite:///missing.db", "table": "t"}, "url", "no such SQLite database"),
        ({"table": "t", "query": "SELECT 1"}, "table", "both table and query are set"),
        ({"url": "sqlite://"}, "table", "neither table nor query is set"),
        ({"query": "SELECT 1", "schema": "s"}, "schema", "schema goes with table"),
        ({"table": "t", "at_colum": "ts"}, "at_colum", "no such setting"),
        ({"table": "t", "url": "sqlite://", "url_env": "X"}, "url_env", "both url and url_env"),
        (
            {"url": "sqlite://", "table": "t", "at_column": "ts", "columns": {"at": "when"}},
            "at_column",
            "'ts' is not the column columns.at names ('when')",
        ),
    ],
)
def test_wrong_settings_name_the_setting(tmp_path, make, settings, field, message):
    with pytest.raises(SourceError) as caught:
        make(settings).read()
    assert caught.value.path == tmp_path / "courtship.yaml"
    assert caught.value.field == f"sources.events.{field}"
    assert message in caught.value.message


def test_customers_have_no_at_column(tmp_path, make):
    with pytest.raises(SourceError, match="did you mean 'columns'"):
        make({"url": "sqlite://", "table": "t", "at_column": "ts"}, "customers")


def test_a_password_in_the_project_file_is_refused_and_not_repeated(make):
    with pytest.raises(SourceError) as caught:
        make({"url": "postgresql+psycopg://shop:hunter2@db/shop", "table": "events"})
    assert caught.value.field == "sources.events.url"
    assert "url_env" in caught.value.hint
    assert "hunter2" not in str(caught.value)


def test_url_env_names_a_variable_that_is_not_set(monkeypatch, make):
    monkeypatch.delenv("SHOP_DB_URL", raising=False)
    with pytest.raises(SourceError) as caught:
        make({"url_env": "SHOP_DB_URL", "table": "events"})
    assert caught.value.field == "sources.events.url_env"
    assert str(caught.value).endswith(
        "sources.events.url_env: the environment variable SHOP_DB_URL is not set; "
        "export SHOP_DB_URL=… before running; secrets never go in courtship.yaml"
    )


def test_url_env_reads_the_url_from_the_environment(monkeypatch, shop, tmp_path, make):
    monkeypatch.setenv("SHOP_DB_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    source = make({"url_env": "SHOP_DB_URL", "table": "events"})
    assert source.read().height == len(EVENTS)
    assert repr(source) == "SQLSource(role='events', url='$SHOP_DB_URL (sqlite)', table='events')"


def test_an_unreachable_database_hides_the_password(monkeypatch, make):
    pytest.importorskip("psycopg")
    monkeypatch.setenv("SHOP_DB_URL", "postgresql+psycopg://shop:hunter2@127.0.0.1:1/shop")
    source = make({"url_env": "SHOP_DB_URL", "table": "events"})
    with pytest.raises(SourceError) as caught:
        source.read()
    text = str(caught.value)
    assert text.startswith(
        f"{source._config.file}: sources.events.url_env: cannot connect to "
        "$SHOP_DB_URL (postgresql): "
    )
    assert "hunter2" not in text
    assert "hunter2" not in repr(source)


def test_an_unreadable_url_in_the_environment_is_not_repeated(monkeypatch, make):
    monkeypatch.setenv("SHOP_DB_URL", "::secret-token::")
    with pytest.raises(SourceError) as caught:
        make({"url_env": "SHOP_DB_URL", "table": "events"})
    assert caught.value.field == "sources.events.url_env"
    assert "secret-token" not in str(caught.value)


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    """An engine on the test database, or a skip saying why there is none."""
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
    except Exception as error:  # the driver is missing, or the server does not answer
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432: {reason}")
    yield engine
    engine.dispose()


@pytest.fixture
def schema(postgres):
    """A schema of its own for each test, dropped afterwards."""
    name = f"courtship_test_{uuid.uuid4().hex[:12]}"
    with postgres.begin() as connection:
        connection.execute(sa.schema.CreateSchema(name))
    try:
        yield name
    finally:
        with postgres.begin() as connection:
            connection.execute(sa.schema.DropSchema(name, cascade=True))


@pytest.fixture
def pg_shop(postgres, schema, monkeypatch):
    """customers (tags a text[]) and events (at a timestamptz) in ``schema``; $SHOP_DB_URL."""
    metadata = sa.MetaData(schema=schema)
    customers = customers_table(metadata, tags=postgresql.ARRAY(sa.String))
    events = events_table(metadata)
    metadata.create_all(postgres)
    as_arrays = [
        {**row, "tags": [tag.strip() for tag in row["tags"].split(";")]} if "tags" in row else row
        for row in CUSTOMERS
    ]
    insert(postgres, customers, as_arrays)
    insert(postgres, events, EVENTS)
    monkeypatch.setenv("SHOP_DB_URL", PG_URL)
    return schema


class TestPostgresTable(SourceContract):
    @pytest.fixture
    def source_customers(self, pg_shop, make):
        return make(
            {"url_env": "SHOP_DB_URL", "schema": pg_shop, "table": "customers"}, "customers"
        )

    @pytest.fixture
    def source_events(self, pg_shop, make):
        return make({"url_env": "SHOP_DB_URL", "schema": pg_shop, "table": "events"})

    @pytest.fixture
    def since(self):
        return SINCE


def test_postgres_native_types_read_as_the_contract_says(pg_shop, make):
    settings = {"url_env": "SHOP_DB_URL", "schema": pg_shop}
    customers = make({**settings, "table": "customers"}, "customers").read()
    assert customers.schema == pl.Schema({**CUSTOMER_SCHEMA, "shoe_size": pl.String()})
    assert customers.get_column("tags").to_list() == [["early", "vip"], None, ["early"]]
    assert customers.get_column("birthday").to_list() == [date(1990, 1, 2), None, None]
    events = make({**settings, "table": "events"}).read()
    assert events.schema == pl.Schema(EVENT_SCHEMA)
    assert events.get_column("at").to_list()[1] == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert events.get_column("amount").to_list()[:2] == [None, 42.5]


def test_postgres_since_is_bound_as_a_timestamp(pg_shop, make):
    source = make({"url_env": "SHOP_DB_URL", "schema": pg_shop, "table": "events"})
    sent = captured(source)
    assert source.read(SINCE).get_column("customer_id").to_list() == ["c-2", "c-3"]
    statement, parameters = sent[-1]
    assert f"FROM {pg_shop}.events \nWHERE at > %(since)s" in statement
    assert parameters == {"since": SINCE}


def test_postgres_query_with_timestamps_without_a_zone(postgres, schema, monkeypatch, make):
    with postgres.begin() as connection:
        connection.execute(
            sa.text(f"CREATE TABLE {schema}.log (who text, what text, ts timestamp, extra jsonb)")
        )
        connection.execute(
            sa.text(
                f"INSERT INTO {schema}.log VALUES "
                "('c-1', 'visit', '2024-05-01 23:00', '{\"a\": 1}'), "
                "('c-1', 'order', '2024-05-02 01:00', NULL)"
            )
        )
    monkeypatch.setenv("SHOP_DB_URL", PG_URL)
    source = make(
        {
            "url_env": "SHOP_DB_URL",
            "query": f"SELECT who, what AS type, ts, extra FROM {schema}.log",
            "columns": {"customer_id": "who"},
            "at_column": "ts",
        }
    )
    everything = source.read()
    assert everything.get_column("at").to_list() == [
        datetime(2024, 5, 1, 23, tzinfo=UTC),
        datetime(2024, 5, 2, 1, tzinfo=UTC),
    ]
    assert everything.get_column("extra").to_list() == ['{"a": 1}', None]
    assert source.read(SINCE).get_column("type").to_list() == ["order"]


def test_postgres_text_times_are_compared_safely(postgres, schema, monkeypatch, make):
    with postgres.begin() as connection:
        connection.execute(
            sa.text(f"CREATE TABLE {schema}.events (customer_id text, type text, at text)")
        )
        connection.execute(
            sa.text(
                f"INSERT INTO {schema}.events VALUES ('c-1', 'visit', '2024-05-01T22:00:00-05:00'),"
                " ('c-1', 'visit', '2024-05-01T23:00:00Z')"
            )
        )
    monkeypatch.setenv("SHOP_DB_URL", PG_URL)
    source = make({"url_env": "SHOP_DB_URL", "schema": schema, "table": "events"})
    assert source.read(SINCE).get_column("at").to_list() == [datetime(2024, 5, 2, 3, tzinfo=UTC)]


def test_postgres_missing_table_and_bad_value(postgres, schema, monkeypatch, make):
    with postgres.begin() as connection:
        connection.execute(
            sa.text(f"CREATE TABLE {schema}.events (customer_id text, type text, at text)")
        )
        connection.execute(
            sa.text(f"INSERT INTO {schema}.events VALUES ('c-9', 'visit', 'last tuesday')")
        )
    monkeypatch.setenv("SHOP_DB_URL", PG_URL)
    with pytest.raises(SourceError) as caught:
        make({"url_env": "SHOP_DB_URL", "schema": schema, "table": "evnts"}).read()
    assert str(caught.value).endswith(
        f"sources.events.table: no table 'evnts' in the database (schema {schema}); "
        "the tables there: events"
    )
    with pytest.raises(SourceError) as caught:
        make({"url_env": "SHOP_DB_URL", "schema": schema, "table": "events"}).read()
    assert str(caught.value) == (
        f"table {schema}.events: at: 'last tuesday' is not a date and time (ISO 8601) "
        "(row 1, customer_id 'c-9'); store a timestamp, or text like 2026-11-20T10:15:00Z"
    )


def test_postgres_query_on_a_text_at_column_with_since(postgres, schema, monkeypatch, make):
    with postgres.begin() as connection:
        connection.execute(
            sa.text(f"CREATE TABLE {schema}.events (customer_id text, type text, at text)")
        )
    monkeypatch.setenv("SHOP_DB_URL", PG_URL)
    source = make({"url_env": "SHOP_DB_URL", "query": f"SELECT * FROM {schema}.events"})
    with pytest.raises(SourceError) as caught:
        source.read(SINCE)
    assert str(caught.value).startswith("events query: at: cannot be compared with a time: ")
    assert caught.value.hint == "at_column must be a timestamp column, or ISO 8601 text"
