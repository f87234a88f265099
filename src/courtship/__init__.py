"""Courtship: treat every customer the way a good partner would."""

from importlib.metadata import PackageNotFoundError, version

from courtship.hookspecs import hookimpl

try:
    __version__ = version("courtship")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl"]
