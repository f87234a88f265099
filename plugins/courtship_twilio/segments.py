"""SMS segments, as a carrier counts them: the count lives in core (``courtship.segments``), so
``courtship lint`` and this channel count alike; kept here under its old name for plugin code."""

from courtship.segments import GSM7_BASIC, GSM7_EXTENSION, LIMITS, Segments, count_segments, is_gsm7

__all__ = ["GSM7_BASIC", "GSM7_EXTENSION", "LIMITS", "Segments", "count_segments", "is_gsm7"]
