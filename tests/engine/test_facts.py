"""The facts engine on a tiny, hand-checked customer base."""

from datetime import UTC, date, datetime, time
from typing import Any

import polars as pl
import pytest

from courtship.catalogue import builtin_catalogue
from courtship.engine.facts import FACT_DTYPES, compute_facts, facts_schema
from courtship.sources import EVENT_SCHEMA, CustomerBase, empty_events

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def events(*rows: tuple[Any, ...]) -> pl.DataFrame:
    """(customer_id, type, at, channel, amount, friend_id) rows as an event table."""
    full = [(*row, *([None] * (6 - len(row))), None, None) for row in rows]
    return pl.DataFrame(
        [(c, kind, at(when), *rest) for c, kind, when, *rest in full],
        schema=EVENT_SCHEMA,
        orient="row",
    )


def customers(**columns: list[Any]) -> pl.DataFrame:
    return pl.DataFrame(columns)


def by_id(facts: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["customer_id"]: row for row in facts.iter_rows(named=True)}


# c1 Maya, London: four orders (one more after now), a conversation with a reply in between,
#   two sends, referrals to c2 (twice) and c3; her birthday is today.
# c2 Ben, Auckland (already 24 November there): one order, a signup event, referred c1 back;
#   born 29 February.
# c3 Cleo, Los Angeles: no orders, one unanswered call, birth year unknown; lapsed.
# c4 Dan, default zone: three orders, a conversation answered, referred someone outside the base.
# c5, UTC: two orders, a referral after now (ignored); no first name.
# c6 Fay: nothing at all.
BASE = CustomerBase(
    customers(
        customer_id=["c1", "c2", "c3", "c4", "c5", "c6"],
        first_name=["Maya", "Ben", "Cleo", "Dan", None, "Fay"],
        timezone=["Europe/London", "Pacific/Auckland", "America/Los_Angeles", None, "UTC", None],
        persona=["yogi", "yogi", "runner", "runner", "yogi", None],
        birthday=[date(1990, 11, 23), date(1992, 2, 29), date(1900, 12, 25), None, None, None],
        signup_date=[date(2024, 5, 17), None, None, None, None, None],
        stage=["active", "at-risk", "lapsed", "loyal", "new", None],
        tags=[["vip", "yoga"], None, None, None, None, None],
        cadence_days=[14, None, None, None, None, None],
    ),
    events(
        ("c1", "order", "2026-07-16T15:00:00Z", "web", 40.0),
        ("c1", "order", "2026-08-26T15:00:00Z", "web", 60.0),
        ("c1", "order", "2026-09-24T15:00:00Z", "app", 50.0),
        ("c1", "order", "2026-10-24T15:00:00Z", "app", 50.0),
        ("c1", "order", "2026-11-24T10:00:00Z", "app", 999.0),  # after now
        ("c1", "visit", "2026-11-21T15:00:00Z", "web"),
        ("c1", "inbound_message", "2026-11-20T10:00:00Z", "email"),
        ("c1", "reply", "2026-11-21T09:00:00Z", "email"),
        ("c1", "inbound_message", "2026-11-22T15:00:00Z", "instagram"),
        ("c1", "inbound_message", "2026-11-23T03:00:00Z", "sms"),
        ("c1", "inbound_message", "2026-11-23T16:00:00Z", "web"),  # after now
        ("c1", "sent", "2026-11-14T15:00:00Z", "email"),
        ("c1", "sent", "2026-10-01T15:00:00Z", "email"),
        ("c1", "referral", "2026-11-22T15:00:00Z", None, None, "c2"),
        ("c1", "referral", "2026-06-01T15:00:00Z", None, None, "c3"),
        ("c1", "referral", "2026-03-01T15:00:00Z", None, None, "c2"),
        ("c1", "open", "2026-11-22T15:00:00Z", "email"),
        ("c2", "order", "2026-11-20T12:00:00Z", "web", 30.0),
        ("c2", "referral", "2026-05-01T15:00:00Z", None, None, "c1"),
        ("c2", "signup", "2026-01-10T20:00:00Z"),
        ("c3", "inbound_message", "2026-11-23T13:00:00Z", "phone"),
        ("c4", "order", "2026-11-01T15:00:00Z", "store", 10.0),
        ("c4", "order", "2026-11-11T15:00:00Z", "store", 10.0),
        ("c4", "order", "2026-11-13T15:00:00Z", "store", 10.0),
        ("c4", "inbound_message", "2026-11-20T10:00:00Z", "web"),
        ("c4", "reply", "2026-11-20T12:00:00Z", "web"),
        ("c4", "referral", "2026-11-13T15:00:00Z", None, None, "x-99"),
        ("c5", "order", "2026-11-03T15:00:00Z", "web", 5.0),
        ("c5", "order", "2026-11-13T15:00:00Z", "web", 5.0),
        ("c5", "referral", "2026-12-01T15:00:00Z", None, None, "c6"),  # after now
        ("zz", "order", "2026-11-13T15:00:00Z", "web", 5.0),  # not a customer
    ),
)
SENDS = pl.DataFrame(
    {
        "customer_id": ["c1", "c1", "c3"],
        "at": [at("2026-11-20T15:00:00Z"), at("2026-11-23T16:00:00Z"), at("2026-10-01T15:00:00Z")],
        "channel": ["sms", "sms", "email"],
        "playbook": ["win-back", "win-back", "welcome"],
        "category": ["marketing"] * 3,
    },
    schema_overrides={"at": pl.Datetime("us", "UTC")},
)


