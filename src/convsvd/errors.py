"""The library's one exception hierarchy.

Every error a user can cause derives from :class:`ConvSVDError`; its message is one
line that names the offending input and what was expected. The CLI prints that
line and exits with status 2, never a traceback.
"""

from __future__ import annotations


class ConvSVDError(Exception):
    """Base class of every error convsvd raises on purpose."""


class InputError(ConvSVDError, ValueError):
    """An input (file, model, option, dataset) is not what was expected."""


class UnsafeFileError(InputError):
    """A file would have to be unpickled, which can run arbitrary code."""


class NotComputedError(ConvSVDError, RuntimeError):
    """A result was asked for before it was computed."""
