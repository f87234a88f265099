"""What a change to the playbooks would do, before it is merged: the same customers, events and
state decided by the playbooks as they were and as they are, side by side (``courtship diff``).

Nothing is recorded and nothing is sent: both sides are dry runs (``Engine.plan``) on the same
loaded base and the same state store, so the only difference is the playbooks."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from courtship.engine import Engine, Plan
    from courtship.sources import CustomerBase
    from courtship.state import StateStore

#: The week contact pressure is counted over: this moment's messages and those of the 7 days
#: before it, per customer.
WEEK = dt.timedelta(days=7)


class DiffError(Exception):
    """The old playbooks could not be found (no git, an unknown revision, a missing folder)."""


def playbooks_at_revision(folder: Path, revision: str, into: Path) -> Path:
    """The playbook folder as it was at git ``revision``, written under ``into``; its path."""
    folder = folder.resolve()
    try:
        top = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except FileNotFoundError:
        raise DiffError("--base needs git, which is not installed") from None
    except subprocess.CalledProcessError:
        raise DiffError(f"{folder} is not in a git repository; give OLD_DIR NEW_DIR") from None
    relative = folder.relative_to(Path(top).resolve()).as_posix()
    archive = subprocess.run(
        ["git", "-C", top, "archive", "--format=tar", revision, "--", relative],
        capture_output=True,
    )
    if archive.returncode != 0:
        message = archive.stderr.decode(errors="replace").strip().splitlines()
        raise DiffError(
            f"no playbooks at git revision '{revision}' ({message[-1] if message else 'git'}); "
            "give a branch, tag or commit that has the folder"
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / relative


@dataclass
class Side:
    """One side of the diff: the playbooks' decisions at the moment."""

    engine: Engine
    plan: Plan
    sends: Counter[tuple[str, str]] = field(default_factory=Counter)  # (playbook, channel)
    reached: dict[str, set[str]] = field(default_factory=dict)  # playbook → customers

    @classmethod
    def of(cls, engine: Engine, plan: Plan) -> Side:
        side = cls(engine, plan)
        for d in plan.sends:
            side.sends[(d.playbook, d.channel or "")] += 1
        for pb_id, ids in plan.fired.items():
            side.reached.setdefault(pb_id, set()).update(ids)
        for d in plan.decisions:
            side.reached.setdefault(d.playbook, set()).add(d.customer_id)
        return side


def compare(
    old: Engine,
    new: Engine,
    base: CustomerBase,
    state: StateStore,
    moment: dt.datetime,
    budget: int | None,
) -> dict[str, Any]:
    """The change, as data: per playbook (added, removed, changed or the same) the customers who
    newly enter or leave it and its sends by channel before and after; the waiting customers the
    change moves or lets go; contact pressure before and after."""
    before = Side.of(old, old.plan(base, moment, state))
    after = Side.of(new, new.plan(base, moment, state))
    playbooks = _by_playbook(old, new, (before.reached, after.reached), (before.sends, after.sends))
    recent = _recent_sends(state, moment)
    return {
        "at": moment.isoformat(),
        "playbooks": playbooks,
        "sends": {"before": len(before.plan.sends), "after": len(after.plan.sends)},
        "waiting": after.plan.edits,
        "pressure": {
            "budget": budget,
            "before": _pressure(before.plan, recent, budget),
            "after": _pressure(after.plan, recent, budget),
        },
    }


def compare_period(
    old: Engine,
    new: Engine,
    base: CustomerBase,
    state: StateStore,
    state_path: Path | str | None,
    start: dt.datetime,
    end: dt.datetime,
    step: dt.timedelta,
    budget: int | None,
    every: str = "",
) -> dict[str, Any]:
    """The change over a period: both sides simulated moment by moment on copies of the state
    (``courtship simulate``'s engine loop; nothing recorded in the real store, nothing sent), the
    messages delivered by playbook and channel, the customers each playbook newly reaches or no
    longer reaches, and contact pressure per customer per week of the period."""
    from courtship.simulate.timeline import simulate

    sides = [simulate(engine, base, state_path, start, end, step) for engine in (old, new)]
    reached = [
        _reached(simulation.decisions["playbook"], simulation.decisions["customer"])
        for simulation in sides
    ]
    sends: list[Counter[tuple[str, str]]] = [
        Counter(
            (playbook, channel)
            for _, _, playbook, channel, _ in simulation.deliveries
            if channel != "team"
        )
        for simulation in sides
    ]
    playbooks = _by_playbook(old, new, (reached[0], reached[1]), (sends[0], sends[1]))
    return {
        "at": f"{start.isoformat()} to {end.isoformat()}, every {every or step}",
        "period": True,
        "playbooks": playbooks,
        "sends": {"before": sum(sends[0].values()), "after": sum(sends[1].values())},
        "waiting": new.plan(base, start, state).edits,
        "pressure": {
            "budget": budget,
            "before": _weekly_pressure(sides[0].deliveries, start, budget),
            "after": _weekly_pressure(sides[1].deliveries, start, budget),
        },
    }


