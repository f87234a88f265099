"""The Instagram channel: ``POST {base_url}/{api_version}/{ig_user_id}/messages`` with httpx.

The request is JSON, ``{"recipient": {"id": IGSID}, "message": {"text": ...}}``, with the token
as ``Authorization: Bearer``. Success is ``{"recipient_id": ..., "message_id": ...}``; a failure is
Graph's error document ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``.

When Meta throttles, its usage headers say how long for: ``X-Business-Use-Case-Usage`` maps a
business id to a list of ``{"type", "call_count", "total_cputime", "total_time",
"estimated_time_to_regain_access"}`` (percentages, and *minutes*), and ``X-App-Usage`` may carry
the same estimate. The longest estimate is the retry's delay, like ``Retry-After`` (and, like it,
capped by ``delivery.max_backoff``).

The Graph API's messages endpoint takes no idempotency key: a timeout after Meta accepted a
message and a retry can send it twice.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from courtship.channels import (
    ChannelConfigError,
    Delivery,
    Message,
    parse_retry_after,
    secret,
    setting,
)

DEFAULT_BASE_URL = "https://graph.instagram.com"
#: The Graph API version used unless ``api_version`` says otherwise: v25.0 (February 2026),
#: available until July 2028 by Meta's changelog. Meta retires each version about two years on.
DEFAULT_API_VERSION = "v25.0"
API_VERSION = re.compile(r"^v[0-9]+\.[0-9]+$")
#: Meta's usage headers; ``estimated_time_to_regain_access`` in them is in minutes.
USAGE_HEADERS = ("X-Business-Use-Case-Usage", "X-App-Usage")
#: Instagram accepts text of at most 1000 bytes of UTF-8.
MAX_TEXT_BYTES = 1000
#: Instagram's standard messaging window: replies only within 24 hours of the customer's message.
WINDOW_HOURS = 24.0
#: Graph error codes that pass with time: throttling (4, 17, 32, 613; the business use case
#: limits 80002 Instagram and 80006 Messenger) and temporary unavailability (1 "API Unknown",
#: 2 "API Service"), per Graph's error-handling and rate-limiting guides.
RETRY_CODES = frozenset({1, 2, 4, 17, 32, 613, 80002, 80006})


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: loading the CA bundle is the slow part."""
    return httpx.create_ssl_context()


class InstagramChannel:
    """Text direct messages from an Instagram professional account."""

    name = "instagram"
    idempotent = False

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.ig_user_id: str = setting(settings, "ig_user_id")
        token = secret(settings, "access_token_env", header=True)
        self.base_url: str = setting(settings, "base_url", DEFAULT_BASE_URL).rstrip("/")
        # ``version`` is the setting's first name, still read.
        version = settings.get("api_version") or settings.get("version") or DEFAULT_API_VERSION
        self.version: str = str(version).strip()
        if not API_VERSION.match(self.version):
            raise ChannelConfigError(
                f"setting 'api_version' must be a Graph API version such as "
                f"{DEFAULT_API_VERSION} (v, a number, a dot, a number), not {self.version!r}"
            )
        self.timeout: float = setting(settings, "timeout", 10.0, kind=float)
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=self.timeout,
            verify=_tls_context(),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return (
            f"InstagramChannel(ig_user_id={self.ig_user_id!r}, base_url={self.base_url!r}, "
            f"version={self.version!r})"
        )

    @property
    def path(self) -> str:
        return f"/{self.version}/{self.ig_user_id}/messages"

    def close(self) -> None:
        self._client.close()

    # -- the Channel protocol ------------------------------------------------------------------

    def check(self, message: Message) -> str | None:
        hours = message.hours_since_last_inbound
        if hours is None or hours > WINDOW_HOURS:
            return "outside the 24-hour messaging window"
        if not message.to:
            return "the recipient has no Instagram-scoped id"
        if not message.text:
            return "the text is empty"
        size = len(message.text.encode("utf-8"))
        if size > MAX_TEXT_BYTES:
            return f"the text is {size} bytes of UTF-8; Instagram takes at most {MAX_TEXT_BYTES}"
        return None

    def send(self, message: Message) -> Delivery:
        problem = self.check(message)
        if problem:
            return Delivery.failed(problem)
        payload = {"recipient": {"id": message.to}, "message": {"text": message.text}}
        try:
            response = self._client.post(self.path, json=payload)
        except httpx.TimeoutException:
            return Delivery.retry(f"Instagram did not answer within {self.timeout:g} s")
        except httpx.HTTPError as error:
            return Delivery.retry(f"cannot reach {self.base_url}: {error}")
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> Delivery:
        status = response.status_code
        hints = [
            value
            for value in (
                parse_retry_after(response.headers.get("Retry-After")),
                regain_access(response.headers),
            )
            if value is not None
        ]
        retry_after = max(hints) if hints else None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Delivery.retry(
                f"Instagram answered HTTP {status} with a body that is not a JSON object",
                retry_after,
            )
        if 200 <= status < 300 and "error" not in body:
            message_id = body.get("message_id")
            if not isinstance(message_id, str) or not message_id:
                return Delivery.retry(f"Instagram answered HTTP {status} without a message_id")
            return Delivery.delivered(message_id)
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        code = error.get("code")
        subcode = error.get("error_subcode")
        reason = f"Instagram error {code if code is not None else '?'}"
        if subcode is not None:
            reason += f"/{subcode}"
        reason += f": {error.get('message') or 'no message'} (HTTP {status})"
        throttled = bool(retry_after) and regain_access(response.headers) is not None
        if code in RETRY_CODES or status == 429 or status >= 500 or throttled:
            return Delivery.retry(reason, retry_after)
        return Delivery.failed(reason)


def regain_access(headers: Mapping[str, str]) -> float | None:
    """Seconds until Meta lifts its throttling, from the longest
    ``estimated_time_to_regain_access`` (minutes) in its usage headers; None when no header
    says (or none can be read: an unreadable header is ignored, never an error)."""
    minutes: list[float] = []
    for name in USAGE_HEADERS:
        text = headers.get(name)
        if not text:
            continue
        try:
            usage = json.loads(text)
        except ValueError:
            continue
        _estimates(usage, minutes, depth=0)
    finite = [value for value in minutes if 0 <= value < float("inf")]
    return max(finite) * 60.0 if finite else None


def _estimates(node: Any, into: list[float], depth: int) -> None:
    """Every ``estimated_time_to_regain_access`` in ``node``: a usage object, a list of them,
    or a mapping of business ids to lists (as ``X-Business-Use-Case-Usage`` has it)."""
    if depth > 3:
        return
    if isinstance(node, dict):
        value = node.get("estimated_time_to_regain_access")
        if isinstance(value, int | float) and not isinstance(value, bool):
            into.append(float(value))
        for child in node.values():
            if isinstance(child, dict | list):
                _estimates(child, into, depth + 1)
    elif isinstance(node, list):
        for child in node:
            _estimates(child, into, depth + 1)
