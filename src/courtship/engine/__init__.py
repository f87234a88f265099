"""The engine: at moment ``now``, what do we say to whom, on which channel, in which tone — and
for everyone else, why not?

One module per step of the data flow (``docs/engine.md`` is the contract):
:mod:`~courtship.engine.moment` runs one moment in order — :mod:`~courtship.engine.facts`
(with consent as :mod:`~courtship.engine.consent` reads it from providers' callbacks),
:mod:`~courtship.engine.triggers` (with :mod:`~courtship.engine.calendar`), audiences and limits,
:mod:`~courtship.engine.sequences`, :mod:`~courtship.engine.guards` — into a
:mod:`~courtship.engine.plan`; :mod:`~courtship.engine.render` writes the messages and
:mod:`~courtship.engine.outbox` turns a plan into the rows the state store records, and
:mod:`~courtship.engine.record` into the record of its decisions.
:mod:`~courtship.engine.oracle` says the same thing one customer at a time, in plain Python, for
the tests.
"""

from courtship.engine.moment import Decision, Engine, Plan

__all__ = ["Decision", "Engine", "Plan"]
