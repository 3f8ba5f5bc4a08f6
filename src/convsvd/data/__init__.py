"""Built-in datasets."""

from convsvd.data.digits import DigitsData, load_digits

__all__ = ["DigitsData", "load_digits"]
