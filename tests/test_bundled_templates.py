"""The bundled templates, rendered through the engine's own sandboxed Jinja environment
(``courtship.templates``) with the context a message gets: the person's facts, and the offer,
friend, referrer, brand, playbook, now and unsubscribe link."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from courtship.catalogue import TEMPLATE_CONTEXT, TONES
from courtship.templates import compiled

TEMPLATES = Path(__file__).resolve().parents[1] / "playbooks" / "templates"
NOW = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
OFFER_FIELDS = ("percent_off", "amount_off", "gift", "free_shipping", "code", "expires_on")


def render(name: str, person: dict[str, Any], **context: Any) -> tuple[str, str]:  # (subject, text)
    """Render ``templates/NAME.md`` for ``person``: every fact the template reads is given,
    empty (None) where the person has no value, as the engine gives it."""
    template = compiled(TEMPLATES / name)
    given: dict[str, Any] = {
        "offer": dict.fromkeys(OFFER_FIELDS),
        "friend": {"first_name": None},
        "referrer": {"first_name": None},
        "brand": {"name": "Lotus & Co", "url": "https://lotus.example.org", "signature": "Sam"},
        "playbook": {"id": "answer-their-calls", "title": "Never leave a call unanswered"},
        "now": NOW,
        "unsubscribe_url": "https://lotus.example.org/unsubscribe?c=c-0042",
    } | context
    assert set(given) == TEMPLATE_CONTEXT
    facts = {v: person.get(v) for v in template.file.variables if v not in TEMPLATE_CONTEXT}
    return template.render(facts | given)


# ── support-handoff: the note to the team ────────────────────────────────────

WAITING = {
    "customer_id": "c-0042",
    "unanswered_inbound_hours": 5.25,
    "unanswered_inbound_count": 2,
    "last_inbound_channel": "sms",
}


@pytest.mark.parametrize(
    ("first", "last", "shown"),
    [
        ("Eve", "Moneypenny", "Eve Moneypenny"),
        ("Eve", None, "Eve"),
        ("Eve", "", "Eve"),
        (None, "Moneypenny", "Moneypenny"),
    ],
)
def test_the_handoff_names_the_customer_without_stray_spaces(
    first: str | None, last: str | None, shown: str
) -> None:
    subject, text = render("support-handoff.md", WAITING | {"first_name": first, "last_name": last})
    assert text.startswith(f"**{shown}** (c-0042) has been waiting **5.2 hours**")
    assert subject == f"[answer-their-calls] {shown} has waited 5.2 h for an answer"
    assert "  " not in subject


def test_the_handoff_of_a_customer_without_a_name() -> None:
    subject, text = render("support-handoff.md", WAITING | {"first_name": None, "last_name": ""})
    assert subject == "[answer-their-calls] c-0042 has waited 5.2 h for an answer"
    assert text.startswith("**c-0042** (no name on file) has been waiting")
    # no message goes out without a first name: the team is not told one did
    assert "We have already told" not in text
    assert "nobody has told them yet" in text and "ask their name" in text


def test_the_handoff_of_a_named_customer_says_they_were_told() -> None:
    _, text = render("support-handoff.md", WAITING | {"first_name": "Eve", "last_name": None})
    assert 'We have already told Eve that a person is on it ("Never leave a call unanswered").' in (
        text
    )
    assert "call them by their name" in text


# ── referrals: friend is the referred person, referrer the one who referred ──

SOPHIE = {"first_name": "Sophie"}  # the referrer
CHLOE = {"first_name": "Chloé"}  # her friend


@pytest.mark.parametrize("tone", TONES)
def test_the_friends_welcome_names_who_referred_them(tone: str) -> None:
    subject, text = render(
        f"friend-welcome.{tone}.md",
        CHLOE,
        friend=CHLOE,
        referrer=SOPHIE,
        offer=dict.fromkeys(OFFER_FIELDS) | {"percent_off": 20, "code": "FRIEND-A1"},
    )
    assert subject.startswith("Chloé, ") and "Sophie" in subject
    assert text.startswith("Hi Chloé!" if tone == "buddy" else "Chloé, ")
    assert "Sophie" in text and "FRIEND-A1" in text


@pytest.mark.parametrize("tone", TONES)
def test_the_referrers_thanks_names_their_friend(tone: str) -> None:
    subject, text = render(
        f"thanks-for-the-referral.{tone}.md",
        SOPHIE,
        friend=CHLOE,
        referrer=SOPHIE,
        offer=dict.fromkeys(OFFER_FIELDS) | {"percent_off": 15, "code": "THANKS-B2"},
    )
    assert "Sophie" in subject
    assert "Chloé" in text and "THANKS-B2" in text


@pytest.mark.parametrize("tone", TONES)
def test_the_invitation_gives_a_code_to_share_and_one_to_keep(tone: str) -> None:
    _, text = render(
        f"bring-a-friend.{tone}.md",
        SOPHIE | {"orders_count": 12},
        offer=dict.fromkeys(OFFER_FIELDS)
        | {"percent_off": 20, "code": "FRIEND-OWN1", "friend_code": "FRIEND-GIVE", "for": "both"},
    )
    # the code to pass on comes first, in the sentence about the friend; then their own
    assert text.index("FRIEND-GIVE") < text.index("FRIEND-OWN1")
    assert "20% off their first order" in text
