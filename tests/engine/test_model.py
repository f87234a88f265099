"""The engine across moments agrees with the model (``courtship.engine.oracle.Model``).

A ``RuleBasedStateMachine`` draws a small base (1 to 6 customers: time zones from Kiritimati to Pago
Pago, consents, addresses, cadence, names missing sometimes), a few events, and 1 to 4 valid
playbooks from the schema's vocabulary (event, anniversary, becomes and schedule triggers;
audiences; send, set, tag, untag, notify, wait+unless and split steps (two arms of such
steps); limits, priority, suppresses,
dedup keys, both categories). Its rules then run a later moment (minutes to days later), append
events (orders, inbound messages, referrals), edit a playbook (insert, remove or change a step,
change the priority) or remove one. The engine runs as the CLI does: playbooks validated from
files, a real SQLite state file, ``Engine.plan`` then ``Engine.record`` at every moment.

After every moment, per message (recipient, playbook, step id, status, guard code, channel,
due time), the engine's decisions equal the model's, and invariants hold over everything the
engine sent: one send per (recipient, dedup key); at most ``caps.per_moment`` marketing
playbooks per customer per moment; nothing sent in the recipient's quiet hours; cadence and
the weekly cap kept by marketing; every decision sent, deferred with a reason and a due time,
or blocked with a reason.

Corners the generator stays away from (each named where it is drawn): dedup keys shared by
several playbooks, or on playbooks that write to friends or re-enter always; ``suppresses``
and ``cooldown`` on transactional playbooks; ``send: {at: best_hour}``, ``branch:`` steps,
a split inside a split, and ``learning.preferred_channel`` are not drawn
(``tests/test_best_hour.py``, ``tests/test_split_branch.py`` and
``tests/test_preferred_learned.py`` hold them to ``docs/engine.md``). ``caps.per_channel``,
trigger edits, ``set`` steps of catalogue facts (``stage``, ``preferred_channel``, ``tone``)
and the texts of referral messages are drawn and compared. (Three engine bugs it found are
fixed and their corners drawn again: an untag before a tag of the same tag, team
notifications counted as messages, ``max_sends`` counting firings.)

Budget: ``COURTSHIP_MODEL_RANDOM=1 COURTSHIP_MODEL_EXAMPLES=2000 pytest tests/engine/test_model.py``
for a long run with new draws (default: the same 60 examples every time, under 90 seconds on
two cores); ``COURTSHIP_MODEL_STEPS`` sets the steps per example.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from test_agreement import RandomBase

from courtship.engine import Engine
from courtship.engine.oracle import Model, ModelDecision, step_ids
from courtship.project import Project
from courtship.schema import load_schema
from courtship.state import StateStore
from courtship.validate import validate_paths

EXAMPLES = int(os.environ.get("COURTSHIP_MODEL_EXAMPLES", "60"))
STEPS = int(os.environ.get("COURTSHIP_MODEL_STEPS", "12"))
#: CI runs the same examples every time (a red run is a change's doing, never the draw's);
#: COURTSHIP_MODEL_RANDOM=1 draws new ones, with COURTSHIP_MODEL_EXAMPLES for a long search.
RANDOM = os.environ.get("COURTSHIP_MODEL_RANDOM") == "1"
UTC = dt.UTC
DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(weeks=1)
ZONES = (None, "UTC", "Pacific/Kiritimati", "America/Los_Angeles", "Asia/Kathmandu")
ZONES += ("Pacific/Pago_Pago", "Europe/London", "Pacific/Auckland")
QUIET = (dt.time(21), dt.time(8))
FILE_TAGS = ("vip", "yoga")
#: The tag steps write (never one of the file's: untagging a file tag is another corner).
STEP_TAGS = ("gifted",)
CHANNELS = ("preferred", "email", "sms", "instagram")
TEMPLATES = ("hello", "nudge")
#: What a ``set`` step writes: a fact of its own (``seen_<index>``), or a catalogue fact that
#: an audience (``stage``) or the guards (``preferred_channel``, ``tone``) read.
SETTABLE = ((None, True), (None, True), ("stage", "loyal"), ("stage", "lapsed"))
SETTABLE += (("preferred_channel", "sms"), ("preferred_channel", "email"), ("tone", "direct"))
#: ``caps.per_channel`` (marketing messages per channel per moment, across all customers).
PER_CHANNEL = ({}, {}, {"email": 1}, {"email": 0}, {"sms": 1, "email": 2}, {"email": 1, "sms": 0})
#: Every template: in a referral's messages ``friend`` is the friend and ``referrer`` the
#: referrer, whoever hears; ``offer: {for: both}`` gives the recipient's code and the other's.
TEMPLATE = (
    "Hi {{ first_name }}; friend {{ friend.first_name }}; referrer {{ referrer.first_name }};"
    " code {{ offer.code }}; other {{ offer.friend_code }}\n"
)
CODE = re.compile(r"GIFT-[0-9A-F]{6}")
LINE = re.compile(r"(Hi .*;) code (\S*); other ?(\S*)")
#: Minutes to days between moments.
GAPS = tuple(dt.timedelta(minutes=m) for m in (5, 30, 90, 6 * 60, 13 * 60, 1440, 2880, 4320))
STEP_SCHEMA = load_schema()["$defs"]["step"]["properties"]
#: Step keys of the contract the schema may not have yet (the engine on main adds them).
HAS_STEP_ID = "id" in STEP_SCHEMA
HAS_OPTIONAL = "optional" in load_schema()["$defs"]["send"]["properties"]
HAS_EXPIRES = "expires" in load_schema()["$defs"]["send"]["properties"]
HAS_SPLIT = "split" in load_schema()["$defs"]["step"]["properties"]


# ── random bases and events ──────────────────────────────────────────────


@st.composite
def customers(draw: st.DrawFn, cid: str, now: dt.datetime) -> dict[str, Any]:
    def maybe(*values: Any) -> Any:
        return draw(st.sampled_from((None, *values)))

    def near(days: int) -> dt.date:
        return now.date() + dt.timedelta(days=draw(st.integers(-days, days)))

    return {
        "customer_id": cid,
        "first_name": draw(st.sampled_from(("Maya", "Ben", "Ana", "Eve", None, " "))),
        "last_name": None,
        "email": maybe(f"{cid}@example.org"),
        "phone": maybe(f"+4477009000{cid[-2:]}"),
        "instagram_id": maybe(f"ig{cid}"),
        "timezone": draw(st.sampled_from(ZONES)),
        "language": None,
        "city": None,
        "persona": None,
        "birthday": draw(st.none() | st.just(near(3).replace(year=1990))),
        "signup_date": draw(st.none() | st.just(near(400))),
        "stage": maybe("active", "loyal", "lapsed"),
        "tags": draw(st.none() | st.sets(st.sampled_from(FILE_TAGS), min_size=1).map(sorted)),
        "preferred_channel": maybe("email", "sms", "instagram"),
        "cadence_days": draw(st.sampled_from((None, 0, 1, 2, 7))),
        "tone": maybe("buddy", "direct"),
        "consent_email": draw(st.sampled_from((True, True, False, None))),
        "consent_sms": draw(st.sampled_from((True, False, None))),
        "consent_instagram": draw(st.sampled_from((True, False, None))),
    }


@st.composite
def events(draw: st.DrawFn, ids: list[str], now: dt.datetime, back: int) -> dict[str, Any]:
    """An order, inbound message, referral or visit within ``back`` minutes before ``now``,
    or up to two days after it."""
    kind = draw(st.sampled_from(("order", "order", "inbound_message", "referral", "visit")))
    minutes = draw(st.integers(-back, 2 * 1440))
    event: dict[str, Any] = {
        "customer_id": draw(st.sampled_from(ids)),
        "type": kind,
        "at": now + dt.timedelta(minutes=minutes),
    }
    if kind == "order":
        event["amount"] = draw(st.sampled_from((None, 10.0, 60.0)))
    elif kind == "inbound_message":
        event["channel"] = draw(st.sampled_from(("instagram", "email", "sms")))
    elif kind == "referral":
        event["friend_id"] = draw(st.sampled_from((*ids, "x-99", None)))
    else:
        event["channel"] = "web"
    return event


# ── random playbooks ─────────────────────────────────────────────────────


def leaves(readable: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    tests: list[dict[str, Any]] = [
        {"fact": "orders_count", "gte": 1},
        {"fact": "orders_count", "gte": 2},
        {"fact": "total_spent", "gt": 50},
        {"fact": "unanswered_inbound_count", "gte": 1},
        {"fact": "stage", "in": ["active", "loyal"]},
        {"tag": "gifted"},
        {"tag": "vip"},
        {"not": {"tag": "gifted"}},
    ]
    tests += [{"fact": name, "exists": True} for name in readable]
    return st.sampled_from(tests)


def conditions(readable: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    leaf = leaves(readable)
    return leaf | st.lists(leaf, min_size=1, max_size=2).map(lambda c: {"all": c})


@st.composite
def triggers(draw: st.DrawFn, readable: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(("event", "event", "anniversary", "schedule", "becomes")))
    if kind == "event":
        trigger: dict[str, Any] = {
            "event": draw(st.sampled_from(("order", "inbound_message", "referral", "visit")))
        }
        if trigger["event"] == "order" and draw(st.booleans()):
            trigger["where"] = {"field": "amount", "gte": 20}
        return trigger
    if kind == "anniversary":
        trigger = {"anniversary": draw(st.sampled_from(("birthday", "signup_date")))}
        if draw(st.booleans()):
            trigger["at"] = draw(st.sampled_from(("09:00", "22:30", "00:00")))
        return trigger
    if kind == "schedule":
        trigger = {"schedule": {"every": draw(st.sampled_from(("1h", "6h", "1d", "1w")))}}
        if draw(st.booleans()):
            trigger["at"] = draw(st.sampled_from(("09:00", "10:15")))
        return trigger
    trigger = {"becomes": draw(conditions(readable))}
    if draw(st.booleans()):
        trigger["for"] = draw(st.sampled_from(("1h", "1d")))
    return trigger


@st.composite
def steps(
    draw: st.DrawFn, index: int, friend: bool, notify: bool, arms: bool = True
) -> dict[str, Any]:
    """A step of playbook ``index``; ``friend``: a send may go to the referral's friend;
    ``notify``: a team notification is allowed (see ``_notifies``); ``arms``: it may be a
    ``split`` (of two arms of one or two steps each, never a split again)."""
    kinds = ("send", "send", "send", "set", "tag", "untag", "wait")
    kinds += ("notify",) if notify else ()
    kinds += ("split",) if arms and HAS_SPLIT else ()
    kind = draw(st.sampled_from(kinds))
    if kind == "split":
        inner = steps(index, friend, notify, arms=False)
        step: dict[str, Any] = {
            "split": [
                {
                    "id": name,
                    "weight": draw(st.sampled_from((1, 1, 3))),
                    "steps": draw(st.lists(inner, min_size=1, max_size=2)),
                }
                for name in ("a", "b")
            ]
        }
    elif kind == "send":
        channel = draw(st.sampled_from(CHANNELS))
        send: dict[str, Any] = {"channel": channel, "template": draw(st.sampled_from(TEMPLATES))}
        fallback = draw(st.lists(st.sampled_from(CHANNELS[1:]), unique=True, max_size=2))
        if [c for c in fallback if c != channel]:
            send["fallback"] = [c for c in fallback if c != channel]
        if friend and draw(st.booleans()):
            send["to"] = "friend"
            if draw(st.booleans()):
                send["offer"] = {"percent_off": 10, "for": "both"}
        if HAS_OPTIONAL and draw(st.integers(0, 3)) == 0:
            send["optional"] = True
        if HAS_EXPIRES and draw(st.integers(0, 3)) == 0:
            send["expires"] = draw(st.sampled_from(("1d", "3d")))
        step = {"send": send}
    elif kind == "set":  # a fact of its own, or a catalogue fact conditions and guards read
        fact, value = draw(st.sampled_from(SETTABLE))
        step = {"set": {"fact": fact or f"seen_{index}", "value": value}}
    elif kind == "tag":
        step = {"tag": draw(st.sampled_from(STEP_TAGS))}
    elif kind == "untag":
        step = {"untag": draw(st.sampled_from(STEP_TAGS))}
    elif kind == "notify":
        step = {"notify": {"team": "support"}}
    else:
        step = {"wait": draw(st.sampled_from(("30m", "2h", "1d", "3d")))}
        if draw(st.booleans()):
            step["unless"] = {"event": draw(st.sampled_from(("order", "inbound_message")))}
    if HAS_STEP_ID and draw(st.integers(0, 4)) == 0:
        step["id"] = f"step-{draw(st.integers(0, 3))}"
    return step


def _unique_ids(respond: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps, a declared id kept only where no earlier step has it (two are an error),
    those in a split's arms too."""
    seen: set[str] = set()
    for step in _every_step(respond):
        if step.get("id") in seen:
            del step["id"]
        elif "id" in step:
            seen.add(step["id"])
    return respond


