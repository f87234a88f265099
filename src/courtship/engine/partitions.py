"""A customer base evaluated in parts: the same moment as ``Engine.plan``, decided part by part
(on a Dask cluster: ``courtship.executors``), with the same decisions.

A part is a run of consecutive customers of the customer file, with their events. What a
customer reaches at a moment (their facts, the triggers, audiences and limits, the steps up to
their next message) is theirs alone and is worked out in their part. What spans customers is
computed once for the whole base and given to every part (``SharedFacts``):

- the personas' medians (``persona_order_interval`` …) and the BG/NBD fits of the learned facts,
  from what each part counts of its customers (the counts of the parts add up to the whole
  base's, so the medians and the fits are those of the whole base);
- the persona prior of the learned preferences (``best_channel``, ``best_hour``), from what
  each part counts per persona (answers per channel, activity per local hour);
- the churn model of ``churn_risk``, fitted once on the training rows of every part, one
  after the other in the file's order (those one process fits on: the same model);
- the referral facts, from the whole referral graph: a friend may be in another part.

The parts give back the messages they reached, with the facts of the customers concerned; the
guards (consent and quiet hours per message, priority per recipient, the per-channel caps over
all messages together) then judge them in the driver, in one place, as in one process. The
state store is read before and written after, by the driver only: a part that fails is worked
out again, and nothing is recorded twice.

Three passes over the parts: a survey (their size and their referrals), the counts the shared
facts are made of (the parts compute the moment once with their own values, and count what
they were given), and the moment itself; and, when a playbook reads ``churn_risk``, one more
before the last: the churn model's training rows, whose features read the shared facts. The
counts are asked at exactly the moments the moment asks them at, since the same code asks.
"""

from __future__ import annotations

import datetime as dt
import resource
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from courtship.engine import render
from courtship.engine.facts import (
    AT_RISK_STAGES,
    ROW,
    _persona_medians,
    _Personas,
    _referral_links,
    degrees_at,
    friends_of,
    graph_of,
)
from courtship.engine.facts import _friends as whole_friends
from courtship.engine.moment import Reach, SavedStreaks
from courtship.engine.plan import Plan
from courtship.engine.sequences import STARTED, Candidates, _where
from courtship.engine.triggers import MARK
from courtship.learn.churn import ChurnModel, fit_rows
from courtship.learn.facts import fits
from courtship.sources import CustomerBase

if TYPE_CHECKING:
    from courtship.engine.moment import Engine
    from courtship.state import StateStore


class Executor(Protocol):
    """Runs a function over the parts: ``fn(*each, *common)`` for each of ``each``, in order."""

    def map(
        self, fn: Callable[..., Any], each: Sequence[tuple[Any, ...]], common: tuple[Any, ...]
    ) -> list[Any]: ...


class InProcess:
    """The parts one after the other, in this process (what the tests compare Dask with)."""

    def map(
        self, fn: Callable[..., Any], each: Sequence[tuple[Any, ...]], common: tuple[Any, ...]
    ) -> list[Any]:
        return [fn(*args, *common) for args in each]


# ── the parts ────────────────────────────────────────────────────────────


@dataclass
class Part:
    """Consecutive customers of the file (from ``offset``), with their events: held (a slice
    of a base read whole), or read by the part itself from its Parquet files."""

    number: int
    offset: int
    size: int
    customers: pl.DataFrame | None = None
    events: pl.DataFrame | None = None
    #: the Parquet files of its customers, and of the events to read theirs from
    customer_files: tuple[str, ...] = ()
    event_files: tuple[str, ...] = ()
    #: the columns declared facts are read as (``courtship.intake``), for Parquet parts
    reader: Callable[[Part], CustomerBase] | None = field(default=None, repr=False)

    def load(self) -> CustomerBase:
        if self.reader is not None:
            return self.reader(self)
        assert self.customers is not None and self.events is not None
        return CustomerBase(self.customers, self.events)


