"""How many SMS segments a text takes: GSM-7 when every character fits, UCS-2 otherwise.

A single GSM-7 message holds 160 septets and each part of a longer one 153 (the rest is the
concatenation header); characters of the extension table (``^{}\\[~]|€`` and form feed) take two
septets, and a part never splits one. UCS-2 holds 70 code units, 67 per part; characters outside
the Basic Multilingual Plane (most emoji) take two units and are never split either.

The SMS channel (``courtship_twilio``) checks ``max_segments`` with it before sending, and
``courtship lint`` (``sms-over-segments``) with it before a playbook goes live: one count.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The GSM 03.38 default alphabet (the escape code 0x1B left out).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The GSM 03.38 extension table: each character is sent as escape + character, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class Segments:
    """A text's encoding, its length in septets (GSM-7) or code units (UCS-2), and its parts."""

    encoding: str
    units: int
    count: int


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def count_segments(text: str) -> Segments:
    """The SMS segments ``text`` takes (0 for an empty text)."""
    if is_gsm7(text):
        encoding = "GSM-7"
        widths = [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding = "UCS-2"
        widths = [2 if ord(char) > 0xFFFF else 1 for char in text]
    single, part = LIMITS[encoding]
    units = sum(widths)
    if units == 0:
        return Segments(encoding, 0, 0)
    if units <= single:
        return Segments(encoding, units, 1)
    count, used = 1, 0
    for width in widths:
        if used + width > part:
            count, used = count + 1, 0
        used += width
    return Segments(encoding, units, count)
