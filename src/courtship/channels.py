"""The public channel API: everything a channel plugin needs from Courtship, and nothing else.

A channel turns one rendered :class:`Message` into one delivery attempt. The engine owns
idempotency, retries and fallback; a channel answers two questions:

* :meth:`Channel.check` — *can* this message go out on this channel (messaging window open, not too
  many SMS segments, a valid address)? ``None`` means yes; a string says why not, and the engine
  falls back to the next consented channel.
* :meth:`Channel.send` — send it, and say what happened as a :class:`Delivery`. Provider errors are
  *returned*, never raised: ``retry`` for what may pass (timeouts, 4xx SMTP, HTTP 429 and 5xx),
  ``failed`` for what will not (an invalid number, an unsubscribed recipient).

Settings come from ``courtship.yaml`` (``channels.<name>``) as a plain mapping. Secrets are never
written there: a setting names an environment variable (``password_env: SMTP_PASSWORD``) and the
channel reads it with :func:`secret`, which remembers it so that no reason, log or output ever
shows it (:func:`redact`; a channel that sends a secret in another form, such as base64 in an
``Authorization`` header, passes that form to :func:`remember` too).

:func:`email_problem` and :func:`phone_problem` say whether an address is one the channel can
reach (``email-validator`` and ``phonenumbers``, cached per distinct value): call them in
``check``, so only the addresses actually messaged are validated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from courtship.addresses import email_problem, phone_problem
from courtship.redaction import redact, remember
from courtship.segments import Segments, count_segments

__all__ = [
    "Channel",
    "ChannelConfigError",
    "ChannelFactory",
    "Delivery",
    "Message",
    "Segments",
    "count_segments",
    "email_problem",
    "parse_retry_after",
    "phone_problem",
    "redact",
    "remember",
    "secret",
    "secret_problem",
    "setting",
]

Category = Literal["marketing", "transactional"]
Status = Literal["delivered", "retry", "failed"]


class ChannelConfigError(ValueError):
    """A channel's settings are wrong or incomplete; the message names the setting to fix."""


@dataclass(frozen=True)
class Message:
    """One rendered message to one person.

    ``key`` is the idempotency key: the engine never delivers the same key twice, and a channel
    whose provider supports idempotency passes it on (``X-Courtship-Key``, a file name, …).
    ``to`` is the address on this channel: an email address, an E.164 phone number, or an
    Instagram-scoped user id. ``hours_since_last_inbound`` is how long ago the customer last wrote
    to us (None: never), for channels with a messaging window.
    """

    key: str
    customer_id: str
    playbook: str
    category: str  # "marketing" | "transactional"
    channel: str
    to: str
    subject: str
    text: str
    html: str | None = None
    tone: str = "direct"
    hours_since_last_inbound: float | None = None
    unsubscribe_url: str | None = None
    max_segments: int | None = None

    @property
    def is_marketing(self) -> bool:
        return self.category == "marketing"


@dataclass(frozen=True)
class Delivery:
    """What happened to one send.

    ``delivered``: the provider accepted the message (``provider_id`` is its id, if it gave one).
    ``retry``: it may pass later; ``retry_after`` is the provider's hint in seconds, if any.
    ``failed``: it will not pass as it is; ``reason`` says why (the provider's code and words).
    Every secret Courtship read is taken out of ``reason`` (:func:`courtship.redaction.redact`).
    """

    status: Status
    provider_id: str | None = None
    reason: str = ""
    retry_after: float | None = None

    def __post_init__(self) -> None:
        # A provider's words can quote what it was sent, a secret included: never keep one.
        object.__setattr__(self, "reason", redact(self.reason))

    @classmethod
    def delivered(cls, provider_id: str | None = None, reason: str = "") -> Delivery:
        return cls("delivered", provider_id=provider_id, reason=reason)

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None) -> Delivery:
        return cls("retry", reason=reason, retry_after=retry_after)

    @classmethod
    def failed(cls, reason: str) -> Delivery:
        return cls("failed", reason=reason)


