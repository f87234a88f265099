"""What providers tell us, turned into records the next run reads.

``courtship serve`` checks each callback's signature, then calls one function here, which
writes to the state store (``consent_changes`` and ``callbacks``). Nothing here speaks HTTP:
each function takes what the provider sent, already parsed, and raises ``BadCallback`` with the
reason when it is not what the provider documents.

Consent, by channel (``docs/engine.md``, "Suppression"):

- a one-click unsubscribe or a spam complaint withdraws **marketing** email from that moment;
- a hard bounce (or ``soft_bounces`` soft ones in a row, default 3) withdraws **all** email to
  that address: it does not take mail;
- an SMS STOP (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) withdraws **all** SMS to that
  number, as carriers require; START, YES or UNSTOP gives it back; HELP is recorded;
- any other text, and every Instagram message, is an ``inbound_message`` event of the customer
  whose number or Instagram id wrote: the customer answering.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from courtship.state import StateStore
from courtship.unsubscribe import TokenError, Unsubscriber

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
#: Twilio's status callbacks Courtship records (the others are steps on the way).
RECEIPTS = frozenset({"delivered", "undelivered", "failed"})
#: Twilio refuses a number that replied STOP with this error.
TWILIO_UNSUBSCRIBED = "21610"
SOFT_BOUNCES = 3
RELAY_EVENTS = ("bounce", "soft-bounce", "complaint", "delivered")


class BadCallback(ValueError):
    """A callback that is not what its provider documents: the reason, for a 400."""


class Forged(PermissionError):
    """A callback whose signature or token is wrong: nothing is written (a 403)."""


def unsubscribe(state: StateStore, links: Unsubscriber, token: str, now: dt.datetime) -> str:
    """A one-click unsubscribe (RFC 8058): marketing consent on the token's channel withdrawn
    for its customer from ``now``. Returns the channel."""
    try:
        customer, channel = links.verify(token)
    except TokenError as error:
        raise Forged(str(error)) from None
    state.record_consent_change(
        now, channel, "withdrawn", "marketing", "one-click-unsubscribe", customer_id=customer
    )
    return channel


def twilio_inbound(state: StateStore, params: Mapping[str, str], now: dt.datetime) -> str:
    """An SMS to our number: STOP, START, HELP, or a message. Returns which."""
    number, body = _required(params, "From"), params.get("Body", "")
    sid = params.get("MessageSid") or params.get("SmsSid")
    word = " ".join(body.split()).upper()
    # With Advanced Opt-Out, Twilio says which keyword list matched (custom keywords too).
    opt_out = params.get("OptOutType", "").upper()
    if opt_out == "STOP" or (not opt_out and word in STOP_WORDS):
        state.record_consent_change(
            now, "sms", "withdrawn", "all", "sms-stop", address=number, detail=word
        )
        return "stop"
    if opt_out == "START" or (not opt_out and word in START_WORDS):
        state.record_consent_change(
            now, "sms", "given", "all", "sms-start", address=number, detail=word
        )
        return "start"
    kind = "help" if opt_out == "HELP" or (not opt_out and word in HELP_WORDS) else "inbound"
    state.record_callback(
        now, "twilio", kind, channel="sms", provider_id=sid, address=number, detail=body
    )
    return kind


def twilio_status(state: StateStore, params: Mapping[str, str], now: dt.datetime) -> str:
    """A status callback: delivered, undelivered or failed, recorded against the outbox row
    of its MessageSid. Error 21610 (the number replied STOP) withdraws SMS consent."""
    sid, status = _required(params, "MessageSid"), _required(params, "MessageStatus")
    if status not in RECEIPTS:
        return "ignored"
    error = params.get("ErrorCode") or None
    row = state.send_of_provider_id(sid)
    detail = f"error {error}" if error else None
    state.record_callback(
        now,
        "twilio",
        status,
        channel="sms",
        provider_id=sid,
        address=params.get("To"),
        send_key=row["key"] if row else None,
        detail=detail,
    )
    if error == TWILIO_UNSUBSCRIBED and params.get("To"):
        state.record_consent_change(
            now, "sms", "withdrawn", "all", "twilio-21610", address=params["To"], detail=sid
        )
    return status


def instagram(state: StateStore, payload: Any, now: dt.datetime) -> int:
    """Meta's webhook for Instagram messages: each message a customer sent (not our own
    echoes) is an inbound message of their Instagram-scoped id. Returns how many."""
    if not isinstance(payload, dict) or payload.get("object") != "instagram":
        raise BadCallback('expected {"object": "instagram", "entry": [...]}')
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise BadCallback("'entry' is not a list")
    heard = []
    for entry in entries:
        for event in (entry.get("messaging") or []) if isinstance(entry, dict) else []:
            message = event.get("message") if isinstance(event, dict) else None
            if not isinstance(message, dict) or message.get("is_echo"):
                continue
            sender = event.get("sender")
            if not isinstance(sender, dict) or not sender.get("id"):
                raise BadCallback("a message without sender.id")
            stamp = event.get("timestamp")
            at = _from_millis(stamp) if isinstance(stamp, int) else now
            heard.append((at, str(sender["id"]), message.get("mid"), message.get("text")))
    for at, sender, mid, text in heard:
        state.record_callback(
            at, "instagram", "inbound", channel="instagram", provider_id=mid, address=sender,
            detail=text,
        )  # fmt: skip
    return len(heard)


def relay(
    state: StateStore, payload: Any, now: dt.datetime, soft_limit: int = SOFT_BOUNCES
) -> dict[str, int]:
    """The mail relay's bounces, complaints and delivery receipts (``docs/operations.md``):
    ``{"events": [{"type": "bounce", "email": "ada@example.org", "message_id": "<…>",
    "reason": "550 5.1.1 no such user"}]}``. Returns how many of each type."""
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise BadCallback('expected {"events": [...]}')
    checked = []
    for number, event in enumerate(payload["events"]):
        if not isinstance(event, dict):
            raise BadCallback(f"events[{number}] is not an object")
        kind = event.get("type")
        if kind not in RELAY_EVENTS:
            raise BadCallback(f"events[{number}].type must be one of {', '.join(RELAY_EVENTS)}")
        email = event.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise BadCallback(f"events[{number}].email is not an email address")
        at = now
        if event.get("at") is not None:
            try:
                at = dt.datetime.fromisoformat(str(event["at"]))
            except ValueError:
                raise BadCallback(f"events[{number}].at is not an ISO 8601 moment") from None
            if at.tzinfo is None:
                raise BadCallback(f"events[{number}].at has no time zone")
        checked.append((kind, email.strip().lower(), event, min(at, now)))
    counts: dict[str, int] = {}
    for kind, email, event, at in checked:
        counts[kind] = counts.get(kind, 0) + 1
        reason = str(event.get("reason") or "") or None
        message_id = event.get("message_id")
        row = state.send_of_provider_id(str(message_id)) if message_id else None
        state.record_callback(
            at, "relay", kind, channel="email", provider_id=message_id, address=email,
            send_key=row["key"] if row else None, detail=reason,
        )  # fmt: skip
        if kind == "bounce":
            state.record_consent_change(
                at, "email", "withdrawn", "all", "hard-bounce", address=email, detail=reason
            )
        elif kind == "complaint":
            state.record_consent_change(
                at, "email", "withdrawn", "marketing", "complaint", address=email, detail=reason
            )
        elif kind == "soft-bounce":
            in_a_row = state.soft_bounces_in_a_row("email", email)
            if in_a_row >= soft_limit:
                state.record_consent_change(
                    at, "email", "withdrawn", "all", "soft-bounces", address=email,
                    detail=f"{in_a_row} in a row, the last: {reason or 'no reason given'}",
                )  # fmt: skip
            elif row and row["status"] == "delivered":
                # the relay gave up for now: the next run sends it again
                state.mark_retry(row["key"], now, f"soft bounce: {reason or 'no reason given'}")
    return counts


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise BadCallback(f"no {name} parameter")
    return value


def _from_millis(stamp: int) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(stamp / 1000, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise BadCallback(f"timestamp {stamp} is not a moment") from None