@pytest.fixture(scope="module")
def facts() -> pl.DataFrame:
    return compute_facts(BASE, NOW, sends=SENDS)


@pytest.fixture(scope="module")
def row(facts) -> dict[str, dict[str, Any]]:
    return by_id(facts)


def test_one_row_per_customer_in_order_with_every_fact_typed(facts):
    assert facts.get_column("customer_id").to_list() == ["c1", "c2", "c3", "c4", "c5", "c6"]
    catalogue = builtin_catalogue().facts
    assert list(facts.columns) == [*catalogue, "local_date", "local_time", "utc_offset_minutes"]
    assert dict(facts.schema) == facts_schema()
    for name, spec in catalogue.items():
        assert facts.schema[name] == FACT_DTYPES[spec.type], name
    assert facts.schema["local_time"] == pl.Time()
    assert facts.schema["utc_offset_minutes"] == pl.Int32()


def test_profile_facts_come_from_the_customer_file(row):
    assert row["c1"]["first_name"] == "Maya"
    assert row["c1"]["tags"] == ["vip", "yoga"]
    assert row["c1"]["cadence_days"] == 14
    assert row["c5"]["first_name"] is None
    assert row["c4"]["timezone"] == "UTC"  # the default fills an empty time zone


def test_local_calendar_and_clock(row):
    assert (row["c1"]["local_date"], row["c1"]["local_time"]) == (date(2026, 11, 23), time(15))
    assert row["c1"]["utc_offset_minutes"] == 0
    assert (row["c2"]["local_date"], row["c2"]["local_time"]) == (date(2026, 11, 24), time(4))
    assert row["c2"]["utc_offset_minutes"] == 780
    assert (row["c3"]["local_date"], row["c3"]["local_time"]) == (date(2026, 11, 23), time(7))
    assert row["c3"]["utc_offset_minutes"] == -480


def test_orders(row):
    maya = row["c1"]
    assert maya["orders_count"] == 4  # the order after now does not count
    assert maya["total_spent"] == 200.0
    assert maya["average_order_value"] == 50.0
    assert maya["first_order_date"] == date(2026, 7, 16)
    assert maya["last_order_date"] == date(2026, 10, 24)
    assert maya["days_since_last_order"] == 30.0
    assert maya["orders_last_90d"] == 3
    assert maya["days_since_last_visit"] == 2.0
    assert maya["days_since_signup"] == 920.0


