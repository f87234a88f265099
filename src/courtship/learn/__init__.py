"""What Courtship learns from the base's own history: models fitted at a moment, whose
predictions are facts (``p_alive``, ``expected_orders_90d``). Nothing here reads a clock or
the network; a model is fitted on the customers' purchase days as the facts engine counts them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Learning:
    """How the learned facts are computed (the project file's ``learning:`` section).

    ``per_persona``: one BG/NBD model per persona (customers without a persona form one
    group), instead of one for the whole base; a group whose fit fails falls back on the
    whole base's model.
    """

    per_persona: bool = False
