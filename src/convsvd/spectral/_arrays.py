"""Private array plumbing shared by the spectral kernels.

Every kernel accepts NumPy arrays, torch tensors (CPU or CUDA) and plain sequences;
these helpers turn them into one float64 vector without surprises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch

from convsvd.errors import InputError

ArrayLike: TypeAlias = "np.ndarray | torch.Tensor | Sequence[float]"
"""What the spectral kernels accept as a vector of values."""

DeviceLike: TypeAlias = "str | torch.device | None"


def as_float64_numpy(values: ArrayLike, name: str) -> np.ndarray:
    """Flatten ``values`` into a float64 NumPy vector (copied off any GPU).

    Parameters
    ----------
    values : array-like, any shape
    name : str
        The argument's name, used in error messages.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
    """
    if isinstance(values, torch.Tensor):
        if values.is_complex():
            raise InputError(f"{name}: expected real values, got a complex tensor")
        return values.detach().to("cpu", torch.float64).reshape(-1).numpy()
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected an array of real numbers ({exc})") from exc
