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

from collections.abc import Callable

import courtship
from courtship.channels import ChannelFactory

from .channel import TwilioChannel
from .segments import Segments, count_segments

__all__ = ["Segments", "TwilioChannel", "count_segments"]


@courtship.hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None]) -> None:
    register("sms", TwilioChannel)
