"""Referrals: in every message of a referral, ``friend`` is the friend and ``referrer`` the
referrer, and ``offer.for: both`` gives both a code."""

from conftest import customer

REFERRAL = """
    id: referral
    title: Welcome their friends
    stage: advocate
    category: marketing
    trigger: {event: referral}
    respond:
      - send: {channel: preferred, template: thanks, offer: {percent_off: 15, for: both}}
      - send:
          {to: friend, channel: preferred, template: welcome, offer: {percent_off: 20, for: friend}}
    limits: {reentry: always}
"""


def test_friend_and_referrer_are_named_by_role_in_both_messages(world):
    world.playbook(REFERRAL)
    world.template(
        "thanks",
        "{{ first_name }}, thank you for bringing {{ friend.first_name }}! "
        "Yours: {{ offer.code }}, theirs: {{ offer.friend_code }}",
    )
    world.template(
        "welcome",
        "Hi {{ first_name }}, {{ referrer.first_name }} sent you; "
        "{{ friend.first_name }} is you. Code {{ offer.code }} {{ offer.friend_code }}",
    )
    world.customers += [customer("c001", first="Sophie"), customer("c002", first="Ana")]
    world.event("c001", "referral", "2026-11-23T12:00:00Z", friend_id="c002")
    thanks, welcome = world.plan().sends
    assert thanks.recipient_id == "c001" and welcome.recipient_id == "c002"
    assert thanks.text.startswith("Sophie, thank you for bringing Ana!")
    yours, theirs = thanks.text.split("Yours: ")[1].split(", theirs: ")
    assert yours.startswith("GIFT-") and theirs.strip().startswith("GIFT-")
    assert yours != theirs.strip()  # for: both, two codes
    assert welcome.text.startswith("Hi Ana, Sophie sent you; Ana is you.")
    assert len(welcome.text.split("Code ")[1].split()) == 1  # for: friend, one code: theirs
