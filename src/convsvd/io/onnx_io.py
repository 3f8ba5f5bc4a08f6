"""ONNX models: layers from ``Conv``, ``ConvTranspose``, ``Gemm`` and ``MatMul`` nodes.

Constant values come from the graph's initializers and from ``Constant`` nodes
(their ``value`` / ``value_float(s)`` attribute), and pass through ``Identity``
nodes. A weight produced by any other node (``Transpose``, ``Cast``,
``DequantizeLinear``, ...) is computed at run time and is not read: the layer is
listed in ``skipped``. Nodes inside subgraphs (``If``, ``Loop``) are not read.

How ONNX attributes become :class:`~convsvd.io.spec.LayerSpec` fields:

* ``Conv`` / ``ConvTranspose``: ``group``, ``strides``, ``dilations``,
  ``output_padding`` (ConvTranspose) map one to one. ``pads`` are
  ``[begin_1, ..., begin_n, end_1, ..., end_n]``; the **begin** pads are kept as
  ``padding``. When begin and end differ (e.g. TensorFlow-style "same" padding)
  the only other effect of the end pads is how many trailing output positions
  exist: every output position that both compute reads the same input patch, and
  the weight's SVD does not depend on padding at all.
  ``auto_pad="VALID"`` gives zero padding. ``auto_pad="SAME_UPPER"/"SAME_LOWER"``
  with all strides 1 gives the exact begin pads (``total // 2`` for UPPER, the
  rounded-up half for LOWER); with a stride > 1 or on a ConvTranspose the pads
  depend on the input size, and ``padding`` is the string ``"same"``. A
  ConvTranspose with an ``output_shape`` attribute has run-time pads: its
  geometry is marked ``inferred=True``.
* ``Gemm`` (``Y = alpha * A' B' + beta * C``) with a constant ``B``: the weight
  in PyTorch's ``(out, in)`` layout is ``B`` when ``transB=1`` and ``Bᵀ`` when
  ``transB=0``. ``alpha`` is folded into the weight and ``beta`` into the bias
  (``weight = alpha * B'ᵀ``, ``bias = beta * C``), so the layer computes the same
  map; a ``C`` that is not one value per output (or per model) is skipped.
* ``MatMul`` with a constant 2-D right operand ``B`` (``(in, out)``): the weight
  is ``Bᵀ``. When the only consumer of its output is an ``Add`` with a constant
  of ``out`` values, that constant is the bias (the pattern PyTorch exports for
  ``nn.Linear`` on 3-D inputs).

Layer names: the PyTorch parameter name recovered from the weight (or bias)
initializer name (``"conv1.weight"`` gives ``"conv1"``), else the node name, else
``"<OpType>_<index>"``. Layers are in graph order. A weight used by several
nodes is one layer, under its first node.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from convsvd.errors import InputError
from convsvd.io._common import describe_error, skipped_summary
from convsvd.io.spec import LayerSpec, ModelWeights, SkippedParam, check_weight

if TYPE_CHECKING:  # onnx is imported lazily: it is slow to import
    import onnx

#: File name ending read as ONNX.
ONNX_SUFFIX = ".onnx"

_STANDARD_DOMAINS = ("", "ai.onnx")


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """A torch tensor owning a copy of ``array`` (float32 for dtypes torch lacks)."""
    array = np.array(array, copy=True, order="C")
    try:
        return torch.from_numpy(array)
    except TypeError:  # e.g. ml_dtypes bfloat16 / float8 arrays
        return torch.from_numpy(array.astype(np.float32))


@dataclasses.dataclass
class _Graph:
    """Constants of a graph and who consumes each value."""

    consts: dict[str, np.ndarray]
    root: dict[str, str]  # constant value name -> initializer / Constant output it comes from
    roots: list[str]  # initializers and Constant outputs, in graph order
    consumers: dict[str, list[Any]]


def _constant_value(node: Any) -> np.ndarray | None:
    from onnx import helper, numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_floats"):
            return np.asarray(helper.get_attribute_value(attr), dtype=np.float32)
        if attr.name in ("value_int", "value_ints"):
            return np.asarray(helper.get_attribute_value(attr), dtype=np.int64)
    return None  # sparse_value and string constants are not weights


def _scan(graph: Any) -> _Graph:
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = {}
    root: dict[str, str] = {}
    roots: list[str] = []
    for init in graph.initializer:
        consts[init.name] = numpy_helper.to_array(init)
        root[init.name] = init.name
        roots.append(init.name)
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                consumers[name].append(node)
        if node.domain not in _STANDARD_DOMAINS or not node.output:
            continue
        out = node.output[0]
        if node.op_type == "Constant":
            value = _constant_value(node)
            if value is not None:
                consts[out] = value
                root[out] = out
                roots.append(out)
        elif node.op_type == "Identity" and node.input and node.input[0] in consts:
            consts[out] = consts[node.input[0]]
            root[out] = root[node.input[0]]
    return _Graph(consts, root, roots, consumers)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out: dict[str, Any] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        out[attr.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _padding(
    attrs: dict[str, Any], n: int, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], transposed: bool
) -> tuple[int, ...] | str:
    """``padding`` of a LayerSpec from ONNX ``auto_pad`` / ``pads`` (see the module docstring)."""
    auto_pad = str(attrs.get("auto_pad", "NOTSET"))
    if auto_pad == "VALID":
        return (0,) * n
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if transposed or any(s != 1 for s in strides):
            return "same"
        totals = [d * (k - 1) for d, k in zip(dilations, kernel)]
        if auto_pad == "SAME_UPPER":
            return tuple(t // 2 for t in totals)
        return tuple(t - t // 2 for t in totals)
    pads = list(attrs.get("pads", [0] * (2 * n)))
    return tuple(int(p) for p in pads[:n])


class _Reader:
    """Turns the nodes of one graph into layers and skipped entries."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.g = _scan(graph)
        self.used: set[str] = set()  # constants read as a weight or bias
        self.layer_of_weight: dict[str, str] = {}  # weight constant -> layer name
        self.names: set[str] = set()
        self.layers: list[LayerSpec] = []
        self.skipped: list[SkippedParam] = []

    def read(self) -> None:
        handlers = {"Conv": self.conv, "ConvTranspose": self.conv, "Gemm": self.gemm, "MatMul": self.matmul}
        for index, node in enumerate(self.graph.node):
            handler = handlers.get(node.op_type)
            if handler is not None and node.domain in _STANDARD_DOMAINS and len(node.input) >= 2:
                handler(node, index)
        self._report_unused()

    # -- one node per op type ----------------------------------------------------------------
    def conv(self, node: Any, index: int) -> None:
        inputs = list(node.input)
        weight_value = inputs[1]
        bias_value = inputs[2] if len(inputs) > 2 and inputs[2] else None
        transposed = node.op_type == "ConvTranspose"
        array = self._const(weight_value)
        if array is None:
            self._skip_node(node, index, (), f"weight {weight_value!r} is computed in the graph (not an initializer, Constant or Identity of one); not read")
            return
        if array.ndim not in (3, 4, 5):
            self._use(weight_value)
            self._skip_node(node, index, array.shape, f"{node.op_type} weight is {array.ndim}-D, expected 3-5-D")
            return
        name = self._claim(node, index, weight_value, bias_value, array.shape)
        if name is None:
            return
        weight = _to_tensor(array)
        n = weight.dim() - 2
        attrs = _attrs(node)
        groups = int(attrs.get("group", 1))
        strides = tuple(int(s) for s in attrs.get("strides", [1] * n))
        dilations = tuple(int(d) for d in attrs.get("dilations", [1] * n))
        kernel = tuple(int(k) for k in weight.shape[2:])
        out = int(weight.shape[1]) * groups if transposed else int(weight.shape[0])
        spec = LayerSpec(
            name=name,
            kind=f"{'convtranspose' if transposed else 'conv'}{n}d",
            weight=weight,
            bias=self._bias(name, bias_value, out),
            stride=strides,
            padding=_padding(attrs, n, kernel, strides, dilations, transposed),
            dilation=dilations,
            groups=groups,
            output_padding=tuple(int(p) for p in attrs.get("output_padding", [0] * n)) if transposed else (0,) * n,
            inferred=transposed and "output_shape" in attrs,
        )
        self._keep(spec)

    def _constant_matrix(self, node: Any, index: int, left: str, right: str, not_2d: str) -> np.ndarray | None:
        """The constant 2-D right operand of a Gemm / MatMul, or None once the node is handled otherwise
        (a constant left operand is reported; a constant of another rank is skipped with ``not_2d``)."""
        array = self._const(right)
        if array is None:
            self._left_constant(node, index, left)
            return None
        if array.ndim != 2:
            self._use(right)
            self._skip_node(node, index, array.shape, not_2d.format(array.ndim))
            return None
        return array

    def gemm(self, node: Any, index: int) -> None:
        inputs = list(node.input)
        left, right = inputs[0], inputs[1]
        bias_value = inputs[2] if len(inputs) > 2 and inputs[2] else None
        array = self._constant_matrix(node, index, left, right, "Gemm operand B is {}-D, expected 2-D")
        if array is None:
            return
        name = self._claim(node, index, right, bias_value, array.shape)
        if name is None:
            return
        attrs = _attrs(node)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        weight = _to_tensor(array if int(attrs.get("transB", 0)) else array.T)
        if alpha != 1.0:
            weight = weight * alpha
        bias = self._bias(name, bias_value, int(weight.shape[0]), scale=beta)
        self._keep(LayerSpec(name, "linear", weight, bias))

    def matmul(self, node: Any, index: int) -> None:
        left, right = node.input[0], node.input[1]
        array = self._constant_matrix(node, index, left, right,
                                      "MatMul constant is {}-D; only a 2-D right operand is a linear layer")
        if array is None:
            return
        out = int(array.shape[1])
        bias_value = self._following_add(node, out)
        name = self._claim(node, index, right, bias_value, array.shape)
        if name is None:
            return
        self._keep(LayerSpec(name, "linear", _to_tensor(array.T), self._bias(name, bias_value, out)))

    # -- helpers ---------------------------------------------------------------------------------
    def _const(self, value: str | None) -> np.ndarray | None:
        return self.g.consts.get(value) if value else None

    def _use(self, value: str | None) -> None:
        if value:
            self.used.add(self.g.root.get(value, value))

    def _skip_node(self, node: Any, index: int, shape: Sequence[int], reason: str) -> None:
        self.skipped.append(SkippedParam(node.name or f"{node.op_type}_{index}", tuple(int(d) for d in shape), reason))

    def _claim(self, node: Any, index: int, weight: str, bias: str | None, shape: Sequence[int]) -> str | None:
        """A unique layer name for this node, or None when its weight was already read."""
        origin = self.g.root.get(weight, weight)
        if origin in self.layer_of_weight:
            self._skip_node(node, index, shape, f"reuses the weight of layer {self.layer_of_weight[origin]!r}")
            return None
        candidates = []
        for value, suffix in ((weight, ".weight"), (bias, ".bias")):
            source = self.g.root.get(value, value) if value else ""
            if source.endswith(suffix) and len(source) > len(suffix):
                candidates.append(source[: -len(suffix)])
        candidates += [node.name, f"{node.op_type}_{index}"]
        base = next(c for c in candidates if c)
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        self.layer_of_weight[origin] = name
        self._use(weight)
        self._use(bias)
        return name

    def _keep(self, spec: LayerSpec) -> None:
        reason = check_weight(spec.name, spec.weight)
        if reason:
            self.skipped.append(SkippedParam(spec.name, tuple(spec.weight.shape), reason))
        else:
            self.layers.append(spec)

    def _bias(self, name: str, value: str | None, out: int, scale: float = 1.0) -> torch.Tensor | None:
        """The bias ``(out,)`` from a constant, or None (with a skipped entry when unusable)."""
        if not value:
            return None
        array = self._const(value)
        if array is None:
            self.skipped.append(SkippedParam(f"{name}.bias", (), f"bias {value!r} is computed in the graph, not a constant; layer read without it"))
            return None
        if array.size == 1:
            array = np.full((out,), array.reshape(()), dtype=array.dtype)
        elif array.size != out or array.shape[-1] != out:
            self.skipped.append(SkippedParam(f"{name}.bias", tuple(array.shape), f"bias of shape {tuple(array.shape)} is not one value per output ({out}); layer read without it"))
            return None
        bias = _to_tensor(array.reshape(out))
        return bias * scale if scale != 1.0 else bias

    def _following_add(self, node: Any, out: int) -> str | None:
        """The constant added to a MatMul's output right after it, when it is one value per output."""
        consumers = self.g.consumers.get(node.output[0], []) if node.output else []
        if len(consumers) != 1 or consumers[0].op_type != "Add" or consumers[0].domain not in _STANDARD_DOMAINS:
            return None
        others = [v for v in consumers[0].input if v != node.output[0]]
        if len(others) != 1:
            return None
        array = self._const(others[0])
        if array is None or array.size != out or array.shape[-1] != out:
            return None
        return others[0]

    def _left_constant(self, node: Any, index: int, left: str) -> None:
        array = self._const(left)
        if array is not None and array.dtype.kind == "f":
            self._use(left)
            self._skip_node(node, index, array.shape, f"{node.op_type} has a constant left operand (y = W·x layout); only x·W layouts are read")

    def _report_unused(self) -> None:
        aliases: dict[str, list[str]] = defaultdict(list)
        for value, origin in self.g.root.items():
            aliases[origin].append(value)
        for origin in self.g.roots:
            array = self.g.consts[origin]
            if origin in self.used or array.dtype.kind != "f" or array.ndim == 0:
                continue
            ops = sorted({n.op_type for v in aliases[origin] for n in self.g.consumers.get(v, []) if n.op_type != "Identity"})
            reason = f"constant input of {', '.join(ops)}, not a linear map" if ops else "constant not used by any node"
            self.skipped.append(SkippedParam(origin, tuple(array.shape), reason))


