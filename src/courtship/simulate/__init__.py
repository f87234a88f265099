"""``courtship simulate``: the real engine, moment by moment, on a copy of the state store.

- :mod:`~courtship.simulate.timeline` runs the moments (plan, record, a delivery without any
  channel) and keeps what each one decided;
- :mod:`~courtship.simulate.behaviour` is the optional, seeded model of customers who answer, buy,
  refer a friend or drift;
- :mod:`~courtship.simulate.report` turns a simulation into figures, a summary, the decisions
  file and one self-contained HTML page (plotly, imported only here);
- :mod:`~courtship.simulate.drawing` draws the dependency graph as inline SVG.
"""

from courtship.simulate.behaviour import Behaviour
from courtship.simulate.timeline import Simulation, SimulationError, moments, simulate

__all__ = ["Behaviour", "Simulation", "SimulationError", "moments", "simulate"]
