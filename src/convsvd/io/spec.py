"""The one description of a model's linear maps that every loader produces."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator, Sequence

import torch
import xxhash
from torch import nn

from convsvd import _validate as check
from convsvd.errors import InputError

#: Module classes that are linear maps, and the kind each one becomes. Lazy modules
#: turn into these classes once materialised.
MODULE_KINDS: dict[type[nn.Module], str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.Conv3d: "conv3d",
    nn.ConvTranspose1d: "convtranspose1d",
    nn.ConvTranspose2d: "convtranspose2d",
    nn.ConvTranspose3d: "convtranspose3d",
}

#: Kind of a bare weight tensor of a given number of dimensions (weight-only files).
KIND_BY_NDIM: dict[int, str] = {2: "linear", 3: "conv1d", 4: "conv2d", 5: "conv3d"}


@dataclass(frozen=True, eq=False)
class LayerSpec:
    """One linear map of a model: its weight and how it is applied.

    Parameters
    ----------
    name : str
        Qualified name (``"features.0"``), unique within the model.
    kind : str
        ``"linear"``, ``"conv1d|2d|3d"`` or ``"convtranspose1d|2d|3d"``.
    weight : torch.Tensor
        ``(out, in)`` for linear, ``(d, c/g, *k)`` for conv,
        ``(c, d/g, *k)`` for transposed conv (PyTorch's layouts).
    bias : torch.Tensor or None
        ``(out,)``.
    stride, dilation, output_padding : tuple of int
        One entry per spatial dimension (empty for linear).
    padding : tuple of int or str
        Per spatial dimension, or ``"same"`` / ``"valid"``.
    padding_mode : str
        ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
    groups : int
    module : torch.nn.Module or None
        The module, when the source was a module tree.
    inferred : bool
        True when the geometry (stride, padding, groups, ...) was not in the
        source and was assumed (weight-only files).
    folded : str or None
        Name of the BatchNorm folded into this layer's weight and bias, if any.
    alias : str or None
        A second name the layer answers to in layer patterns (an ONNX node's
        name, when the layer is named after its weight).
    """

    name: str
    kind: str
    weight: torch.Tensor = field(repr=False)
    bias: torch.Tensor | None = field(default=None, repr=False)
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] | str = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    output_padding: tuple[int, ...] = ()
    padding_mode: str = "zeros"
    module: nn.Module | None = field(default=None, repr=False)
    inferred: bool = False
    folded: str | None = None
    alias: str | None = None

    @property
    def transposed(self) -> bool:
        return self.kind.startswith("convtranspose")

    @property
    def spatial_dims(self) -> int:
        return self.weight.dim() - 2

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    @property
    def in_channels(self) -> int:
        if self.kind == "linear":
            return int(self.weight.shape[1])
        if self.transposed:
            return int(self.weight.shape[0])
        return int(self.weight.shape[1]) * self.groups

    @property
    def out_channels(self) -> int:
        if self.kind == "linear":
            return int(self.weight.shape[0])
        if self.transposed:
            return int(self.weight.shape[1]) * self.groups
        return int(self.weight.shape[0])

    @property
    def unfolded_shape(self) -> tuple[int, int]:
        """Shape ``(m, n)`` of each group's unfolded matrix ``W̄_j``."""
        rows = int(self.weight.shape[0]) // self.groups
        cols = int(self.weight[0].numel()) if self.weight.shape[0] else 0
        return rows, cols


class SkipCode(str, Enum):
    """Why a parameter is not analysed, as a code (the message is :attr:`SkippedParam.reason`).

    Everything but ``OTHER`` is a linear layer that could not be loaded (it is listed as a
    failed layer by the analyses); ``OTHER`` is a parameter of a module that is not a linear map.
    """

    ZERO_SIZE = "zero_size"
    NONFINITE = "nonfinite"
    NOT_FLOAT = "not_float"
    LAZY = "lazy"
    OTHER = "other"

    @property
    def failed_layer(self) -> bool:
        """A linear layer that could not be loaded (not a parameter of another module)."""
        return self is not SkipCode.OTHER


#: The message prefix each loader writes for each code (the loaders' messages, read in this one place).
_SKIP_PREFIXES: tuple[tuple[str, SkipCode], ...] = (
    ("zero-size weight", SkipCode.ZERO_SIZE), ("weight has ", SkipCode.NONFINITE),
    ("weight dtype ", SkipCode.NOT_FLOAT), ("lazy module", SkipCode.LAZY),
)


@dataclass(frozen=True)
class SkippedParam:
    """A parameter (or layer) that is not analysed, and why: ``code`` (a :class:`SkipCode`) and ``reason``
    (one line for people). Without a code, it is read from the loader's message.

    >>> SkippedParam("conv.weight", (4, 3, 3, 3), "weight has 2 NaN/Inf entries").code
    <SkipCode.NONFINITE: 'nonfinite'>
    """

    name: str
    shape: tuple[int, ...]
    reason: str
    code: SkipCode | None = None

    def __post_init__(self) -> None:
        if self.code is None:
            code = next((c for prefix, c in _SKIP_PREFIXES if self.reason.startswith(prefix)), SkipCode.OTHER)
            object.__setattr__(self, "code", code)


@dataclass(frozen=True, eq=False)
class ModelWeights:
    """Ordered linear maps of a model, plus what was skipped and why.

    ``layers`` keep the order of the source (module registration order, file key
    order, or ONNX graph order).
    """

    layers: tuple[LayerSpec, ...]
    skipped: tuple[SkippedParam, ...] = ()
    source: str = "<module>"
    format: str = "module"
    model: nn.Module | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[LayerSpec]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> LayerSpec:
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise InputError(f"layer {name!r}: not in model {self.source!r} (layers: {', '.join(self.names[:8])}{' ...' if len(self.names) > 8 else ''})")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.layers]

    def select(self, patterns: str | Sequence[str] | None) -> "ModelWeights":
        """Keep the layers whose name (or alias) matches any glob pattern (or exact name).

        Raises
        ------
        InputError
            When a pattern matches no layer.
        """
        if patterns is None:
            return self
        if isinstance(patterns, str):
            patterns = [p for p in patterns.split(",") if p]
        keep: list[LayerSpec] = []
        for pat in patterns:
            hits = [s for s in self.layers if any(n is not None and check.glob_match(n, pat)
                                                  for n in (s.name, s.alias))]
            if not hits:
                raise InputError(
                    f"layer pattern {pat!r}: matches no layer of {self.source!r} "
                    f"(layers: {', '.join(self.names[:8])}{' ...' if len(self.names) > 8 else ''})"
                )
            keep.extend(h for h in hits if h not in keep)
        order = {id(s): i for i, s in enumerate(self.layers)}
        keep.sort(key=lambda s: order[id(s)])
        return ModelWeights(tuple(keep), self.skipped, self.source, self.format, self.model)

    def content_hash(self) -> str:
        """Digest of every analysed weight and bias (names, shapes, dtypes, bytes; see ``tensor_digest``)."""
        h = hashlib.sha256()
        for spec in self.layers:
            h.update(spec.name.encode())
            for t in (spec.weight, spec.bias):
                if t is None:
                    h.update(b"-")
                    continue
                h.update(tensor_digest(t).encode())
        return h.hexdigest()