def from_onnx(model: "onnx.ModelProto", source: str = "<onnx>") -> ModelWeights:
    """Layers of an in-memory ONNX model (see the module docstring for the mapping).

    Parameters
    ----------
    model : onnx.ModelProto
    source : str
        How the model is named in results and error messages.

    Raises
    ------
    InputError
        When the graph has no Conv, ConvTranspose, Gemm or MatMul with a constant weight.

    >>> import numpy as np, onnx
    >>> from onnx import helper, numpy_helper, TensorProto
    >>> w = numpy_helper.from_array(np.ones((3, 5), np.float32), "fc.weight")
    >>> node = helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="mm")
    >>> g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
    ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [w])
    >>> from_onnx(helper.make_model(g))["fc"].weight.shape
    torch.Size([5, 3])
    """
    reader = _Reader(model.graph)
    reader.read()
    if not reader.layers:
        raise InputError(f"{source}: has no Conv, ConvTranspose, Gemm or MatMul with a constant weight to analyse{skipped_summary(reader.skipped)}")
    return ModelWeights(tuple(reader.layers), tuple(reader.skipped), source=source, format="onnx")


def load_onnx(path: Path) -> ModelWeights:
    """Layers of an ONNX file, external data included.

    Raises
    ------
    InputError
        When the file is not a readable ONNX model or has no layer to analyse.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # protobuf DecodeError, missing external data, ...
        raise InputError(f"{path}: not a readable ONNX model, perhaps truncated or corrupt ({describe_error(exc)})") from exc
    if not model.graph.node:
        raise InputError(f"{path}: not a readable ONNX model (it has no graph nodes; empty or another format?)")
    return from_onnx(model, source=str(path))
