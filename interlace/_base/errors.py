"""One exception family for everything interlace rejects.

Every error raised on the Python side is a subclass of :class:`InterlaceError`, and its
message says what is wrong and what to do about it. The subclasses also inherit from the
builtin exception a Python user would expect (``ValueError``, ``KeyError``), so existing
``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "InterlaceError",
    "FormulaError",
    "DataError",
    "MissingColumnError",
    "ModelSpecError",
]


class InterlaceError(Exception):
    """Base class of every error interlace raises on purpose."""


class FormulaError(InterlaceError, ValueError):
    """The model formula or a random-effect term cannot be parsed or is not supported."""


class DataError(InterlaceError, ValueError):
    """The data cannot support the requested model (empty, non-numeric, degenerate)."""


class MissingColumnError(InterlaceError, KeyError):
    """A column named by the formula or by ``groups=`` is not in the data."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class ModelSpecError(InterlaceError, ValueError):
    """An argument of ``fit`` (method, groups, ...) has an invalid value."""
