"""One-click unsubscribe links (RFC 8058) that nobody can forge.

A link carries a token: the key's version, the customer, the channel, and an HMAC-SHA256 of the
three with the project's secret (``unsubscribe.secret_env``, default
``COURTSHIP_UNSUBSCRIBE_SECRET``)::

    https://hooks.lotus.example.org/unsubscribe?token=1.Yy0wMDQy.email.<43 characters>

``courtship serve`` checks the token before it records anything; changing the customer or the
channel of a token, or signing it with another key, makes it invalid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from courtship.project import Project

DEFAULT_SECRET_ENV = "COURTSHIP_UNSUBSCRIBE_SECRET"
DEFAULT_KEY_ID = "1"


class TokenError(ValueError):
    """An unsubscribe token that is malformed or not signed with our key."""


@dataclass(frozen=True)
class Unsubscriber:
    """The project's unsubscribe links: where they point and the key that signs them."""

    base_url: str
    secret: bytes | None
    key_id: str = DEFAULT_KEY_ID
    secret_env: str = DEFAULT_SECRET_ENV

    @classmethod
    def of(cls, project: Project) -> Unsubscriber:
        """From ``unsubscribe:`` in ``courtship.yaml``; without ``base_url``, ``brand.url``
        followed by ``/unsubscribe`` (where links pointed before tokens)."""
        settings = project.unsubscribe
        brand = (project.brand.get("url") or "").rstrip("/")
        base = settings.get("base_url") or (f"{brand}/unsubscribe" if brand else "")
        env = settings.get("secret_env", DEFAULT_SECRET_ENV)
        secret = os.environ.get(env) or None
        return cls(
            base_url=base,
            secret=secret.encode() if secret else None,
            key_id=str(settings.get("key_id", DEFAULT_KEY_ID)),
            secret_env=env,
        )

    def token(self, customer_id: str, channel: str) -> str:
        if self.secret is None:
            raise TokenError(f"no secret in the environment variable {self.secret_env}")
        who = _b64(customer_id.encode())
        return f"{self.key_id}.{who}.{channel}.{self._mac(self.key_id, who, channel)}"

    def url(self, customer_id: str, channel: str) -> str | None:
        """The link for a customer on a channel; None without a base URL or a secret (a
        marketing email is then refused by the email channel, which says why)."""
        if not self.base_url or self.secret is None:
            return None
        glue = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{glue}token={self.token(customer_id, channel)}"

    def verify(self, token: str) -> tuple[str, str]:
        """(customer id, channel) of a token signed with our key, or ``TokenError``."""
        if self.secret is None:
            raise TokenError(f"no secret in the environment variable {self.secret_env}")
        parts = token.split(".")
        if len(parts) != 4 or not all(parts):
            raise TokenError("the token is not of the form key.customer.channel.signature")
        key_id, who, channel, mac = parts
        if key_id != self.key_id:
            raise TokenError(f"the token is signed with key {key_id!r}, not the current one")
        if not hmac.compare_digest(mac, self._mac(key_id, who, channel)):
            raise TokenError("the token's signature is wrong")
        try:
            customer = base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            raise TokenError("the token's customer is unreadable") from None
        return customer, channel

    def _mac(self, key_id: str, who: str, channel: str) -> str:
        assert self.secret is not None
        signed = f"courtship-unsubscribe|{key_id}|{who}|{channel}".encode()
        return _b64(hmac.new(self.secret, signed, hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
