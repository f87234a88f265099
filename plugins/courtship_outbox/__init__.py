"""Messages written to a folder instead of sent: the ``outbox`` channel, for demos and dry runs.

Each message becomes ``<folder>/<key>.json`` (everything the engine rendered) and a readable
``<key>.txt``. Writing the same key twice keeps the first file: the channel is idempotent.

Settings (``channels.outbox`` in ``courtship.yaml``)::

    outbox:
      folder: outbox     # default; relative to the working directory
"""

from __future__ import annotations

from collections.abc import Callable

import courtship
from courtship.channels import ChannelFactory

from .channel import OutboxChannel

__all__ = ["OutboxChannel"]


@courtship.hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None]) -> None:
    register("outbox", OutboxChannel)