def tensor_digest(t: torch.Tensor) -> str:
    """Content digest of a tensor's dtype, shape and bytes (device independent).

    XXH3-128 over the raw buffer, read in place: a content key for caches and
    resume checks, about 15× faster than SHA-256 on large models. It is not a
    signature: whoever can write to a cache folder can change its entries anyway.
    """
    h = xxhash.xxh3_128()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    c = t.detach().to("cpu").contiguous()
    if c.numel():
        flat = c.reshape(-1)
        h.update(flat.view(torch.uint8).numpy() if c.dtype != torch.bool else flat.numpy())  # type: ignore[arg-type]  # numpy declares the buffer protocol only for Python >= 3.12
    return h.hexdigest()


def check_weight(name: str, weight: torch.Tensor) -> str | None:
    """Reason to skip a weight (zero-size, non-finite), or None when it is usable."""
    if weight.numel() == 0:
        return f"zero-size weight {tuple(weight.shape)}"
    if weight.is_floating_point() or weight.is_complex():
        w = weight.detach()
        if bool(torch.isfinite(w.sum())):  # NaN and ±Inf reach the sum; count them only then
            return None                    # (a sum that overflowed is counted too, and finds none)
        bad = int((~torch.isfinite(w)).sum())
        if bad:
            return f"weight has {bad} NaN/Inf entr{'y' if bad == 1 else 'ies'}"
    else:
        return f"weight dtype {weight.dtype} is not floating point"
    return None
