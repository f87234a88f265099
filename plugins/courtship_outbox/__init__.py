"""Messages written to a folder instead of sent: the ``outbox`` channel, for demos and dry runs.

Each message becomes ``<folder>/<key>.json`` (everything the engine rendered) and a readable
``<key>.txt``, or, with ``format: jsonl``, one line of a JSON Lines file per run. Writing the same
key twice keeps the first: the channel is idempotent.

Settings (``channels.outbox`` in ``courtship.yaml``)::

    outbox:
      folder: outbox     # default; relative to the working directory
      text_copy: true    # default; false writes only the .json (half the files to create)
      format: files      # default; jsonl: <folder>/<UTC time>-<pid>-<n>.jsonl, a line a message
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import courtship

if TYPE_CHECKING:
    from courtship.channels import ChannelFactory

__all__ = ["OutboxChannel"]

#: Where each name of the plugin lives: imported on first use (``__getattr__``), so loading the
#: plugin to learn what it registers does not import what it needs to send.
_LAZY = {"OutboxChannel": "channel"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _outbox(settings: Mapping[str, Any]) -> Any:
    """The outbox channel, built when a command uses it: importing this plugin stays cheap."""
    from .channel import OutboxChannel

    return OutboxChannel(settings)


@courtship.hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None]) -> None:
    register("outbox", _outbox)
