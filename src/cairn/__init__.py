"""Cairn: an open-source customer event platform."""

__version__ = "0.1.0"
__all__ = ["__version__"]
