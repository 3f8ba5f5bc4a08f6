"""Every supported dataset as a :class:`~convsvd.data.DataSource`: :func:`as_source`.

It sits above the sources (arrays, digits, image folders, loaders), which import only
:mod:`convsvd.data.protocol`, so the package has no import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from convsvd.data.arrays import ArrayData, load_arrays
from convsvd.data.digits import SPLITS, DigitsData, load_digits
from convsvd.data.folder import ImageFolder
from convsvd.data.loader import LoaderData
from convsvd.data.protocol import DataSource
from convsvd.errors import InputError

__all__ = ["as_source"]


# --------------------------------------------------------------------------- resolution


def _digits(split: str) -> DataSource:
    return ArrayData.from_digits(load_digits(split), name=f"digits:{split}" if split != "all" else "digits")


def as_source(data: object) -> DataSource:
    """Any supported dataset as a :class:`DataSource`.

    Parameters
    ----------
    data
        A :class:`DataSource`; ``"digits"`` (all 1797 images) or
        ``"digits:train|test|all"``; a folder path (one subfolder per class);
        a ``.npz`` / ``.pt`` file of inputs and labels; a
        :class:`~convsvd.data.DigitsData`; a tensor or array of inputs; a
        tuple ``(inputs, labels)`` or ``(inputs, labels, ids)``; a torch
        ``DataLoader`` or map-style ``Dataset``.

    >>> as_source("digits:test").describe()["inputs"]
    451
    """
    if isinstance(data, DataSource) and not isinstance(data, (torch.Tensor, DataLoader)):
        return data
    if isinstance(data, (str, os.PathLike)):
        text = os.fspath(data)
        if text == "digits" or text.startswith("digits:"):
            split = text.partition(":")[2] or "all"
            if split not in SPLITS:
                raise InputError(f"data {text!r}: expected digits or digits:{'|'.join(SPLITS)}")
            return _digits(split)
        path = Path(text)
        if path.is_dir():
            return ImageFolder(path)
        if path.is_file():
            return load_arrays(path)
        raise InputError(
            f"data {text!r}: not found (expected 'digits', 'digits:train|test|all', an image folder, or a .npz/.pt file)"
        )
    if isinstance(data, DigitsData):
        return ArrayData.from_digits(data)
    if isinstance(data, DataLoader):
        return LoaderData(data)
    if isinstance(data, Dataset):
        return LoaderData(data)
    if isinstance(data, tuple) and 2 <= len(data) <= 3:
        return ArrayData(*data)
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return ArrayData(data)
    raise InputError(
        f"data: expected 'digits', an image folder, a .npz/.pt file, tensors/arrays (inputs[, labels[, ids]]), "
        f"a DataLoader or a DataSource, got {type(data).__name__}"
    )
