"""Generate the bundled example customer base: examples/customers.csv and examples/events.jsonl.

Run it with ``.venv/bin/python examples/generate.py``. The random seed is fixed and only the
standard library is used (``random``, ``zoneinfo``), so a rerun rewrites both files byte for byte.
After writing, the script reads its own output back, recomputes the facts the planted stories rely
on (by hand, following docs/data.md) and asserts that every story holds at the demo moment.

The demo moment is ``now = 2026-11-23T15:00:00Z`` (a Monday). On a first run the engine looks back
24 hours, so the window is ``(2026-11-22T15:00Z, 2026-11-23T15:00Z]``. A `becomes` trigger is
planted so that its condition turned true inside that window (shifted back by its `for`), which
also makes it true "now" for an engine that simply tests the condition on a first run.

Planted stories (customer ids; everything else, c-0023 to c-0600, is background):

  c-0001  Amelia Hughes, Europe/London. Birthday 23 Nov, preferred sms, tone buddy, consent_sms.
          birthday-gift at 10:00 local = 10:00Z, inside the window; 15:00 local is not quiet.
  c-0002  Yui Tanaka, Asia/Tokyo. Birthday 23 Nov: 10:00 JST = 01:00Z, inside the window, but
          now is 00:00 on 24 Nov in Tokyo: quiet hours, the birthday message is deferred.
  c-0003  Chloe Nguyen, Australia/Perth. Birthday 23 Nov: 10:00 AWST = 02:00Z; now is 23:00 on her
          birthday in Perth: quiet hours, deferred (still her birthday locally).
  c-0004  Tom Fletcher, coffee-regular. Ordered every 7 days for a year (53 orders), last order
          17.25 days ago: lapse_ratio 2.46 (crossed 2 three and a quarter days ago, so the
          `for: 3d` elapsed 6 hours ago), persona_lapse_ratio > 1.5, no visit for 19 days.
          lapsed-frequent-customer.
  c-0005  Priya Shah. Inbound sms 6 hours ago, unanswered (answer-their-calls, transactional),
          and a marketing sms yesterday evening (cadence 14: any marketing is held back).
  c-0006  Sophie Martin refers c-0007 Chloe Dubois (both Europe/Paris) 2h54m ago; Chloe signed up a
          minute before. welcome-their-friends rewards both; Chloe is also welcomed (welcome).
  c-0008  Daniel Reyes, America/New_York. Spent 600+, ordered every 30 days, last order 180.67
          days ago (crossed 180 sixteen hours ago), lapse_ratio 6.0. win-back.
  c-0009  (no first name) Lefevre, Europe/Paris. Birthday 23 Nov, 10:00 CET = 09:00Z: birthday-gift
          would fire, but the message cannot be rendered without a name: skipped.
  c-0010  Oliver Grant. An order of 72.00 four hours ago (call-them-by-name) but cadence_days 14
          and a marketing email 5 days ago: suppressed by cadence.
  c-0011  Jasmine Carter, America/New_York. Signed up 1h30 ago. welcome.
  c-0012  Ruby Evans. Signed up 2026-11-15 18:00Z, no order. onboarding-first-order-nudge when
          days_since_signup counts local calendar days (8 today, 7 yesterday) or fractional days
          since the signup event (7.9 now, 6.9 a day ago).
  c-0013  Arthur Lewis. Signed up 2026-11-16 09:00Z, no order. onboarding-first-order-nudge when
          days_since_signup counts fractional days from the signup event or from the local
          midnight of signup_date (7.25 / 7.6 now, 6.25 / 6.6 a day ago). One of c-0012 and
          c-0013 fires whichever definition the engine uses.
  c-0014  Sam Tester, a QA account tagged test-account, signed up 2026-11-15, no order: the
          onboarding nudge's audience excludes it.
  c-0015  Lucas Rivera, America/New_York. First order 2.5 days ago (`for: 2d` elapsed 12 hours
          ago). get-to-know-you.
  c-0016  Hannah Clarke. A returning customer's order of 85.00 five hours ago. call-them-by-name.
  c-0017  Marcus Webb. Inbound email 30 hours ago, only the helpdesk auto-acknowledgement since
          (a `sent`, not a `reply`): unanswered_inbound_hours crossed 24 six hours ago.
          escalate-long-waits.
  c-0018  Isabelle Moreau, Europe/Paris. Orders on her rhythm, cadence 14, last message from us
          42.875 days ago, on 11 Oct at 20:00 local (crossed 3 x 14 = 42 days 21 hours ago; 43
          local calendar days today, 42 yesterday). keep-in-touch.
  c-0019  George Patel. Signed up 2023-11-23, 7 orders, vip: third signup anniversary at 09:30Z.
          loyal-anniversary.
  c-0020  Ethan Brooks, coffee-regular. Every 10 days, last order 43.3 days ago: lapse_ratio
          crossed 4 (the `for: 3d` elapsed 7 hours ago) with days_since_last_order <= 180.
          lapsed-check-in needs lapse_reached_out_at, which only lapsed-frequent-customer sets
          (state store): it cannot fire on a first run. A run at 2026-11-03T15:00Z reaches Ethan
          with lapsed-frequent-customer; a later run at now then fires lapsed-check-in.
  c-0021  Mia Thompson. Her 10th order (32.00, under 50) 6 hours ago, on her rhythm, never
          referred anyone. advocate-invite.
  c-0022  Noah Williams. Active, cadence_days 2, ordered last week. weekly-digest's audience; the
          Thursday 11:00 schedule cannot fire on Monday 2026-11-23 in any time zone. It fires for
          him at now = 2026-11-26T12:00:00Z (Thursday 11:00 London is inside that window).

Cannot fire at now = 2026-11-23T15:00:00Z, by construction: weekly-digest (Thursdays only) and,
on a first run with an empty state store, lapsed-check-in (needs lapse_reached_out_at).
"""

from __future__ import annotations

import csv
import json
import random
import statistics
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

SEED = 20261123
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
LOOKBACK = timedelta(hours=24)
THURSDAY = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # when weekly-digest can be seen firing
HISTORY_START = NOW - timedelta(days=3 * 365)  # orders, visits and messages: the last 3 years
SIGNUP_START = NOW - timedelta(days=4 * 365)  # signups: the last 4 years
BACKGROUND_SIGNUP_END = NOW - timedelta(days=12)  # recent signups are all planted
N_CUSTOMERS = 600
HERE = Path(__file__).resolve().parent
CUSTOMERS_CSV = HERE / "customers.csv"
EVENTS_JSONL = HERE / "events.jsonl"

COLUMNS = [
    "customer_id", "first_name", "last_name", "email", "phone", "instagram_id", "timezone",
    "language", "city", "persona", "birthday", "signup_date", "stage", "tags",
    "preferred_channel", "cadence_days", "tone", "consent_email", "consent_sms",
    "consent_instagram",
]  # fmt: skip


# ── small helpers ────────────────────────────────────────────────────────────


def utc(text: str) -> datetime:
    """Parse ``2026-11-23T09:00`` (or with seconds / a trailing Z) as a UTC moment."""
    return datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)


def local_moment(zone: str, day: date, at: time) -> datetime:
    """The UTC moment of local time ``at`` on local date ``day`` in ``zone``."""
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone or "UTC")).astimezone(UTC)


def days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ascii_fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def weighted(rng: random.Random, items: list[tuple[object, float]]) -> object:
    total = sum(weight for _, weight in items)
    pick = rng.random() * total
    for item, weight in items:
        pick -= weight
        if pick < 0:
            return item
    return items[-1][0]


def pick(rng: random.Random, items: list) -> object:
    return items[int(rng.random() * len(items))]


# ── the world: regions, personas ─────────────────────────────────────────────


@dataclass(frozen=True)
class Region:
    key: str
    weight: float
    cities: list[tuple[str, str]]  # (city, IANA time zone)
    language: str
    first_names: list[str]
    last_names: list[str]
    phone: str  # "uk": +44 7700 900xxx, "us": +1 AAA 555 01xx, "some-uk": a few UK numbers, "none"


def words(text: str) -> list[str]:
    return text.split()


