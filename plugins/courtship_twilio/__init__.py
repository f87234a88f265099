"""SMS over the Twilio Programmable Messaging REST API: the ``sms`` channel.

Settings (``channels.sms`` in ``courtship.yaml``)::

    sms:
      account_sid: ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx   # AC and 32 hexadecimal digits
      auth_token_env: TWILIO_AUTH_TOKEN   # the environment variable that holds the auth token
      from: "+15017122661"                # a Twilio number (E.164) or alphanumeric sender id, or
      messaging_service_sid: MGxxxxxxxx   # a Messaging Service: MG and 32 hex digits (or both)
      status_callback: https://example.org/twilio/status   # optional
      max_segments: 3                     # optional: refuse longer texts (the engine falls back)
      timeout: 10                         # seconds
      base_url: https://api.twilio.com    # default
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import courtship

if TYPE_CHECKING:
    from courtship.channels import ChannelFactory

__all__ = ["Segments", "TwilioChannel", "count_segments"]

#: Where each name of the plugin lives: imported on first use (``__getattr__``), so loading the
#: plugin to learn what it registers does not import its HTTP client.
_LAZY = {"TwilioChannel": "channel", "Segments": "segments", "count_segments": "segments"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sms(settings: Mapping[str, Any]) -> Any:
    """The sms channel, built when a command uses it: importing this plugin stays cheap."""
    from .channel import TwilioChannel

    return TwilioChannel(settings)


@courtship.hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None]) -> None:
    register("sms", _sms)
