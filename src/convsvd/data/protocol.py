"""The one dataset protocol that :func:`convsvd.signals.profile` consumes (:func:`convsvd.data.as_source`,
in :mod:`convsvd.data.sources`, turns every supported dataset into it).

Every source of inputs — the built-in digits, tensors or NumPy arrays, an image
folder, a torch ``DataLoader`` — becomes a :class:`DataSource`: a sequence of
inputs cut into numbered batches of a fixed size, each batch a
:class:`Batch` ``(ids, inputs, labels)``.

Batch ``b`` of a source with batch size ``B`` always holds the same inputs
(positions ``b·B … (b+1)·B − 1``), whatever else is read, so a run can skip
finished batches on resume and split the batches among processes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Protocol, Sequence, runtime_checkable

import torch

from convsvd import _validate as check

__all__ = ["Batch", "DataSource", "ExpectedInput", "nonfinite_rows", "nonfinite_inputs"]


class Batch(NamedTuple):
    """One batch of inputs.

    Attributes
    ----------
    ids : torch.Tensor
        ``(B,)`` int64, stable id of each input (index in its source).
    inputs : torch.Tensor
        ``(B, C, *spatial)`` (or ``(B, features)``), float.
    labels : torch.Tensor
        ``(B,)`` int64 class index, ``-1`` where unlabelled.
    """

    ids: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class ExpectedInput:
    """What a model takes, as far as its weights tell.

    Parameters
    ----------
    layer : str or None
        The first layer of the model (registration order), the one inputs meet.
    kind : str or None
        Its kind (``"conv2d"``, ``"linear"``, ...).
    channels : int or None
        Input channels of a first conv layer (input features of a first linear layer).
    spatial : tuple of int or None
        Spatial size ``(H, W, ...)`` when known (a zoo model, or given by the caller).
    """

    layer: str | None = None
    kind: str | None = None
    channels: int | None = None
    spatial: tuple[int, ...] | None = None

    def describe(self) -> str:
        """E.g. ``"1×8×8 (first layer 'conv1' takes 1 channel)"``."""
        if self.channels is None:
            return "inputs of any shape"
        if self.kind == "linear":
            return f"{self.channels} input features (first layer {self.layer!r})"
        plural = "s" if self.channels != 1 else ""
        shape = "×".join(map(str, (self.channels, *self.spatial))) if self.spatial else f"{self.channels} channel{plural}"
        return f"{shape} (first layer {self.layer!r} takes {self.channels} channel{plural})"


@runtime_checkable
class DataSource(Protocol):
    """A dataset cut into numbered batches of ``(ids, inputs, labels)``.

    Implementations: :class:`~convsvd.data.ArrayData` (tensors, arrays, the
    digits), :class:`~convsvd.data.ImageFolder`, :class:`~convsvd.data.LoaderData`.
    """

    #: Short name for tables and messages.
    name: str
    #: Class names indexed by label, or None.
    classes: list[str] | None

    def __len__(self) -> int:
        """Number of inputs (before any is skipped as unreadable)."""
        ...

    def num_batches(self, batch_size: int) -> int | None:
        """Number of batches of ``batch_size`` (None when the source cannot tell)."""
        ...

    def iter_batches(self, batch_size: int, which: Sequence[int] | None = None) -> Iterator[tuple[int, Batch]]:
        """Yield ``(batch index, batch)`` for the batch indices in ``which`` (ascending), or all."""
        ...

    def conform(self, expected: ExpectedInput) -> "DataSource":
        """This source made to fit ``expected`` (a transform), or an :class:`InputError` saying what the model expects."""
        ...

    def describe(self) -> dict[str, object]:
        """JSON-able description: ``kind, name, inputs, classes, transform, fingerprint, skipped``."""
        ...

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Inputs left out so far, as ``(item, reason)`` (unreadable files); grows while batches load."""
        ...


def batch_ranges(n: int, batch_size: int, which: Sequence[int] | None) -> Iterator[tuple[int, int, int]]:
    """``(b, start, stop)`` of the selected batches of ``n`` items."""
    total = math.ceil(n / batch_size)
    for b in (range(total) if which is None else which):
        if 0 <= b < total:
            yield b, b * batch_size, min(n, (b + 1) * batch_size)


INPUT_KEYS = ("inputs", "input", "images", "image", "x", "X", "data", "pixel_values")
"""Names under which a dict (a ``.npz`` / ``.pt`` file, a DataLoader batch) holds the inputs, in order of preference."""
LABEL_KEYS = ("labels", "label", "targets", "target", "y")
"""Names of the labels, likewise."""
ID_KEYS = ("ids", "id", "index", "indices")
"""Names of stable input ids, likewise."""


def pick(mapping: dict, keys: Sequence[str]) -> object | None:
    """The value of the first of ``keys`` present in ``mapping``, or None."""
    for k in keys:
        if k in mapping:
            return mapping[k]
    return None


def check_batch_size(batch_size: int) -> int:
    return check.integer(batch_size, "batch_size", minimum=1)


def fingerprint(*parts: object) -> str:
    """SHA-256 (16 hex digits) of tensors / arrays / strings, to tell whether a resumed run reads the same data."""
    import numpy as np

    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().contiguous().numpy()
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()[:16]


def nonfinite_rows(inputs: torch.Tensor) -> torch.Tensor:
    """Positions of the inputs that hold a NaN or ±Inf anywhere.

    Parameters
    ----------
    inputs : torch.Tensor
        ``(B, ...)`` a batch of inputs.

    Returns
    -------
    torch.Tensor
        ``(b,)`` int64 positions along the first dimension, ascending (empty when all are finite).
        Cheap on finite batches: one sum decides, the per-input test runs only when it is not finite.

    >>> x = torch.zeros(4, 2); x[2, 1] = float("nan")
    >>> nonfinite_rows(x).tolist()
    [2]
    """
    if not inputs.is_floating_point() and not inputs.is_complex():
        return torch.empty(0, dtype=torch.int64)
    if inputs.numel() == 0 or bool(torch.isfinite(inputs.sum())):
        if inputs.numel() == 0 or bool(torch.isfinite(inputs).all()):  # a sum can overflow; check then only
            return torch.empty(0, dtype=torch.int64)
    bad = ~torch.isfinite(inputs.reshape(inputs.shape[0], -1)).all(dim=1)
    return torch.nonzero(bad).reshape(-1).to(torch.int64).cpu()


def nonfinite_inputs(batch: Batch, name: str = "data") -> list[tuple[str, str]]:
    """``(item, reason)`` for every input of ``batch`` holding NaN/±Inf, in the form of ``DataSource.skipped``.

    >>> b = Batch(torch.tensor([7, 8]), torch.tensor([[0.0], [float("inf")]]), torch.tensor([0, 1]))
    >>> nonfinite_inputs(b, "x.npz")
    [('x.npz input id 8', '1 of 1 values are NaN or ±Inf')]
    """
    out = []
    for i in nonfinite_rows(batch.inputs).tolist():
        row = batch.inputs[i]
        bad = int((~torch.isfinite(row)).sum())
        out.append((f"{name} input id {int(batch.ids[i])}", f"{bad} of {row.numel()} values are NaN or ±Inf"))
    return out