def split(base: CustomerBase, parts: int) -> list[Part]:
    """A base read whole, in ``parts`` runs of consecutive customers with their events."""
    height = base.customers.height
    size = max(1, -(-height // max(1, parts)))
    ids = base.customers.get_column("customer_id").cast(pl.String())
    events_ids = base.events.get_column("customer_id").cast(pl.String())
    out = []
    for number, offset in enumerate(range(0, max(height, 1), size)):
        mine = ids.slice(offset, size)
        out.append(
            Part(
                number,
                offset,
                mine.len(),
                base.customers.slice(offset, size),
                base.events.filter(events_ids.is_in(mine.implode())),
            )
        )
    return out


# ── what the parts read of the state store ───────────────────────────────


class StateView:
    """What a part reads of the state store, read once by the driver: a part never opens the
    store (it is written by the driver only). The streaks of ``becomes`` playbooks are matched
    by customer id in a part (rows are numbered per part)."""

    def __init__(self, state: StateStore, engine: Engine) -> None:
        self._last = state.last_run()
        self._inbound = state.callbacks("inbound")
        self._sends = state.sends()
        self._set_facts = state.set_facts()
        self._set_tags = state.set_tags()
        self._consent = state.consent_changes()
        self._fired = state.fired()
        self._active = state.active_enrollments()
        self._streaks: dict[str, pl.DataFrame | None] = {}
        if self._last is not None:
            for pb_id in engine.order:
                if "becomes" in engine.playbooks[pb_id].trigger:
                    saved = state.load_streaks(pb_id, self._last)
                    self._streaks[pb_id] = saved.drop(MARK) if saved is not None else None

    def last_run(self) -> dt.datetime | None:
        return self._last

    def callbacks(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self._inbound

    def sends(self) -> pl.DataFrame:
        return self._sends

    def set_facts(self) -> pl.DataFrame:
        return self._set_facts

    def set_tags(self) -> pl.DataFrame:
        return self._set_tags

    def consent_changes(self) -> list[dict[str, Any]]:
        return self._consent

    def fired(self) -> pl.DataFrame:
        return self._fired

    def active_enrollments(self) -> set[tuple[str, str]]:
        return self._active

    def load_streaks(
        self, playbook: str, moment: dt.datetime, *, file_mark: int | None = None
    ) -> pl.DataFrame | None:
        return self._streaks.get(playbook)

    def has_streaks(self, playbook: str, moment: dt.datetime) -> bool:
        return self._streaks.get(playbook) is not None


# ── pass 1: the survey ───────────────────────────────────────────────────


@dataclass
class Survey:
    size: int
    #: the referrals of the part's customers: referrer_id, friend_id, at (µs)
    referrals: pl.DataFrame
    #: a hash of each of its customer ids (ids must be unique across the parts too)
    hashes: pl.Series
    #: the friends named by its events of the moment's window: a message may go to them
    friends: pl.Series
    peak_rss: int


def survey(part: Part, since: dt.datetime, now: dt.datetime) -> Survey:
    from courtship.engine.facts import referral_rows

    base = part.load()
    referrals = referral_rows(base).select("referrer_id", "friend_id", "at")
    hashes = base.customers.get_column("customer_id").cast(pl.String()).hash(seed=20261201)
    friends = pl.Series([], dtype=pl.String())
    if "friend_id" in base.events.columns:
        friends = (
            base.events.filter((pl.col("at") > since) & (pl.col("at") <= now))
            .get_column("friend_id")
            .cast(pl.String())
            .drop_nulls()
            .unique()
        )
    return Survey(base.customers.height, referrals, hashes, friends, _peak_rss())


def ids_with(part: Part, hashes: pl.Series) -> list[str]:
    """The part's customer ids of these hashes."""
    ids = part.load().customers.get_column("customer_id").cast(pl.String())
    return ids.filter(ids.hash(seed=20261201).is_in(hashes.implode())).to_list()


def _unique_ids(parts: list[Part], surveys: list[Survey], executor: Executor) -> None:
    """A customer id in two parts is an error naming it and both places (as in one file)."""
    together = pl.concat([s.hashes for s in surveys])
    if together.n_unique() == together.len():
        return
    twice = together.filter(together.is_duplicated()).unique()
    found = executor.map(ids_with, [(p, twice) for p in parts], ())
    where: dict[str, list[str]] = {}
    for part, ids in zip(parts, found, strict=True):
        for customer in ids:
            where.setdefault(customer, []).append(_place(part))
    repeated = sorted(c for c, places in where.items() if len(places) > 1)
    if repeated:
        raise PartitionError(
            f"customer {repeated[0]} is in {' and in '.join(where[repeated[0]])}"
            + (f" ({len(repeated) - 1} more ids are in two parts)" if len(repeated) > 1 else "")
            + "; customer ids must be unique across the customer files"
        )


def _place(part: Part) -> str:
    if part.customer_files:
        return ", ".join(part.customer_files)
    return f"rows {part.offset + 1} to {part.offset + part.size} of the customers"


# ── pass 2: what the shared facts are made of ────────────────────────────


class Counting:
    """The shared facts as a part would compute them alone, counting what they are made of."""

    def __init__(self, offset: int, people: pl.Series) -> None:
        self.offset, self.people = offset, people
        #: per moment: the part's people of the referral graph (customer_id, row in the
        #: whole base, at risk, ordered)
        self.friends_seen: dict[dt.datetime, pl.DataFrame] = {}
        self.values: dict[tuple[dt.datetime, str], pl.DataFrame] = {}
        self.triples: dict[dt.datetime, pl.DataFrame] = {}
        #: per moment and kind ("channel", "hour"): the personas' counts of the preferences
        self.priors_seen: dict[tuple[dt.datetime, str], pl.DataFrame] = {}
        #: the moments ``churn_risk`` is asked at
        self.churn_moments: set[dt.datetime] = set()

    def friends(
        self,
        moment: dt.datetime,
        referrals: pl.DataFrame,
        customers: pl.DataFrame,
        ordered: pl.Series,
    ) -> pl.DataFrame:
        flags = pl.zeros(customers.height, pl.Boolean(), eager=True)
        flags.scatter(ordered, True)
        self.friends_seen[moment] = customers.select(
            pl.col("customer_id").cast(pl.String()),
            (pl.col(ROW).cast(pl.Int64()) + self.offset).alias("row"),
            pl.col("stage").is_in(AT_RISK_STAGES).fill_null(False).alias("at_risk"),
            pl.lit(flags).alias("ordered"),
        ).filter(pl.col("customer_id").is_in(self.people.implode()))
        # what the part would compute alone: the counts are what is kept
        links = _referral_links(referrals, moment)
        return whole_friends(links, degrees_at(graph_of(referrals), moment), customers, ordered)

    def medians(
        self, moment: dt.datetime, interval: str, values: pl.Series, personas: _Personas
    ) -> pl.Series:
        counted = (
            pl.DataFrame(
                {"persona": personas.codes, "value": values},
                schema_overrides={"value": pl.Float64()},
            )
            .drop_nulls()
            .group_by("persona", "value")
            .agg(pl.len().alias("count"))
            .with_columns(
                pl.col("persona").replace_strict(
                    dict(enumerate(personas.names)), return_dtype=pl.String()
                )
            )
        )
        self.values[(moment, interval)] = counted
        return _persona_medians(values, personas)

    def models(self, moment: dt.datetime, triples: pl.DataFrame) -> dict[str, Any]:
        self.triples[moment] = triples
        return {}

    def priors(self, moment: dt.datetime, kind: str, counts: pl.DataFrame) -> pl.DataFrame:
        self.priors_seen[(moment, kind)] = counts
        return counts

    def churn(self, moment: dt.datetime, rows: pl.DataFrame) -> ChurnModel | None:
        # None of the counts depend on it; its training rows read the shared facts (p_alive,
        # the persona medians): they are counted once these are known (``Training``).
        self.churn_moments.add(moment)
        return None


@dataclass
class Counts:
    friends_seen: dict[dt.datetime, pl.DataFrame]
    values: dict[tuple[dt.datetime, str], pl.DataFrame]
    triples: dict[dt.datetime, pl.DataFrame]
    priors: dict[tuple[dt.datetime, str], pl.DataFrame]
    churn_moments: set[dt.datetime]
    #: the customers of stored sequences due now who are in the part
    due_here: set[str]
    peak_rss: int


def count(
    part: Part,
    engine: Engine,
    now: dt.datetime,
    view: StateView,
    people: pl.Series,
    due_ids: pl.Series,
) -> Counts:
    base = part.load()
    counting = Counting(part.offset, people)
    engine._reach(base, now, view, None, shared=counting)  # type: ignore[arg-type]
    ids = base.customers.get_column("customer_id").cast(pl.String())
    here = set(due_ids.filter(due_ids.is_in(ids.implode())).to_list())
    return Counts(
        counting.friends_seen,
        counting.values,
        counting.triples,
        counting.priors_seen,
        counting.churn_moments,
        here,
        _peak_rss(),
    )


# ── the shared facts, for the whole base ─────────────────────────────────


@dataclass
class Shared:
    """The shared facts of one part: its referral facts, the whole base's medians and fits."""

    friend_facts: dict[dt.datetime, pl.DataFrame]
    persona_medians: dict[tuple[dt.datetime, str], dict[str, float]]
    fitted: dict[dt.datetime, dict[str, Any]]
    #: the personas' counts of the whole base, per moment and kind
    persona_counts: dict[tuple[dt.datetime, str], pl.DataFrame] = field(default_factory=dict)
    #: the churn model of the whole base, per moment (None: it cannot teach one)
    churn_models: dict[dt.datetime, ChurnModel | None] = field(default_factory=dict)

    def friends(
        self,
        moment: dt.datetime,
        referrals: pl.DataFrame,
        customers: pl.DataFrame,
        ordered: pl.Series,
    ) -> pl.DataFrame:
        return self.friend_facts[moment]

    def medians(
        self, moment: dt.datetime, interval: str, values: pl.Series, personas: _Personas
    ) -> pl.Series:
        return personas.spread(self.persona_medians[(moment, interval)])

    def models(self, moment: dt.datetime, triples: pl.DataFrame) -> dict[str, Any]:
        return self.fitted[moment]

    def priors(self, moment: dt.datetime, kind: str, counts: pl.DataFrame) -> pl.DataFrame:
        return self.persona_counts[(moment, kind)]

    def churn(self, moment: dt.datetime, rows: pl.DataFrame) -> ChurnModel | None:
        return self.churn_models[moment]


#: The column each kind of persona count adds up.
_COUNTED = {"channel": "_persona_answered", "hour": "events"}


def shared_facts(
    engine: Engine, parts: list[Part], surveys: list[Survey], counts: list[Counts]
) -> list[Shared]:
    """Each part's shared facts, from the survey and the counts of every part."""
    total = sum(s.size for s in surveys)
    medians: dict[tuple[dt.datetime, str], dict[str, float]] = {}
    for key in counts[0].values:
        together = pl.concat([c.values[key] for c in counts if key in c.values])
        whole = (
            together.with_columns(pl.col("value").repeat_by("count"))
            .explode("value")
            .group_by("persona")
            .agg(pl.col("value").median())
        )
        medians[key] = dict(whole.iter_rows())
    fitted = {
        moment: fits(pl.concat([c.triples[moment] for c in counts]), engine.project.learning)
        for moment in counts[0].triples
    }
    persona_counts = {}
    for moment, kind in counts[0].priors:
        column = _COUNTED[kind]
        together = pl.concat([c.priors[(moment, kind)] for c in counts], how="vertical_relaxed")
        persona_counts[(moment, kind)] = together.group_by("persona", kind).agg(
            pl.col(column).sum()
        )
    friend_facts: dict[dt.datetime, list[pl.DataFrame]] = {}
    if counts[0].friends_seen:
        referrals = _whole_referrals(surveys, counts, total)
        graph = graph_of(referrals)
        for moment in counts[0].friends_seen:
            seen = pl.concat([c.friends_seen[moment] for c in counts])
            facts = friends_of(
                _referral_links(referrals, moment),
                degrees_at(graph, moment),
                total,
                seen.filter("at_risk").get_column("row").cast(pl.UInt32()),
                seen.filter("ordered").get_column("row").cast(pl.UInt32()),
            )
            friend_facts[moment] = [
                facts.filter(pl.col(ROW).is_between(p.offset, p.offset + p.size - 1)).with_columns(
                    (pl.col(ROW) - p.offset).cast(pl.UInt32())
                )
                for p in parts
            ]
    return [
        Shared(
            {m: f[number] for m, f in friend_facts.items()},
            medians,
            fitted,
            persona_counts,
        )
        for number in range(len(parts))
    ]


def _whole_referrals(surveys: list[Survey], counts: list[Counts], total: int) -> pl.DataFrame:
    """The whole base's ``referral_rows``: everyone numbered by their row in the whole base."""
    moment = next(iter(counts[0].friends_seen))
    rows = pl.concat([c.friends_seen[moment].select("customer_id", "row") for c in counts])
    referrals = pl.concat([s.referrals for s in surveys])
    joined = referrals.join(
        rows.rename({"customer_id": "referrer_id", "row": "referrer"}),
        on="referrer_id",
        maintain_order="left",
    ).join(
        rows.rename({"customer_id": "friend_id", "row": "_friend_row"}),
        on="friend_id",
        how="left",
        maintain_order="left",
    )
    outsiders = (
        joined.filter(pl.col("_friend_row").is_null())
        .select(pl.col("friend_id").unique(maintain_order=True))
        .with_row_index("_outsider")
    )
    return joined.join(outsiders, on="friend_id", how="left", maintain_order="left").select(
        pl.col("referrer").cast(pl.Int64()),
        "referrer_id",
        "friend_id",
        pl.coalesce(
            pl.col("_friend_row").cast(pl.Int64()), pl.col("_outsider").cast(pl.Int64()) + total
        ).alias("friend"),
        "at",
    )


# ── pass 2½, when a playbook reads churn_risk: what its model learns from ───


@dataclass
class Training(Shared):
    """The shared facts of one part, counting the churn model's training rows of its
    customers (features at ``moment - H`` that read the shared facts, and the label)."""

    rows: dict[dt.datetime, pl.DataFrame] = field(default_factory=dict)

    def churn(self, moment: dt.datetime, rows: pl.DataFrame) -> ChurnModel | None:
        self.rows[moment] = rows
        return None


def train(
    part: Part, shared: Shared, engine: Engine, now: dt.datetime, view: StateView
) -> dict[dt.datetime, pl.DataFrame]:
    """The part's training rows of the churn model, per moment ``churn_risk`` is asked at."""
    training = Training(
        shared.friend_facts, shared.persona_medians, shared.fitted, shared.persona_counts
    )
    engine._reach(part.load(), now, view, None, shared=training)  # type: ignore[arg-type]
    return training.rows


def with_churn_models(
    engine: Engine,
    parts: list[Part],
    shared: list[Shared],
    executor: Executor,
    now: dt.datetime,
    view: StateView,
) -> None:
    """The churn model of each moment fitted once, on every part's training rows one after
    the other (the customer file's order: the rows one process fits on, so the same model),
    and given to every part."""
    rows = executor.map(train, [(p, shared[p.number]) for p in parts], (engine, now, view))
    days = engine.project.churn_horizon_days
    models = {
        moment: fit_rows(pl.concat([r[moment] for r in rows], how="vertical_relaxed"), days)
        for moment in rows[0]
    }
    for part_shared in shared:
        part_shared.churn_models = models


# ── pass 3: the moment, part by part ─────────────────────────────────────


@dataclass
class Reached:
    """What a part reached: the messages (as batches of candidates), the facts of the
    customers concerned, and what its plan holds besides."""

    #: (playbook, step, stored, who) in the order reached; ``who``'s rows are the part's
    batches: list[tuple[str, int, bool, pl.DataFrame]]
    #: the facts of the customers of the batches (and of friends, for messages to friends),
    #: with ``_local``: their row in the part
    facts: pl.DataFrame
    fired: dict[str, list[str]]
    #: changes before and after the stored sequences resumed
    changes: tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]]]
    #: notifications with their order key: (phase, playbook or group, k, row or due place)
    notifications: list[tuple[tuple[int, int, int, int], dict[str, Any]]]
    #: the ways customers went at splits and branches, and the arms they were put in, each
    #: with the same order key
    routes: list[tuple[tuple[int, int, int, int], tuple[str, ...]]]
    assigned: list[tuple[tuple[int, int, int, int], tuple[str, ...]]]
    streaks: dict[str, pl.DataFrame]
    #: the part's share of the customer file's mark
    mark: int
    peak_rss: int