def test_a_customer_with_no_orders(row):
    cleo = row["c3"]
    assert (cleo["orders_count"], cleo["orders_last_90d"], cleo["total_spent"]) == (0, 0, 0.0)
    for fact in (
        "average_order_value",
        "first_order_date",
        "last_order_date",
        "days_since_last_order",
        "usual_order_interval",
        "lapse_ratio",
        "persona_lapse_ratio",
        "days_since_last_visit",
        "days_since_signup",
        "customer_years",
        "signup_date",
    ):
        assert cleo[fact] is None, fact


def test_one_order_has_no_interval_and_dates_are_local(row):
    ben = row["c2"]
    assert ben["orders_count"] == 1
    assert ben["usual_order_interval"] is None and ben["lapse_ratio"] is None
    # 2026-11-20 12:00 UTC is 21 November, 01:00, in Auckland.
    assert ben["first_order_date"] == ben["last_order_date"] == date(2026, 11, 21)
    assert ben["days_since_last_order"] == 3.125


def test_rhythm_and_persona_medians(row):
    # Maya's gaps: 41, 29, 30 days → 30. Dan's: 10, 2 → 6. c5's: 10.
    assert row["c1"]["usual_order_interval"] == 30.0
    assert row["c1"]["lapse_ratio"] == 1.0
    assert row["c4"]["usual_order_interval"] == 6.0
    assert row["c4"]["lapse_ratio"] == pytest.approx(10 / 6)
    assert row["c5"]["usual_order_interval"] == 10.0
    # yogi: median of 30 (Maya) and 10 (c5); Ben has no interval and does not count.
    for customer in ("c1", "c2", "c5"):
        assert row[customer]["persona_order_interval"] == 20.0
    assert row["c1"]["persona_lapse_ratio"] == 1.5
    assert row["c2"]["persona_lapse_ratio"] == 3.125 / 20
    assert row["c5"]["persona_lapse_ratio"] == 0.5
    # runner: Dan alone (Cleo has no orders).
    assert row["c3"]["persona_order_interval"] == row["c4"]["persona_order_interval"] == 6.0
    assert row["c6"]["persona_order_interval"] is None


def test_rhythm_over_purchase_days(row):
    # Maya ordered on 16 July, 26 August, 24 September and 24 October (London): 100 days over
    # three gaps. c5: 3 and 13 November. Dan: 1, 11 and 13 November. Ben: one day.
    maya = row["c1"]
    assert maya["purchase_days_count"] == 4
    assert maya["mean_order_interval"] == pytest.approx(100 / 3)
    assert maya["mean_lapse_ratio"] == pytest.approx(30 / (100 / 3))
    assert maya["days_since_first_order"] == 130.0
    assert row["c4"]["mean_order_interval"] == 6.0 and row["c5"]["mean_order_interval"] == 10.0
    assert row["c2"]["purchase_days_count"] == 1 and row["c2"]["mean_order_interval"] is None
    assert row["c2"]["days_since_first_order"] == 3.125
    assert row["c3"]["purchase_days_count"] == 0
    for fact in ("mean_order_interval", "mean_lapse_ratio", "days_since_first_order"):
        assert row["c3"][fact] is None, fact
    # yogi: median of 100/3 (Maya) and 10 (c5); runner: Dan alone.
    for customer in ("c1", "c2", "c5"):
        assert row[customer]["persona_mean_order_interval"] == pytest.approx((100 / 3 + 10) / 2)
    assert row["c1"]["persona_mean_lapse_ratio"] == pytest.approx(30 / ((100 / 3 + 10) / 2))
    assert row["c4"]["persona_mean_order_interval"] == 6.0
    assert row["c6"]["persona_mean_order_interval"] is None
    assert row["c6"]["persona_mean_lapse_ratio"] is None


