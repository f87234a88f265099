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

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import courtship

if TYPE_CHECKING:
    from courtship.channels import ChannelFactory

__all__ = ["InstagramChannel"]

#: Where each name of the plugin lives: imported on first use (``__getattr__``), so loading the
#: plugin to learn what it registers does not import its HTTP client.
_LAZY = {"InstagramChannel": "channel"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _instagram(settings: Mapping[str, Any]) -> Any:
    """The instagram channel, built when a command uses it: importing this plugin stays cheap."""
    from .channel import InstagramChannel

    return InstagramChannel(settings)


@courtship.hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None]) -> None:
    register("instagram", _instagram)