def reach(
    part: Part,
    shared: Shared,
    mine: list[int],
    engine: Engine,
    now: dt.datetime,
    view: StateView,
    friends: pl.Series,
    due: list[dict[str, Any]],
    groups: list[int],
) -> Reached:
    """The moment for one part: ``mine`` are the places in ``due`` of its stored sequences,
    ``groups`` the group (playbook and step) of each due sequence."""
    base = part.load()
    reached = engine._reach(base, now, view, None, shared=shared)  # type: ignore[arg-type]
    plan = reached.plan
    row_of = dict(reached.facts.select("customer_id", ROW).iter_rows())
    notes: list[tuple[tuple[int, int, int, int], dict[str, Any]]] = []
    seen: dict[tuple[int, str], int] = {}

    def keep_notes(
        start: int, phase: int, place: Callable[[dict[str, Any]], tuple[int, int]]
    ) -> None:
        for note in plan.notifications[start:]:
            group, at = place(note)
            k = seen.get((group, note["customer"]), 0)
            seen[(group, note["customer"])] = k + 1
            notes.append(((phase, group, k, at), note))

    ways: dict[str, list[tuple[tuple[int, int, int, int], tuple[str, ...]]]] = {
        "routes": [],
        "assigned": [],
    }

    def keep_ways(
        starts: dict[str, int], phase: int, place: Callable[[str, str], tuple[int, int]]
    ) -> None:
        """The routes and arms since ``starts``, keyed as notifications are: the single
        process's order is phase, playbook (or group), step after step, then the row."""
        for name, kept in ways.items():
            counts: dict[tuple[int, str], int] = {}
            for way in getattr(plan, name)[starts[name] :]:
                group, at = place(way[0], way[1])
                k = counts.get((group, way[1]), 0)
                counts[(group, way[1])] = k + 1
                kept.append(((phase, group, k, at), way))

    def marks() -> dict[str, int]:
        return {name: len(getattr(plan, name)) for name in ways}

    for number, pb_id in enumerate(engine.order):
        start, begun = len(plan.notifications), marks()
        engine._fire(reached, pb_id)
        keep_notes(
            start,
            0,
            lambda note, n=number: (n, part.offset + row_of.get(note["customer"], 0)),
        )
        keep_ways(begun, 0, lambda _, c, n=number: (n, part.offset + row_of.get(c, 0)))
    fired_phase = {key: list(rows) for key, rows in plan.changes.items()}
    plan.changes = {}
    mine_due = [due[i] for i in mine]
    place_of = {(due[i]["playbook"], due[i]["customer_id"]): i for i in reversed(mine)}
    start, begun = len(plan.notifications), marks()
    engine._resume(reached, mine_due)
    seen.clear()

    def resumed_at(playbook: str, customer: str) -> tuple[int, int]:
        at = place_of.get((playbook, customer), 0)
        return groups[at] if groups else 0, at

    keep_notes(start, 1, lambda note: resumed_at(note["playbook"], note["customer"]))
    keep_ways(begun, 1, resumed_at)
    batches = [(c.pb.id, c.step, c.stored, c.who) for c in reached.candidates]
    facts = reached.facts
    wanted = pl.concat(
        [pl.Series([], dtype=pl.String())]
        + [c.who.get_column("customer_id").cast(pl.String()) for c in reached.candidates]
        + [pl.Series([n["customer"] for n in plan.notifications], dtype=pl.String())]
        + ([friends] if _to_friends(engine) else [])
    )
    kept = facts.filter(pl.col("customer_id").is_in(wanted.implode())).with_columns(
        pl.col(ROW).alias("_local")
    )
    streaks = {
        pb_id: frame.with_columns((pl.col(ROW) + part.offset).cast(pl.UInt32()))
        for pb_id, frame in plan.streaks.items()
    }
    return Reached(
        batches,
        kept,
        plan.fired,
        (fired_phase, plan.changes),
        notes,
        ways["routes"],
        ways["assigned"],
        streaks,
        _mark_share(base, part.offset),
        _peak_rss(),
    )


