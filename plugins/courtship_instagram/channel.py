"""The Instagram channel: ``POST {base_url}/{version}/{ig_user_id}/messages`` with httpx.

The request is JSON, ``{"recipient": {"id": IGSID}, "message": {"text": ...}}``, with the token
as ``Authorization: Bearer``. Success is ``{"recipient_id": ..., "message_id": ...}``; a failure is
Graph's error document ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from courtship.channels import Delivery, Message, parse_retry_after, secret, setting

DEFAULT_BASE_URL = "https://graph.instagram.com"
DEFAULT_VERSION = "v21.0"
#: Instagram accepts text of at most 1000 bytes of UTF-8.
MAX_TEXT_BYTES = 1000
#: Instagram's standard messaging window: replies only within 24 hours of the customer's message.
WINDOW_HOURS = 24.0
#: Graph error codes that pass with time: throttling (4, 17, 32, 613) and temporary
#: unavailability (1 "API Unknown", 2 "API Service"), per Graph's error-handling guide.
RETRY_CODES = frozenset({1, 2, 4, 17, 32, 613})


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
        token = secret(settings, "access_token_env")
        self.base_url: str = setting(settings, "base_url", DEFAULT_BASE_URL).rstrip("/")
        self.version: str = setting(settings, "version", DEFAULT_VERSION).strip("/")
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
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
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
        if code in RETRY_CODES or status == 429 or status >= 500:
            return Delivery.retry(reason, retry_after)
        return Delivery.failed(reason)
