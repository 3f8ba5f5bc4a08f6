"""The spatial size each layer of a model actually sees, found once per model.

A conv layer's operator spectrum (:func:`convsvd.spectral.operator_singular_values`)
depends on the size of the input it acts on. That size is not the model's input side:
strides, pooling and padding shrink (or grow) the maps on the way. This module finds
it in one of two ways:

* **a module tree** (``ModelWeights.model``): one forward pass of a zero input of the
  model's input shape (batch 1, no gradients, every module in eval mode) with a
  forward hook on each layer recording the spatial shape of its first input. The
  hooks are owned by one context manager and removed in ``finally``, the training
  flags restored, also when the forward pass raises; nothing stays on the model.
  A module called several times keeps the size of its first call.
* **an ONNX file** (``ModelWeights.format == "onnx"``): ONNX shape inference
  (``onnx.shape_inference.infer_shapes`` with data propagation) on the loaded
  ``ModelProto``; symbolic input dimensions are fixed from ``input_shape`` (batch 1).
  The shape of a ``Conv`` node's first input is its layer's size.

Without a module tree or an ONNX graph (weights-only state dicts and safetensors
files), or without an input shape where one is needed, no size is found; the result
says why (:attr:`SpatialSizes.reason`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convsvd.errors import InputError
from convsvd.io import ModelWeights
from convsvd.io._common import describe_error

__all__ = ["SpatialSizes", "layer_input_sizes", "onnx_input_sizes", "trace_input_sizes"]

Size = tuple[int, ...]


@dataclass(frozen=True)
class SpatialSizes:
    """The spatial size of the input of each layer (conv layers; linear layers have none).

    Attributes
    ----------
    sizes : dict of str to tuple of int
        Layer name → spatial size of its input ``(h, w)`` (one entry per spatial
        dimension); layers whose size was not found are absent.
    how : {"traced", "onnx", "none"}
        How the sizes were found.
    reason : str
        Why some or all sizes were not found (``""`` when every conv layer has one).
    input_shape : tuple of int or None
        The model input's shape without the batch dimension, when known.
    """

    sizes: dict[str, Size] = field(default_factory=dict)
    how: str = "none"
    reason: str = ""
    input_shape: Size | None = None

    def get(self, name: str) -> Size | None:
        """The size of layer ``name``'s input, or None."""
        return self.sizes.get(name)


class _Hooks(contextlib.AbstractContextManager["_Hooks"]):
    """Owns every forward hook of one trace and the modules' training flags; restores both on exit."""

    def __init__(self, model: nn.Module, modules: Mapping[str, nn.Module]) -> None:
        self.model, self.modules = model, modules
        self.sizes: dict[str, Size] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.training: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> "_Hooks":
        try:
            self.training = [(m, m.training) for m in self.model.modules()]
            for name, module in self.modules.items():
                self.handles.append(module.register_forward_hook(self._recorder(name)))
            self.model.eval()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _recorder(self, name: str):
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if name not in self.sizes and args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 3:
                self.sizes[name] = tuple(int(s) for s in args[0].shape[2:])

        return hook

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        for module, flag in self.training:
            module.train(flag)


