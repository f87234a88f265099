"""No secret appears in what Courtship writes: a registry of every secret read, one redactor.

Every secret comes from the environment (:func:`courtship.channels.secret` for channels, the
sources' ``*_env`` settings for data sources), and each is remembered here the moment it is read.
:func:`redact` then replaces any of them — as written, stripped of surrounding white space, and in
the escaped forms an error message may carry (``repr``, ``ascii``, JSON, percent-encoding, UTF-8
bytes) — by ``[secret $VARIABLE]``. It runs wherever a reason is stored or printed: delivery
reasons in the state store (``sends.error``, ``attempts.reason``), ``courtship run``'s output, and
every error the command line prints.

A secret shorter than :data:`MIN_LENGTH` characters is not looked for: it would blank out ordinary
words, and no provider issues one that short.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import quote, quote_plus

__all__ = ["MIN_LENGTH", "describe", "forget_all", "redact", "remember"]

MIN_LENGTH = 4

_lock = threading.Lock()
#: Every form of every secret read, mapped to the environment variable that held it.
_forms: dict[str, str] = {}
_pattern: re.Pattern[str] | None = None


def _escaped(value: str) -> set[str]:
    """``value`` as an error message may show it: written out, escaped, encoded."""
    raw = value.encode("utf-8", "surrogatepass")
    return {
        value,
        repr(value)[1:-1],
        ascii(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(raw)[2:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }


def _all_forms(value: str) -> set[str]:
    found: set[str] = set()
    for base in {value, value.strip()}:
        for form in _escaped(base):
            found.add(form)
            found.update(_escaped(form))  # an escaped form inside a repr: escaped twice
    return {form for form in found if len(form) >= MIN_LENGTH}


def remember(value: str, variable: str) -> None:
    """Remember the secret ``value`` (read from ``$variable``) so that :func:`redact` hides it."""
    global _pattern
    forms = _all_forms(value)
    if not forms:
        return
    with _lock:
        for form in forms:
            _forms.setdefault(form, variable)
        ordered = sorted(_forms, key=len, reverse=True)  # the longest form wins
        _pattern = re.compile("|".join(re.escape(form) for form in ordered))


def redact(text: str) -> str:
    """``text`` with every secret read so far replaced by ``[secret $VARIABLE]``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(lambda match: f"[secret ${_forms[match.group(0)]}]", text)


def describe(error: BaseException) -> str:
    """What an exception says, without the values it carries: a UnicodeError names only its
    codec (its text quotes a character, its repr the whole string — a password, perhaps); any
    other is its type and text with every secret taken out."""
    if isinstance(error, UnicodeError):
        encoding = getattr(error, "encoding", "") or "text"
        return f"{type(error).__name__}: a value has characters the {encoding} codec cannot take"
    return redact(f"{type(error).__name__}: {error}")


def forget_all() -> None:
    """Forget every secret (for tests that build channels again and again)."""
    global _pattern
    with _lock:
        _forms.clear()
        _pattern = None