def test_the_lapse_rule_reads_purchase_days_not_orders():
    """ "At least 3 purchases, silent for more than 3x their usual interval": four orders around
    New Year's midnight and one on 1 February and on 1 March make a usual (median) interval of
    one hour, but four purchase days 20 days apart on average."""
    lapsed = CustomerBase(
        customers(customer_id=["k"], timezone=["Pacific/Auckland"]),
        events(
            # 31 December 22:00 and 23:00, 1 January 00:00 and 00:30 in Auckland: two local days
            ("k", "order", "2026-12-31T09:00:00Z", "web", 10.0),
            ("k", "order", "2026-12-31T10:00:00Z", "web", 10.0),
            ("k", "order", "2026-12-31T11:00:00Z", "web", 10.0),
            ("k", "order", "2026-12-31T11:30:00Z", "web", 10.0),
            ("k", "order", "2027-02-01T09:00:00Z", "web", 10.0),
            ("k", "order", "2027-03-01T09:00:00Z", "web", 10.0),
        ),
    )
    k = compute_facts(lapsed, at("2027-09-27T09:00:00Z")).row(0, named=True)
    assert k["orders_count"] == 6 and k["purchase_days_count"] == 4
    assert k["usual_order_interval"] == pytest.approx(1 / 24)  # gaps 1h, 1h, 30m, 31d, 28d
    # 31 December to 1 March (local) is 60 days, over three gaps.
    assert k["mean_order_interval"] == 20.0
    assert k["days_since_last_order"] == 210.0
    assert k["mean_lapse_ratio"] == 10.5
    assert k["days_since_first_order"] == 270.0


def test_too_few_customers_to_learn_from_leave_the_learned_facts_null(row):
    # Four customers with an order: too few to fit the four parameters of BG/NBD.
    for customer in row:
        assert row[customer]["p_alive"] is None and row[customer]["expected_orders_90d"] is None


def test_learned_facts_are_left_out_when_not_asked():
    facts = compute_facts(BASE, NOW, learning=None)
    assert "p_alive" not in facts.columns and "expected_orders_90d" not in facts.columns
    assert "mean_lapse_ratio" in facts.columns


def test_dates(row):
    maya, ben, cleo = row["c1"], row["c2"], row["c3"]
    assert (maya["age"], maya["days_until_birthday"], maya["is_birthday_today"]) == (36, 0, True)
    assert maya["customer_years"] == 2
    # Born 29 February; it is 24 November in Auckland: next birthday 2027-02-28.
    assert (ben["age"], ben["days_until_birthday"], ben["is_birthday_today"]) == (34, 96, False)
    # No signup date: the signup event's local day (21:00 UTC is 09:00 the next day there).
    assert ben["signup_date"] == date(2026, 1, 11)
    assert (ben["days_since_signup"], ben["customer_years"]) == (317.0, 0)
    # Birth year unknown (1900): no age, but the birthday still comes.
    assert (cleo["age"], cleo["days_until_birthday"], cleo["is_birthday_today"]) == (
        None,
        32,
        False,
    )
    assert row["c6"]["days_until_birthday"] is None and row["c6"]["is_birthday_today"] is None


def test_conversations(row):
    maya = row["c1"]
    # Replied 21 Nov 09:00; the messages of 22 Nov 15:00 and 23 Nov 03:00 wait.
    assert maya["unanswered_inbound_count"] == 2
    assert maya["unanswered_inbound_hours"] == 24.0
    assert maya["last_inbound_channel"] == "sms"
    assert maya["hours_since_last_inbound"] == 12.0
    cleo = row["c3"]  # never answered
    assert (cleo["unanswered_inbound_count"], cleo["unanswered_inbound_hours"]) == (1, 2.0)
    assert cleo["last_inbound_channel"] == "phone"
    dan = row["c4"]  # answered
    assert (dan["unanswered_inbound_count"], dan["unanswered_inbound_hours"]) == (0, 0.0)
    assert (dan["last_inbound_channel"], dan["hours_since_last_inbound"]) == ("web", 77.0)
    fay = row["c6"]
    assert (fay["unanswered_inbound_count"], fay["unanswered_inbound_hours"]) == (0, 0.0)
    assert fay["last_inbound_channel"] is None and fay["hours_since_last_inbound"] is None


