"""Private array plumbing shared by the spectral kernels.

Every kernel accepts NumPy arrays, torch tensors (CPU or CUDA) and plain sequences;
these helpers turn them into one float64 vector without surprises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from convsvd.errors import InputError

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]
"""What the spectral kernels accept as a vector of values."""

DeviceLike = Union[str, torch.device, None]


def as_float64_vector(values: ArrayLike, name: str, device: DeviceLike = None) -> torch.Tensor:
    """Flatten ``values`` into a float64 torch vector.

    Parameters
    ----------
    values : array-like, any shape
        NumPy array, torch tensor or sequence of numbers; flattened.
    name : str
        The argument's name, used in error messages.
    device : str or torch.device, optional
        Where to put the result. Default: the tensor's own device, CPU otherwise.

    Returns
    -------
    torch.Tensor, shape (n,), float64
    """
    if isinstance(values, torch.Tensor):
        t = values.detach()
        if t.is_complex():
            raise InputError(f"{name}: expected real values, got a complex tensor")
        target = torch.device(device) if device is not None else t.device
        return t.to(device=target, dtype=torch.float64).reshape(-1)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected an array of real numbers ({exc})") from exc
    target = torch.device(device) if device is not None else torch.device("cpu")
    return torch.from_numpy(np.ascontiguousarray(arr.reshape(-1))).to(target)


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
