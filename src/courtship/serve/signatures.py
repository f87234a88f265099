"""How each provider signs its callbacks, and how we check them (constant-time compares)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature``: HMAC-SHA1, keyed with the auth token, of the full URL
    followed by every POST parameter sorted by name (values of a repeated name sorted too),
    each name then its value; base64."""
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_valid(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str
) -> bool:
    """Whether ``signature`` is Twilio's for this request. As Twilio's own validators do, the
    URL is tried as given and with its https/http default port added or taken away."""
    params = list(params)
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, params), signature)
        for candidate in _with_and_without_port(url)
    )


def _with_and_without_port(url: str) -> list[str]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is None or parts.hostname is None:
        return [url]
    host = parts.netloc.rsplit("@", 1)[-1]
    bare = host.rsplit(":", 1)[0] if parts.port is not None else host
    other = bare if parts.port == default else f"{bare}:{default}" if parts.port is None else None
    if other is None:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=other))]


def hex_hmac_sha256(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sha256_valid(secret: str, body: bytes, header: str | None) -> bool:
    """``sha256=<hex HMAC-SHA256 of the raw body>``: Meta's ``X-Hub-Signature-256`` and the
    relay's ``X-Courtship-Signature``."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(header.removeprefix("sha256="), hex_hmac_sha256(secret, body))