UK_FIRST = words(
    "Amelia Olivia Isla Ava Emily Sophie Grace Lily Freya Ella Poppy Evie Charlotte Harriet "
    "Imogen Jessica Lucy Megan Eleanor Zara Oliver George Harry Jack Charlie Thomas James William "
    "Alfie Oscar Henry Archie Joshua Samuel Callum Rhys Owen Finlay Aiden Rohan Priya Aisha Omar "
    "Hamza Yusuf Anika Niamh Ciaran Bethan Dylan"
)
UK_LAST = words(
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans "
    "Walker White Roberts Green Hall Wood Jackson Clarke Patel Khan Hughes Edwards Turner Hill "
    "Moore Cooper Ward Morris King Baker Harrison Morgan Shah Begum Ali Campbell Murray Kelly "
    "O'Brien Fletcher Lewis Grant Webb Bennett Price Lloyd"
)
FR_FIRST = words(
    "Camille Léa Manon Chloé Inès Jade Louise Emma Juliette Clara Zoé Margaux Anaïs Élodie Hélène "
    "Lucas Hugo Louis Gabriel Arthur Jules Mathis Théo Nathan Raphaël Antoine Maxime Baptiste "
    "Julien Nicolas Yasmine Karim Mehdi Amandine Céline"
)
FR_LAST = words(
    "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre "
    "Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard André Mercier Dupont Lambert "
    "Bonnet François Martinez Benali Haddad Chevalier Gauthier"
)
US_FIRST = words(
    "Emma Olivia Ava Sophia Isabella Mia Abigail Madison Harper Evelyn Jasmine Maya Aaliyah "
    "Hannah Brooklyn Liam Noah Ethan Mason Logan Lucas Jackson Aiden Elijah Caleb Marcus Tyler "
    "Diego Mateo Andre Jamal Wei Priya Sofia Camila Daniel Kayla Brandon"
)
US_LAST = words(
    "Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Taylor Moore Jackson Lee Perez Thompson White Harris Clark Lewis Robinson "
    "Walker Young Allen Nguyen Kim Chen Patel Rivera Reyes Carter Brooks Cohen Murphy O'Neill"
)
JP_FIRST = words(
    "Yui Haruto Sota Yuto Riku Hinata Sakura Aoi Mei Rin Yuna Hana Ren Daiki Kenta Takumi Shota "
    "Akari Miyu Koharu Kaito Sora Emi Naoko Hiroshi Kenji Yuki Mai"
)
JP_LAST = words(
    "Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato Yoshida Yamada "
    "Sasaki Yamaguchi Matsumoto Inoue Kimura Hayashi Shimizu Mori Ikeda Hashimoto Ishikawa Ogawa"
)
AU_FIRST = words(
    "Charlotte Olivia Amelia Isla Mia Ava Grace Chloe Matilda Ruby Zoe Sienna Jack Oliver William "
    "Noah Leo Lachlan Cooper Hamish Riley Mitchell Bailey Jai Tahlia Kirra Jarrah Mei"
)
AU_LAST = words(
    "Smith Jones Williams Brown Wilson Taylor Nguyen Johnson Martin White Anderson Walker "
    "Thompson Ryan Kelly Harris Lee King Campbell Mitchell O'Connor Murphy Tran Papadopoulos "
    "Rossi"
)
NZ_FIRST = words(
    "Aroha Anahera Ngaio Kiri Mere Tama Wiremu Nikau Manaia Rawiri Olivia Isla Charlotte Amelia "
    "Harper Oliver Jack Noah Leo George Hunter Mason Lucy Ruby"
)
NZ_LAST = words(
    "Ngata Parata Walker Smith Wilson Williams Brown Taylor Henare Tipene Harris Martin Thompson "
    "Clark Young Kingi Pomare Campbell Robertson Morgan"
)
GH_FIRST = words("Kwame Ama Kofi Akosua Yaw Efua Kwabena Abena Kojo Adwoa Esi Kwesi")
GH_LAST = words("Mensah Owusu Boateng Asante Osei Appiah Ofori Darko Addo Acheampong")
SN_FIRST = words("Aminata Moussa Fatou Ibrahima Awa Mamadou Aïssatou Cheikh Khady Ousmane")
SN_LAST = words("Diop Ndiaye Fall Sow Diallo Ba Sarr Gueye Faye Cissé")
IS_FIRST = words("Sigrún Kristín Jón Einar Björn Helga Katrín Ólafur Gunnar Birna Arna Stefán")
IS_LAST = words("Jónsson Einarsson Magnúsdóttir Ólafsdóttir Björnsson Stefánsson Gunnarsdóttir")

REGIONS = [
    Region("uk", 26, [("London", "Europe/London"), ("Leeds", "Europe/London"),
                      ("Manchester", "Europe/London"), ("Bristol", "Europe/London"),
                      ("Brighton", "Europe/London"), ("Edinburgh", "Europe/London"),
                      ("Cardiff", "Europe/London"), ("London", "Europe/London")],
           "en-GB", UK_FIRST, UK_LAST, "uk"),
    Region("fr", 13, [("Paris", "Europe/Paris"), ("Lyon", "Europe/Paris"),
                      ("Lille", "Europe/Paris"), ("Bordeaux", "Europe/Paris"),
                      ("Nantes", "Europe/Paris"),
                      ("Paris", "Europe/Paris")],
           "fr-FR", FR_FIRST, FR_LAST, "some-uk"),
    Region("us-east", 15, [("New York", "America/New_York"), ("Boston", "America/New_York"),
                           ("Philadelphia", "America/New_York"), ("Atlanta", "America/New_York"),
                           ("Miami", "America/New_York"), ("New York", "America/New_York")],
           "en-US", US_FIRST, US_LAST, "us"),
    Region("us-west", 10, [("Los Angeles", "America/Los_Angeles"),
                           ("San Francisco", "America/Los_Angeles"),
                           ("Seattle", "America/Los_Angeles"), ("Portland", "America/Los_Angeles"),
                           ("San Diego", "America/Los_Angeles")],
           "en-US", US_FIRST, US_LAST, "us"),
    Region("jp", 9, [("Tokyo", "Asia/Tokyo"), ("Osaka", "Asia/Tokyo"), ("Kyoto", "Asia/Tokyo"),
                     ("Yokohama", "Asia/Tokyo"), ("Tokyo", "Asia/Tokyo")],
           "ja-JP", JP_FIRST, JP_LAST, "none"),
    Region("au", 10, [("Sydney", "Australia/Sydney"), ("Newcastle", "Australia/Sydney"),
                      ("Wollongong", "Australia/Sydney"), ("Sydney", "Australia/Sydney"),
                      ("Perth", "Australia/Perth")],
           "en-AU", AU_FIRST, AU_LAST, "none"),
    Region("nz", 6, [("Auckland", "Pacific/Auckland"), ("Wellington", "Pacific/Auckland"),
                     ("Christchurch", "Pacific/Auckland")],
           "en-NZ", NZ_FIRST, NZ_LAST, "none"),
    Region("gh", 3, [("Accra", "UTC"), ("Kumasi", "UTC")], "en-GH", GH_FIRST, GH_LAST, "some-uk"),
    Region("sn", 3, [("Dakar", "UTC")], "fr-SN", SN_FIRST, SN_LAST, "some-uk"),
    Region("is", 3, [("Reykjavik", "UTC")], "is-IS", IS_FIRST, IS_LAST, "some-uk"),
    # time zone unknown in the CRM: the project's default (UTC) applies
    Region("unknown", 2, [("", "")], "en", UK_FIRST + US_FIRST, UK_LAST + US_LAST, "some-uk"),
]  # fmt: skip

US_AREA_CODES = {
    "New York": [212, 646, 718, 917, 347], "Boston": [617, 857], "Philadelphia": [215, 267],
    "Atlanta": [404, 678], "Miami": [305, 786], "Los Angeles": [213, 310, 323],
    "San Francisco": [415, 628], "Seattle": [206], "Portland": [503], "San Diego": [619, 858],
}  # fmt: skip


@dataclass(frozen=True)
class Persona:
    name: str
    weight: float
    interval: float  # typical days between orders
    amount: tuple[float, float]
    channels: list[tuple[str, float]]
    hours: tuple[int, int]  # local hours of the day they order in
    visit_rate: float  # visits per order gap
    tag: str


PERSONAS = [
    Persona("coffee-regular", 10, 7, (3.2, 14.0), [("store", 70), ("app", 25), ("web", 5)],
            (7, 10), 0.08, "coffee"),
    Persona("frequent-flyer", 20, 14, (35.0, 160.0), [("app", 55), ("web", 45)],
            (6, 22), 0.15, "travel"),
    Persona("weekend-yogi", 22, 14, (15.0, 65.0), [("store", 50), ("app", 30), ("web", 20)],
            (8, 12), 0.12, "yoga"),
    Persona("bargain-hunter", 25, 40, (9.0, 70.0), [("web", 80), ("app", 20)],
            (12, 23), 0.6, "deals"),
    Persona("gift-shopper", 23, 75, (30.0, 220.0), [("web", 60), ("store", 40)],
            (10, 21), 0.5, "gifts"),
]  # fmt: skip
PERSONA = {p.name: p for p in PERSONAS}

INBOUND_CHANNELS = [("email", 40), ("sms", 15), ("instagram", 20), ("phone", 15), ("web", 10)]
TOPICS = ["delivery", "refund", "booking", "product-question", "account", "feedback"]
NEWSLETTERS = {
    1: "new-year-letter", 2: "valentines-edit", 3: "spring-letter", 4: "spring-letter",
    5: "may-letter", 6: "summer-sale", 7: "summer-sale", 8: "summer-letter",
    9: "back-to-routine", 10: "autumn-letter", 11: "black-friday-preview", 12: "gift-guide",
}  # fmt: skip


# ── the base being built ─────────────────────────────────────────────────────


@dataclass
class Customer:
    customer_id: str
    first_name: str
    last_name: str
    email: str = ""
    phone: str = ""
    instagram_id: str = ""
    timezone: str = "Europe/London"
    language: str = "en-GB"
    city: str = "London"
    persona: str = ""
    birthday: str = ""
    signup_date: str = ""
    stage: str = "active"
    tags: str = ""
    preferred_channel: str = "email"
    cadence_days: int = 14
    tone: str = "buddy"
    consent_email: bool = True
    consent_sms: bool = False
    consent_instagram: bool = False

    def row(self) -> list[str]:
        out = []
        for column in COLUMNS:
            value = getattr(self, column)
            out.append(("true" if value else "false") if isinstance(value, bool) else str(value))
        return out


@dataclass
class Base:
    rng: random.Random
    customers: list[Customer] = field(default_factory=list)
    events: list[tuple[datetime, str, int, dict]] = field(default_factory=list)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    instagram_ids: set[str] = field(default_factory=set)

    def add(self, customer: Customer) -> Customer:
        for value, seen in ((customer.email, self.emails), (customer.phone, self.phones),
                            (customer.instagram_id, self.instagram_ids)):  # fmt: skip
            if value:
                assert value not in seen, f"duplicate contact {value}"
                seen.add(value)
        self.customers.append(customer)
        return customer

    def event(self, customer_id: str, kind: str, at: datetime, **fields: object) -> None:
        assert at <= NOW, f"{customer_id} {kind} at {at} is after now"
        body = {"customer_id": customer_id, "type": kind, "at": iso(at), **fields}
        self.events.append((at, customer_id, len(self.events), body))

    def order(self, customer_id: str, at: datetime, amount: float, channel: str = "web") -> None:
        self.event(customer_id, "order", at, amount=round(amount, 2), channel=channel)

    def sent(self, customer_id: str, at: datetime, channel: str, playbook: str,
             category: str = "marketing") -> None:  # fmt: skip
        self.event(customer_id, "sent", at, channel=channel, playbook=playbook, category=category)

    def email_for(self, first: str, last: str, rng: random.Random) -> str:
        first_part, last_part = ascii_fold(first) or "customer", ascii_fold(last) or "x"
        shapes = [f"{first_part}.{last_part}", f"{first_part}{last_part}",
                  f"{first_part[0]}.{last_part}", f"{first_part}.{last_part[0]}"]  # fmt: skip
        local = pick(rng, shapes)
        domain = "example.org" if rng.random() < 0.5 else "example.com"
        candidate, n = f"{local}@{domain}", 1
        while candidate in self.emails:
            n += 1
            candidate = f"{local}{n}@{domain}"
        return candidate


