"""Consent as customers last told us, and what they wrote to us, from providers' callbacks.

The customer file's ``consent_<channel>`` columns say what the customer agreed to. What
``courtship serve`` recorded overrides them from its moment on (``StateStore.consent_changes``):

- a withdrawal of scope ``all`` (an SMS STOP, a hard bounce) makes ``consent_<channel>`` false:
  no message on that channel, transactional or not;
- a withdrawal of scope ``marketing`` (a one-click unsubscribe, a spam complaint) keeps the
  consent column and sets ``_marketing_withdrawn_<channel>``: the ``no-consent`` guard refuses
  marketing messages on that channel, transactional ones still go;
- consent ``given`` back (an SMS START) lifts both from its moment on: the customer file's
  consent counts again.

A change names a customer (an unsubscribe token) or an address (a phone number, an email
address, an Instagram id), which is the customer's whose address it is now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from courtship.sources import CustomerBase

#: The customer column with each channel's address.
ADDRESS = {"email": "email", "sms": "phone", "instagram": "instagram_id"}
#: What each source of a change is, in words (``courtship explain``).
SOURCES = {
    "one-click-unsubscribe": "a one-click unsubscribe",
    "sms-stop": "an SMS STOP",
    "sms-start": "an SMS START",
    "twilio-21610": "Twilio's error 21610 (the number had replied STOP)",
    "hard-bounce": "a hard bounce",
    "soft-bounces": "soft bounces in a row",
    "complaint": "a spam complaint",
}


def normalised(channel: str, address: str | None) -> str | None:
    """An address as callbacks and the customer file are compared: an email in lower case, a
    phone number as its digits (with a leading +)."""
    if address is None:
        return None
    text = str(address).strip()
    if channel == "email":
        return text.lower() or None
    if channel == "sms":
        digits = "".join(char for char in text if char.isdigit())
        return ("+" if text.startswith("+") else "") + digits if digits else None
    return text or None


def standing(
    changes: Iterable[Mapping[str, Any]], owners: Mapping[tuple[str, str], str], now: dt.datetime
) -> dict[tuple[str, str], dict[str, Mapping[str, Any]]]:
    """(customer, channel) → {scope: the withdrawal in force at ``now``}. ``owners`` maps
    (channel, normalised address) to the customer whose address it is."""
    out: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for change in changes:  # in the order they happened
        if change["at"] > now:
            break
        channel = change["channel"]
        customer = change["customer_id"] or owners.get(
            (channel, normalised(channel, change["address"]) or "")
        )
        if customer is None:
            continue
        scopes = out.setdefault((customer, channel), {})
        if change["change"] == "given":
            scopes.clear()
        else:
            scopes[change["scope"]] = change
    return {key: scopes for key, scopes in out.items() if scopes}


def owners_of(frame: pl.DataFrame, changes: list[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(channel, normalised address) → customer, for the addresses ``changes`` name."""
    owners: dict[tuple[str, str], str] = {}
    for channel, column in ADDRESS.items():
        wanted = {
            normalised(channel, c["address"])
            for c in changes
            if c["channel"] == channel and c["address"] and not c["customer_id"]
        } - {None}
        if not wanted or column not in frame.columns:
            continue
        cleaned = pl.col(column).cast(pl.String()).str.strip_chars()
        key = (
            cleaned.str.to_lowercase()
            if channel == "email"
            else (
                pl.when(cleaned.str.starts_with("+")).then(pl.lit("+")).otherwise(pl.lit(""))
                + cleaned.str.replace_all(r"\D", "")
                if channel == "sms"
                else cleaned
            )
        )
        found = frame.select(pl.col("customer_id").cast(pl.String()), key.alias("_key")).filter(
            pl.col("_key").is_in(pl.Series(sorted(wanted), dtype=pl.String()).implode())
        )
        for customer, address in found.iter_rows():
            owners[(channel, address)] = customer
    return owners


