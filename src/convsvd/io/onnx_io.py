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

Layer names, the ones users know from their framework:

* the parameter name recovered from the weight (or bias) tensor's name, with its
  framework suffix removed: ``"conv1.weight"`` (PyTorch), ``"conv2d_28.w_0"``
  (Paddle), ``"conv1_weights"``, ``"block1/conv/kernel:0"`` (TensorFlow) give
  ``"conv1"``, ``"conv2d_28"``, ``"conv1"``, ``"block1/conv"``; generated names
  (``"onnx::Conv_22"``, ``"val_13"``, numbers) are not used;
* else the module path of a PyTorch scope node name:
  ``"/layer4/layer4.0/conv1/Conv"`` gives ``"layer4.0.conv1"``;
* else the node name, else ``"<OpType>_<index>"``.

The node name is kept as the layer's ``alias`` when it differs, and layer
patterns match either. Layers are in graph order. A weight used by several
nodes is one layer, under its first node.

Runnable: the model read from a file or proto is kept as an :class:`OnnxModule`
(``ModelWeights.model``), an ``nn.Module`` whose forward runs the graph in ONNX
Runtime (no gradients), which also knows the graph value holding each layer's
output. :func:`fold_onnx_batchnorm` folds ``Conv``/``Gemm`` →
``BatchNormalization`` edges (also through ``Identity`` nodes) read from the graph.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

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


#: Endings that framework exporters give parameter tensors, removed to recover the layer's name.
WEIGHT_SUFFIXES: tuple[str, ...] = (".weight", ".bias", ".w_0", ".b_0", "_weights", "_weight", "_bias", "_offset",
                                    "/kernel:0", "/bias:0", "/kernel", "/bias", ".kernel")
_GENERATED = re.compile(r"^(onnx::|val_\d|_v_\d|\d+$|const(ant)?_?\d*$)", re.IGNORECASE)


def _parameter_stem(tensor: str) -> str | None:
    """The layer a parameter tensor name belongs to (``"conv1.weight"`` → ``"conv1"``), or None when generated."""
    if not tensor or _GENERATED.match(tensor):
        return None
    for suffix in WEIGHT_SUFFIXES:
        if tensor.endswith(suffix) and len(tensor) > len(suffix):
            return tensor[: -len(suffix)]
    return None


def _scope_path(node_name: str) -> str | None:
    """The module path in a PyTorch scope node name: ``"/layer4/layer4.0/conv1/Conv"`` → ``"layer4.0.conv1"``.

    Each scope is either a child name (``conv1``) or the parent's qualified name extended
    (``layer4.0``); the last part is the op. None when the name is not such a path.
    """
    parts = node_name.split("/")
    if len(parts) < 3 or parts[0] != "" or not all(parts[1:]):
        return None
    path = ""
    for part in parts[1:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path or None


def layer_name(tensors: Sequence[str], node_name: str, fallback: str) -> str:
    """The name of a layer: from its weight or bias tensor names, else its node's scope path or name, else ``fallback``.

    >>> layer_name(["conv2d_28.w_0"], "p2o.Conv.28", "Conv_3")
    'conv2d_28'
    >>> layer_name(["onnx::Conv_22"], "/layer4/layer4.0/conv1/Conv", "Conv_3")
    'layer4.0.conv1'
    """
    for tensor in tensors:
        stem = _parameter_stem(tensor)
        if stem:
            return stem
    return _scope_path(node_name) or node_name or fallback


class _Reader:
    """Turns the nodes of one graph into layers and skipped entries."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.g = _scan(graph)
        self.used: set[str] = set()  # constants read as a weight or bias
        self.layer_of_weight: dict[str, str] = {}  # weight constant -> layer name
        self.names: set[str] = set()
        self.aliases: dict[str, str | None] = {}  # layer name -> its node's name, when it differs
        self.outputs: dict[str, str] = {}  # layer name -> graph value holding its output
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
        add_output = self.g.consumers[node.output[0]][0].output[0] if bias_value else None
        name = self._claim(node, index, right, bias_value, array.shape, output=add_output)
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

    def _claim(self, node: Any, index: int, weight: str, bias: str | None, shape: Sequence[int],
               output: str | None = None) -> str | None:
        """A unique layer name for this node, or None when its weight was already read.

        ``output`` is the graph value holding the layer's output (default: the node's first output).
        """
        origin = self.g.root.get(weight, weight)
        if origin in self.layer_of_weight:
            self._skip_node(node, index, shape, f"reuses the weight of layer {self.layer_of_weight[origin]!r}")
            return None
        sources = [self.g.root.get(v, v) for v in (weight, bias) if v]
        base = layer_name(sources, node.name, f"{node.op_type}_{index}")
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        self.layer_of_weight[origin] = name
        self.aliases[name] = node.name if node.name and node.name != name else None
        self.outputs[name] = output or (node.output[0] if node.output else "")
        self._use(weight)
        self._use(bias)
        return name

    def _keep(self, spec: LayerSpec) -> None:
        spec = dataclasses.replace(spec, alias=self.aliases.get(spec.name))
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
    >>> mw = from_onnx(helper.make_model(g))
    >>> mw["fc"].weight.shape, mw["fc"].alias
    (torch.Size([5, 3]), 'mm')
    """
    reader = _Reader(model.graph)
    reader.read()
    if not reader.layers:
        raise InputError(f"{source}: has no Conv, ConvTranspose, Gemm or MatMul with a constant weight to analyse{skipped_summary(reader.skipped)}")
    module = OnnxModule(model, source, reader.outputs)
    return ModelWeights(tuple(reader.layers), tuple(reader.skipped), source=source, format="onnx", model=module)


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


