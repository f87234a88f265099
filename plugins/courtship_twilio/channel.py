"""The Twilio channel: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with httpx.

Twilio answers ``201 Created`` with the Message resource (its ``sid`` is the provider id), or an
error document ``{"code": 21211, "message": "...", "more_info": "...", "status": 400}``.

``delivered`` means only that Twilio *accepted* the message (status ``queued`` or ``accepted``):
whether the network delivered it arrives later, at the ``status_callback`` URL.

Twilio's Messages API takes no idempotency key: its OpenAPI description (twilio/twilio-oai,
``CreateMessage``) has no header parameter at all, only the form. A timeout after Twilio accepted
a message and a retry can send it twice, so the timeout should stay well above Twilio's usual
answer time.
"""

from __future__ import annotations

import base64
import functools
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
    phone_problem,
    remember,
    secret,
    setting,
)

from .segments import count_segments

DEFAULT_BASE_URL = "https://api.twilio.com"
#: Twilio's SIDs: two letters and 32 hexadecimal digits (the OpenAPI patterns).
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
#: An alphanumeric sender id: up to 11 letters, digits and spaces, at least one letter.
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
#: Twilio refuses a ``Body`` longer than 1,600 characters (error 21617).
MAX_BODY = 1600

#: Twilio error codes worth a plain-language note in the reason (all fail: retrying won't help).
KNOWN_ERRORS: dict[int, str] = {
    20003: "authentication failed: check account_sid and the auth token",
    21211: "invalid 'To' phone number",
    21408: "sending to this region is not enabled on the account",
    21606: "the 'From' number cannot send SMS",
    21610: "the recipient has unsubscribed (replied STOP)",
    21612: "Twilio cannot route to this number",
    21614: "'To' is not a mobile number",
    21617: "the body is longer than 1,600 characters",
}