def as_of(facts: pl.DataFrame, changes: list[Mapping[str, Any]], now: dt.datetime) -> pl.DataFrame:
    """The facts with consent as callbacks left it at ``now`` (see the module's docstring)."""
    if not changes:
        return facts
    withdrawn = standing(changes, owners_of(facts, changes), now)
    if not withdrawn:
        return facts
    columns = []
    for channel in sorted({channel for _, channel in withdrawn}):
        stopped = [c for (c, ch), s in withdrawn.items() if ch == channel and "all" in s]
        unsubscribed = [c for (c, ch), s in withdrawn.items() if ch == channel and "marketing" in s]
        who = pl.col("customer_id").cast(pl.String())
        consent = f"consent_{channel}"
        if stopped and consent in facts.columns:
            ids = pl.Series(stopped, dtype=pl.String()).implode()
            columns.append(
                pl.when(who.is_in(ids))
                .then(pl.lit(False))
                .otherwise(pl.col(consent))
                .alias(consent)
            )
        ids = pl.Series(unsubscribed, dtype=pl.String()).implode()
        columns.append(who.is_in(ids).alias(f"_marketing_withdrawn_{channel}"))
    return facts.with_columns(columns)


def withdrawals_of(
    customer: str,
    addresses: Mapping[str, Any],
    changes: list[Mapping[str, Any]],
    now: dt.datetime,
) -> list[str]:
    """The withdrawals in force for one customer at ``now``, in words: ``email consent (for
    marketing) withdrawn on 2026-11-23 15:00 UTC by a one-click unsubscribe``."""
    owners = {
        (channel, key): customer
        for channel, column in ADDRESS.items()
        if (key := normalised(channel, addresses.get(column)))
    }
    lines = []
    for (who, channel), scopes in sorted(standing(changes, owners, now).items()):
        if who == customer:
            lines += [_in_words(channel, scope, change) for scope, change in sorted(scopes.items())]
    return lines


def withdrawn_for(
    changes: list[Mapping[str, Any]],
    customer: str,
    channel: str,
    address: str | None,
    *,
    marketing: bool,
    now: dt.datetime,
) -> str | None:
    """Why one message may no longer go out on ``channel`` at ``now`` (a withdrawal after it
    was decided), in words; None when it may."""
    key = normalised(channel, address)
    owners = {(channel, key): customer} if key else {}
    scopes = standing(changes, owners, now).get((customer, channel), {})
    if "all" in scopes:
        return _in_words(channel, "all", scopes["all"])
    if marketing and "marketing" in scopes:
        return _in_words(channel, "marketing", scopes["marketing"])
    return None


def _in_words(channel: str, scope: str, change: Mapping[str, Any]) -> str:
    what = "" if scope == "all" else " for marketing"
    when = change["at"].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    source = SOURCES.get(change["source"], change["source"])
    detail = f" ({change['detail']})" if change.get("detail") else ""
    return f"{channel} consent{what} withdrawn on {when} by {source}{detail}"


def with_inbound(base: CustomerBase, inbound: list[Mapping[str, Any]]) -> CustomerBase:
    """The base with the messages customers sent us through ``courtship serve`` (an SMS, an
    Instagram message) as ``inbound_message`` events of the customer whose address wrote."""
    if not inbound:
        return base
    changes = [
        {"channel": m["channel"], "address": m["address"], "customer_id": None} for m in inbound
    ]
    owners = owners_of(base.customers, changes)
    rows = [
        {
            "customer_id": owners[key],
            "type": "inbound_message",
            "at": m["at"].astimezone(dt.UTC),
            "channel": m["channel"],
        }
        for m in inbound
        if (key := (m["channel"], normalised(m["channel"], m["address"]) or "")) in owners
    ]
    if not rows:
        return base
    from courtship.engine.facts import with_more_events

    # after the base's own events, with the index built of these carried on (not built again)
    return with_more_events(base, pl.DataFrame(rows))
