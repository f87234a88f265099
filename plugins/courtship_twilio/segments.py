"""SMS segments, as a carrier counts them: the count is core's (``courtship.channels``
exports it), so ``courtship lint`` and this channel count alike; kept under its old name here."""

from courtship.channels import Segments, count_segments

__all__ = ["Segments", "count_segments"]
