"""convsvd: explain trained convolutional networks through the SVD of their weights."""

from convsvd.errors import ConvSVDError, InputError, NotComputedError, UnsafeFileError

__version__ = "0.1.0"

__all__ = ["ConvSVDError", "InputError", "NotComputedError", "UnsafeFileError", "__version__"]