def test_messages_count_sent_events_and_courtships_own_sends(row):
    # Sent events on 14 Nov and 1 Oct, a send on 20 Nov (and one after now).
    assert row["c1"]["days_since_last_message"] == 3.0
    assert row["c1"]["messages_sent_30d"] == 2
    assert row["c3"]["days_since_last_message"] == 53.0
    assert row["c3"]["messages_sent_30d"] == 0
    assert row["c6"]["days_since_last_message"] is None


def test_messages_without_sends():
    maya = by_id(compute_facts(BASE, NOW))["c1"]
    assert (maya["days_since_last_message"], maya["messages_sent_30d"]) == (9.0, 1)


def test_referrals_both_ways(row):
    maya, ben, cleo, dan = row["c1"], row["c2"], row["c3"], row["c4"]
    # Maya referred Ben (twice) and Cleo; Ben referred Maya.
    assert (maya["friends_count"], maya["referrals_count"]) == (2, 2)
    assert maya["referrals_converted"] == 1  # Ben ordered, Cleo did not
    assert maya["friends_at_risk"] == 2  # Ben is at-risk, Cleo lapsed
    assert maya["referred_by"] == "c2"
    assert maya["days_since_last_referral"] == 1.0
    assert (ben["friends_count"], ben["referrals_count"], ben["referrals_converted"]) == (1, 1, 1)
    assert (ben["referred_by"], ben["friends_at_risk"]) == ("c1", 0)
    assert ben["days_since_last_referral"] == 206.0
    assert (cleo["friends_count"], cleo["referrals_count"], cleo["referred_by"]) == (1, 0, "c1")
    assert cleo["days_since_last_referral"] is None
    # Dan referred someone outside the customer file: a friend, not converted.
    assert (dan["friends_count"], dan["referrals_count"], dan["referrals_converted"]) == (1, 1, 0)
    # c5's referral of c6 is after now.
    for customer in ("c5", "c6"):
        assert (row[customer]["friends_count"], row[customer]["referred_by"]) == (0, None)


def test_the_earliest_referrer_wins():
    base = CustomerBase(
        customers(customer_id=["a", "b", "c"]),
        events(
            ("b", "referral", "2026-02-01T00:00:00Z", None, None, "c"),
            ("a", "referral", "2026-01-01T00:00:00Z", None, None, "c"),
            ("a", "referral", "2026-03-01T00:00:00Z", None, None, "a"),  # oneself: ignored
        ),
    )
    facts = by_id(compute_facts(base, NOW))
    assert facts["c"]["referred_by"] == "a"
    assert facts["c"]["friends_count"] == 2
    assert facts["a"]["friends_count"] == facts["a"]["referrals_count"] == 1


