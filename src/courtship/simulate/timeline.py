"""The moments of a simulation, run by the real engine on a copy of the state store.

Each moment is what ``courtship run`` does, minus the channels: ``Engine.plan``, then
``Engine.record`` into the copy, then every outbox row that is due is marked delivered without
any channel (``StateStore.deliver_simulated``). So sequences progress, waits expire, held-back
messages come due, and caps, cadence and dedup keys carry over exactly as in real runs. The
original store is only read (copied with SQLite's backup API) and no channel is ever built.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from courtship.simulate.behaviour import Behaviour, CustomerModel

if TYPE_CHECKING:
    from courtship.engine import Engine, Plan
    from courtship.sources import CustomerBase

#: More moments than this is a typo (``--step 1m`` over a year), not a simulation.
MAX_MOMENTS = 20_000

#: The columns of the decisions file, in order.
DECISION_COLUMNS = (
    "moment",
    "customer",
    "recipient",
    "playbook",
    "step",
    "step_id",
    "category",
    "channel",
    "outcome",
    "guard",
    "reason",
)
OUTCOMES = {"send": "sent", "deferred": "deferred", "blocked": "blocked"}


class SimulationError(Exception):
    """A simulation that cannot run as asked: what is wrong, and what to do."""


def moments(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> list[dt.datetime]:
    """``start``, ``start + step``, … up to ``end`` included."""
    if step <= dt.timedelta(0):
        raise SimulationError(f"--step {step} is not a step forward; give one such as 1d or 6h")
    if end < start:
        raise SimulationError(
            f"--to {end.isoformat()} is before --from {start.isoformat()}: a simulation goes "
            "forward in time"
        )
    count = (end - start) // step + 1
    if count > MAX_MOMENTS:
        raise SimulationError(
            f"{count} moments from {start.isoformat()} to {end.isoformat()} by {step}: more "
            f"than {MAX_MOMENTS}; give a longer --step"
        )
    return [start + i * step for i in range(count)]


@dataclass
class Simulation:
    """What every moment of a simulation decided and delivered."""

    start: dt.datetime
    end: dt.datetime
    step: dt.timedelta
    customers: int
    budget: int | None
    #: every decision of every moment, one column per ``DECISION_COLUMNS``
    decisions: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in DECISION_COLUMNS}
    )
    #: every message delivered (simulated): moment, customer, playbook, channel, category
    deliveries: list[tuple[dt.datetime, str, str, str, str]] = field(default_factory=list)
    #: per moment: customers by journey stage, and by tag that ``tag`` steps set
    stages: list[tuple[dt.datetime, Counter[str]]] = field(default_factory=list)
    tags: list[tuple[dt.datetime, Counter[str]]] = field(default_factory=list)
    #: per moment: what the behaviour model made customers do (answered, bought, referred)
    behaviour: list[tuple[dt.datetime, Counter[str]]] = field(default_factory=list)
    #: the dependency graph of the playbooks (``PlaybookGraph``)
    graph: Any = None
    #: what the experiments recorded (``StateStore.assignments``) and the events at the end
    assignments: pl.DataFrame | None = None
    events: pl.DataFrame | None = None

    @property
    def moments(self) -> int:
        return len(self.stages)

    def decision_frame(self) -> pl.DataFrame:
        schema = {name: pl.String() for name in DECISION_COLUMNS} | {"step": pl.Int64()}
        return pl.DataFrame(self.decisions, schema=schema)

    def delivery_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            self.deliveries,
            schema={
                "moment": pl.Datetime("us", "UTC"),
                "customer": pl.String(),
                "playbook": pl.String(),
                "channel": pl.String(),
                "category": pl.String(),
            },
            orient="row",
        )


def simulate(
    engine: Engine,
    base: CustomerBase,
    state_path: Path | str | None,
    start: dt.datetime,
    end: dt.datetime,
    step: dt.timedelta,
    *,
    behaviour: Behaviour | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Simulation:
    """Run every moment from ``start`` to ``end`` by ``step`` on a copy of the store at
    ``state_path`` (a SQLite file or a PostgreSQL URL; None: an empty store). Raises
    ``SimulationError`` for a period that cannot be simulated, and ``StateError`` for a store a
    run would refuse."""
    from courtship.state import StateStore

    times = moments(start, end, step)
    simulation = Simulation(
        start=start,
        end=end,
        step=step,
        customers=base.customers.height,
        budget=engine.project.per_customer_per_week,
        graph=engine.graph,
    )
    model = CustomerModel(behaviour, base) if behaviour is not None else None
    with tempfile.TemporaryDirectory(prefix="courtship-simulate-") as folder:
        state = StateStore.copy_of(state_path, Path(folder))
        try:
            last = state.last_run()
            if last is not None and start < last:
                raise SimulationError(
                    f"the state store has already run {last.isoformat()}, later than --from "
                    f"{start.isoformat()}: runs go forward in time, and so does a simulation "
                    "of them; start at or after it"
                )
            for done, moment in enumerate(times, 1):
                plan = engine.plan(base, moment, state)
                engine.record(plan, state)
                delivered = state.deliver_simulated(moment)
                _keep(simulation, plan, moment, delivered, base, state)
                if model is not None:
                    received = _templates_received(plan)
                    base, did = model.advance(base, moment, step, delivered, received)
                    simulation.behaviour.append((moment, did))
                if progress is not None:
                    progress(done, len(times))
            simulation.assignments, simulation.events = state.assignments(), base.events
        finally:
            state.close()
    return simulation


def _templates_received(plan: Plan) -> dict[str, set[str]]:
    """customer → the templates of the messages that went out to them at this moment."""
    received: dict[str, set[str]] = {}
    for decision in plan.decisions:
        if decision.status == "send":
            received.setdefault(decision.recipient_id or decision.customer_id, set()).add(
                decision.template
            )
    return received


def _keep(
    simulation: Simulation,
    plan: Plan,
    moment: dt.datetime,
    delivered: list[tuple[str, str, str, str]],
    base: CustomerBase,
    state: Any,
) -> None:
    stamp = moment.isoformat()
    columns = simulation.decisions
    for decision in plan.decisions:
        columns["moment"].append(stamp)
        columns["customer"].append(decision.customer_id)
        columns["recipient"].append(decision.recipient_id or decision.customer_id)
        columns["playbook"].append(decision.playbook)
        columns["step"].append(decision.step)
        columns["step_id"].append(decision.step_id)
        columns["category"].append(decision.category)
        columns["channel"].append(decision.channel)
        columns["outcome"].append(OUTCOMES.get(decision.status, decision.status))
        columns["guard"].append(decision.guard)
        columns["reason"].append(decision.reason)
    for note in plan.notifications:
        columns["moment"].append(stamp)
        columns["customer"].append(note["customer"])
        columns["recipient"].append(note.get("team", "team"))
        columns["playbook"].append(note["playbook"])
        columns["step"].append(note.get("step"))
        columns["step_id"].append("")
        columns["category"].append("transactional")
        columns["channel"].append("team")
        columns["outcome"].append("sent")
        columns["guard"].append("")
        columns["reason"].append("team notification")
    simulation.deliveries.extend(
        (moment, customer, playbook, channel or "", category)
        for customer, playbook, channel, category in delivered
    )
    stages = base.customers.get_column("stage").fill_null("(none)").value_counts()
    simulation.stages.append((moment, Counter(dict(stages.iter_rows()))))
    tags = state.set_tags().filter(pl.col("present") == 1).get_column("tag").value_counts()
    simulation.tags.append((moment, Counter(dict(tags.iter_rows()))))


def iter_decision_rows(simulation: Simulation) -> Iterator[dict[str, Any]]:
    columns = simulation.decisions
    for i in range(len(columns["moment"])):
        yield {name: columns[name][i] for name in DECISION_COLUMNS}
