"""Email over SMTP: the ``email`` channel.

Settings (``channels.email`` in ``courtship.yaml``)::

    email:
      host: smtp.example.org
      port: 587                     # default: 587 starttls, 465 ssl, 25 none
      security: starttls            # starttls | ssl | none
      username: mailer@example.org  # optional; needs password_env
      password_env: SMTP_PASSWORD   # the environment variable that holds the password
      from: "Lotus & Co <hello@lotus.example.org>"
      reply_to: "Sam <sam@lotus.example.org>"             # optional
      unsubscribe_mailto: unsubscribe@lotus.example.org   # optional, besides the https link
      timeout: 10                   # seconds, for connecting and for each command
      ca_file: /etc/ssl/private-ca.pem                    # optional: also trust this CA

Every email is 7-bit: quoted-printable bodies, RFC 2047 headers. A marketing email needs the
message's https one-click unsubscribe link (``unsubscribe:`` in ``courtship.yaml``): it goes in
``List-Unsubscribe`` with ``List-Unsubscribe-Post`` (RFC 8058), and in a footer when the
template does not print it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import courtship

if TYPE_CHECKING:
    from courtship.channels import ChannelFactory

__all__ = ["SMTPChannel"]

#: Where each name of the plugin lives: imported on first use (``__getattr__``), so loading the
#: plugin to learn what it registers does not import what it needs to send.
_LAZY = {"SMTPChannel": "channel"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _email(settings: Mapping[str, Any]) -> Any:
    """The email channel, built when a command uses it: importing this plugin stays cheap."""
    from .channel import SMTPChannel

    return SMTPChannel(settings)


@courtship.hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None]) -> None:
    register("email", _email)
