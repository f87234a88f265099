"""``--executor dask``: the parts of a base evaluated on a Dask cluster (``distributed``).

Without a scheduler address, a ``LocalCluster`` of worker processes on this machine (one per
core, one thread each: polars runs its own threads), each with a memory limit; with one, a
client of that cluster. Dask is imported here only: the other commands never load it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from courtship.engine import partitions
from courtship.executors import ExecutorError

if TYPE_CHECKING:
    from courtship.engine import Engine, Plan
    from courtship.sources import CustomerBase
    from courtship.state import StateStore

#: A task whose worker dies is run again by Dask on another one; a task that raises is tried
#: again this many times (the state store is written by the driver only: nothing is doubled).
RETRIES = 2


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ExecutorError(
            "--executor dask needs Dask: install the extra, pip install 'courtship[dask]'"
        ) from None
    return distributed


class DaskExecutor:
    """Runs the passes of a partitioned moment as Dask tasks, one per part."""

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        n_workers: int | None = None,
        processes: bool = True,
        memory_limit: str | int = "auto",
    ) -> None:
        distributed = _import_distributed()
        self.cluster = None
        if scheduler:
            try:
                self.client = distributed.Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as error:
                raise ExecutorError(
                    f"--scheduler {scheduler}: no Dask scheduler answers there ({error})"
                ) from None
        else:
            workers = n_workers or max(1, os.cpu_count() or 1)
            self.cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=processes,
                memory_limit=memory_limit,
                # worker processes talk over loopback only; threads in this process, inproc
                **({"host": "127.0.0.1"} if processes else {}),
                dashboard_address="127.0.0.1:0",
                silence_logs=40,
            )
            self.client = distributed.Client(self.cluster)

    @property
    def workers(self) -> dict[str, int | None]:
        """Each worker's address and memory limit (bytes; None for none)."""
        info = self.client.scheduler_info()["workers"]
        return {address: w.get("memory_limit") or None for address, w in info.items()}

    def map(
        self, fn: Callable[..., Any], each: Sequence[tuple[Any, ...]], common: tuple[Any, ...]
    ) -> list[Any]:
        # A worker that dies can take with it what the pass was given: Dask then cancels the
        # pass's tasks instead of running them again. The pass is run again, once; it writes
        # nothing (the state store is the driver's), so nothing is doubled.
        try:
            return self._map(fn, each, common)
        except CancelledError:
            return self._map(fn, each, common)

    def _map(
        self, fn: Callable[..., Any], each: Sequence[tuple[Any, ...]], common: tuple[Any, ...]
    ) -> list[Any]:
        shared = [self.client.scatter([value], broadcast=True, hash=False)[0] for value in common]
        futures = [
            self.client.submit(fn, *args, *shared, pure=False, retries=RETRIES) for args in each
        ]
        try:
            return list(self.client.gather(futures))
        finally:
            for future in [*futures, *shared]:
                future.release()

    def peak_memory(self) -> dict[str, int]:
        """Each worker process's peak resident memory so far, in bytes."""
        return dict(self.client.run(partitions._peak_rss))

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class Partitioned:
    """An engine whose moments are decided part by part (``Engine.plan`` and ``record``, and
    what else the commands read of the engine, as the engine has them)."""

    engine: Engine
    executor: partitions.Executor
    parts: Callable[[CustomerBase | None], list[partitions.Part]]
    report: partitions.Report = field(default_factory=partitions.Report)

    def plan(self, base: CustomerBase | None, now: dt.datetime, state: StateStore) -> Plan:
        report = partitions.Report()
        plan = partitions.decide(self.engine, self.parts(base), now, state, self.executor, report)
        self.engine.render(plan)
        peak = getattr(self.executor, "peak_memory", None)
        if callable(peak):
            report.peak_rss = {"driver": partitions._peak_rss()} | peak()
        self.report = report
        return plan

    def record(self, plan: Plan, state: StateStore) -> None:
        self.engine.record(plan, state)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)
