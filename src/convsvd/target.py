"""The resolved target of every verb: a model and its options, checked once.

:func:`resolve` turns whatever a user calls a model — an ``nn.Module``, a file,
a built-in name (``"digits-cnn"``, ``"digits-cnn@5"`` for the checkpoint saved
after epoch 5), ``"package.module:factory"`` (with ``weights=``), a
:class:`~convsvd.io.ModelWeights` or a :class:`Target` — plus the options every
verb shares (``layers``, ``fold_bn``, ``dtype``, ``device``, ``input_size``)
into one frozen :class:`Target`. Every verb (``decompose``, ``spectrum``,
``plan_projection``/``profile``, ``featureviz``, ``singular_filters``,
``report``) starts with :func:`resolve`, and the CLI builds its target with the
same function, so the command line and the API cannot disagree on a default.

The input shape is found, in this order: the ``input_size`` the user gave, the
zoo's record of a built-in model, the ONNX graph's declared input, a shape
trace (a first ``linear`` layer fixes the input; a module that accepts exactly
one of a few usual square sizes fixes it too), or data (:meth:`Target.with_input_shape`).
Where it came from is :attr:`Target.input_shape_source`.

>>> t = resolve("digits-cnn@5")
>>> t.zoo, t.epoch, t.input_shape, t.input_shape_source
('digits-cnn', 5, (1, 8, 8), 'zoo')
>>> resolve(t, layers="conv*").layers
('conv*',)
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TypedDict

import torch
from torch import nn

from convsvd import _validate as check
from convsvd.errors import InputError
from convsvd.io import ModelWeights, from_module, load
from convsvd.layers import describe, fold_batchnorm

if TYPE_CHECKING:
    from convsvd.decompose import Decomposition

__all__ = ["SHAPE_SOURCES", "TRACE_SIDES", "Target", "TargetOptions", "resolve", "zoo_name"]


class TargetOptions(TypedDict, total=False):
    """The options every verb takes through ``**options`` and hands to :func:`resolve`, which checks them."""

    weights: object
    trust_pickle: bool
    layers: str | Sequence[str] | None
    fold_bn: bool | None
    dtype: torch.dtype | str | None
    device: str | torch.device | None
    input_size: int | tuple[int, int] | None

#: Where an input shape can come from, in the order they are tried.
SHAPE_SOURCES: tuple[str, ...] = ("input_size", "zoo", "onnx", "trace", "data", "unknown")

#: Square input sides a shape trace tries (a model that runs on exactly one of them takes it).
TRACE_SIDES: tuple[int, ...] = (8, 16, 28, 32, 64, 96, 128, 224)


@dataclass(frozen=True, eq=False)
class Target:
    """A model with the options every verb shares, resolved and checked once.

    Build it with :func:`resolve`; verbs accept it wherever they take a model.

    Attributes
    ----------
    weights : ModelWeights
        Every linear map of the model as loaded (BatchNorm not folded; see :attr:`folded`).
    name : str
        The model as the user named it (``"digits-cnn@5"``, a path, ``"<module>"``).
    layers : tuple of str or None
        Glob patterns of the layers to analyse (None: all).
    fold_bn : bool
        Fold a directly following BatchNorm into each layer.
    dtype : torch.dtype or None
        ``torch.float32`` or ``torch.float64``; None: each verb's default (the weights').
    device : torch.device or None
        Checked to exist; None: each verb's default.
    input_size : tuple of int or None
        ``(h, w)`` given by the user.
    zoo : str or None
        The built-in model this is (``"digits-cnn"``), else None.
    epoch : int or None
        The zoo checkpoint's epoch (``digits-cnn@5``), else None.
    """

    weights: ModelWeights
    name: str
    layers: tuple[str, ...] | None = None
    fold_bn: bool = False
    dtype: torch.dtype | None = None
    device: torch.device | None = None
    input_size: tuple[int, int] | None = None
    zoo: str | None = None
    epoch: int | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ model

    @property
    def module(self) -> nn.Module | None:
        """The runnable module, when the source has one (weights-only files do not)."""
        return self.weights.model

    @property
    def source(self) -> str:
        return self.weights.source

    @property
    def folded(self) -> ModelWeights:
        """:attr:`weights` with BatchNorm folded when :attr:`fold_bn` (computed once)."""
        if not self.fold_bn:
            return self.weights
        if "folded" not in self._cache:
            self._cache["folded"] = fold_batchnorm(self.weights)
        return self._cache["folded"]

    @property
    def selected(self) -> ModelWeights:
        """:attr:`folded` restricted to :attr:`layers` (an unmatched pattern is an InputError)."""
        return self.folded.select(self.layers)

    def decomposition(self, mode: str = "full", k: int | None = None) -> "Decomposition":
        """The SVD of the selected layers, computed on first use and kept (one per ``mode``, ``k``).

        >>> t = resolve("digits-cnn", layers="conv1")
        >>> t.decomposition() is t.decomposition(), list(t.decomposition())
        (True, ['conv1'])
        """
        from convsvd.decompose import decompose

        key = ("svd", mode, k)
        if key not in self._cache:
            self._cache[key] = decompose(self, mode=mode, k=k, progress=False)
        return self._cache[key]

    # ------------------------------------------------------------------ input shape

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """``(C, *spatial)`` of one input, or None when no source knows it."""
        return self._shape()[0]

    @property
    def input_shape_source(self) -> str:
        """Where :attr:`input_shape` came from: one of :data:`SHAPE_SOURCES`."""
        return self._shape()[1]

    def stated_input_shape(self) -> tuple[int, ...] | None:
        """The input shape when a source states it (``input_size``, the zoo, the ONNX graph, a first
        linear layer), without running the model; None otherwise."""
        if "shape" in self._cache:
            shape, where = self._cache["shape"]
            return shape if where != "trace" or len(shape) == 1 else None
        return _find_shape(self, run=False)[0]

    def input_side(self) -> tuple[int, int] | None:
        """``(h, w)`` of a 2-d input when known."""
        shape = self.input_shape
        return (int(shape[-2]), int(shape[-1])) if shape is not None and len(shape) == 3 else None

    def with_input_shape(self, shape: Sequence[int] | None, source: str = "data") -> "Target":
        """A copy whose input shape is ``shape`` (e.g. read from data) when no earlier source knows it."""
        if shape is None or self.input_shape is not None:
            return self
        t = replace(self, _cache={})
        t._cache["shape"] = (tuple(int(s) for s in shape), source)
        return t

    def _shape(self) -> tuple[tuple[int, ...] | None, str]:
        if "shape" not in self._cache:
            self._cache["shape"] = _find_shape(self)
        return self._cache["shape"]

    # ------------------------------------------------------------------ show

    def options(self) -> dict[str, object]:
        """The resolved options, as written into run metadata."""
        return dict(model=self.name, layers=list(self.layers) if self.layers else None, fold_bn=self.fold_bn,
                    dtype=None if self.dtype is None else str(self.dtype).replace("torch.", ""),
                    device=None if self.device is None else str(self.device),
                    input_shape=list(self.input_shape) if self.input_shape else None,
                    input_shape_source=self.input_shape_source)

    def to_frame(self) -> Any:
        """One row per analysed layer (and skipped parameter): :func:`convsvd.layers.describe` of :attr:`selected`."""
        return describe(self.selected)

    def __repr__(self) -> str:
        shape = "unknown" if self.input_shape is None else "×".join(map(str, self.input_shape))
        return (f"Target({self.name!r}, {len(self.weights)} layers, input {shape} ({self.input_shape_source}), "
                f"layers={self.layers!r}, fold_bn={self.fold_bn}, dtype={self.options()['dtype']}, "
                f"device={self.options()['device']})")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in {"layers analysed": len(self.selected), **self.options()}.items())
        return f"<table><caption>Target {html.escape(self.name)}</caption>{rows}</table>"


# --------------------------------------------------------------------------- resolve


def zoo_name(model: object) -> tuple[str, int | None] | None:
    """``(name, epoch)`` of a built-in model named ``NAME`` or ``NAME@EPOCH``, else None.

    A path that exists on disk always wins over a built-in name.

    >>> zoo_name("digits-cnn@3"), zoo_name("model.onnx")
    (('digits-cnn', 3), None)
    """
    if not isinstance(model, str) or Path(model).exists():
        return None
    from convsvd import zoo

    base, at, epoch = model.partition("@")
    if base not in zoo.available():
        return None
    if not at:
        return base, None
    if not epoch.isdigit():
        raise InputError(f"model {model!r}: expected NAME@EPOCH with a whole-number epoch, e.g. {base}@3")
    return base, int(epoch)


def _load(model: object, weights: object, trust_pickle: bool) -> tuple[ModelWeights, str, str | None, int | None]:
    """Weights, display name, zoo name and epoch of a model source."""
    named = zoo_name(model)
    if named is not None:
        from convsvd import zoo

        if weights is not None:
            raise InputError(f"weights: only used with a 'package.module:factory' spec, not with {model!r}")
        base, epoch = named
        return from_module(zoo.load(base, epoch=epoch), source=str(model)), str(model), base, epoch
    if isinstance(model, ModelWeights):
        if weights is not None:
            raise InputError("weights: only used with a 'package.module:factory' spec, not with loaded weights")
        return model, model.source, None, None
    if isinstance(model, nn.Module):
        mw = load(model, weights=weights)  # type: ignore[arg-type]  # load checks weights itself
        return mw, mw.source, None, None
    if isinstance(model, (str, os.PathLike)):
        mw = load(model, weights=weights, trust_pickle=trust_pickle)  # type: ignore[arg-type]
        return mw, os.fspath(model), None, None
    raise check.fail("model", type(model).__name__,
                     "an nn.Module, a path, a built-in name, a 'package.module:factory' spec or a Target")


def resolve(
    model: object,
    *,
    weights: object = None,
    trust_pickle: bool = False,
    layers: str | Sequence[str] | None = None,
    fold_bn: bool | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    input_size: int | tuple[int, int] | None = None,
) -> Target:
    """The :class:`Target` of a model and the shared options, each checked here and only here.

    Parameters
    ----------
    model : Target, ModelWeights, nn.Module, path, built-in name or ``"pkg.mod:factory"``
        ``"digits-cnn"`` is the trained built-in model, ``"digits-cnn@5"`` its checkpoint
        after epoch 5. A Target is returned as it is, with the options given here replacing its own.
    weights : path, optional
        With a factory spec only: the weights to load into the built model.
    trust_pickle : bool
        Allow a checkpoint holding pickled Python objects (runs code from the file).
    layers : str or list of str, optional
        Glob patterns of layer names (comma-separated in a string). Default: all (or the Target's).
    fold_bn : bool, optional
        Fold a directly following BatchNorm into each layer (default: False, or the Target's).
    dtype : {"float32", "float64"} or torch.dtype, optional
        Precision; anything else (float16, ...) is an InputError.
    device : {"cpu", "cuda", "cuda:N"} or torch.device, optional
        Unknown names and CUDA on a machine without it are an InputError.
    input_size : int or (int, int), optional
        Spatial side of the model's input, when the model does not say.

    Returns
    -------
    Target

    Raises
    ------
    InputError
        One line naming the input: an unreadable model, a bad option.

    >>> resolve("digits-cnn", device="gpu")
    Traceback (most recent call last):
    ...
    convsvd.errors.InputError: device 'gpu': expected cpu, cuda or cuda:N
    """
    pats = check.globs(layers, "layers")
    dt = check.dtype(dtype)
    dev = check.device(device)
    side = check.size(input_size, "input_size")
    if fold_bn is not None:
        check.flag(fold_bn, "fold_bn")
    if isinstance(model, Target):
        if weights is not None:
            raise InputError("weights: the Target already holds its weights")
        changes: dict[str, Any] = {}
        for key, value in (("layers", pats), ("dtype", dt), ("device", dev), ("input_size", side)):
            if value is not None and value != getattr(model, key):
                changes[key] = value
        if fold_bn and not model.fold_bn:  # False is every verb's default: it never undoes a Target's folding
            changes["fold_bn"] = True
        if not changes:
            return model
        keep = {k: v for k, v in model._cache.items()
                if k == "folded" and "fold_bn" not in changes
                or k == "shape" and "input_size" not in changes}
        return replace(model, **changes, _cache=keep)
    mw, name, zoo, epoch = _load(model, weights, trust_pickle)
    return Target(weights=mw, name=name, layers=pats, fold_bn=bool(fold_bn), dtype=dt, device=dev,
                  input_size=side, zoo=zoo, epoch=epoch)


# --------------------------------------------------------------------------- input shape


def _find_shape(t: Target, run: bool = True) -> tuple[tuple[int, ...] | None, str]:
    first = t.weights.layers[0] if len(t.weights) else None
    if t.input_size is not None:
        return (first.in_channels if first is not None else 3, *t.input_size), "input_size"
    if t.zoo is not None:
        from convsvd import zoo

        return tuple(zoo.model_info(t.zoo).input_shape), "zoo"
    if t.weights.format == "onnx":
        shape = _onnx_input_shape(t.weights.source)
        if shape is not None:
            return shape, "onnx"
    if first is not None and first.kind == "linear" and not first.inferred:
        return (first.in_channels,), "trace"
    if run and first is not None and first.kind == "conv2d" and t.module is not None:
        shape = _trace(t.module, first.in_channels)
        if shape is not None:
            return shape, "trace"
    return None, "unknown"


def _onnx_input_shape(path: str) -> tuple[int, ...] | None:
    """``(C, *spatial)`` of an ONNX graph's first real input, when every dimension is fixed."""
    try:
        import onnx

        graph = onnx.load(path, load_external_data=False).graph
    except Exception:  # the file was read once already; a second read failing only loses the shape
        return None
    initialisers = {i.name for i in graph.initializer}
    for value in graph.input:
        if value.name in initialisers:
            continue
        dims = value.type.tensor_type.shape.dim
        sizes = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
        if len(sizes) >= 2 and all(s > 0 for s in sizes[1:]):
            return tuple(int(s) for s in sizes[1:])
        return None
    return None


def _trace(module: nn.Module, channels: int) -> tuple[int, ...] | None:
    """The one square side among :data:`TRACE_SIDES` the module runs on (zero input, no grad), else None."""
    try:
        p = next(iter(module.parameters()))
        dtype, device = p.dtype, p.device
    except StopIteration:
        return None
    if not dtype.is_floating_point:
        return None
    modes = {m: m.training for m in module.modules()}
    works = []
    try:
        module.eval()
        with torch.no_grad():
            for side in TRACE_SIDES:
                try:
                    module(torch.zeros(1, channels, side, side, dtype=dtype, device=device))
                except Exception:  # any failure means "not this size"
                    continue
                works.append(side)
                if len(works) > 1:
                    return None  # the model takes several sizes: the shape is not fixed by it
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return (channels, works[0], works[0]) if len(works) == 1 else None


def as_target(model: object) -> Target:
    """``model`` as a Target without options (cheap for a Target or ModelWeights)."""
    return model if isinstance(model, Target) else resolve(model)

