"""Is this an address a channel can reach? Email addresses by ``email-validator``, phone numbers by
``phonenumbers`` (Google's libphonenumber): no hand-written pattern.

Each function answers ``None`` (fine) or why not, in words a person can act on. Answers are
cached per distinct value, and a channel asks only when it is about to send (``check``), so a
customer base of a million rows costs one validation per distinct address that is messaged.
"""

from __future__ import annotations

import functools
import re

__all__ = ["email_problem", "phone_problem"]

#: E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


@functools.lru_cache(maxsize=1 << 17)
def email_problem(address: str) -> str | None:
    """None if ``address`` is a valid email address (syntax only: no DNS look-up), or why not."""
    from email_validator import EmailNotValidError, validate_email

    if not address or address != address.strip():
        return "the email address is empty or has spaces around it"
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        return f"not a valid email address: {error}"
    return None


@functools.lru_cache(maxsize=1 << 17)
def phone_problem(number: str) -> str | None:
    """None if ``number`` is a valid phone number written in E.164 (``+15558675310``), or why
    not: not E.164 at all, or a number no country assigns (``+10000000000``, ``+12``)."""
    if not _E164.match(number):
        return "not an E.164 phone number (a + and the country code, then up to 15 digits in all)"
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as error:
        return f"not a valid phone number: {error}"
    if not phonenumbers.is_valid_number(parsed):
        return "not a valid phone number: no country assigns it"
    return None