#: Twilio error codes that pass with time, per Twilio's error pages, and how long to wait at
#: least (seconds; None: the usual backoff). The delay, like Retry-After, is capped by
#: ``delivery.max_backoff``.
RETRY_ERRORS: dict[int, tuple[str, float | None]] = {
    14107: ("more than 30 messages between two numbers in 30 s: slowing down", 30.0),
    20429: ("too many requests: slowing down", None),
    21611: ("the 'From' number's queue holds 10 hours of messages: slowing down", None),
    60728: ("the account's hourly message limit is reached", 3600.0),
    63017: ("the account's rate limit (2000 messages a second) is reached", None),
    63038: ("the account's daily message limit is reached", 86400.0),
}


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: loading the CA bundle is the slow part."""
    return httpx.create_ssl_context()


class TwilioChannel:
    """SMS through Twilio's REST API, form-encoded, with HTTP basic auth."""

    name = "sms"
    idempotent = False

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.account_sid: str = setting(settings, "account_sid").strip()
        if not ACCOUNT_SID.match(self.account_sid):
            raise ChannelConfigError(
                "setting 'account_sid' must be AC and 32 hexadecimal digits, as the Twilio "
                "console shows it"
            )
        token = secret(settings, "auth_token_env", header=True)
        # The Authorization header carries the token in base64: a peer that quotes it back
        # must not put it in a reason either.
        basic = base64.b64encode(f"{self.account_sid}:{token}".encode()).decode()
        remember(basic, str(settings["auth_token_env"]))
        self.sender: str | None = settings.get("from")
        self.messaging_service_sid: str | None = settings.get("messaging_service_sid")
        if not (self.sender or self.messaging_service_sid):
            raise ChannelConfigError("set 'from' (a Twilio number) or 'messaging_service_sid'")
        if self.messaging_service_sid is not None and not (
            isinstance(self.messaging_service_sid, str)
            and MESSAGING_SERVICE_SID.match(self.messaging_service_sid)
        ):
            raise ChannelConfigError(
                "setting 'messaging_service_sid' must be MG and 32 hexadecimal digits"
            )
        if self.sender is not None:
            self.sender = str(self.sender)
            if self.sender.startswith("+"):
                problem = phone_problem(self.sender)
                if problem:
                    raise ChannelConfigError(f"setting 'from' is {problem}")
            elif not ALPHANUMERIC_SENDER.match(self.sender):
                raise ChannelConfigError(
                    "setting 'from' must be a Twilio phone number in E.164 (+15017122661) or "
                    "an alphanumeric sender id (up to 11 letters, digits and spaces)"
                )
        self.status_callback: str | None = settings.get("status_callback")
        self.max_segments: int | None = (
            setting(settings, "max_segments", kind=int)
            if settings.get("max_segments") is not None
            else None
        )
        self.timeout: float = setting(settings, "timeout", 10.0, kind=float)
        self.base_url: str = setting(settings, "base_url", DEFAULT_BASE_URL).rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=httpx.BasicAuth(self.account_sid, token),
            timeout=self.timeout,
            verify=_tls_context(),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return (
            f"TwilioChannel(account_sid={self.account_sid!r}, from={self.sender!r}, "
            f"messaging_service_sid={self.messaging_service_sid!r}, base_url={self.base_url!r})"
        )

    @property
    def path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def close(self) -> None:
        self._client.close()

    # -- the Channel protocol ------------------------------------------------------------------

    def check(self, message: Message) -> str | None:
        problem = phone_problem(message.to)
        if problem:
            return f"the recipient is {problem}"
        if not message.text:
            return "the text is empty"
        if len(message.text) > MAX_BODY:
            return (
                f"the text is {len(message.text)} characters; Twilio takes at most "
                f"{MAX_BODY:,} in one message"
            )
        limit = message.max_segments if message.max_segments is not None else self.max_segments
        segments = count_segments(message.text)
        if limit is not None and segments.count > limit:
            return (
                f"the text takes {segments.count} SMS segments ({segments.encoding}, "
                f"{segments.units} characters), more than max_segments {limit}"
            )
        return None

    def send(self, message: Message) -> Delivery:
        problem = self.check(message)
        if problem:
            return Delivery.failed(problem)
        form = {"To": message.to, "Body": message.text}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        if self.sender:
            form["From"] = self.sender
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        try:
            response = self._client.post(self.path, data=form)
        except httpx.TimeoutException:
            return Delivery.retry(f"Twilio did not answer within {self.timeout:g} s")
        except httpx.HTTPError as error:
            return Delivery.retry(f"cannot reach Twilio at {self.base_url}: {error}")
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
                f"Twilio answered HTTP {status} with a body that is not a JSON object",
                retry_after,
            )
        if 200 <= status < 300:
            sid = body.get("sid")
            if not isinstance(sid, str) or not sid:
                return Delivery.retry(f"Twilio answered HTTP {status} without a message sid")
            if body.get("error_code"):
                return Delivery.failed(
                    _reason(body.get("error_code"), body.get("error_message"), status)
                )
            return Delivery.delivered(sid)
        code = body.get("code")
        reason = _reason(code, body.get("message"), status)
        if isinstance(code, int) and code in RETRY_ERRORS:
            wait = RETRY_ERRORS[code][1]
            hints = [value for value in (retry_after, wait) if value is not None]
            return Delivery.retry(reason, max(hints) if hints else None)
        if status == 429:
            return Delivery.retry(reason, retry_after)
        if status >= 500:
            return Delivery.retry(reason, retry_after)
        return Delivery.failed(reason)


def _reason(code: object, text: object, status: int) -> str:
    """``Twilio 21610 (the recipient has unsubscribed…): Attempt to send to … (HTTP 400)``."""
    note = None
    if isinstance(code, int):
        note = KNOWN_ERRORS.get(code) or RETRY_ERRORS.get(code, (None, None))[0]
    head = f"Twilio {code}" if code else "Twilio"
    if note:
        head += f" ({note})"
    return f"{head}: {text or 'no message'} (HTTP {status})"
