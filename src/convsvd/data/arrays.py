"""Inputs held in memory: tensors or NumPy arrays with labels (and the built-in digits)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from convsvd._typing import PathLike
from convsvd.data.protocol import (
    ID_KEYS,
    INPUT_KEYS,
    LABEL_KEYS,
    Batch,
    ExpectedInput,
    batch_ranges,
    check_batch_size,
    fingerprint,
    pick,
)
from convsvd.errors import InputError

__all__ = ["ArrayData", "label_classes", "load_arrays"]


def _as_tensor(x: object, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise InputError(f"{what}: expected a numeric array, got dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, (list, tuple)):
        try:
            return _as_tensor(np.asarray(x), what)
        except (ValueError, TypeError) as e:
            raise InputError(f"{what}: cannot be read as an array ({e})") from None
    raise InputError(f"{what}: expected a tensor or NumPy array, got {type(x).__name__}")


def _is_text(labels: object) -> bool:
    if isinstance(labels, np.ndarray):
        return labels.dtype.kind in "US"
    return isinstance(labels, (list, tuple)) and len(labels) > 0 and all(isinstance(v, (str, bytes)) for v in labels)


def label_classes(labels: object, classes: Sequence[str] | None, what: str) -> tuple[np.ndarray, list[str]]:
    """Class names as labels → ``(int64 indices, class names)``.

    The classes are ``classes`` when given (every label must be one of them), else the
    distinct labels sorted; the mapping is stated in :meth:`ArrayData.describe`.

    >>> idx, names = label_classes(np.array(["dog", "cat", "dog"]), None, "labels")
    >>> idx.tolist(), names
    ([1, 0, 1], ['cat', 'dog'])
    """
    text = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(labels).reshape(-1).tolist()]
    names = [str(c) for c in classes] if classes is not None else sorted(set(text))
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise InputError(f"{what}: label {unknown[0]!r} is not one of the classes ({', '.join(names[:8])})")
    return np.array([index[t] for t in text], dtype=np.int64), names


class ArrayData:
    """Inputs, labels and ids held in memory, batched by slicing.

    Parameters
    ----------
    inputs : torch.Tensor or numpy.ndarray
        ``(N, C, *spatial)`` images (or ``(N, features)``); integer arrays
        are converted to float32 unchanged (scale them yourself).
    labels : tensor or array, optional
        ``(N,)`` integer class indices, or class names (strings) which become
        classes — ``classes`` when given, else the distinct names sorted — with the
        mapping stated in :meth:`describe`; default: all ``-1`` (unlabelled).
    ids : tensor or array, optional
        ``(N,)`` distinct integer ids; default ``0 … N−1``.
    classes : list of str, optional
        Names of the labels.
    name : str

    >>> data = ArrayData(torch.zeros(10, 1, 8, 8), torch.arange(10) % 2)
    >>> [b.ids.tolist() for _, b in data.iter_batches(4, which=[2])]
    [[8, 9]]
    """

    def __init__(
        self,
        inputs: object,
        labels: object | None = None,
        ids: object | None = None,
        classes: Sequence[str] | None = None,
        name: str = "arrays",
    ) -> None:
        x = _as_tensor(inputs, f"{name} inputs")
        if x.dim() < 2:
            raise InputError(f"{name} inputs: expected (N, C, *spatial) or (N, features), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.to(torch.float32)
        n = int(x.shape[0])
        if n == 0:
            raise InputError(f"{name} inputs: is empty (0 inputs)")
        self.label_mapping: dict[str, int] | None = None
        if labels is not None and _is_text(labels):
            labels, classes = label_classes(labels, classes, f"{name} labels")
            self.label_mapping = {c: i for i, c in enumerate(classes)}
        y = torch.full((n,), -1, dtype=torch.int64) if labels is None else _as_tensor(labels, f"{name} labels")
        if y.shape != (n,) or y.is_floating_point() and not torch.equal(y, y.round()):
            raise InputError(f"{name} labels: expected ({n},) integer class indices, got shape {tuple(y.shape)} {y.dtype}")
        y = y.to(torch.int64)
        i = torch.arange(n, dtype=torch.int64) if ids is None else _as_tensor(ids, f"{name} ids").to(torch.int64)
        if i.shape != (n,):
            raise InputError(f"{name} ids: expected ({n},) integers, got shape {tuple(i.shape)}")
        if torch.unique(i).numel() != n:
            raise InputError(f"{name} ids: expected distinct ids, found duplicates")
        if classes is not None:
            classes = [str(c) for c in classes]
            if labels is not None and int(y.max()) >= len(classes):
                raise InputError(f"{name} labels: label {int(y.max())} has no name in the {len(classes)} classes")
        self.inputs, self.labels, self.ids = x, y, i
        self.classes: list[str] | None = list(classes) if classes is not None else None
        self.name = name

    @classmethod
    def from_digits(cls, digits: object, name: str = "digits") -> "ArrayData":
        """Adapt a :class:`~convsvd.data.DigitsData` (images, labels, ids, classes)."""
        return cls(digits.images, digits.labels, digits.ids, digits.classes, name=name)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __repr__(self) -> str:
        return f"ArrayData({self.name!r}, inputs={tuple(self.inputs.shape)})"

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return []

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // check_batch_size(batch_size))

    def iter_batches(self, batch_size: int, which: Sequence[int] | None = None) -> Iterator[tuple[int, Batch]]:
        check_batch_size(batch_size)
        for b, lo, hi in batch_ranges(len(self), batch_size, which):
            yield b, Batch(self.ids[lo:hi], self.inputs[lo:hi], self.labels[lo:hi])

    def conform(self, expected: ExpectedInput) -> "ArrayData":
        """Check the inputs against what the model takes; raise :class:`InputError` saying what it expects."""
        shape = tuple(self.inputs.shape[1:])
        if expected.channels is None:
            return self
        if expected.kind == "linear":  # (N, *, features), or images flattened by the model
            if shape[-1] != expected.channels and math.prod(shape) != expected.channels:
                raise InputError(f"{self.name} inputs: have {shape[-1]} features (last dimension of "
                                 f"{'×'.join(map(str, shape))}), model expects {expected.describe()}")
            return self
        want = 1 + len(expected.spatial) if expected.spatial else None
        if len(shape) < 2 or shape[0] != expected.channels or (want is not None and len(shape) != want):
            raise InputError(f"{self.name} inputs: are {'×'.join(map(str, shape))} (channels first), "
                             f"model expects {expected.describe()}")
        if expected.spatial and tuple(shape[1:]) != tuple(expected.spatial):
            raise InputError(f"{self.name} inputs: images are {'×'.join(map(str, shape[1:]))}, "
                             f"model expects {expected.describe()}")
        return self

    def describe(self) -> dict[str, object]:
        transform = "none (inputs used as given)"
        if self.label_mapping is not None:
            pairs = ", ".join(f"{c!r}→{i}" for c, i in self.label_mapping.items())
            transform += f"; string labels mapped to classes {pairs}"
        return dict(kind="arrays", name=self.name, inputs=len(self), input_shape=list(self.inputs.shape[1:]),
                    classes=self.classes, transform=transform,
                    fingerprint=fingerprint(self.ids, self.labels, self.inputs), skipped=[])


def load_arrays(path: PathLike) -> ArrayData:
    """Inputs and labels from a ``.npz`` or ``.pt`` file.

    ``.npz``: arrays named ``inputs`` (or ``images``, ``x``, ``X``, ``data``),
    optionally ``labels`` (or ``targets``, ``target``, ``y``), ``ids`` and
    ``classes``. ``.pt`` / ``.pth``: read with ``torch.load(weights_only=True)``
    (no code from the file runs); a dict with the same keys, or a tuple
    ``(inputs, labels[, ids])``.
    """
    p = Path(path)
    name = p.name
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                content = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise InputError(f"data {os.fspath(p)!r}: cannot read as .npz ({e})") from None
    elif suffix in (".pt", ".pth"):
        try:
            content = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds here
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"data {os.fspath(p)!r}: cannot read as a tensor file ({first})") from None
        if isinstance(content, (tuple, list)) and 1 <= len(content) <= 3:
            inputs, labels, ids = (list(content) + [None, None])[:3]
            return ArrayData(inputs, labels, ids, name=name)
    else:
        raise InputError(f"data {os.fspath(p)!r}: expected a .npz or .pt/.pth file of inputs and labels, or a folder")
    if not isinstance(content, dict):
        raise InputError(f"data {os.fspath(p)!r}: expected a dict of arrays or a tuple (inputs, labels), "
                         f"got {type(content).__name__}")
    inputs = pick(content, INPUT_KEYS)
    if inputs is None:
        found = ", ".join(map(str, content)) or "nothing"
        raise InputError(f"data {os.fspath(p)!r}: no inputs array (expected one named {', '.join(INPUT_KEYS)}; "
                         f"found {found})")
    classes = content.get("classes")
    if classes is not None:
        classes = [str(c) for c in (classes.tolist() if hasattr(classes, "tolist") else classes)]
    return ArrayData(inputs, pick(content, LABEL_KEYS), pick(content, ID_KEYS), classes, name=name)