# --------------------------------------------------------------------------- running the graph

#: Whether an ONNX Runtime session is built with the CUDA provider, by torch device type.
_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise InputError("running an ONNX model needs the onnxruntime package (pip install onnxruntime, "
                         "or onnxruntime-gpu for CUDA)") from None
    return onnxruntime


def _node_key(node: Any, index: int) -> str:
    """How a node is named in results: its name, else ``<OpType>_<index>`` (as layer names fall back)."""
    return node.name or f"{node.op_type}_{index}"


class OnnxModule(nn.Module):
    """An ONNX graph as an ``nn.Module``: ``forward`` runs it in ONNX Runtime.

    It holds no parameters (the weights stay in the graph), so moving it or
    switching its mode does nothing; it has no gradients. The input's name,
    shape (``None`` for a named or missing dimension) and dtype come from the
    graph; a fixed batch dimension is honoured by running fixed-size chunks.

    Attributes
    ----------
    proto : onnx.ModelProto
    source : str
    layer_outputs : dict of str to str
        Layer name → graph value holding the layer's own output (before any BatchNorm).
    node_outputs : dict of str to str
        Node name (``<OpType>_<index>`` when unnamed) → its first output.
    metadata : dict of str to str
        The model's ``metadata_props``.
    input_name : str
    input_shape : tuple of (int or None)
        ``(N, C, *spatial)`` as declared.
    input_dtype : numpy.dtype

    >>> import numpy as np, torch
    >>> from onnx import helper, numpy_helper, TensorProto
    >>> w = numpy_helper.from_array(np.eye(3, dtype=np.float32), "fc.weight")
    >>> g = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"])], "g",
    ...                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
    ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [w])
    >>> m = from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])).model
    >>> m(torch.ones(2, 3)).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def __init__(self, proto: "onnx.ModelProto", source: str, layer_outputs: dict[str, str]) -> None:
        super().__init__()
        from onnx import helper

        self.proto = proto
        self.source = source
        self.layer_outputs = dict(layer_outputs)
        self.node_outputs = {_node_key(n, i): n.output[0] for i, n in enumerate(proto.graph.node) if n.output}
        self.metadata = {p.key: p.value for p in proto.metadata_props}
        inits = {i.name for i in proto.graph.initializer}
        inputs = [v for v in proto.graph.input if v.name not in inits]
        if len(inputs) != 1:
            names = ", ".join(v.name for v in inputs) or "none"
            self.input_name, self.input_dtype = "", np.dtype(np.float32)
            self.input_shape: tuple[int | None, ...] = ()
            self._input_problem = f"the graph has {len(inputs)} inputs ({names}); only one-input graphs run"
            return
        self._input_problem = ""
        v = inputs[0]
        self.input_name = v.name
        tt = v.type.tensor_type
        self.input_shape = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim)
        self.input_dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else np.dtype(np.float32)
        self._sessions: dict[tuple[tuple[str, ...], str], Any] = {}

    def extra_repr(self) -> str:
        return f"{self.source!r}, input {self.input_name!r} {self.input_shape}"

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """``(C, *spatial)`` when the graph declares every one of them, else None."""
        rest = [d for d in self.input_shape[1:] if d is not None and d > 0]
        return tuple(rest) if rest and len(rest) == len(self.input_shape) - 1 else None

    def output_of(self, layer: str, folded: str | None = None) -> str:
        """The graph value a layer's signal is read from: its own output, or the folded BatchNorm's."""
        if folded is not None:
            return self.node_outputs[folded]
        return self.layer_outputs[layer]

    def session(self, extra: Sequence[str] = (), device: str = "cpu") -> Any:
        """An ONNX Runtime session whose outputs are the graph's, then ``extra`` values (cached).

        ``device`` ``"cuda"`` uses the CUDA provider when this ONNX Runtime has one; else
        (with a warning) the CPU provider.
        """
        if self._input_problem:
            raise InputError(f"model {self.source!r}: {self._input_problem}")
        key = (tuple(extra), device)
        if key in self._sessions:
            return self._sessions[key]
        ort = _import_ort()
        import onnx
        from onnx import helper

        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        have = {o.name for o in model.graph.output}
        missing = [name for name in extra if name not in have]
        if missing:
            types = _value_types(model)
            for name in dict.fromkeys(missing):
                model.graph.output.append(helper.make_tensor_value_info(name, types.get(name, 1), None))
        providers = _PROVIDERS.get(device, _PROVIDERS["cpu"])
        available = ort.get_available_providers()
        if providers[0] not in available:
            warnings.warn(f"{self.source}: this onnxruntime has no {providers[0]}; the graph runs on the CPU "
                          f"(install onnxruntime-gpu to run it on the GPU)", stacklevel=2)
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            sess = ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / NotImplemented kinds
            raise InputError(f"model {self.source!r}: ONNX Runtime cannot run the graph ({describe_error(exc)})") from None
        self._sessions[key] = sess
        return sess

    def run(self, x: torch.Tensor, extra: Sequence[str] = (), device: str = "cpu") -> dict[str, np.ndarray]:
        """The graph's outputs and the ``extra`` values, by name, for a batch ``x`` ``(N, C, *spatial)``.

        ``x`` is cast to the graph input's dtype; with a fixed batch dimension ``b`` the
        batch runs in chunks of ``b`` (the last one padded with zeros, the padding dropped).
        """
        sess = self.session(extra, device)
        names = [o.name for o in sess.get_outputs()]
        arr = np.ascontiguousarray(x.detach().to("cpu").numpy().astype(self.input_dtype, copy=False))
        fixed = self.input_shape[0] if self.input_shape else None
        n = arr.shape[0]
        if fixed is None or fixed == n or n == 0:
            return dict(zip(names, sess.run(names, {self.input_name: arr})))
        parts: list[list[np.ndarray]] = []
        for lo in range(0, n, fixed):
            chunk = arr[lo:lo + fixed]
            if chunk.shape[0] < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - chunk.shape[0],) + chunk.shape[1:], chunk.dtype)])
            outs = sess.run(names, {self.input_name: chunk})
            parts.append([o[: min(fixed, n - lo)] if o.ndim and o.shape[0] == fixed else o for o in outs])
        return {name: np.concatenate([p[i] for p in parts]) if parts[0][i].ndim else parts[0][i]
                for i, name in enumerate(names)}

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The graph's output (a tuple when it has several), on ``x``'s device."""
        got = self.run(x, device="cuda" if x.device.type == "cuda" else "cpu")
        outs = [torch.from_numpy(np.ascontiguousarray(got[o.name])).to(x.device) for o in self.proto.graph.output]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _value_types(model: "onnx.ModelProto") -> dict[str, int]:
    """Element type of every value shape inference can tell (float when it cannot)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference fails on some custom-domain graphs; outputs then default to float
        return {}
    return {v.name: v.type.tensor_type.elem_type for v in list(inferred.value_info) + list(inferred.output)
            if v.type.tensor_type.elem_type}


# --------------------------------------------------------------------------- BatchNorm folding


def _following_batchnorm(graph: _Graph, outputs: set[str], value: str) -> Any | None:
    """The BatchNormalization node that is the only reader of ``value`` (through Identity nodes), or None."""
    seen = 0
    while seen < 64:  # a chain of Identity nodes, never a cycle in a valid graph
        seen += 1
        readers = graph.consumers.get(value, [])
        if value in outputs or len(readers) != 1:
            return None
        node = readers[0]
        if node.domain not in _STANDARD_DOMAINS:
            return None
        if node.op_type == "Identity":
            value = node.output[0]
            continue
        if node.op_type == "BatchNormalization" and node.input[0] == value:
            return node
        return None
    return None


def fold_onnx_batchnorm(weights: ModelWeights) -> ModelWeights:
    """Fold each ``BatchNormalization`` that is the only reader of a Conv or Gemm layer's output.

    The edge is read from the graph (also through ``Identity`` nodes); the
    BatchNorm must be in inference mode (``training_mode`` 0) with constant
    scale, bias, mean and variance of one value per output channel. As for
    module trees: ``W' = W · γ/√(var+ε)`` per output channel and
    ``b' = (b − μ)·γ/√(var+ε) + β``; the layer's ``folded`` names the BatchNorm
    node, whose output is then the layer's signal. MatMul layers and transposed
    convs are not folded (their channel axis is not the BatchNorm's).

    Raises
    ------
    InputError
        When ``weights`` were not read from an ONNX graph.
    """
    module = weights.model
    if not isinstance(module, OnnxModule):
        raise InputError(f"model {weights.source!r}: folding BatchNorm from a graph needs an ONNX model")
    graph = _scan(module.proto.graph)
    index_of = {id(n): i for i, n in enumerate(module.proto.graph.node)}
    outputs = {o.name for o in module.proto.graph.output}
    ops = {n.output[0]: n.op_type for n in module.proto.graph.node if n.output}
    out: list[LayerSpec] = []
    for spec in weights.layers:
        value = module.layer_outputs.get(spec.name)
        if spec.transposed or spec.folded or value is None or ops.get(value) not in ("Conv", "Gemm"):
            out.append(spec)
            continue
        bn = _following_batchnorm(graph, outputs, value)
        params = [graph.consts.get(v) for v in list(bn.input[1:5])] if bn is not None else []
        attrs = _attrs(bn) if bn is not None else {}
        c = spec.out_channels
        if (bn is None or len(params) != 4 or any(p is None or p.size != c for p in params)
                or int(attrs.get("training_mode", 0)) != 0):
            out.append(spec)
            continue
        gamma, beta, mean, var = (torch.from_numpy(np.asarray(p, dtype=np.float64).reshape(c)) for p in params)
        eps = float(attrs.get("epsilon", 1e-5))
        dtype = spec.weight.dtype
        with torch.no_grad():
            scale = gamma / torch.sqrt(var + eps)
            w = spec.weight.double() * scale.reshape(-1, *([1] * (spec.weight.dim() - 1)))
            b0 = spec.bias.double() if spec.bias is not None else torch.zeros_like(mean)
            b = (b0 - mean) * scale + beta
        out.append(dataclasses.replace(spec, weight=w.to(dtype), bias=b.to(dtype),
                                       folded=_node_key(bn, index_of[id(bn)])))
    return dataclasses.replace(weights, layers=tuple(out))