def test_time_zones_on_both_sides_of_the_date_line():
    base = CustomerBase(
        customers(
            customer_id=["auckland", "los-angeles", "utc"],
            timezone=["Pacific/Auckland", "America/Los_Angeles", None],
            birthday=[date(1990, 11, 24), date(1990, 11, 22), date(1990, 11, 24)],
        ),
        events(
            ("auckland", "order", "2026-11-20T12:00:00Z"),  # 21 Nov, 01:00 there
            ("los-angeles", "order", "2026-11-20T05:00:00Z"),  # 19 Nov, 21:00 there
            # 1 July 00:30 in summer time (UTC-7); the winter offset would say 30 June.
            ("los-angeles", "order", "2026-07-01T07:30:00Z"),
        ),
    )
    # 11:30 UTC on 23 Nov: already 24 Nov, 00:30, in Auckland.
    early = by_id(compute_facts(base, datetime(2026, 11, 23, 11, 30, tzinfo=UTC)))
    assert early["auckland"]["local_date"] == date(2026, 11, 24)
    assert early["auckland"]["local_time"] == time(0, 30)
    assert early["auckland"]["is_birthday_today"] is True
    assert early["utc"]["local_date"] == date(2026, 11, 23)
    assert early["utc"]["days_until_birthday"] == 1
    assert early["auckland"]["last_order_date"] == date(2026, 11, 21)
    assert early["los-angeles"]["first_order_date"] == date(2026, 7, 1)
    assert early["los-angeles"]["last_order_date"] == date(2026, 11, 19)
    # 05:00 UTC on 23 Nov: still 22 Nov, 21:00, in Los Angeles.
    late = by_id(compute_facts(base, datetime(2026, 11, 23, 5, tzinfo=UTC)))
    assert late["los-angeles"]["local_date"] == date(2026, 11, 22)
    assert late["los-angeles"]["utc_offset_minutes"] == -480
    assert late["los-angeles"]["is_birthday_today"] is True
    assert late["auckland"]["local_date"] == date(2026, 11, 23)
    assert late["auckland"]["days_until_birthday"] == 1


@pytest.mark.parametrize(
    ("moment", "until", "birthday_today", "age", "years"),
    [
        (datetime(2026, 2, 27, 12, tzinfo=UTC), 1, False, 33, 5),
        (datetime(2026, 2, 28, 12, tzinfo=UTC), 0, True, 34, 6),  # not a leap year
        (datetime(2026, 3, 1, 12, tzinfo=UTC), 364, False, 34, 6),
        (datetime(2028, 2, 28, 12, tzinfo=UTC), 1, False, 35, 7),  # a leap year
        (datetime(2028, 2, 29, 12, tzinfo=UTC), 0, True, 36, 8),
    ],
)
def test_29_february(moment, until, birthday_today, age, years):
    base = CustomerBase(
        customers(
            customer_id=["leapling"],
            birthday=[date(1992, 2, 29)],
            signup_date=[date(2020, 2, 29)],
        ),
        empty_events(),
    )
    leapling = by_id(compute_facts(base, moment))["leapling"]
    assert leapling["days_until_birthday"] == until
    assert leapling["is_birthday_today"] is birthday_today
    assert leapling["age"] == age
    assert leapling["customer_years"] == years


def test_set_facts_override_and_add():
    set_facts = pl.DataFrame(
        {
            "customer_id": ["c3", "c6", "c1", "c1", "c1", "c2", "nobody"],
            "fact": [
                "stage",
                "orders_count",
                "vip_since",
                "vip_since",
                "last_offer_at",
                "days_since_last_order",
                "stage",
            ],
            "value": ["active", "7", "2026-01-02", "2025-05-05", "2026-11-01T10:00:00Z", None, "x"],
            "type": ["enum", "integer", "date", "date", "datetime", "number", "enum"],
            "at": [
                at("2026-11-01T00:00:00Z"),
                at("2026-11-01T00:00:00Z"),
                at("2026-11-02T00:00:00Z"),
                at("2026-11-01T00:00:00Z"),  # older: the value of 2 Nov wins
                at("2026-11-01T00:00:00Z"),
                at("2026-11-01T00:00:00Z"),
                at("2026-11-01T00:00:00Z"),
            ],
        }
    )
    set_tags = pl.DataFrame(
        {"customer_id": ["c2", "c2", "c1", "c1"], "tag": ["zebra", "alpha", "vip", "new"]}
    )
    facts = compute_facts(BASE, NOW, set_facts=set_facts, set_tags=set_tags)
    row = by_id(facts)
    # A customer-file fact is overridden before anything is derived from it.
    assert row["c3"]["stage"] == "active"
    assert row["c1"]["friends_at_risk"] == 1
    # A derived fact is overridden; a null is a value.
    assert row["c6"]["orders_count"] == 7
    assert row["c2"]["days_since_last_order"] is None
    assert row["c1"]["days_since_last_order"] == 30.0
    # New facts, typed.
    assert facts.schema["vip_since"] == pl.Date()
    assert facts.schema["last_offer_at"] == pl.Datetime("us", "UTC")
    assert row["c1"]["vip_since"] == date(2026, 1, 2)
    assert row["c1"]["last_offer_at"] == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert row["c2"]["vip_since"] is None
    # Tags are added, once each, sorted.
    assert row["c1"]["tags"] == ["new", "vip", "yoga"]
    assert row["c2"]["tags"] == ["alpha", "zebra"]
    assert row["c3"]["tags"] is None


