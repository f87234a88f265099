"""Instagram direct messages through the Graph API messaging endpoint: the ``instagram`` channel.

Instagram only lets a business answer within 24 hours of the customer's last message, so
``check()`` refuses a message outside that window and the engine falls back to another channel.

Settings (``channels.instagram`` in ``courtship.yaml``)::

    instagram:
      ig_user_id: "17841400000000000"         # the professional account that sends
      access_token_env: INSTAGRAM_TOKEN       # the environment variable that holds the token
      base_url: https://graph.instagram.com   # default (Instagram Login);
                                              # https://graph.facebook.com with a Page token
      api_version: v25.0                      # Graph API version (v<major>.<minor>)
      timeout: 10                             # seconds
"""

from __future__ import annotations

from collections.abc import Callable

import courtship
from courtship.channels import ChannelFactory

from .channel import InstagramChannel

__all__ = ["InstagramChannel"]


@courtship.hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None]) -> None:
    register("instagram", InstagramChannel)
