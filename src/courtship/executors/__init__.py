"""Where a moment is decided: in this process (the default), or over a base in parts on a Dask
cluster (``--executor dask``, :mod:`courtship.executors.dask`; the parts and what they share are
:mod:`courtship.engine.partitions`)."""

from __future__ import annotations

EXECUTORS = ("process", "dask")


class ExecutorError(RuntimeError):
    """An executor that cannot start: Dask missing, a scheduler that does not answer."""
