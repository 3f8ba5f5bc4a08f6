"""convsvd: explain trained convolutional networks through the SVD of their weights."""

from convsvd.errors import ConvSVDError, InputError, NotComputedError, UnsafeFileError

__version__ = "0.1.0"

__all__ = ["ConvSVDError", "InputError", "NotComputedError", "Target", "UnsafeFileError", "__version__", "resolve"]


def __getattr__(name: str) -> object:
    """``convsvd.Target`` and ``convsvd.resolve``, imported on first use (they import torch; the CLI's
    ``--help`` does not)."""
    if name in ("Target", "resolve"):
        from convsvd import target

        return getattr(target, name)
    raise AttributeError(f"module 'convsvd' has no attribute {name!r}")
