"""SMS segments, as a carrier counts them: GSM-7 when every character fits, UCS-2 otherwise.

A single GSM-7 message holds 160 septets and each part of a longer one 153; characters of the
extension table take two septets and a part never splits one. UCS-2 holds 70 code units, 67
per part; a character outside the Basic Multilingual Plane takes two. (The same count as the
Twilio plugin's; core never imports a plugin.)
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class Segments:
    encoding: str
    units: int
    count: int


def count_segments(text: str) -> Segments:
    """The segments ``text`` takes (0 for an empty text)."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        encoding, widths = "GSM-7", [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding, widths = "UCS-2", [2 if ord(char) > 0xFFFF else 1 for char in text]
    single, part = LIMITS[encoding]
    units = sum(widths)
    if units <= single:
        return Segments(encoding, units, 1 if units else 0)
    count, used = 1, 0
    for width in widths:
        if used + width > part:
            count, used = count + 1, 0
        used += width
    return Segments(encoding, units, count)