def _every_step(respond: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps, each split followed by the steps of its arms."""
    out = []
    for step in respond:
        out.append(step)
        for arm in step.get("split") or []:
            out += _every_step(arm["steps"])
    return out


def _notifies(document: dict[str, Any], cadence: bool) -> bool:
    """Notify steps anywhere: a team notification is no message to the customer (it moves
    neither their cadence nor a cooldown)."""
    return True


def _friendly(document: dict[str, Any]) -> bool:
    """Whether a send of this playbook may go to a friend: referral triggers only, and (corners
    avoided) no dedup key, no re-entry always, no max_sends."""
    limits = document.get("limits", {})
    return (
        document["trigger"].get("event") == "referral"
        and "dedup_key" not in document
        and limits.get("reentry") != "always"
        and "max_sends" not in limits
    )


@st.composite
def playbooks(
    draw: st.DrawFn, index: int, readable: list[str], count: int, cadence: bool
) -> dict[str, Any]:
    category = draw(st.sampled_from(("marketing", "marketing", "transactional")))
    document: dict[str, Any] = {
        "id": f"pb-{index}",
        "title": f"Playbook {index}",
        "stage": "active",
        "category": category,
        "trigger": draw(triggers(readable)),
        "priority": draw(st.sampled_from((10, 50, 50, 90))),
    }
    if draw(st.integers(0, 2)) == 0:
        document["audience"] = draw(conditions(readable))
    limits: dict[str, Any] = {}
    if draw(st.booleans()):
        limits["once_every"] = draw(st.sampled_from(("1h", "1d", "7d")))
    if draw(st.booleans()):
        limits["reentry"] = draw(st.sampled_from(("always", "never", "after_exit")))
    if draw(st.integers(0, 3)) == 0:  # messages to the customer that went out
        limits["max_sends"] = draw(st.integers(1, 2))
    if category == "marketing" and draw(st.integers(0, 3)) == 0:
        limits["cooldown"] = draw(st.sampled_from(("1h", "2d")))  # marketing only (a corner)
    if limits:
        document["limits"] = limits
    others = [f"pb-{i}" for i in range(count) if i != index]
    if category == "marketing" and others and draw(st.integers(0, 2)) == 0:  # marketing only
        document["suppresses"] = draw(st.lists(st.sampled_from(others), min_size=1, unique=True))
    # A dedup key of its own (shared keys are a corner), not with friends or re-entry always.
    if limits.get("reentry") != "always" and draw(st.booleans()):
        document["dedup_key"] = draw(
            st.sampled_from(("{{ playbook.id }}-{{ now.year }}", "{{ playbook.id }}-{{ now.day }}"))
        )
    friend, notify = _friendly(document), _notifies(document, cadence)
    chosen = draw(st.lists(steps(index, friend, notify), min_size=1, max_size=4))
    document["respond"] = _unique_ids(chosen)
    return document


# ── the engine as the CLI runs it ────────────────────────────────────────

#: A guard code for each reason of today's engine (until its decisions carry ``guard``).
REASON_CODES = (
    ("the friend is not a known customer", "unknown-friend"),
    ("no consented channel", "no-consent"),
    ("instagram: outside the 24-hour messaging window, and no other", "instagram-only"),
    ("instagram: outside the 24-hour messaging window; fell back", "instagram"),
    ("no first name", "no-name"),
    ("already sent with the same dedup key", "duplicate"),
    ("quiet hours", "quiet-hours"),
    ("their cadence", "cadence"),
    ("the cooldown after", "cooldown"),
    ("the cap of marketing messages", "cap"),
    ("a higher-priority playbook", "priority"),
    ("suppressed by", "suppressed"),
    ("template", "template"),
)


def engine_key(decision: Any, engine: Engine) -> tuple[Any, ...]:
    """An engine decision as the model's ``ModelDecision.key``."""
    guard = getattr(decision, "guard", None)
    if guard is None and decision.reason:
        guard = next((code for text, code in REASON_CODES if decision.reason.startswith(text)), "?")
    step_id = getattr(decision, "step_id", None)
    if step_id is None:
        step_id = step_ids(engine.playbooks[decision.playbook].respond)[decision.step]
    due = decision.due_at.astimezone(UTC) if decision.due_at is not None else None
    return (
        decision.recipient_id or None,
        decision.playbook,
        step_id,
        decision.status,
        guard or None,
        decision.channel,
        due,
    )


def _sorted(keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(keys, key=repr)


def _local_quiet(moment: dt.datetime, zone: str) -> bool:
    time = moment.astimezone(ZoneInfo(zone)).time()
    start, end = QUIET
    return time >= start or time < end


class Moments(RuleBasedStateMachine):
    """The engine and the model, moment after moment, over the same base and playbooks."""

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        draw = data.draw
        self.now = draw(
            st.datetimes(dt.datetime(2026, 1, 1), dt.datetime(2027, 12, 31)).map(
                lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
            )
        )
        count = draw(st.integers(1, 6))
        ids = [f"c{i:02d}" for i in range(count)]
        self.customers = [draw(customers(cid, self.now)) for cid in ids]
        self.cadence = any(c["cadence_days"] for c in self.customers)
        self.events: list[dict[str, Any]] = draw(
            st.lists(events(ids, self.now - 12 * dt.timedelta(hours=1), 3 * 1440), max_size=8)
        )
        self.documents: dict[str, dict[str, Any]] = {}
        total = draw(st.integers(1, 4))
        for index in range(total):
            document = draw(playbooks(index, self._readable(index), total, self.cadence))
            self.documents[document["id"]] = document
        self.project = Project(
            root=Path("."),
            playbooks=Path("."),
            timezone=draw(st.sampled_from(("UTC", "Pacific/Auckland"))),
            per_moment=draw(st.sampled_from((1, 1, 2))),
            per_customer_per_week=draw(st.sampled_from((None, 1, 2, 3))),
            per_channel=draw(st.sampled_from(PER_CHANNEL)),
        )
        self.root = Path(tempfile.mkdtemp(prefix="courtship-model-"))
        (self.root / "playbooks" / "templates").mkdir(parents=True)
        for name in TEMPLATES:
            (self.root / "playbooks" / "templates" / f"{name}.md").write_text(TEMPLATE)
        self.state = StateStore(self.root / "state.sqlite")
        assert self._write(strict=True), "the generator writes valid playbooks"
        self.model = Model(
            self.customers,
            self.events,
            self._loaded(),
            timezone=self.project.timezone,
            lookback=self.project.lookback,
            quiet=QUIET,
            per_moment=self.project.per_moment,
            per_customer_per_week=self.project.per_customer_per_week,
            per_channel=self.project.per_channel,
        )
        self.sent: list[tuple[dt.datetime, Any]] = []

    def teardown(self) -> None:
        if hasattr(self, "state"):
            self.state.close()
            shutil.rmtree(self.root, ignore_errors=True)

    def _readable(self, index: int) -> list[str]:
        """The facts of their own that playbooks before ``index`` set (no cycles)."""
        return sorted(
            {
                step["set"]["fact"]
                for pb_id, document in self.documents.items()
                if int(pb_id.split("-")[1]) < index
                for step in _every_step(document["respond"])
                if "set" in step and step["set"]["fact"].startswith("seen_")
            }
        )

    # ── files ─────────────────────────────────────────────────────────────
    def _write(self, strict: bool = False) -> bool:
        """Write the playbooks as files; False (and nothing written) if they do not validate."""
        folder = self.root / "playbooks"
        trial = Path(tempfile.mkdtemp(dir=self.root))
        shutil.copytree(folder / "templates", trial / "templates")
        for pb_id, document in self.documents.items():
            (trial / f"{pb_id}.yaml").write_text(json.dumps(document))
        report = validate_paths([trial])
        shutil.rmtree(trial)
        # Playbooks that set and read the same catalogue fact (``stage``) can make a cycle, which
        # validation rightly refuses: such a draw is no example, any other error is a bug.
        cycles = [f for f in report.errors if f.rule_id == "dependency-cycle"]
        assume(not (strict and cycles))
        assert not (strict and report.errors), [str(f) for f in report.errors]
        if report.errors:
            return False
        for old in folder.glob("*.yaml"):
            old.unlink()
        for pb_id, document in self.documents.items():
            (folder / f"{pb_id}.yaml").write_text(json.dumps(document))
        return True

    def _loaded(self) -> list[Any]:
        report = validate_paths([self.root / "playbooks"])
        assert report.errors == [], [str(f) for f in report.errors]
        return list(report.playbooks)

    def _change(self, documents: dict[str, dict[str, Any]]) -> None:
        """Edit the playbooks: kept if they still validate (the model follows), else undone."""
        before = self.documents
        self.documents = documents
        if self._write():
            self.model.set_playbooks(self._loaded())
        else:
            self.documents = before

    # ── rules ─────────────────────────────────────────────────────────────
    @rule(gap=st.sampled_from(GAPS[:4]), jitter=st.sampled_from((0, 0, 1, 17)))
    def run_soon(self, gap: dt.timedelta, jitter: int) -> None:
        self.run(gap, jitter)

    def decide(self, engine: Engine, base: Any) -> Any:
        """The plan of the moment (``test_model_dask`` decides it over the base in parts)."""
        return engine.plan(base, self.now, self.state)

    @rule(gap=st.sampled_from(GAPS), jitter=st.sampled_from((0, 0, 1, 17)))
    def run(self, gap: dt.timedelta, jitter: int) -> None:
        self.now += gap + dt.timedelta(seconds=jitter)
        playbooks = self._loaded()
        engine = Engine(playbooks, self.project)
        base = RandomBase(self.customers, self.events, self.now, self.project.timezone).base()
        plan = self.decide(engine, base)
        engine.record(plan, self.state)
        outcome = self.model.decide(self.now)
        self.model.record(outcome)
        ours = _sorted([engine_key(d, engine) for d in plan.decisions])
        theirs = _sorted([d.key() for d in outcome.decisions])
        assert ours == theirs, self._difference(ours, theirs)
        self._invariants(plan.decisions, outcome.decisions)
        self._texts(plan.decisions, outcome.decisions, engine)
        for decision in outcome.decisions:
            event(f"{decision.status}: {decision.guard or ''}")

    @rule(data=st.data())
    def happen(self, data: st.DataObject) -> None:
        ids = [c["customer_id"] for c in self.customers]
        self.events.extend(data.draw(st.lists(events(ids, self.now, 60), min_size=1, max_size=3)))

    @precondition(lambda self: bool(getattr(self, "documents", None)))
    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        documents = copy.deepcopy(self.documents)
        pb_id = data.draw(st.sampled_from(sorted(documents)))
        document = documents[pb_id]
        index = int(pb_id.split("-")[1])
        respond = document["respond"]
        kind = data.draw(st.sampled_from(("insert", "remove", "change", "priority", "trigger")))
        place = data.draw(st.integers(0, len(respond) - (0 if kind == "insert" else 1)))
        new = steps(index, _friendly(document), _notifies(document, self.cadence))
        if kind == "insert":
            respond.insert(place, data.draw(new))
        elif kind == "remove" and len(respond) > 1:
            del respond[place]
        elif kind == "change":
            respond[place] = data.draw(new)
        elif kind == "trigger":  # customers waiting in it stay (their steps are still there)
            document["trigger"] = data.draw(triggers(self._readable(index)))
        else:
            document["priority"] = data.draw(st.sampled_from((5, 50, 95)))
        _unique_ids(respond)
        self._change(documents)

    @precondition(lambda self: len(getattr(self, "documents", ())) > 1)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        documents = copy.deepcopy(self.documents)
        del documents[data.draw(st.sampled_from(sorted(documents)))]
        self._change(documents)

    # ── checks ────────────────────────────────────────────────────────────
    def _difference(self, ours: list[Any], theirs: list[Any]) -> str:
        only_engine = [k for k in ours if k not in theirs]
        only_model = [k for k in theirs if k not in ours]
        return (
            f"at {self.now.isoformat()}\nengine only: {only_engine}\nmodel only: {only_model}\n"
            f"playbooks: {json.dumps(self.documents, default=str)}"
        )

    def _texts(self, decisions: list[Any], modelled: list[ModelDecision], engine: Engine) -> None:
        """Every message sent reads as the model renders it: the recipient's first name, the
        referral's friend as ``friend`` and its referrer as ``referrer`` in whichever message,
        and with ``offer: {for: both}`` two codes, the recipient's and the other's."""
        names = {c["customer_id"]: c["first_name"] or "" for c in self.customers}
        expected: dict[tuple[Any, ...], list[str]] = {}
        for d in modelled:
            if d.status == "send":
                friend = names.get(d.friend_id, "") if d.friend_id else ""
                referrer = names[d.customer_id] if d.friend_id else ""
                line = f"Hi {names[d.recipient or '']}; friend {friend}; referrer {referrer};"
                expected.setdefault(d.key(), []).append(line)
        for decision in decisions:
            if decision.status != "send":
                continue
            pb = engine.playbooks[decision.playbook]
            offer = pb.flow[decision.step]["send"].get("offer")
            parts = LINE.fullmatch(decision.text.splitlines()[0].strip())
            assert parts is not None, decision.text
            first, code, other = parts.groups()
            assert first in expected[engine_key(decision, engine)], (first, decision)
            if offer is None:
                assert (code, other) == ("", ""), decision.text
            else:  # for: both
                assert CODE.fullmatch(code) and CODE.fullmatch(other) and code != other

    def _invariants(self, decisions: list[Any], modelled: list[ModelDecision]) -> None:
        zones = {c["customer_id"]: c["timezone"] or self.project.timezone for c in self.customers}
        cadence = {c["customer_id"]: c["cadence_days"] for c in self.customers}
        for decision in decisions:
            assert decision.status in ("send", "deferred", "blocked")
            if decision.status != "send":
                assert decision.reason
            if decision.status == "deferred":
                assert decision.due_at is not None and decision.due_at > self.now
        earlier = list(self.sent)
        now_sent = [d for d in decisions if d.status == "send"]
        self.sent += [(self.now, d) for d in now_sent]
        keys = [(d.recipient_id, d.dedup_key) for _, d in self.sent if d.dedup_key]
        assert len(keys) == len(set(keys)), "two sends with one dedup key"
        for channel, cap in self.project.per_channel.items():
            carried = [d for d in now_sent if d.category == "marketing" and d.channel == channel]
            assert len(carried) <= cap, f"caps.per_channel: {channel}"
        for decision in now_sent:
            recipient = decision.recipient_id
            assert not _local_quiet(self.now, zones[recipient]), "sent in quiet hours"
            if decision.category != "marketing":
                continue
            speakers = {
                d.playbook
                for d in now_sent
                if d.recipient_id == recipient and d.category == "marketing"
            }
            assert len(speakers) <= self.project.per_moment
            days = cadence[recipient]
            if days:
                last = [at for at, d in earlier if d.recipient_id == recipient]
                assert not last or self.now - max(last) >= days * DAY, "cadence"
            weekly = self.project.per_customer_per_week
            if weekly is not None:
                # Sends before this moment: its earlier guard rounds do not count (contract).
                week = [
                    d
                    for at, d in earlier
                    if d.recipient_id == recipient
                    and d.category == "marketing"
                    and at > self.now - WEEK
                ]
                assert len(week) < weekly, "weekly cap"

    @invariant()
    def nothing_left_half_done(self) -> None:
        if hasattr(self, "model"):
            for enrollment in self.model.state.enrollments:
                assert enrollment.due_at is not None


Moments.TestCase.settings = settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_the_engine_across_moments_agrees_with_the_model = Moments.TestCase