def test_a_set_value_of_the_wrong_type_is_refused():
    set_facts = pl.DataFrame(
        {"customer_id": ["c1"], "fact": ["cadence_days"], "value": ["often"], "type": ["integer"]}
    )
    with pytest.raises(ValueError, match="cadence_days of customer c1: 'often' is not a integer"):
        compute_facts(BASE, NOW, set_facts=set_facts)


def test_unknown_time_zones_are_refused():
    with pytest.raises(ValueError, match="default time zone"):
        compute_facts(BASE, NOW, default_timezone="Mars/Olympus")
    base = CustomerBase(customers(customer_id=["a"], timezone=["Mars/Olympus"]), empty_events())
    with pytest.raises(ValueError, match="Mars/Olympus"):
        compute_facts(base, NOW)


def test_the_default_time_zone_fills_empty_ones():
    row = by_id(compute_facts(BASE, NOW, default_timezone="Pacific/Auckland"))
    assert row["c4"]["timezone"] == "Pacific/Auckland"
    assert row["c4"]["local_date"] == date(2026, 11, 24)
    assert row["c5"]["timezone"] == "UTC"


def test_an_empty_base():
    base = CustomerBase(pl.DataFrame(schema={"customer_id": pl.String()}), empty_events())
    facts = compute_facts(base, NOW)
    assert facts.height == 0
    assert dict(facts.schema) == facts_schema()


def test_set_values_as_the_engine_writes_them():
    set_facts = pl.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1", "c2", "c2"],
            "fact": ["consent_sms", "tags", "cadence_days", "tags", "survey_done"],
            "value": ["true", '["b", "a", "b"]', "30.0", "x; y", "No"],
            "type": ["boolean", "list", "integer", "list", "boolean"],
        }
    )
    row = by_id(compute_facts(BASE, NOW, set_facts=set_facts))
    assert (row["c1"]["consent_sms"], row["c1"]["cadence_days"]) == (True, 30)
    assert (row["c1"]["tags"], row["c2"]["tags"]) == (["a", "b"], ["x", "y"])
    assert (row["c2"]["survey_done"], row["c1"]["survey_done"]) == (False, None)


# ── earlier moments of the same plan ──────────────────────────────────────


def _example_base() -> CustomerBase:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples"
    return CustomerBase.read(root / "customers.csv", root / "events.jsonl")


EVERY_FACT = set(facts_schema()) - {"customer_id", "local_date", "local_time", "utc_offset_minutes"}