def trace_input_sizes(
    model: nn.Module,
    input_shape: Sequence[int],
    modules: Mapping[str, nn.Module] | None = None,
) -> dict[str, Size]:
    """Spatial input size of every conv module, from one forward pass of a zero input.

    Parameters
    ----------
    model : nn.Module
        Run once on ``torch.zeros(1, *input_shape)`` (its parameters' dtype and device),
        in eval mode and without gradients; nothing of the model is changed.
    input_shape : sequence of int
        Shape of one input without the batch dimension, e.g. ``(3, 224, 224)``.
    modules : mapping of str to nn.Module, optional
        The modules to record, by name (default: every conv module of ``model``).

    Returns
    -------
    dict of str to tuple of int
        Name → spatial size of the module's first input at its first call (modules not
        called, or called on inputs without spatial dimensions, are absent).

    Raises
    ------
    InputError
        When the forward pass fails on an input of that shape.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3))
    >>> trace_input_sizes(net, (3, 32, 32))
    {'0': (32, 32), '1': (16, 16)}
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"input_shape {tuple(input_shape)!r}: expected the positive shape of one input, e.g. (3, 224, 224)")
    if modules is None:
        modules = {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    with _Hooks(model, modules) as hooks:
        try:
            with torch.no_grad():
                model(torch.zeros((1, *shape), dtype=dtype, device=device))
        except Exception as exc:  # the user's forward pass: any error means the shape does not fit
            raise InputError(f"input_shape {shape}: the model's forward pass failed on it ({describe_error(exc)}); "
                             f"expected the shape of one input without the batch dimension") from exc
        return dict(hooks.sizes)


def _onnx_dims(value: Any) -> list[int | str]:
    dims: list[int | str] = []
    for d in value.type.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


def onnx_input_sizes(model: Any, input_shape: Sequence[int] | None = None) -> tuple[dict[str, Size], str]:
    """Spatial input size of every ``Conv`` / ``ConvTranspose`` layer of an ONNX model.

    Parameters
    ----------
    model : onnx.ModelProto
        The model (not changed: shape inference runs on a copy).
    input_shape : sequence of int, optional
        Shape of one input without the batch dimension; needed when the graph's input
        has symbolic spatial dimensions, and overrides the graph's own otherwise.

    Returns
    -------
    (dict of str to tuple of int, str)
        Layer name (as :func:`convsvd.io.from_onnx` names it) → spatial size, and why
        sizes are missing (``""`` when every conv layer has one).

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "conv.weight")
    >>> node = helper.make_node("Conv", ["x", "conv.weight"], ["y"], strides=[2, 2])
    >>> g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])],
    ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    >>> onnx_input_sizes(helper.make_model(g))
    ({'conv': (9, 9)}, '')
    """
    import onnx
    from onnx import shape_inference

    from convsvd.io.onnx_io import _Reader  # the loader's own naming of layers

    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph = proto.graph
    inits = {i.name for i in graph.initializer}
    inputs = [v for v in graph.input if v.name not in inits]
    reason = ""
    if len(inputs) != 1:
        reason = f"the ONNX graph has {len(inputs)} inputs; sizes are found for a graph with one"
    else:
        dims = _onnx_dims(inputs[0])
        given = tuple(int(s) for s in input_shape) if input_shape is not None else None
        if given is not None and len(given) != len(dims) - 1:
            raise InputError(f"input_shape {given}: the ONNX input {inputs[0].name!r} has {len(dims)} dimensions "
                             f"({dims}); expected {len(dims) - 1} values (without the batch)")
        wanted = [1, *given] if given is not None else [d if isinstance(d, int) and d > 0 else None for d in dims]
        if wanted[0] is None:
            wanted[0] = 1
        if any(d is None for d in wanted):
            reason = (f"the ONNX input {inputs[0].name!r} has symbolic dimensions {dims}; give the input shape "
                      f"(input_shape=, --input-size)")
        else:
            for d, v in zip(inputs[0].type.tensor_type.shape.dim, wanted):
                d.Clear()
                d.dim_value = int(v)  # type: ignore[arg-type]
    if reason:
        return {}, reason
    try:
        inferred = shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises its own errors on malformed graphs
        return {}, f"ONNX shape inference failed ({describe_error(exc)})"
    shapes = {v.name: _onnx_dims(v) for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    reader = _Reader(model.graph)
    reader.read()
    sizes: dict[str, Size] = {}
    missing = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
            continue
        name = reader.layer_of_weight.get(reader.g.root.get(node.input[1], node.input[1]))
        if name is None or name in sizes:
            continue
        dims = shapes.get(node.input[0], [])
        spatial = dims[2:]
        if spatial and all(isinstance(d, int) and d > 0 for d in spatial):
            sizes[name] = tuple(int(d) for d in spatial)
        else:
            missing.append(name)
    if missing:
        reason = f"ONNX shape inference left the input size of {len(missing)} conv layers unknown ({missing[0]}, ...)"
    return sizes, reason


def layer_input_sizes(mw: ModelWeights, input_shape: Sequence[int] | None = None) -> SpatialSizes:
    """The spatial input size of every conv layer of a loaded model, or why it is unknown.

    Parameters
    ----------
    mw : ModelWeights
        From :func:`convsvd.io.load`; a module tree is traced
        (:func:`trace_input_sizes`), an ONNX file's graph is shape-inferred
        (:func:`onnx_input_sizes`, the file is read again from ``mw.source``).
    input_shape : sequence of int, optional
        Shape of one input without the batch dimension, e.g. ``(3, 224, 224)``.
        A module tree needs it; an ONNX graph needs it only for symbolic dimensions.

    Returns
    -------
    SpatialSizes

    Raises
    ------
    InputError
        When the model's forward pass fails on ``input_shape``.

    Examples
    --------
    >>> from torch import nn
    >>> from convsvd.io import from_module
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, dilation=2))
    >>> layer_input_sizes(from_module(net), (1, 28, 28)).sizes
    {'0': (28, 28), '2': (14, 14)}
    """
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
    convs = [s for s in mw.layers if s.kind != "linear"]
    if mw.format == "onnx":
        path = Path(mw.source)
        if not path.is_file():
            return SpatialSizes(reason=f"the ONNX graph of {mw.source!r} is not at hand (not a file)", input_shape=shape)
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # read before by the loader: only a file changed since then fails here
            return SpatialSizes(reason=f"{path}: not readable again ({describe_error(exc)})", input_shape=shape)
        sizes, reason = onnx_input_sizes(proto, shape)
        return SpatialSizes(sizes, "onnx" if sizes else "none", reason, shape)
    if mw.model is not None:  # a module tree (an ONNX file's graph is read above: its shapes need no run)
        if shape is None:
            return SpatialSizes(reason="no input shape was given to trace the model with (input_shape=, --input-size)")
        modules = {s.name: s.module for s in convs if s.module is not None}
        return SpatialSizes(trace_input_sizes(mw.model, shape, modules), "traced", "", shape)
    return SpatialSizes(reason=f"a weights-only {mw.format} file has no layer geometry beyond its weights "
                               f"(load the model as 'package.module:factory' with input_shape)", input_shape=shape)