@runtime_checkable
class Channel(Protocol):
    """A way to reach a customer. Implementations may also define ``close()`` and
    ``idempotent = True`` (the channel itself drops a repeated key; the contract kit checks it)."""

    name: str

    def check(self, message: Message) -> str | None:
        """None if ``message`` can go out on this channel, or why it cannot (the engine falls
        back): the messaging window is closed, the text is too long, the address is invalid."""
        ...

    def send(self, message: Message) -> Delivery:
        """Send ``message`` once. Provider errors are returned as a Delivery, never raised."""
        ...


#: Builds a channel from its settings (``channels.<name>`` in ``courtship.yaml``). Raises
#: :class:`ChannelConfigError` for missing or invalid settings, before anything is sent.
ChannelFactory = Callable[[Mapping[str, Any]], Channel]


def setting(settings: Mapping[str, Any], key: str, default: Any = None, *, kind: type = str) -> Any:
    """The setting ``key`` converted to ``kind``, or ``default`` when absent (or null).

    A required setting (``default`` None and absent) or one that does not convert raises
    :class:`ChannelConfigError` naming it.
    """
    value = settings.get(key)
    if value is None:
        value = default
    if value is None:
        raise ChannelConfigError(f"missing setting '{key}'")
    if kind is bool and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered not in {"true", "false", "yes", "no", "1", "0"}:
            raise ChannelConfigError(f"setting '{key}' must be true or false, not {value!r}")
        return lowered in {"true", "yes", "1"}
    try:
        return value if isinstance(value, kind) else kind(value)
    except (TypeError, ValueError):
        raise ChannelConfigError(
            f"setting '{key}' must be {kind.__name__}, not {value!r}"
        ) from None


def secret(settings: Mapping[str, Any], key: str, *, header: bool = False) -> str:
    """The secret named by the setting ``key``, read from the environment.

    ``secret({"password_env": "SMTP_PASSWORD"}, "password_env")`` returns ``$SMTP_PASSWORD``.
    Secrets are only ever referenced by variable name; a missing setting, an unset (or empty)
    variable, or a value with a line break or another control character (a copy from a file
    with Windows line ends) raises :class:`ChannelConfigError` naming both — never the value.
    With ``header=True`` (a token sent in an HTTP header) the value must also be plain ASCII.

    Every secret read is remembered by :mod:`courtship.redaction`, so no reason, log or output
    of Courtship ever shows it.
    """
    variable = settings.get(key)
    if not variable or not isinstance(variable, str):
        raise ChannelConfigError(
            f"missing setting '{key}': name the environment variable that holds the secret "
            f"(for example {key}: MY_SECRET); secrets are never written in courtship.yaml"
        )
    value = os.environ.get(variable)
    if not value:
        raise ChannelConfigError(
            f"setting '{key}' names the environment variable {variable}, which is not set"
        )
    remember(value, variable)
    problem = secret_problem(value, header=header)
    if problem:
        raise ChannelConfigError(
            f"the environment variable {variable} (setting '{key}') {problem}; "
            "the value is not shown"
        )
    return value


def secret_problem(value: str, *, header: bool = False) -> str | None:
    """Why ``value`` cannot be a secret (a line break, a control character; with ``header``,
    a character outside ASCII), or None. Never quotes the value."""
    for position, char in enumerate(value, 1):
        if char in "\r\n":
            return (
                f"holds a line break at character {position} (a copy from a file with Windows "
                "line ends?): remove it"
            )
        if ord(char) < 32 or ord(char) == 127:
            return f"holds a control character at character {position}: remove it"
        if header and ord(char) > 126:
            return (
                f"holds a character outside ASCII at character {position}, which cannot travel "
                "in an HTTP header: check that the whole token was copied, and nothing else"
            )
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import datetime as dt

    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