@pytest.mark.parametrize("days", [0.5, 1, 3, 4, 40, 95])
@pytest.mark.parametrize("named", ["all", "some", "rhythm and learned"])
def test_earlier_moments_equal_the_facts_computed_there(days: float, named: str) -> None:
    """``FactHistory.before`` re-aggregates only the customers something happened to since the
    earlier moment, or whose 30- and 90-day windows lost an event; every fact it gives equals
    the facts computed from scratch at that moment, for the whole base."""
    from datetime import timedelta

    from courtship.engine.facts import FactHistory

    base = _example_base()
    moment = NOW - timedelta(days=days)
    wanted = {
        "all": EVERY_FACT,
        "some": {"lapse_ratio", "orders_last_90d", "age"},
        "rhythm and learned": {"p_alive", "persona_mean_lapse_ratio", "days_since_first_order"},
    }[named]
    ids = base.customers.get_column("customer_id").head(40).to_list()
    sends = pl.DataFrame(
        {
            "customer_id": ids,
            # Courtship's own sends, some inside the 30-day window at one moment only
            "at": [NOW - timedelta(days=28 + k * 0.1) for k in range(40)],
            "channel": ["email"] * 40,
            "playbook": ["welcome"] * 40,
            "category": ["marketing"] * 40,
        },
        schema_overrides={"at": pl.Datetime("us", "UTC")},
    )
    history = FactHistory(base, sends=sends)
    history.at(NOW)
    past = history.before(moment, NOW, wanted)
    fresh = compute_facts(base, moment, sends=sends)
    assert set(past.columns) == {
        "customer_id",
        *wanted,
        "local_date",
        "local_time",
        "utc_offset_minutes",
    }
    for column in past.columns:
        assert past.get_column(column).equals(fresh.get_column(column), null_equal=True), column


def test_the_events_numbered_by_customer_follow_a_replaced_event_table() -> None:
    from courtship.engine.facts import event_rows, referral_rows

    base = _example_base()
    first, referrals = event_rows(base), referral_rows(base)
    assert event_rows(base) is first and referral_rows(base) is referrals  # kept with the base
    assert referrals.height > 0
    base.events = base.events.head(10)
    assert event_rows(base).height <= 10  # not the old numbering
    assert referral_rows(base).height <= 10
    assert compute_facts(base, NOW).get_column("orders_count").sum() <= 10


@pytest.mark.parametrize("sliced", [True, False], ids=["few-heard", "many-heard"])
def test_events_heard_later_are_numbered_as_a_whole_numbering_would(sliced, monkeypatch):
    """Messages heard through ``courtship serve`` join a loaded base: its index (the events
    numbered by customer, the referrals) is carried on, not built again, and is what building
    it from the whole would give, ties in time and channel included; its mark changes with
    what was heard, and only with that."""
    from polars.testing import assert_frame_equal

    from courtship.engine import facts as engine_facts
    from courtship.engine.carry import index_mark
    from courtship.engine.facts import event_rows, heard_rows, referral_rows, with_more_events

    if not sliced:  # as many customers heard from as the slices are taken for
        monkeypatch.setattr(engine_facts, "_HEARD_SLICED", 0)
    base = CustomerBase(BASE.customers, BASE.events)
    base.__dict__["_index_mark"] = (base.customers, base.events, "files")
    built = event_rows(base), referral_rows(base)
    heard = pl.DataFrame(
        {
            # c6, the last customer, had no events at all; c1 is the first
            "customer_id": ["c3", "c1", "c1", "nobody", "c6"],
            "type": ["inbound_message"] * 5,
            # c1's second one at the very instant and on the channel of an event of hers
            "at": [at("2026-11-23T10:00:00Z"), at("2026-11-22T15:00:00Z")] * 2
            + [at("2026-11-23T11:00:00Z")],
            "channel": ["sms", "instagram", "sms", "sms", "sms"],
        }
    )
    grown = with_more_events(base, heard)
    assert grown.events.height == base.events.height + 5
    assert grown.events.schema == base.events.schema
    whole = CustomerBase(grown.customers, grown.events)  # nothing kept: built from the whole
    assert_frame_equal(event_rows(grown), event_rows(whole))
    assert_frame_equal(referral_rows(grown), referral_rows(whole))
    assert referral_rows(grown) is built[1]  # carried on, not built again
    assert event_rows(base) is built[0]  # the base itself is left as it was
    # the index's mark is the base's: its own events' fingerprints are kept from run to run,
    # and the heard ones are fingerprinted with the sends
    assert index_mark(grown) == index_mark(base)
    own, numbered = heard_rows(grown)
    assert own is built[0]
    assert numbered.height == 4  # "nobody" is not a customer
    assert heard_rows(base) is None
    facts = compute_facts(grown, NOW)
    assert facts.equals(compute_facts(whole, NOW))