def _reached(playbooks: list[str], customers: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for playbook, customer in zip(playbooks, customers, strict=True):
        out.setdefault(playbook, set()).add(customer)
    return out


def _by_playbook(
    old: Engine,
    new: Engine,
    reached: tuple[dict[str, set[str]], dict[str, set[str]]],
    sends: tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]],
) -> list[dict[str, Any]]:
    """Per playbook added, removed, changed (or ``affected``: the same, deciding otherwise beside
    the change, say held back by a cadence another playbook now uses up): its sends by
    channel before and after, and the customers it newly reaches or no longer reaches."""
    playbooks = []
    for pb_id in sorted(set(old.playbooks) | set(new.playbooks)):
        was, now = old.playbooks.get(pb_id), new.playbooks.get(pb_id)
        kind = (
            "added"
            if was is None
            else "removed"
            if now is None
            else "changed"
            if was.version != now.version
            else "same"
        )
        entered = sorted(reached[1].get(pb_id, set()) - reached[0].get(pb_id, set()))
        left = sorted(reached[0].get(pb_id, set()) - reached[1].get(pb_id, set()))
        channels = sorted({c for (p, c) in (*sends[0], *sends[1]) if p == pb_id})
        by_channel = {c: [sends[0][(pb_id, c)], sends[1][(pb_id, c)]] for c in channels}
        if kind == "same":
            if not entered and not left and all(b == a for b, a in by_channel.values()):
                continue
            kind = "affected"  # unchanged itself, deciding otherwise beside the change
        playbooks.append(
            {
                "playbook": pb_id,
                "change": kind,
                "file": str((now or was).path),  # type: ignore[union-attr]
                "sends": by_channel,
                "sends_before": sum(v[0] for v in by_channel.values()),
                "sends_after": sum(v[1] for v in by_channel.values()),
                "enter": entered,
                "leave": left,
            }
        )
    return playbooks


def _weekly_pressure(
    deliveries: list[tuple[dt.datetime, str, str, str, str]],
    start: dt.datetime,
    budget: int | None,
) -> dict[str, Any]:
    """Messages per customer in each week of the period (from ``start``): the most any customer
    gets in a week, the mean per customer messaged per week, and how many go over the budget
    in some week."""
    weekly: Counter[tuple[str, int]] = Counter(
        (customer, (moment - start) // WEEK)
        for moment, customer, _, channel, _ in deliveries
        if channel != "team"
    )
    people = {customer for customer, _ in weekly}
    weeks = max((week for _, week in weekly), default=0) + 1
    over = {customer for (customer, _), count in weekly.items() if budget and count > budget}
    return {
        "customers": len(people),
        "messages": sum(weekly.values()),
        "max": max(weekly.values(), default=0),
        "mean": round(sum(weekly.values()) / len(people) / weeks, 2) if people else 0.0,
        "over_budget": len(over) if budget is not None else None,
    }


def _recent_sends(state: StateStore, moment: dt.datetime) -> Counter[str]:
    """Messages each customer was sent in the week before ``moment`` (team notices excluded)."""
    import polars as pl

    sends = state.sends()
    week = sends.filter(
        (pl.col("channel") != "team") & (pl.col("at") > moment - WEEK) & (pl.col("at") < moment)
    )
    return Counter(week.get_column("customer_id").to_list())


def _pressure(plan: Plan, recent: Counter[str], budget: int | None) -> dict[str, Any]:
    """Messages per customer over the week ending at the moment: the most any one customer
    gets, the mean over customers messaged, and how many go over the weekly budget."""
    week = Counter(recent)
    for d in plan.sends:
        week[d.recipient_id or d.customer_id] += 1
    counts = [c for c in week.values() if c]
    return {
        "customers": len(counts),
        "messages": sum(counts),
        "max": max(counts, default=0),
        "mean": round(sum(counts) / len(counts), 2) if counts else 0.0,
        "over_budget": sum(c > budget for c in counts) if budget is not None else None,
    }


def temporary_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="courtship-diff-")
