"""The stateful model of the engine (``test_model``), with every moment decided over the base in
parts on a Dask cluster: the plan equals the one process's (the same JSON), and what the model
checks holds of it. Random bases of 1 to 6 customers, in parts of two (each customer's friends
and persona peers are often in another part). Bounded: ``COURTSHIP_DASK_MODEL_EXAMPLES``
(default 12)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from test_model import RANDOM, STEPS, Moments

from courtship.cli.plan import render_json
from courtship.engine import Engine, partitions

pytest.importorskip("distributed")

from courtship.executors.dask import DaskExecutor

EXAMPLES = int(os.environ.get("COURTSHIP_DASK_MODEL_EXAMPLES", "12"))
_cluster: list[DaskExecutor] = []


def _executor() -> DaskExecutor:
    if not _cluster:  # one cluster for the module, in this process (threads): fast to start
        _cluster.append(DaskExecutor(n_workers=2, processes=False, memory_limit=0))
    return _cluster[0]


def teardown_module() -> None:
    for cluster in _cluster:
        cluster.close()


class InParts(Moments):
    """The model's moments, each decided in parts on Dask and compared with one process."""

    def decide(self, engine: Engine, base: Any) -> Any:
        whole = engine.plan(base, self.now, self.state)
        plan = partitions.decide(
            engine, partitions.split(base, 3), self.now, self.state, _executor()
        )
        engine.render(plan)
        assert render_json(plan) == render_json(whole)
        assert sorted(map(repr, plan.changes.get("enrollments", []))) == sorted(
            map(repr, whole.changes.get("enrollments", []))
        )
        assert {k: sorted(map(repr, v)) for k, v in plan.changes.items()} == {
            k: sorted(map(repr, v)) for k, v in whole.changes.items()
        }
        for pb_id, streak in whole.streaks.items():
            assert plan.streaks[pb_id].equals(streak), pb_id
        assert plan.fired == whole.fired
        return plan


InParts.TestCase.settings = settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    stateful_step_count=min(STEPS, 8),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_the_engine_in_parts_on_dask_agrees_with_one_process = InParts.TestCase