def _to_friends(engine: Engine) -> bool:
    return any(
        step.get("send", {}).get("to") == "friend"
        for pb in engine.playbooks.values()
        for step in pb.respond
    )


def _mark_share(base: CustomerBase, offset: int) -> int:
    """The part's share of ``customer_file_mark`` of the whole file (its rows numbered in it)."""
    share = base.customers.select(
        pl.concat_str(
            pl.col("customer_id").cast(pl.String()),
            (pl.int_range(pl.len()) + offset).cast(pl.String()),
            separator="|",
        )
        .hash(seed=20261123)
        .floordiv(1 << 24)
        .sum()
    )
    return int(share.item() or 0)


def _peak_rss() -> int:
    """This process's peak resident memory, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ── the driver ───────────────────────────────────────────────────────────


@dataclass
class Report:
    """How a partitioned moment went: the parts, and the peak memory of the processes."""

    parts: int = 0
    customers: int = 0
    #: per worker (its address, or "driver"): peak resident memory in bytes
    peak_rss: dict[str, int] = field(default_factory=dict)


def decide(
    engine: Engine,
    parts: list[Part],
    now: dt.datetime,
    state: StateStore,
    executor: Executor,
    report: Report | None = None,
) -> Plan:
    """``Engine.decide`` over a base in parts: the same plan, decided part by part."""
    now = now.astimezone(dt.UTC)
    view = StateView(state, engine)
    plan = engine._since(now, state)
    surveys = executor.map(survey, [(p,) for p in parts], (plan.since, plan.now))
    _unique_ids(parts, surveys, executor)
    people = (
        pl.concat(
            [pl.Series([], dtype=pl.String())]
            + [s.referrals.get_column(c) for s in surveys for c in ("referrer_id", "friend_id")]
        )
        .unique()
        .sort()
    )
    edited = Plan(now=plan.now, since=plan.since)
    due = engine._due(edited, state.waiting_enrollments())
    # whose facts the guards may read as a message's recipient: the friends of the moment
    friends = pl.concat(
        [pl.Series([], dtype=pl.String())]
        + [s.friends for s in surveys]
        + [pl.Series([e["context"].get("friend_id") for e in due], dtype=pl.String()).drop_nulls()]
    ).unique()
    plan.edits, plan.changes = edited.edits, edited.changes
    due_ids = pl.Series([e["customer_id"] for e in due], dtype=pl.String()).unique()
    counts = executor.map(count, [(p,) for p in parts], (engine, now, view, people, due_ids))
    shared = shared_facts(engine, parts, surveys, counts)
    if counts[0].churn_moments:
        with_churn_models(engine, parts, shared, executor, now, view)
    # Each stored sequence goes to the part of its customer; one of a customer no longer in
    # the file to the last part (their rows are found nowhere, as in one process).
    owner = {c: n for n, part_counts in enumerate(counts) for c in part_counts.due_here}
    mine: list[list[int]] = [[] for _ in parts]
    for place, enrollment in enumerate(due):
        mine[owner.get(enrollment["customer_id"], len(parts) - 1)].append(place)
    groups = _groups(engine, due)
    reached = executor.map(
        reach,
        [(p, shared[p.number], mine[p.number]) for p in parts],
        (engine, now, view, friends, due, groups),
    )
    merged = _merge(engine, plan, reached, due, groups, sum(s.size for s in surveys))
    merged.plan.disabled, merged.keys = render.broken_playbooks(
        engine.playbooks,
        engine.project,
        plan.now,
        {name: spec.type for name, spec in engine.catalogue.facts.items()},
    )
    merged.sends = view.sends().filter(pl.col("channel") != "team")
    plan = engine._judged(merged, state)
    if report is not None:
        report.parts = len(parts)
        report.customers = sum(s.size for s in surveys)
        report.peak_rss["driver"] = _peak_rss()
    return plan


class PartitionError(ValueError):
    """A moment a base in parts cannot decide."""


def _groups(engine: Engine, due: list[dict[str, Any]]) -> list[int]:
    """The group of each due sequence (its playbook and step), numbered as ``resume`` does."""
    numbers: dict[tuple[str, int | None], int] = {}
    out = []
    for enrollment in due:
        pb = engine.playbooks.get(enrollment["playbook"])
        index = None if pb is None else _where(pb, enrollment)
        out.append(numbers.setdefault((enrollment["playbook"], index), len(numbers)))
    return out


def _merge(
    engine: Engine,
    plan: Plan,
    reached: list[Reached],
    due: list[dict[str, Any]],
    groups: list[int],
    total: int,
) -> Reach:
    """The parts' reaches as one: the facts of everyone concerned numbered anew, the batches
    of candidates in the order one process reaches them."""
    frames = [
        r.facts.with_columns(pl.lit(n, pl.UInt32()).alias("_part")) for n, r in enumerate(reached)
    ]
    facts = pl.concat(frames, how="diagonal_relaxed")
    columns = [c for c in frames[0].columns if c not in ("_local", "_part")]
    facts = facts.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32()).alias(ROW))
    numbering = facts.select("_part", "_local", pl.col(ROW).alias("_new"))
    facts = facts.select(columns)

    def renumbered(who: pl.DataFrame, part: int) -> pl.DataFrame:
        if ROW not in who.columns:
            return who
        return (
            who.with_columns(pl.lit(part, pl.UInt32()).alias("_part"))
            .join(
                numbering,
                left_on=["_part", pl.col(ROW).cast(pl.UInt32())],
                right_on=["_part", "_local"],
                how="left",
                maintain_order="left",
            )
            .with_columns(pl.col("_new").alias(ROW))
            .drop("_part", "_part_right", "_new", "_local", strict=False)
        )

    fire: dict[str, list[pl.DataFrame]] = {}
    resumed: dict[int, list[pl.DataFrame]] = {}
    places = pl.DataFrame(
        {
            "_playbook": [e["playbook"] for e in due],
            "customer_id": [e["customer_id"] for e in due],
            STARTED: [_iso(e["started_at"]) for e in due],
            "_place": list(range(len(due))),
        },
        schema={
            "_playbook": pl.String(),
            "customer_id": pl.String(),
            STARTED: pl.String(),
            "_place": pl.Int64(),
        },
    ).unique(["_playbook", "customer_id", STARTED], keep="first", maintain_order=True)
    for number, part in enumerate(reached):
        for pb_id, step, stored, who in part.batches:
            who = renumbered(who, number)
            if not stored:
                fire.setdefault(f"{pb_id}\0{step}", []).append(who)
                continue
            who = who.join(
                places.filter(pl.col("_playbook") == pb_id).drop("_playbook"),
                on=["customer_id", STARTED],
                how="left",
                maintain_order="left",
            ).with_columns(pl.col("_place").fill_null(0))
            group = groups[int(who.get_column("_place")[0])] if groups else 0
            resumed.setdefault(group, []).append(who.with_columns(pl.lit(step).alias("_step")))
    candidates: list[Candidates] = []
    order = {pb_id: n for n, pb_id in enumerate(engine.order)}
    for key in sorted(fire, key=lambda k: order[k.split("\0")[0]]):
        pb_id, step = key.split("\0")
        who = pl.concat(fire[key], how="diagonal_relaxed")
        candidates.append(Candidates(engine.playbooks[pb_id], int(step), who))
    for group in sorted(resumed):
        who = pl.concat(resumed[group], how="diagonal_relaxed").sort("_place", maintain_order=True)
        pb_id = due[int(who.get_column("_place")[0])]["playbook"]
        step = int(who.get_column("_step")[0])
        candidates.append(
            Candidates(engine.playbooks[pb_id], step, who.drop("_place", "_step"), stored=True)
        )

    for pb_id in engine.order:
        plan.fired[pb_id] = [c for r in reached for c in r.fired.get(pb_id, [])]
    changes: dict[str, list[tuple[Any, ...]]] = {}
    for r in reached:
        for key, rows in r.changes[0].items():
            changes.setdefault(key, []).extend(rows)
    for key, rows in plan.changes.items():  # what the edits of playbooks changed
        changes.setdefault(key, []).extend(rows)
    for r in reached:
        for key, rows in r.changes[1].items():
            changes.setdefault(key, []).extend(rows)
    plan.changes = changes
    plan.notifications = [
        note
        for _, note in sorted((n for r in reached for n in r.notifications), key=lambda n: n[0])
    ]
    plan.routes += [w for _, w in sorted((w for r in reached for w in r.routes), key=_first)]
    plan.assigned += [w for _, w in sorted((w for r in reached for w in r.assigned), key=_first)]
    share = sum(r.mark for r in reached)
    mark = (share * 1_000_003 + total) % (1 << 63)
    for pb_id in engine.order:
        frames = [r.streaks[pb_id] for r in reached if pb_id in r.streaks]
        if frames:
            plan.streaks[pb_id] = pl.concat(frames).with_columns(
                pl.lit(mark, pl.UInt64()).alias(MARK)
            )
    return Reach(
        base=CustomerBase(pl.DataFrame(), pl.DataFrame()),
        plan=plan,
        facts=facts,
        schema=dict(facts.schema),
        events=pl.DataFrame(),
        sends=pl.DataFrame(),
        keys={},
        fired=pl.DataFrame(),
        active=set(),
        streaks=SavedStreaks(None, [], None),
        past={},
        mark=mark,
        trace=None,
        candidates=candidates,
    )


def _iso(moment: dt.datetime) -> str:
    from courtship.engine.plan import iso

    return iso(moment)


def parquet_parts(
    customers: Path, events: Path | None, facts: Mapping[str, Any] | None = None
) -> list[Part]:
    """A base in Parquet read by its parts: one part per customer file (a folder's files or a
    glob's, in name order), each reading its customers and, from every event file, only their
    events (a filter polars pushes into the read). The driver reads only the files' row counts."""
    from courtship.sources import parquet_files

    files = parquet_files(customers)
    event_files = tuple(str(f) for f in parquet_files(events)) if events is not None else ()
    # Event files named as the customer files hold those customers' events: each part reads
    # its own (and says so if one holds another part's customer's events).
    paired = len(event_files) == len(files) > 1 and [Path(f).name for f in event_files] == [
        f.name for f in files
    ]
    parts, offset = [], 0
    for number, file in enumerate(files):
        size = int(pl.scan_parquet(file).select(pl.len()).collect().item())
        parts.append(
            Part(
                number,
                offset,
                size,
                customer_files=(str(file),),
                event_files=(event_files[number],) if paired else event_files,
                reader=ParquetReader(dict(facts or {}), paired),
            )
        )
        offset += size
    return parts


@dataclass
class ParquetReader:
    """Reads a part's customers and their events from Parquet, checked as the whole base is."""

    facts: dict[str, Any]
    #: each customer file has its own event file, of its customers only
    paired: bool = False

    def __call__(self, part: Part) -> CustomerBase:
        from courtship.sources import compact, empty_events, normalise_customers, normalise_events

        frames = []
        for file in part.customer_files:
            frames.append(
                normalise_customers(
                    pl.read_parquet(file), where=Path(file), facts=self.facts, trim=False
                )
            )
        customers = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        ids = customers.get_column("customer_id").cast(pl.String())
        events = []
        for file in part.event_files:
            mine = pl.scan_parquet(file)
            if self.paired:
                mine = mine.collect()
                _only_theirs(mine, ids, Path(file), Path(part.customer_files[0]))
            else:
                ours = pl.col("customer_id").cast(pl.String()).is_in(ids.implode())
                mine = mine.filter(ours).collect()
            if mine.height:
                events.append(normalise_events(mine, where=Path(file), trim=False))
        if not events:
            return CustomerBase(customers, empty_events())
        together = events[0] if len(events) == 1 else pl.concat(events, how="diagonal_relaxed")
        return compact(CustomerBase(customers, together))  # held as a whole-base run holds it


def _only_theirs(events: pl.DataFrame, ids: pl.Series, file: Path, customers: Path) -> None:
    """Events paired with a customer file hold its customers' events only."""
    from courtship.sources import SourceError

    stray = events.filter(~pl.col("customer_id").cast(pl.String()).is_in(ids.implode()))
    if stray.height:
        raise SourceError(
            file,
            None,
            "customer_id",
            f"customer {stray.get_column('customer_id')[0]} is not in {customers.name}, "
            "the customer file of the same name",
            "put each customer's events in the file named as their customer file (or name the "
            "event files otherwise: each part then reads its customers' events from all of them)",
        )


def _first(keyed: tuple[tuple[int, int, int, int], Any]) -> tuple[int, int, int, int]:
    return keyed[0]