# planted contacts, kept out of the background pools
UK = "+447700900"


def regular_series(last: datetime, count: int, interval: int, minutes: list[int]) -> list[datetime]:
    """``count`` order moments ending at ``last``, ``interval`` days apart give or take a day.

    The gap pattern has more exact ``interval`` gaps than not, so the median gap is ``interval``
    (up to the minute jitter in ``minutes``, applied in turn).
    """
    pattern = [0, 1, 0, -1, 0, 0, 1, 0, -1]
    step = max(1, interval // 10)
    moments = [last]
    for i in range(count - 1):
        gap = timedelta(days=interval + pattern[i % len(pattern)] * step)
        base = moments[-1] - gap
        jitter = minutes[i % len(minutes)] - minutes[(i - 1) % len(minutes)] if i else 0
        moments.append(base + timedelta(minutes=jitter))
    return sorted(moments)


def plant(base: Base) -> None:
    """The planted stories: see the docstring at the top of this file."""
    b = base
    amounts = [9.4, 12.0, 6.5, 15.25, 8.0, 11.5, 7.75, 13.0, 10.2, 5.9]

    def orders(cid: str, moments: list[datetime], lo: float, hi: float, channel: str) -> None:
        for i, moment in enumerate(moments):
            b.order(cid, moment, lo + (hi - lo) * (amounts[i % len(amounts)] - 5.9) / 9.35,
                    channel)  # fmt: skip

    def signup(customer: Customer, at: datetime) -> None:
        zone = ZoneInfo(customer.timezone or "UTC")
        customer.signup_date = at.astimezone(zone).date().isoformat()
        b.add(customer)
        b.event(customer.customer_id, "signup", at)

    # 1. Birthday today in London, sms, buddy.
    c = Customer(
        "c-0001",
        "Amelia",
        "Hughes",
        "amelia.hughes@example.org",
        UK + "101",
        persona="weekend-yogi",
        birthday="1990-11-23",
        stage="active",
        tags="yoga",
        preferred_channel="sms",
        cadence_days=14,
        tone="buddy",
        consent_sms=True,
    )
    signup(c, utc("2025-06-07T10:20"))
    orders(
        c.customer_id, regular_series(utc("2026-11-14T10:30"), 9, 14, [0, 12, 25]), 18, 55, "store"
    )
    b.event(c.customer_id, "visit", utc("2026-11-19T19:10"), channel="app")
    b.sent(c.customer_id, utc("2026-09-28T09:00"), "sms", "back-to-routine")
    b.sent(c.customer_id, utc("2026-10-25T09:00"), "sms", "autumn-letter")

    # 2a. Birthday moment in the window, but it is 00:00 on 24 Nov in Tokyo: quiet hours.
    c = Customer(
        "c-0002",
        "Yui",
        "Tanaka",
        "yui.tanaka@example.com",
        "",
        "17841400000000201",
        "Asia/Tokyo",
        "ja-JP",
        "Tokyo",
        "gift-shopper",
        "1987-11-23",
        stage="active",
        tags="gifts",
        preferred_channel="email",
        cadence_days=60,
        tone="direct",
        consent_instagram=True,
    )
    signup(c, utc("2023-06-02T03:40"))
    orders(c.customer_id, regular_series(utc("2026-10-10T03:00"), 6, 70, [0, 31]), 40, 180, "web")
    b.sent(c.customer_id, utc("2026-08-15T01:00"), "email", "summer-letter")

    # 2b. Birthday today in Perth, but it is 23:00 there: quiet hours.
    c = Customer(
        "c-0003",
        "Chloe",
        "Nguyen",
        "chloe.nguyen@example.org",
        "",
        "17841400000000301",
        "Australia/Perth",
        "en-AU",
        "Perth",
        "frequent-flyer",
        "1995-11-23",
        stage="active",
        tags="travel",
        preferred_channel="instagram",
        cadence_days=14,
        tone="salesy",
        consent_instagram=True,
    )
    signup(c, utc("2025-01-20T05:15"))
    orders(
        c.customer_id, regular_series(utc("2026-11-12T04:00"), 8, 16, [0, 20, 7]), 45, 150, "app"
    )
    b.sent(c.customer_id, utc("2026-10-20T01:00"), "instagram", "autumn-letter")

    # 3. Lapsed frequent customer: weekly for a year, 17.25 days since the last order.
    c = Customer(
        "c-0004",
        "Tom",
        "Fletcher",
        "tom.fletcher@example.com",
        UK + "104",
        persona="coffee-regular",
        birthday="1983-04-17",
        stage="at-risk",
        tags="coffee",
        preferred_channel="email",
        cadence_days=14,
        tone="buddy",
    )
    signup(c, utc("2025-10-20T08:05"))
    moments = regular_series(utc("2026-11-06T09:00"), 53, 7, [0, 9, 17, 4])
    orders(c.customer_id, moments, 3.4, 8.9, "store")
    for moment in moments[1::6]:
        b.event(c.customer_id, "visit", moment - timedelta(days=2, hours=-3), channel="app")
    b.event(c.customer_id, "visit", utc("2026-11-04T12:00"), channel="app")
    b.sent(c.customer_id, utc("2026-09-29T09:00"), "email", "back-to-routine")
    b.sent(c.customer_id, utc("2026-10-28T10:00"), "email", "autumn-letter")

    # 4. Unanswered inbound sms six hours ago; a marketing sms yesterday evening.
    c = Customer(
        "c-0005",
        "Priya",
        "Shah",
        "priya.shah@example.org",
        UK + "105",
        persona="weekend-yogi",
        birthday="1992-07-08",
        stage="active",
        tags="yoga",
        preferred_channel="sms",
        cadence_days=14,
        tone="direct",
        consent_sms=True,
    )
    signup(c, utc("2026-02-11T18:30"))
    orders(c.customer_id, regular_series(utc("2026-11-20T10:00"), 8, 14, [0, 15]), 20, 48, "store")
    b.event(
        c.customer_id, "inbound_message", utc("2026-09-30T10:00"), channel="email", topic="booking"
    )
    b.event(c.customer_id, "reply", utc("2026-09-30T13:30"), channel="email")
    b.sent(c.customer_id, utc("2026-11-22T19:00"), "sms", "black-friday-preview")
    b.event(
        c.customer_id, "inbound_message", utc("2026-11-23T09:00"), channel="sms", topic="delivery"
    )

    # 5. A referral two hours ago: Sophie brings her friend Chloe, who just signed up.
    c = Customer(
        "c-0006",
        "Sophie",
        "Martin",
        "sophie.martin@example.com",
        "",
        "17841400000000601",
        "Europe/Paris",
        "fr-FR",
        "Paris",
        "coffee-regular",
        "1994-03-02",
        stage="active",
        tags="coffee",
        preferred_channel="instagram",
        cadence_days=14,
        tone="buddy",
        consent_instagram=True,
    )
    signup(c, utc("2025-03-15T08:00"))
    orders(
        c.customer_id, regular_series(utc("2026-11-21T08:30"), 30, 8, [0, 6, 14]), 3.5, 11, "store"
    )
    b.sent(c.customer_id, utc("2026-11-02T09:00"), "instagram", "black-friday-preview")
    c = Customer(
        "c-0007",
        "Chloé",
        "Dubois",
        "chloe.dubois@example.org",
        "",
        "",
        "Europe/Paris",
        "fr-FR",
        "Paris",
        "coffee-regular",
        "1998-06-14",
        stage="new",
        preferred_channel="email",
        cadence_days=14,
        tone="buddy",
    )
    signup(c, utc("2026-11-23T12:05"))
    b.event("c-0006", "referral", utc("2026-11-23T12:06"), friend_id="c-0007")

    # 6. Churned: a 30-day rhythm, 600+ spent, last order 180.67 days ago.
    c = Customer(
        "c-0008",
        "Daniel",
        "Reyes",
        "daniel.reyes@example.com",
        "+12125550108",
        timezone="America/New_York",
        language="en-US",
        city="New York",
        persona="frequent-flyer",
        birthday="1979-09-30",
        stage="churned",
        tags="travel",
        preferred_channel="email",
        cadence_days=14,
        tone="salesy",
        consent_sms=True,
    )
    signup(c, utc("2025-08-20T22:10"))
    orders(
        c.customer_id, regular_series(utc("2026-05-26T23:00"), 10, 30, [0, 25, 40]), 48, 95, "app"
    )
    b.event(c.customer_id, "visit", utc("2026-03-02T01:00"), channel="web")
    for when in ("2026-07-20T14:00", "2026-09-08T14:00", "2026-10-15T14:00"):
        b.sent(c.customer_id, utc(when), "email", NEWSLETTERS[utc(when).month])

    # 7. Birthday today, but no first name: the message would be nameless, so it is skipped.
    c = Customer(
        "c-0009",
        "",
        "Lefèvre",
        "lefevre.85@example.org",
        timezone="Europe/Paris",
        language="fr-FR",
        city="Lyon",
        persona="gift-shopper",
        birthday="1985-11-23",
        stage="active",
        tags="gifts",
        cadence_days=60,
        tone="buddy",
    )
    signup(c, utc("2024-12-01T17:45"))
    orders(c.customer_id, regular_series(utc("2026-09-30T16:00"), 4, 60, [0, 22]), 35, 140, "web")
    b.sent(c.customer_id, utc("2026-08-01T08:00"), "email", "summer-letter")

    # 8. Cadence: an order of 72.00 today, but a marketing email five days ago and cadence 14.
    c = Customer(
        "c-0010",
        "Oliver",
        "Grant",
        "oliver.grant@example.com",
        UK + "110",
        persona="bargain-hunter",
        birthday="1988-01-19",
        stage="active",
        tags="deals",
        preferred_channel="email",
        cadence_days=14,
        tone="salesy",
    )
    signup(c, utc("2025-11-02T20:00"))
    orders(c.customer_id, regular_series(utc("2026-10-10T19:00"), 6, 40, [0, 33]), 12, 45, "web")
    b.sent(c.customer_id, utc("2026-11-18T10:00"), "email", "autumn-sale")
    b.order(c.customer_id, utc("2026-11-23T11:00"), 72.00, "web")

    # Welcome: signed up an hour and a half ago.
    c = Customer(
        "c-0011",
        "Jasmine",
        "Carter",
        "jasmine.carter@example.org",
        "+12125550111",
        timezone="America/New_York",
        language="en-US",
        city="New York",
        persona="weekend-yogi",
        birthday="1997-05-21",
        stage="new",
        preferred_channel="sms",
        cadence_days=14,
        tone="buddy",
        consent_sms=True,
    )
    signup(c, utc("2026-11-23T13:30"))

    # Onboarding nudge: two customers, eight days after signing up, no order yet.
    c = Customer(
        "c-0012",
        "Ruby",
        "Evans",
        "ruby.evans@example.com",
        persona="bargain-hunter",
        birthday="2001-08-03",
        stage="onboarding",
        preferred_channel="email",
        cadence_days=14,
        tone="buddy",
    )
    signup(c, utc("2026-11-15T18:00"))
    b.event(c.customer_id, "visit", utc("2026-11-17T20:15"), channel="web")
    c = Customer(
        "c-0013",
        "Arthur",
        "Lewis",
        "arthur.lewis@example.org",
        UK + "113",
        persona="frequent-flyer",
        birthday="1900-10-04",
        stage="onboarding",
        preferred_channel="email",
        cadence_days=60,
        tone="direct",
        consent_sms=True,
    )
    signup(c, utc("2026-11-16T09:00"))
    c = Customer(
        "c-0014",
        "Sam",
        "Tester",
        "qa.sam@example.com",
        tags="test-account;staff",
        persona="bargain-hunter",
        stage="onboarding",
        preferred_channel="email",
        cadence_days=2,
        tone="direct",
    )
    signup(c, utc("2026-11-15T17:30"))

    # Get to know you: first order two and a half days ago.
    c = Customer(
        "c-0015",
        "Lucas",
        "Rivera",
        "lucas.rivera@example.com",
        "+16465550115",
        timezone="America/New_York",
        language="en-US",
        city="New York",
        persona="frequent-flyer",
        birthday="1990-02-11",
        stage="onboarding",
        preferred_channel="email",
        cadence_days=14,
        tone="buddy",
    )
    signup(c, utc("2026-11-18T15:00"))
    b.order(c.customer_id, utc("2026-11-21T03:00"), 38.50, "web")

    # Call them by name: a returning customer's order of 85.00 today.
    c = Customer(
        "c-0016",
        "Hannah",
        "Clarke",
        "hannah.clarke@example.org",
        UK + "116",
        "17841400000001601",
        persona="frequent-flyer",
        birthday="1986-12-30",
        stage="active",
        tags="travel",
        preferred_channel="instagram",
        cadence_days=60,
        tone="buddy",
        consent_instagram=True,
    )
    signup(c, utc("2025-12-04T12:00"))
    orders(c.customer_id, regular_series(utc("2026-10-27T18:00"), 5, 25, [0, 14]), 40, 120, "app")
    b.sent(c.customer_id, utc("2026-09-01T09:00"), "instagram", "back-to-routine")
    b.order(c.customer_id, utc("2026-11-23T10:00"), 85.00, "app")

    # Escalate long waits: an inbound email 30 hours ago, only an auto-acknowledgement since.
    c = Customer(
        "c-0017",
        "Marcus",
        "Webb",
        "marcus.webb@example.com",
        UK + "117",
        persona="bargain-hunter",
        birthday="1975-06-25",
        stage="active",
        tags="deals",
        preferred_channel="email",
        cadence_days=60,
        tone="direct",
    )
    signup(c, utc("2024-04-11T21:00"))
    orders(c.customer_id, regular_series(utc("2026-11-09T20:00"), 6, 45, [0, 17]), 15, 60, "web")
    b.event(
        c.customer_id, "inbound_message", utc("2026-05-03T11:00"), channel="phone", topic="refund"
    )
    b.event(c.customer_id, "reply", utc("2026-05-03T11:40"), channel="phone")
    b.event(
        c.customer_id, "inbound_message", utc("2026-11-22T09:00"), channel="email", topic="refund"
    )
    b.sent(c.customer_id, utc("2026-11-22T09:01"), "email", "helpdesk-autoreply", "transactional")

    # Keep in touch: on rhythm, but we have been silent for 42.875 days (cadence 14).
    c = Customer(
        "c-0018",
        "Isabelle",
        "Moreau",
        "isabelle.moreau@example.org",
        "",
        "",
        "Europe/Paris",
        "fr-FR",
        "Paris",
        "weekend-yogi",
        "1991-03-28",
        stage="active",
        tags="yoga",
        preferred_channel="email",
        cadence_days=14,
        tone="direct",
    )
    signup(c, utc("2026-02-01T10:00"))
    orders(c.customer_id, regular_series(utc("2026-11-15T09:00"), 8, 20, [0, 21]), 20, 60, "store")
    b.sent(c.customer_id, utc("2026-08-30T07:00"), "email", "summer-letter")
    b.sent(c.customer_id, utc("2026-09-20T07:00"), "email", "back-to-routine")
    b.sent(c.customer_id, utc("2026-10-11T18:00"), "email", "autumn-letter")

    # Loyal anniversary: joined on 23 Nov 2023.
    c = Customer(
        "c-0019",
        "George",
        "Patel",
        "george.patel@example.com",
        UK + "119",
        persona="gift-shopper",
        birthday="1969-05-05",
        stage="loyal",
        tags="gifts;vip",
        preferred_channel="email",
        cadence_days=60,
        tone="salesy",
    )
    signup(c, utc("2023-11-23T14:00"))
    orders(c.customer_id, regular_series(utc("2026-10-30T13:00"), 7, 45, [0, 35]), 60, 220, "web")
    b.sent(c.customer_id, utc("2026-09-10T09:00"), "email", "back-to-routine")

    # Lapsed check-in candidate: every 10 days, now 43.3 days since the last order.
    c = Customer(
        "c-0020",
        "Ethan",
        "Brooks",
        "ethan.brooks@example.org",
        UK + "120",
        persona="coffee-regular",
        birthday="1996-09-12",
        stage="lapsed",
        tags="coffee",
        preferred_channel="email",
        cadence_days=14,
        tone="buddy",
    )
    signup(c, utc("2026-05-20T07:30"))
    moments = regular_series(utc("2026-10-11T08:00"), 15, 10, [0, 11, 23])
    orders(c.customer_id, moments, 3.5, 9.5, "store")
    b.event(c.customer_id, "visit", utc("2026-10-09T18:00"), channel="app")
    b.sent(c.customer_id, utc("2026-10-20T09:00"), "email", "autumn-letter")

    # Advocate invite: the 10th order, on rhythm, no referral yet.
    c = Customer(
        "c-0021",
        "Mia",
        "Thompson",
        "mia.thompson@example.com",
        "",
        "17841400000002101",
        persona="weekend-yogi",
        birthday="1999-01-07",
        stage="active",
        tags="yoga",
        preferred_channel="instagram",
        cadence_days=14,
        tone="buddy",
        consent_instagram=True,
    )
    signup(c, utc("2026-06-20T09:00"))
    orders(c.customer_id, regular_series(utc("2026-11-08T10:00"), 9, 14, [0, 18]), 18, 40, "store")
    b.sent(c.customer_id, utc("2026-10-30T09:00"), "instagram", "autumn-letter")
    b.order(c.customer_id, utc("2026-11-23T09:00"), 32.00, "store")

    # Weekly digest audience (fires on Thursday, not on Monday).
    c = Customer(
        "c-0022",
        "Noah",
        "Williams",
        "noah.williams@example.org",
        UK + "122",
        persona="coffee-regular",
        birthday="1993-10-10",
        stage="active",
        tags="coffee",
        preferred_channel="email",
        cadence_days=2,
        tone="buddy",
    )
    signup(c, utc("2026-09-20T08:00"))
    orders(c.customer_id, regular_series(utc("2026-11-18T08:15"), 8, 7, [0, 13]), 3.5, 10, "store")
    b.sent(c.customer_id, utc("2026-11-13T10:00"), "email", "black-friday-preview")
    b.sent(c.customer_id, utc("2026-11-21T10:00"), "email", "black-friday-preview")


# ── background customers ────────────────────────────────────────────────────


def local_at(rng: random.Random, zone: str, anchor: datetime, hours: tuple[int, int]) -> datetime:
    """A moment on the local date of ``anchor`` at a random local hour within ``hours``."""
    day = anchor.astimezone(ZoneInfo(zone or "UTC")).date()
    hour = hours[0] + int(rng.random() * (hours[1] - hours[0] + 1))
    return local_moment(zone, day, time(min(hour, 23), int(rng.random() * 60)))


def random_birthday(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.04:
        return ""
    if roll < 0.055:  # born on 29 February
        return f"{pick(rng, [1980, 1984, 1988, 1992, 1996, 2000, 2004])}-02-29"
    start = date(1952, 1, 1)
    day = start + timedelta(days=int(rng.random() * (date(2006, 12, 31) - start).days))
    if roll < 0.12:  # year unknown (the 29 February case is avoided: 1900 was not a leap year)
        day = day.replace(year=1900) if (day.month, day.day) != (2, 29) else date(1900, 2, 28)
    return day.isoformat()


class Pools:
    def __init__(self, rng: random.Random, base: Base) -> None:
        uk = [f"{UK}{n:03d}" for n in range(1000)]
        rng.shuffle(uk)
        self.uk = [number for number in uk if number not in base.phones]
        self.us: dict[int, list[str]] = {}
        for codes in US_AREA_CODES.values():
            for code in codes:
                numbers = [f"+1{code}55501{n:02d}" for n in range(100)]
                rng.shuffle(numbers)
                self.us[code] = [number for number in numbers if number not in base.phones]

    def phone(self, rng: random.Random, region: Region, city: str) -> str:
        if region.phone == "uk" and rng.random() < 0.85:
            return self.uk.pop()
        if region.phone == "some-uk" and rng.random() < 0.15:
            return self.uk.pop()
        if region.phone == "us" and rng.random() < 0.85:
            return self.us[pick(rng, US_AREA_CODES[city])].pop()
        return ""


def background(base: Base, first_index: int) -> None:
    rng = base.rng
    pools = Pools(rng, base)
    made: list[tuple[Customer, Region, datetime]] = []
    region_items = [(region, region.weight) for region in REGIONS]
    persona_items = [(persona, persona.weight) for persona in PERSONAS]
    test_accounts = {first_index + 41, first_index + 377}
    nameless = {first_index + 88, first_index + 263, first_index + 501}
    for index in range(first_index, N_CUSTOMERS + 1):
        cid = f"c-{index:04d}"
        region: Region = weighted(rng, region_items)
        city, zone = pick(rng, region.cities)
        persona: Persona = weighted(rng, persona_items)
        first, last = pick(rng, region.first_names), pick(rng, region.last_names)
        signup_at = SIGNUP_START + (BACKGROUND_SIGNUP_END - SIGNUP_START) * rng.random()
        signup_at = local_at(rng, zone, signup_at, (7, 23))
        email = base.email_for(first, last, rng) if rng.random() < 0.97 else ""
        phone = pools.phone(rng, region, city)
        instagram = ""
        if rng.random() < 0.45:
            instagram = f"178414{int(rng.random() * 10**11):011d}"
            while instagram in base.instagram_ids:
                instagram = f"178414{int(rng.random() * 10**11):011d}"
        consent_email = bool(email) and rng.random() < 0.85
        consent_sms = bool(phone) and rng.random() < 0.55
        consent_instagram = bool(instagram) and rng.random() < 0.7
        reachable = [(name, weight) for name, weight, ok in (
            ("email", 50, bool(email)), ("sms", 25, bool(phone)), ("instagram", 25, bool(instagram))
        ) if ok]  # fmt: skip
        preferred = weighted(rng, reachable) if reachable else "email"
        if rng.random() < 0.75:  # most customers consent to the channel they prefer
            consent_email |= preferred == "email" and bool(email)
            consent_sms |= preferred == "sms"
            consent_instagram |= preferred == "instagram"
        c = Customer(
            cid, "" if index in nameless else first, last, email, phone, instagram, zone,
            region.language, city, persona.name, random_birthday(rng),
            signup_at.astimezone(ZoneInfo(zone or "UTC")).date().isoformat(),
            preferred_channel=preferred,
            cadence_days=weighted(rng, [(2, 20), (14, 50), (60, 30)]),
            tone=weighted(rng, [("buddy", 40), ("salesy", 25), ("direct", 35)]),
            consent_email=consent_email, consent_sms=consent_sms,
            consent_instagram=consent_instagram,
        )  # fmt: skip
        tags = []
        if index in test_accounts:
            tags += ["test-account", "staff"]
        base.add(c)
        base.event(cid, "signup", signup_at)
        made.append((c, region, signup_at))
        if index not in test_accounts:
            activity(base, c, persona, signup_at)
        c.tags = ";".join(tags)

    # friends: about one customer in ten was referred by someone who joined before them
    by_signup = sorted(made, key=lambda item: item[2])
    for position, (friend, _, signup_at) in enumerate(by_signup):
        if position < 20 or rng.random() >= 0.1 or "test-account" in friend.tags:
            continue
        earlier = [
            c
            for c, r, at in by_signup[:position]
            if at < signup_at - timedelta(days=1) and "test-account" not in c.tags
        ]
        same = [c for c in earlier if c.city == friend.city]
        referrer: Customer = pick(rng, same if same and rng.random() < 0.7 else earlier)
        base.event(referrer.customer_id, "referral", signup_at + timedelta(minutes=3),
                   friend_id=friend.customer_id)  # fmt: skip
        if rng.random() < 0.5 and "advocate" not in referrer.tags:
            referrer.tags = ";".join([*filter(None, referrer.tags.split(";")), "advocate"])

    # a few inbound messages waiting less than four hours: not yet due for an answer
    waiting = [c for c, _, _ in made if "test-account" not in c.tags]
    for _ in range(5):
        c = pick(rng, waiting)
        waiting.remove(c)
        at = NOW - timedelta(minutes=30 + int(rng.random() * 180))
        base.event(c.customer_id, "inbound_message", at,
                   channel=weighted(rng, INBOUND_CHANNELS), topic=pick(rng, TOPICS))  # fmt: skip


def activity(base: Base, c: Customer, persona: Persona, signup_at: datetime) -> None:
    """Orders, visits, conversations and past messages of one background customer."""
    rng, cid, zone = base.rng, c.customer_id, c.timezone
    mean = persona.interval * rng.lognormvariate(0, 0.25)
    never_orders = rng.random() < 0.08
    first = signup_at + timedelta(days=rng.expovariate(1 / 5))
    end = NOW
    if rng.random() < 0.45:  # drifted away at some point
        end = first + (NOW - first) * rng.random()
    anchor, last_anchor = first, None
    while not never_orders and anchor <= end:
        if anchor >= HISTORY_START:
            moment = local_at(rng, zone, anchor, persona.hours)
            if persona.name == "weekend-yogi":  # snap to the weekend
                day = moment.astimezone(ZoneInfo(zone or "UTC")).date()
                shift = (5 - day.weekday()) % 7 + (1 if rng.random() < 0.4 else 0)
                moment += timedelta(days=shift)
            if moment > NOW - timedelta(days=1):  # the last 24 hours are planted
                break
            lo, hi = persona.amount
            amount = lo + (hi - lo) * rng.random() ** 1.6
            base.order(cid, moment, amount, weighted(rng, persona.channels))
            if last_anchor is not None and rng.random() < persona.visit_rate:
                visit = last_anchor + (moment - last_anchor) * rng.random()
                base.event(cid, "visit", local_at(rng, zone, visit, (7, 23)),
                           channel=pick(rng, ["web", "app", "app", "store"]))  # fmt: skip
            last_anchor = moment
        anchor += timedelta(days=mean * rng.lognormvariate(0, 0.3))
    if never_orders or end < NOW:  # some still browse now and then
        for _ in range(int(rng.random() * 3)):
            start = max(end if not never_orders else signup_at, HISTORY_START)
            visit = start + (NOW - timedelta(days=2) - start) * rng.random()
            if visit > start:
                base.event(cid, "visit", local_at(rng, zone, visit, (7, 23)),
                           channel=pick(rng, ["web", "app"]))  # fmt: skip

    # conversations: about one every 16 months, answered within hours (never in the last 3 days)
    start = max(signup_at, HISTORY_START)
    span = days(NOW - timedelta(days=3) - start)
    for _ in range(int(span / 120)):
        if rng.random() >= 0.25:
            continue
        inbound = local_at(rng, zone, start + timedelta(days=span * rng.random()), (7, 22))
        channel = weighted(rng, INBOUND_CHANNELS)
        reply = inbound + timedelta(minutes=int(60 * min(rng.lognormvariate(1.1, 1.0), 40)))
        if reply > NOW - timedelta(days=3):
            continue
        base.event(cid, "inbound_message", inbound, channel=channel, topic=pick(rng, TOPICS))
        base.event(cid, "reply", reply, channel="email" if channel == "web" else channel)

    # past marketing messages, sent before Courtship: the last 200 days, at about their cadence
    channel = c.preferred_channel if getattr(c, f"consent_{c.preferred_channel}") else "email"
    if channel == "email" and not c.consent_email:
        return
    gap = max(c.cadence_days, 7)
    moment = max(signup_at, NOW - timedelta(days=200)) + timedelta(days=gap * rng.random())
    while True:
        at = local_at(rng, zone, moment, (8, 11))
        if at > NOW - timedelta(days=1):
            break
        base.sent(cid, at, channel, NEWSLETTERS[at.month])
        moment += timedelta(days=gap * (1 + 0.8 * rng.random()))


# ── reading back and computing the facts (docs/data.md) ─────────────────────


@dataclass
class History:
    row: dict[str, str]
    zone: ZoneInfo
    orders: list[tuple[datetime, float]] = field(default_factory=list)
    visits: list[datetime] = field(default_factory=list)
    inbound: list[datetime] = field(default_factory=list)
    replies: list[datetime] = field(default_factory=list)
    sent: list[tuple[datetime, str]] = field(default_factory=list)
    referrals: list[tuple[datetime, str]] = field(default_factory=list)
    signups: list[datetime] = field(default_factory=list)
    referred_by: list[tuple[datetime, str]] = field(default_factory=list)


def load() -> tuple[dict[str, History], list[dict]]:
    with CUSTOMERS_CSV.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [*rows[0].keys()] == COLUMNS
    people = {r["customer_id"]: History(r, ZoneInfo(r["timezone"] or "UTC")) for r in rows}
    assert len(people) == len(rows), "customer_id must be unique"
    events = [json.loads(line) for line in EVENTS_JSONL.read_text(encoding="utf-8").splitlines()]
    for e in events:
        h, at = people[e["customer_id"]], utc(e["at"])
        match e["type"]:
            case "order":
                h.orders.append((at, e["amount"]))
            case "visit":
                h.visits.append(at)
            case "inbound_message":
                h.inbound.append(at)
            case "reply":
                h.replies.append(at)
            case "sent":
                h.sent.append((at, e["category"]))
            case "referral":
                h.referrals.append((at, e["friend_id"]))
                people[e["friend_id"]].referred_by.append((at, e["customer_id"]))
            case "signup":
                h.signups.append(at)
    return people, events


def next_anniversary(born: date, today: date) -> date:
    def on(year: int) -> date:
        if (born.month, born.day) == (2, 29) and not is_leap(year):
            return date(year, 2, 28)
        return date(year, born.month, born.day)

    this_year = on(today.year)
    return this_year if this_year >= today else on(today.year + 1)


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def own_interval(h: History, t: datetime) -> float | None:
    moments = [at for at, _ in h.orders if at <= t]
    gaps = [days(b - a) for a, b in pairwise(moments)]
    return statistics.median(gaps) if gaps else None


def persona_intervals(people: dict[str, History], t: datetime) -> dict[str, float]:
    by_persona: dict[str, list[float]] = {}
    for h in people.values():
        interval = own_interval(h, t)
        if interval is not None:
            by_persona.setdefault(h.row["persona"], []).append(interval)
    return {persona: statistics.median(values) for persona, values in by_persona.items()}


def facts(h: History, t: datetime, persona_interval: dict[str, float]) -> dict[str, object]:
    """The facts of docs/data.md at moment ``t``, from events up to ``t`` (empty state store)."""
    row = h.row
    f: dict[str, object] = {k: (v or None) for k, v in row.items()}
    f["cadence_days"] = int(row["cadence_days"])
    f["tags"] = [tag for tag in row["tags"].split(";") if tag]
    for channel in ("email", "sms", "instagram"):
        f[f"consent_{channel}"] = row[f"consent_{channel}"] == "true"
    today = t.astimezone(h.zone).date()
    f["today"] = today
    f["local_time"] = t.astimezone(h.zone).time()

    orders = [(at, amount) for at, amount in h.orders if at <= t]
    f["orders_count"] = len(orders)
    f["total_spent"] = round(sum(amount for _, amount in orders), 2)
    f["last_order_at"] = orders[-1][0] if orders else None
    f["last_order_date"] = orders[-1][0].astimezone(h.zone).date() if orders else None
    f["days_since_last_order"] = days(t - orders[-1][0]) if orders else None
    f["orders_last_90d"] = sum(1 for at, _ in orders if at > t - timedelta(days=90))
    f["usual_order_interval"] = own_interval(h, t)
    local_days = [at.astimezone(h.zone).date() for at, _ in orders]
    date_gaps = [(b - a).days for a, b in pairwise(local_days)]
    f["usual_order_interval_by_date"] = statistics.median(date_gaps) if date_gaps else None
    dslo, usual = f["days_since_last_order"], f["usual_order_interval"]
    f["lapse_ratio"] = dslo / usual if dslo is not None and usual else None
    f["persona_order_interval"] = persona_interval.get(row["persona"])
    pint = f["persona_order_interval"]
    f["persona_lapse_ratio"] = dslo / pint if dslo is not None and pint else None
    visits = [at for at in h.visits if at <= t]
    f["days_since_last_visit"] = days(t - max(visits)) if visits else None

    signup_date = date.fromisoformat(row["signup_date"])
    f["days_since_signup_by_date"] = (today - signup_date).days
    midnight = local_moment(row["timezone"], signup_date, time(0, 0))
    f["days_since_signup_from_midnight"] = days(t - midnight)
    signups = [at for at in h.signups if at <= t]
    f["days_since_signup_from_event"] = days(t - min(signups)) if signups else None
    f["customer_years"] = (
        today.year
        - signup_date.year
        - ((today.month, today.day) < (signup_date.month, signup_date.day))
    )
    if row["birthday"]:
        born = date.fromisoformat(row["birthday"])
        f["days_until_birthday"] = (next_anniversary(born, today) - today).days
        f["is_birthday_today"] = f["days_until_birthday"] == 0
        f["age"] = (
            None
            if born.year == 1900
            else (today.year - born.year - ((today.month, today.day) < (born.month, born.day)))
        )

    replies = [at for at in h.replies if at <= t]
    last_reply = max(replies) if replies else None
    waiting = [at for at in h.inbound if at <= t and (last_reply is None or at > last_reply)]
    f["unanswered_inbound_count"] = len(waiting)
    f["unanswered_inbound_hours"] = days(t - min(waiting)) * 24 if waiting else 0.0
    sent = [(at, category) for at, category in h.sent if at <= t]
    f["days_since_last_message"] = days(t - max(at for at, _ in sent)) if sent else None
    f["messages_sent_30d"] = sum(1 for at, _ in sent if at > t - timedelta(days=30))
    marketing = [at for at, category in sent if category == "marketing"]
    f["days_since_last_marketing"] = days(t - max(marketing)) if marketing else None

    referrals = [(at, friend) for at, friend in h.referrals if at <= t]
    f["referrals_count"] = len(referrals)
    by = [(at, who) for at, who in h.referred_by if at <= t]
    f["referred_by"] = by[0][1] if by else None
    f["friends_count"] = len({friend for _, friend in referrals} | {who for _, who in by})
    f["days_since_last_referral"] = days(t - referrals[-1][0]) if referrals else None
    f["lapse_reached_out_at"] = None  # set by lapsed-frequent-customer: empty state store
    return f


# ── the bundled playbooks, by hand ───────────────────────────────────────────

Facts = dict[str, object]


def gt(a: object, b: object) -> bool:
    return a is not None and b is not None and a > b


def gte(a: object, b: object) -> bool:
    return a is not None and b is not None and a >= b


def lte(a: object, b: object) -> bool:
    return a is not None and b is not None and a <= b


def tagged(f: Facts, tag: str) -> bool:
    return tag in f["tags"]


@dataclass(frozen=True)
class Play:
    id: str
    category: str
    priority: int
    kind: str  # event, anniversary, becomes, schedule
    condition: Callable[[Facts], bool] = lambda f: True  # becomes
    hold_days: float = 0  # becomes ... for
    event: str = ""
    where: Callable[[dict], bool] = lambda e: True
    date_fact: str = ""  # anniversary
    at: time = time(0, 0)  # anniversary, schedule
    audience: Callable[[Facts], bool] = lambda f: True
    suppresses: tuple[str, ...] = ()
    notify_only: str = ""  # the team told, when the playbook sends the customer nothing


PLAYS = [
    Play("answer-their-calls", "transactional", 95, "becomes",
         condition=lambda f: gte(f["unanswered_inbound_hours"], 4),
         suppresses=("weekly-digest", "keep-in-touch", "advocate-invite",
                     "onboarding-first-order-nudge")),
    Play("escalate-long-waits", "transactional", 90, "becomes",
         condition=lambda f: gte(f["unanswered_inbound_hours"], 24),
         notify_only="customer-care-leads"),
    Play("welcome", "transactional", 85, "event", event="signup",
         audience=lambda f: bool(f["first_name"])),
    Play("birthday-gift", "marketing", 80, "anniversary", date_fact="birthday", at=time(10, 0),
         audience=lambda f: gte(f["orders_count"], 1),
         suppresses=("weekly-digest", "keep-in-touch", "call-them-by-name")),
    Play("welcome-their-friends", "marketing", 75, "event", event="referral",
         where=lambda e: "friend_id" in e, suppresses=("weekly-digest", "advocate-invite")),
    Play("win-back", "marketing", 70, "becomes",
         condition=lambda f: gt(f["days_since_last_order"], 180)
         and f["lapse_reached_out_at"] is None,
         audience=lambda f: gte(f["total_spent"], 300) and gt(f["lapse_ratio"], 3),
         suppresses=("lapsed-check-in", "weekly-digest", "keep-in-touch")),
    Play("lapsed-frequent-customer", "marketing", 65, "becomes",
         condition=lambda f: gt(f["lapse_ratio"], 2), hold_days=3,
         audience=lambda f: gte(f["orders_count"], 4) and gt(f["persona_lapse_ratio"], 1.5)
         and (f["days_since_last_visit"] is None
              or gt(f["days_since_last_visit"], 1.5 * f["usual_order_interval"]))
         and lte(f["days_since_last_order"], 180),
         suppresses=("weekly-digest", "keep-in-touch")),
    Play("lapsed-check-in", "marketing", 60, "becomes",
         condition=lambda f: gt(f["lapse_ratio"], 4), hold_days=3,
         audience=lambda f: f["lapse_reached_out_at"] is not None
         and f["lapse_reached_out_at"] > f["now"] - timedelta(days=90)
         and lte(f["days_since_last_order"], 180),
         suppresses=("weekly-digest", "keep-in-touch")),
    Play("loyal-anniversary", "marketing", 55, "anniversary", date_fact="signup_date",
         at=time(9, 30),
         audience=lambda f: gte(f["customer_years"], 1)
         and (gte(f["orders_count"], 5) or tagged(f, "vip")),
         suppresses=("weekly-digest", "keep-in-touch")),
    Play("onboarding-first-order-nudge", "marketing", 50, "becomes",
         condition=lambda f: gt(f["days_since_signup"], 7),
         audience=lambda f: f["orders_count"] == 0 and not tagged(f, "test-account")),
    Play("advocate-invite", "marketing", 45, "becomes",
         condition=lambda f: gte(f["orders_count"], 10) and lte(f["lapse_ratio"], 1),
         audience=lambda f: f["referrals_count"] == 0 and f["unanswered_inbound_count"] == 0
         and not tagged(f, "advocate"),
         suppresses=("weekly-digest",)),
    Play("get-to-know-you", "marketing", 40, "becomes",
         condition=lambda f: gte(f["orders_count"], 1), hold_days=2),
    Play("call-them-by-name", "marketing", 40, "event", event="order",
         where=lambda e: e.get("amount", 0) >= 50,
         audience=lambda f: bool(f["first_name"]) and gte(f["orders_count"], 2)),
    Play("keep-in-touch", "marketing", 20, "becomes",
         condition=lambda f: gt(f["days_since_last_message"], 3 * f["cadence_days"]),
         audience=lambda f: gte(f["orders_count"], 2) and lte(f["lapse_ratio"], 1.5)),
    Play("weekly-digest", "marketing", 10, "schedule", at=time(11, 0),
         audience=lambda f: f["stage"] in ("active", "loyal", "advocate")
         and f["last_order_date"] is not None
         and f["last_order_date"] >= f["today"] - timedelta(days=365)
         and f["cadence_days"] <= 7 and f["unanswered_inbound_count"] == 0
         and not tagged(f, "no-digest")),
]  # fmt: skip
PLAY = {p.id: p for p in PLAYS}


class World:
    """The customer base read back from the files, with facts cached per (customer, moment)."""

    def __init__(self) -> None:
        self.people, self.events = load()
        self.by_customer: dict[str, list[dict]] = {}
        for e in self.events:
            self.by_customer.setdefault(e["customer_id"], []).append(e)
        self._persona: dict[datetime, dict[str, float]] = {}
        self._facts: dict[tuple[str, datetime, int], Facts] = {}

    def facts(self, cid: str, t: datetime, signup_variant: int = 0) -> Facts:
        key = (cid, t, signup_variant)
        if key not in self._facts:
            if t not in self._persona:
                self._persona[t] = persona_intervals(self.people, t)
            f = facts(self.people[cid], t, self._persona[t])
            f["now"] = t
            variants = [f["days_since_signup_by_date"], f["days_since_signup_from_midnight"],
                        f["days_since_signup_from_event"]]  # fmt: skip
            f["days_since_signup"] = variants[signup_variant]
            self._facts[key] = f
        return self._facts[key]

    def fires(self, play: Play, cid: str, now: datetime, stateless: bool = False,
              signup_variant: int = 0) -> bool:  # fmt: skip
        """Does ``play`` trigger and admit ``cid`` at ``now`` (first run: a 24-hour window)?

        Windowed (default): an event or anniversary or schedule moment in (now - 24h, now]; a
        `becomes` condition false at now - for - 24h and true at now - for and at now. Stateless:
        a `becomes` condition merely true at now - for and at now (no memory of before).
        """
        start = now - LOOKBACK
        h = self.people[cid]
        f = self.facts(cid, now, signup_variant)
        if play.kind == "event":
            hit = any(e["type"] == play.event and start < utc(e["at"]) <= now and play.where(e)
                      for e in self.by_customer.get(cid, []))  # fmt: skip
        elif play.kind in ("anniversary", "schedule"):
            hit = any(start < moment <= now for moment in self.moments(play, h, now))
        else:
            held = now - timedelta(days=play.hold_days)
            true_now = play.condition(f)
            true_held = play.condition(self.facts(cid, held, signup_variant))
            if stateless:
                hit = true_now and true_held
            else:
                before = play.condition(self.facts(cid, held - LOOKBACK, signup_variant))
                hit = true_now and true_held and not before
        return hit and play.audience(f)

    @staticmethod
    def moments(play: Play, h: History, now: datetime) -> list[datetime]:
        zone = h.row["timezone"]
        first = (now - LOOKBACK).astimezone(h.zone).date() - timedelta(days=1)
        out = []
        for offset in range(4):
            day = first + timedelta(days=offset)
            if play.kind == "schedule":
                if day.weekday() == 3:  # thu
                    out.append(local_moment(zone, day, play.at))
                continue
            value = h.row[play.date_fact]
            if not value:
                continue
            born = date.fromisoformat(value)
            if next_anniversary(born, day) == day and day.year > born.year:
                out.append(local_moment(zone, day, play.at))
        return out

    def decide(self, cid: str, now: datetime, stateless: bool = False,
               signup_variant: int = 0) -> tuple[list[str], str]:  # fmt: skip
        """The playbooks that fire for ``cid`` and what happens to the winning one (guards)."""
        fired = [p for p in PLAYS if self.fires(p, cid, now, stateless, signup_variant)]
        if not fired:
            return [], "nothing fires"
        suppressed = {s for p in fired for s in p.suppresses}
        candidates = [p for p in fired if p.id not in suppressed]
        f = self.facts(cid, now, signup_variant)
        winner = max(candidates, key=lambda p: p.priority)
        outcome = f"{winner.id}: "
        channel = (
            f["preferred_channel"]
            if f[f"consent_{f['preferred_channel']}"]
            else ("email" if f["consent_email"] else None)
        )
        local = f["local_time"]
        since = f["days_since_last_marketing"]
        if winner.notify_only:
            outcome += f"{winner.notify_only} notified (no message to the customer)"
        elif not f["first_name"]:
            outcome += "skipped (no first_name)"
        elif channel is None:
            outcome += "skipped (no consent)"
        elif winner.category == "marketing" and since is not None and since < f["cadence_days"]:
            outcome += f"held back by cadence ({since:.1f} < {f['cadence_days']} days)"
        elif local >= time(21, 0) or local < time(8, 0):
            outcome += f"deferred: quiet hours ({local:%H:%M} local), via {channel}"
        else:
            outcome += f"sent via {channel}"
        return [p.id for p in fired], outcome


# ── the self-check ───────────────────────────────────────────────────────────

STORIES = [
    ("c-0001", "birthday-gift", "1. birthday today, London, sms, buddy"),
    ("c-0002", "birthday-gift", "2a. birthday, Tokyo: quiet hours, deferred"),
    ("c-0003", "birthday-gift", "2b. birthday today, Perth: quiet hours, deferred"),
    ("c-0004", "lapsed-frequent-customer", "3. weekly regular gone quiet"),
    ("c-0005", "answer-their-calls", "4. unanswered for 6h, marketing yesterday"),
    ("c-0006", "welcome-their-friends", "5. referred c-0007 two hours ago"),
    ("c-0007", "welcome", "5. the friend, just signed up"),
    ("c-0008", "win-back", "6. churned after spending 600+"),
    ("c-0009", "birthday-gift", "7. birthday, but no first name: skipped"),
    ("c-0010", "call-them-by-name", "8. held back by cadence (marketing 5 days ago)"),
    ("c-0011", "welcome", "signed up today"),
    ("c-0012", "onboarding-first-order-nudge", "8 local days since signup, no order"),
    ("c-0013", "onboarding-first-order-nudge", "7.25 days since the signup event, no order"),
    ("c-0014", None, "test account: excluded from the onboarding nudge"),
    ("c-0015", "get-to-know-you", "first order 2.5 days ago"),
    ("c-0016", "call-them-by-name", "returning customer, 85.00 today"),
    ("c-0017", "escalate-long-waits", "unanswered for 30 hours"),
    ("c-0018", "keep-in-touch", "we have been silent for 3 x cadence"),
    ("c-0019", "loyal-anniversary", "third signup anniversary today"),
    ("c-0020", "lapsed-check-in", "cannot fire on a first run: needs lapse_reached_out_at"),
    ("c-0021", "advocate-invite", "10th order today, on rhythm"),
    ("c-0022", "weekly-digest", "audience of the Thursday letter"),
]


def approx(value: object, low: float, high: float) -> bool:
    return value is not None and low <= value <= high


def check() -> None:
    """Assert every planted story from the files just written; print what fires for whom."""
    w = World()
    day = timedelta(days=1)

    def f(cid: str, t: datetime = NOW) -> Facts:
        return w.facts(cid, t)

    # the files themselves
    ids = [h.row["customer_id"] for h in w.people.values()]
    assert len(ids) == N_CUSTOMERS and ids == sorted(ids)
    for h in w.people.values():
        r = h.row
        assert not r["email"] or r["email"].endswith(("@example.org", "@example.com")), r
        assert (
            not r["phone"]
            or r["phone"].startswith("+447700900")
            or (
                r["phone"].startswith("+1")
                and r["phone"][5:10] == "55501"
                and len(r["phone"]) == 12
            )
        ), r
        assert r["preferred_channel"] in ("email", "sms", "instagram")
        assert r["cadence_days"] in ("2", "14", "60") and r["tone"] in ("buddy", "salesy", "direct")
        assert r["stage"] in ("new", "onboarding", "active", "loyal", "at-risk", "lapsed",
                              "churned", "advocate")  # fmt: skip
        if r["birthday"]:
            date.fromisoformat(r["birthday"])
    moments = [utc(e["at"]) for e in w.events]
    assert moments == sorted(moments) and moments[-1] <= NOW
    assert EVENTS_JSONL.stat().st_size < 3_000_000, "keep events.jsonl modest"

    # 1. birthday today in London, on sms, buddy, 15:00 local
    a = f("c-0001")
    assert a["is_birthday_today"] and a["days_until_birthday"] == 0 and a["age"] == 36
    assert a["preferred_channel"] == "sms" and a["tone"] == "buddy" and a["consent_sms"]
    assert a["local_time"] == time(15, 0) and a["orders_count"] >= 1
    assert local_moment("Europe/London", date(2026, 11, 23), time(10)) == utc("2026-11-23T10:00")
    # 2a. Tokyo: 10:00 JST on 23 Nov = 01:00Z, in the window; now is 00:00 on the 24th
    a = f("c-0002")
    assert a["today"] == date(2026, 11, 24) and a["local_time"] == time(0, 0)
    assert a["days_until_birthday"] == 364 and a["orders_count"] >= 1
    assert w.moments(PLAY["birthday-gift"], w.people["c-0002"], NOW) == [utc("2026-11-23T01:00")]
    # 2b. Perth: still her birthday, 23:00 local
    a = f("c-0003")
    assert a["is_birthday_today"] and a["local_time"] == time(23, 0)
    # 3. lapsed frequent customer, against their own rhythm and their persona's
    a = f("c-0004")
    assert a["orders_count"] == 53 and a["orders_count"] >= 4
    assert approx(a["usual_order_interval"], 6.95, 7.05) and a["usual_order_interval_by_date"] == 7
    assert approx(a["days_since_last_order"], 17.2, 17.3)
    assert approx(a["lapse_ratio"], 2.4, 2.5) and a["persona_lapse_ratio"] > 1.5
    assert a["days_since_last_visit"] > 1.5 * a["usual_order_interval"]
    assert f("c-0004", NOW - 3 * day)["lapse_ratio"] > 2  # crossed 2 between 4 and 3 days ago
    assert f("c-0004", NOW - 4 * day)["lapse_ratio"] <= 2
    # 4. unanswered for six hours, and a marketing message yesterday
    a = f("c-0005")
    assert a["unanswered_inbound_count"] == 1 and approx(a["unanswered_inbound_hours"], 6, 6)
    assert f("c-0005", NOW - day)["unanswered_inbound_hours"] == 0
    assert a["days_since_last_marketing"] < 1 < a["cadence_days"] and a["consent_sms"]
    # 5. a referral in the window, both sides customers, the friend brand new
    a, friend = f("c-0006"), f("c-0007")
    assert a["referrals_count"] == 1 and f("c-0006", NOW - day)["referrals_count"] == 0
    assert friend["referred_by"] == "c-0006" and friend["friends_count"] == 1
    assert friend["days_since_signup_from_event"] < 0.2 and friend["signup_date"] == "2026-11-23"
    # 6. churned: 180+ days, spent 300+, 3+ times late against their own rhythm
    a = f("c-0008")
    assert a["total_spent"] >= 300 and approx(a["days_since_last_order"], 180.6, 180.7)
    assert approx(a["usual_order_interval"], 29.9, 30.1) and a["lapse_ratio"] > 3
    assert f("c-0008", NOW - day)["days_since_last_order"] <= 180
    # 7. birthday today, no first name
    a = f("c-0009")
    assert a["first_name"] is None and a["is_birthday_today"] and a["orders_count"] >= 1
    # 8. eligible for call-them-by-name, but a marketing message five days ago, cadence 14
    a = f("c-0010")
    assert approx(a["days_since_last_marketing"], 5, 5.5) and a["cadence_days"] == 14
    assert a["orders_count"] >= 2
    # welcome, onboarding, get-to-know-you
    assert f("c-0011")["days_since_signup_from_event"] == 1.5 / 24
    assert f("c-0012")["days_since_signup_by_date"] == 8 and f("c-0012")["orders_count"] == 0
    assert f("c-0012", NOW - day)["days_since_signup_by_date"] == 7
    assert approx(f("c-0013")["days_since_signup_from_midnight"], 7.6, 7.7)
    assert "test-account" in f("c-0014")["tags"]
    a = f("c-0015")
    assert a["orders_count"] == 1 and f("c-0015", NOW - 3 * day)["orders_count"] == 0
    assert f("c-0015", NOW - 2 * day)["orders_count"] == 1
    # call-them-by-name: a returning customer, nothing in the way
    a = f("c-0016")
    assert a["orders_count"] >= 2 and a["days_since_last_marketing"] > a["cadence_days"]
    # escalate: 30 hours without an answer (the auto-acknowledgement is not a reply)
    a = f("c-0017")
    assert approx(a["unanswered_inbound_hours"], 30, 30)
    assert f("c-0017", NOW - day)["unanswered_inbound_hours"] == 6
    # keep in touch: silent for more than 3 x 14 days, still on their rhythm
    a = f("c-0018")
    assert approx(a["days_since_last_message"], 42.8, 42.9) and a["lapse_ratio"] <= 1.5
    assert f("c-0018", NOW - day)["days_since_last_message"] < 42 and a["orders_count"] >= 2
    assert (a["today"] - date(2026, 10, 11)).days == 43  # also in local calendar days: 43, not 42
    # loyal anniversary
    a = f("c-0019")
    assert a["customer_years"] == 3 and f("c-0019", NOW - day)["customer_years"] == 2
    assert a["orders_count"] >= 5 and "vip" in a["tags"]
    # lapsed check-in: the lapse ratio crossed 4 (plus 3 days) in the window, under 180 days
    a = f("c-0020")
    assert approx(a["usual_order_interval"], 9.95, 10.05) and approx(a["lapse_ratio"], 4.3, 4.4)
    assert f("c-0020", NOW - 3 * day)["lapse_ratio"] > 4  # crossed 4 between 4 and 3 days ago
    assert f("c-0020", NOW - 4 * day)["lapse_ratio"] <= 4
    assert a["days_since_last_order"] <= 180
    # advocate invite: the 10th order today
    a = f("c-0021")
    assert a["orders_count"] == 10 and f("c-0021", NOW - day)["orders_count"] == 9
    assert a["lapse_ratio"] <= 1 and a["referrals_count"] == 0
    # weekly digest audience
    assert PLAY["weekly-digest"].audience(f("c-0022"))

    # every story fires as planted, with a 24-hour window; and also for an engine without memory
    print(f"{'customer':9} {'story':55} outcome (windowed first run)")
    for cid, play_id, story in STORIES:
        fired, outcome = w.decide(cid, NOW, signup_variant=2 if cid == "c-0013" else 0)
        print(f"{cid:9} {story:55} {outcome}  [{', '.join(fired)}]")
        if play_id in ("lapsed-check-in", "weekly-digest", "onboarding-first-order-nudge", None):
            continue
        assert play_id in fired, (cid, play_id, fired)
        assert outcome.startswith(play_id), (cid, outcome)
        # an engine that only tests `becomes` at now (and now - for) on a first run also fires it
        assert play_id in w.decide(cid, NOW, stateless=True)[0], (cid, "stateless")
    expect = {
        "c-0001": "sent via sms", "c-0002": "deferred: quiet hours (00:00",
        "c-0003": "deferred: quiet hours (23:00", "c-0009": "skipped (no first_name)",
        "c-0010": "held back by cadence", "c-0005": "sent via sms",
    }  # fmt: skip
    for cid, words in expect.items():
        assert words in w.decide(cid, NOW)[1], (cid, w.decide(cid, NOW))
    # the nudge: whichever definition of days_since_signup, one of c-0012 / c-0013 gets it
    nudge = PLAY["onboarding-first-order-nudge"]
    for variant in range(3):
        fired = [cid for cid in ("c-0012", "c-0013", "c-0014")
                 if w.fires(nudge, cid, NOW, signup_variant=variant)]  # fmt: skip
        assert fired and "c-0014" not in fired, (variant, fired)
    # lapsed-check-in: cannot fire from an empty state; lapsed-frequent-customer reaches Ethan on
    # 2026-11-03, and with that fact recorded lapsed-check-in fires for him now
    reached = utc("2026-11-03T15:00")
    assert w.fires(PLAY["lapsed-frequent-customer"], "c-0020", reached)
    w.facts("c-0020", NOW)["lapse_reached_out_at"] = reached
    assert w.fires(PLAY["lapsed-check-in"], "c-0020", NOW)
    w.facts("c-0020", NOW)["lapse_reached_out_at"] = None
    # weekly-digest: no Thursday 11:00 falls in the window anywhere; on Thursday it fires for Noah
    assert w.fires(PLAY["weekly-digest"], "c-0022", THURSDAY)
    assert "weekly-digest" in w.decide("c-0022", THURSDAY)[0]

    # across the whole base: every playbook fires for someone, except the two by construction
    counts = {p.id: 0 for p in PLAYS}
    for cid in w.people:
        for p in PLAYS:
            counts[p.id] += w.fires(p, cid, NOW)
    print("\nplaybooks firing at", iso(NOW), "(windowed first run, whole base):")
    for play_id, n in counts.items():
        print(f"  {play_id:30} {n}")
    silent = {play_id for play_id, n in counts.items() if n == 0}
    assert silent == {"weekly-digest", "lapsed-check-in"}, silent


# ── writing ──────────────────────────────────────────────────────────────────


def assign_stages(base: Base) -> None:
    """Stage and tags of background customers, as a CRM would have them at now."""
    people = {c.customer_id: History({}, ZoneInfo("UTC")) for c in base.customers}
    for at, cid, _, body in base.events:
        if body["type"] == "order":
            people[cid].orders.append((at, body["amount"]))
        elif body["type"] == "referral":
            people[cid].referrals.append((at, body["friend_id"]))
    for c in base.customers[22:]:
        h = people[c.customer_id]
        h.orders.sort()
        tags = [tag for tag in c.tags.split(";") if tag]
        spent = sum(amount for _, amount in h.orders)
        signed = date.fromisoformat(c.signup_date)
        since_signup = (NOW.date() - signed).days
        if not h.orders:
            c.stage = "new" if since_signup <= 7 else "onboarding"
        else:
            since = days(NOW - h.orders[-1][0])
            interval = own_interval(h, NOW)
            lapse = since / interval if interval else None
            if since > 180:
                c.stage = "churned"
            elif h.referrals and since < 90:
                c.stage = "advocate"
            elif (lapse is not None and lapse > 3) or (interval is None and since > 120):
                c.stage = "lapsed"
            elif (lapse is not None and lapse > 2) or (interval is None and since > 60):
                c.stage = "at-risk"
            elif len(h.orders) >= 10 and since_signup >= 365:
                c.stage = "loyal"
            else:
                c.stage = "active"
            if c.persona and PERSONA[c.persona].tag not in tags:
                tags.insert(0, PERSONA[c.persona].tag)
        if spent >= 3000:
            tags.append("vip")
        if signed < date(2023, 3, 1):
            tags.append("early-adopter")
        roll = base.rng.random()
        if roll < 0.04:
            tags.append("no-digest")
        elif roll < 0.3 and c.consent_email:
            tags.append("newsletter")
        c.tags = ";".join(dict.fromkeys(tags))


def write(base: Base) -> None:
    with CUSTOMERS_CSV.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for c in sorted(base.customers, key=lambda c: c.customer_id):
            writer.writerow(c.row())
    lines = [json.dumps(body, ensure_ascii=False) for _, _, _, body in sorted(
        base.events, key=lambda item: (item[0], item[1], item[2]))]  # fmt: skip
    EVENTS_JSONL.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    base = Base(random.Random(SEED))
    plant(base)
    assert len(base.customers) == 22
    background(base, 23)
    assign_stages(base)
    write(base)
    print(f"wrote {CUSTOMERS_CSV.name} ({len(base.customers)} customers) and "
          f"{EVENTS_JSONL.name} ({len(base.events)} events, "
          f"{EVENTS_JSONL.stat().st_size / 1e6:.1f} MB)\n")  # fmt: skip
    check()
    print("\nself-check passed: every planted story holds at", iso(NOW))
    return 0


if __name__ == "__main__":
    sys.exit(main())
