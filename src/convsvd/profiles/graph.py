"""The layer graph of a model, read from ``torch.fx``, and the activations a profile needs.

A *layer* is an operation that mixes or selects neurons: the model input,
``Linear``, ``Conv2d`` (grouped included), max / average / adaptive-average
pooling, a residual sum of two or more tensors, and a concatenation along the
channels. The operations between layers that keep every entry in place —
elementwise activations, batch-norm in eval mode, dropout, identity, flatten
and reshapes to a flat vector — do not form layers: they are part of the
layer that produced their input (its *tail*). Each layer's neurons are indexed
by the shape of the layer's own output, ``(C, H, W)`` (``(F,)`` is read as
``(F, 1, 1)``).

Anything else (a reduction, a product of two tensors, an unknown module) is
refused with its name, or — with ``unknown="pass"`` — treated as a tail
operation when it keeps the number of entries, and listed in
:attr:`LayerGraph.notes`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from convsvd.errors import InputError

__all__ = ["Layer", "LayerGraph", "layer_graph", "KINDS"]

#: Layer kinds, in the order the docs list them.
KINDS = ("input", "linear", "conv", "maxpool", "avgpool", "add", "cat")

_PASS_MODULES: tuple[type, ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.PReLU, nn.Identity, nn.Flatten,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
)
_PASS_FUNCTIONS: set[Any] = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardtanh, F.hardswish,
    F.hardsigmoid, F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.batch_norm, F.sigmoid, F.tanh,
    torch.relu, torch.sigmoid, torch.tanh, torch.flatten, torch.reshape, torch.nn.functional.relu_,
    torch.relu_,
}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "flatten", "view", "reshape", "contiguous", "clone",
                 "detach", "float", "to"}
# tail operations under which a positive output entry comes from a positive input entry (``f(v) > 0 ⇒ v > 0``)
_SIGN_KEEPING_MODULES: tuple[type, ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Hardtanh,
    nn.Hardswish, nn.Identity, nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
)
_SIGN_KEEPING_FUNCTIONS: set[Any] = {  # without parameters that could break it (slopes, clamp bounds)
    F.relu, F.relu6, F.selu, F.gelu, F.silu, F.mish, F.hardswish, F.dropout, F.dropout1d, F.dropout2d, F.tanh,
    torch.relu, torch.tanh, torch.flatten, torch.reshape, torch.nn.functional.relu_, torch.relu_,
}
_SIGN_KEEPING_METHODS = {"relu", "relu_", "tanh", "flatten", "view", "reshape", "contiguous", "clone", "detach"}
_ADD = {operator.add, operator.iadd, torch.add}
# operations whose output is a new tensor (no view of another), and the ReLUs that may overwrite it
_FRESH_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
_FRESH_FUNCTIONS = {F.conv2d, F.linear, operator.add, torch.add}
_RELU_FUNCTIONS = {F.relu, torch.relu}
_MAXPOOL_F = {F.max_pool2d, torch.max_pool2d}
_AVGPOOL_F = {F.avg_pool2d, F.adaptive_avg_pool2d, torch.nn.functional.adaptive_avg_pool2d}


@dataclass(frozen=True)
class Layer:
    """One layer of the graph.

    Attributes
    ----------
    index : int
        Position in topological order (0 is the input).
    name : str
        The module name (``name#1`` for its second call), or the fx node's name.
    kind : str
        One of :data:`KINDS`.
    inputs : tuple of int
        Indices of the layers whose outputs this layer reads, in argument order.
    shape : tuple of int
        ``(C, H, W)`` of one input's output.
    module : nn.Module or None
        The module (``linear``, ``conv``), else None.
    fn : callable or None
        For pooling layers: ``fn(x)`` recomputes the pooling of a batch ``x``.
    """

    index: int
    name: str
    kind: str
    inputs: tuple[int, ...]
    shape: tuple[int, int, int]
    module: nn.Module | None = field(default=None, repr=False, compare=False)
    fn: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)
    node: str = field(default="", repr=False)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def positions(self) -> int:
        return self.shape[1] * self.shape[2]


@dataclass
class LayerGraph:
    """Layers in topological order, the traced module, and what was not understood.

    Attributes
    ----------
    layers : list of Layer
    gm : torch.fx.GraphModule
    output : int
        Index of the layer whose output is the model's output.
    notes : list of str
        Operations treated by the ``unknown="pass"`` fallback, one line each.
    """

    layers: list[Layer]
    gm: fx.GraphModule
    output: int
    notes: list[str]
    _node_layer: dict[str, int] = field(repr=False, default_factory=dict)
    _arg_nodes: dict[int, list[str]] = field(repr=False, default_factory=dict)
    #: layers with a tail operation that may turn a non-positive entry positive (e.g. batch-norm, sigmoid)
    sign_changing: set[int] = field(repr=False, default_factory=set)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        return [l.name for l in self.layers]

    def _inplace_relus(self, want: set[str]) -> set[str]:
        """ReLU nodes that may overwrite their input: a new tensor (conv, linear, batch-norm, sum) that
        nothing else reads and that is not kept."""
        mods = dict(self.gm.named_modules())
        out = set()
        for n in self.gm.graph.nodes:
            if not (n.args and isinstance(n.args[0], fx.Node) and _is_relu(n, mods)):
                continue
            a = n.args[0]
            if len(a.users) == 1 and a.name not in want and _is_fresh(a, mods):
                out.add(n.name)
        return out

    def activations(self, x: torch.Tensor, heads: Iterable[int] | None = None, tails: bool = True
                    ) -> tuple[torch.Tensor, dict[int, list[torch.Tensor]], dict[int, torch.Tensor],
                               dict[int, torch.Tensor]]:
        """Run a batch; return the output, each layer's inputs, tail outputs and head outputs.

        Parameters
        ----------
        x : torch.Tensor
        heads : iterable of int, optional
            The layers whose head output is kept (default: all). Every other activation is freed as
            soon as the model is done with it, as in a plain forward pass.
        tails : bool
            Keep every layer's tail output (default); False keeps only those that are some layer's input.

        Returns
        -------
        out : torch.Tensor
            The model's output.
        inputs : dict of int to list of torch.Tensor
            ``inputs[k][a]``: argument ``a`` of layer ``k`` as it reached it, reshaped to the producing
            layer's ``(B, C, H, W)``.
        tails : dict of int to torch.Tensor
            Output of each layer's last tail operation, ``(B, C, H, W)``.
        heads : dict of int to torch.Tensor
            Output of each layer's own operation, before its tail, ``(B, C, H, W)``.
        """
        last: dict[int, str] = {}
        for name, k in self._node_layer.items():  # the last node of a layer in topological order is its tail
            last[k] = name
        head_of = {l.index: l.node for l in self.layers if heads is None or l.index in set(heads)}
        want = {n for names in self._arg_nodes.values() for n in names} | set(head_of.values())
        if tails:
            want |= set(last.values())
        seen: dict[str, torch.Tensor] = {}
        inplace = self._inplace_relus(want)

        class _Rec(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                if n.name in inplace:  # its input is nobody else's: no new tensor (as ReLU(inplace=True))
                    v = torch.relu_(self.fetch_args_kwargs_from_env(n)[0][0])
                else:
                    v = super().run_node(n)
                if n.name in want:
                    seen[n.name] = v
                return v

        with torch.no_grad():
            out = _Rec(self.gm).run(x)
        B = x.shape[0]
        inputs: dict[int, list[torch.Tensor]] = {}
        for k, names in self._arg_nodes.items():
            shapes = [self.layers[i].shape for i in self.layers[k].inputs]
            inputs[k] = [seen[n].reshape(B, *s) for n, s in zip(names, shapes)]
        tail = {k: seen[n].reshape(B, *self.layers[k].shape) for k, n in last.items() if n in seen}
        head = {k: seen[n].reshape(B, *self.layers[k].shape) for k, n in head_of.items()}
        return out, inputs, tail, head


def _is_relu(n: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """Whether ``n`` is a plain ReLU (a ReLU module with hooks is run as the model runs it)."""
    if n.op == "call_module":
        mod = mods.get(str(n.target))
        return (type(mod) is nn.ReLU and not mod._forward_hooks and not mod._forward_pre_hooks
                and not _global_forward_hooks and not _global_forward_pre_hooks)
    if n.op == "call_function":
        return n.target in _RELU_FUNCTIONS and not n.kwargs.get("inplace", False)
    return n.op == "call_method" and n.target == "relu"


def _is_fresh(n: fx.Node, mods: dict[str, nn.Module]) -> bool:
    """Whether ``n`` makes a new tensor that only the graph sees (a module with forward hooks may keep its output)."""
    if n.op == "call_module":
        mod = mods.get(str(n.target))
        return isinstance(mod, _FRESH_MODULES) and not mod._forward_hooks and not _global_forward_hooks
    return n.op == "call_function" and n.target in _FRESH_FUNCTIONS


def _keeps_sign(n: fx.Node, mod: nn.Module | None) -> bool:
    """Whether tail operation ``n`` keeps ``f(v) > 0 ⇒ v > 0`` (parameters checked where they matter)."""
    if mod is not None:
        if isinstance(mod, nn.LeakyReLU):
            return mod.negative_slope >= 0
        if isinstance(mod, (nn.ELU, nn.CELU)):
            return mod.alpha >= 0
        if isinstance(mod, nn.Hardtanh):  # ReLU6 included
            return mod.min_val <= 0 <= mod.max_val
        return isinstance(mod, _SIGN_KEEPING_MODULES)
    if n.op == "call_function":
        return n.target in _SIGN_KEEPING_FUNCTIONS
    return n.op == "call_method" and n.target in _SIGN_KEEPING_METHODS


def _shape3(t: torch.Size) -> tuple[int, int, int]:
    s = tuple(int(v) for v in t[1:])
    if len(s) == 1:
        return (s[0], 1, 1)
    if len(s) == 3:
        return (s[0], s[1], s[2])
    raise InputError(f"activation of shape {tuple(t)}: expected (N, F) or (N, C, H, W)")


def _tensor_args(n: fx.Node) -> list[fx.Node]:
    flat: list[fx.Node] = []
    for a in list(n.args) + list(n.kwargs.values()):
        if isinstance(a, fx.Node):
            flat.append(a)
        elif isinstance(a, (list, tuple)):
            flat += [b for b in a if isinstance(b, fx.Node)]
    return [a for a in flat if "tensor_meta" in a.meta]


def _pool_fn(n: fx.Node, gm: fx.GraphModule, maxpool: bool) -> Callable[[torch.Tensor], Any]:
    """``fn(x)`` that recomputes the pooling (max pooling returns ``(values, indices)``)."""
    if n.op == "call_module":
        m = gm.get_submodule(str(n.target))
        if isinstance(m, nn.MaxPool2d):
            return lambda x: F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                                          return_indices=True)
        return lambda x: m(x)
    rest: list[Any] = list(n.args[1:])  # constants: checked just below
    kwargs: dict[str, Any] = dict(n.kwargs)
    if any(isinstance(a, fx.Node) for a in rest + list(kwargs.values())):
        raise InputError(f"{n.name}: pooling parameters computed at run time are not supported")
    if maxpool:
        kwargs.pop("return_indices", None)
        return lambda x: F.max_pool2d(x, *rest, **kwargs, return_indices=True)
    fn = n.target
    return lambda x: fn(x, *rest, **kwargs)  # type: ignore[operator]


def layer_graph(model: nn.Module, example: torch.Tensor, unknown: str = "refuse") -> LayerGraph:
    """Trace ``model`` and group its operations into layers.

    Parameters
    ----------
    model : nn.Module
        Any module ``torch.fx`` can trace (functional ``forward``, residual sums and concatenations included).
    example : torch.Tensor
        ``(B, C, H, W)`` (or ``(B, F)``) example input, to learn every activation's shape.
    unknown : {"refuse", "pass"}
        What to do with an operation that is neither a layer nor a known tail operation:
        raise :class:`InputError` naming it, or treat it as a tail operation when it keeps the
        number of entries per input (listed in ``notes``).

    Returns
    -------
    LayerGraph

    >>> g = layer_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)),
    ...                 torch.zeros(1, 1, 4, 4))
    >>> [(l.name, l.kind, l.shape) for l in g.layers]
    [('x_in', 'input', (1, 4, 4)), ('0', 'conv', (2, 2, 2)), ('3', 'linear', (3, 1, 1))]
    """
    from torch.fx.passes.shape_prop import ShapeProp

    if unknown not in ("refuse", "pass"):
        raise InputError(f"unknown: expected 'refuse' or 'pass', got {unknown!r}")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many kinds of errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"model {type(model).__name__}: torch.fx cannot trace it ({first})") from None
    with torch.no_grad():
        ShapeProp(gm).propagate(example)

    layers: list[Layer] = []
    node_layer: dict[str, int] = {}
    arg_nodes: dict[int, list[str]] = {}
    notes: list[str] = []
    sign_changing: set[int] = set()
    calls: dict[str, int] = {}
    output = -1

    def new_layer(n: fx.Node, kind: str, name: str, inputs: list[fx.Node], module: nn.Module | None = None,
                  fn: Callable | None = None) -> None:
        idx = len(layers)
        ins = tuple(node_layer[a.name] for a in inputs)
        layers.append(Layer(idx, name, kind, ins, _shape3(n.meta["tensor_meta"].shape), module, fn, n.name))
        node_layer[n.name] = idx
        arg_nodes[idx] = [a.name for a in inputs]

    def site(target: str) -> str:
        c = calls.get(target, 0)
        calls[target] = c + 1
        return target if c == 0 else f"{target}#{c}"

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            if layers:
                raise InputError(f"model {type(model).__name__}: expected one input, got another ({n.name})")
            new_layer(n, "input", "x_in", [])
            continue
        if n.op == "output":
            outs = _tensor_args(n)
            if len(outs) != 1:
                raise InputError(f"model {type(model).__name__}: expected one output tensor, got {len(outs)}")
            output = node_layer[outs[0].name]
            continue
        if "tensor_meta" not in n.meta or n.op == "get_attr":
            continue  # sizes, constants: arguments of other nodes
        args = _tensor_args(n)
        mod = gm.get_submodule(str(n.target)) if n.op == "call_module" else None
        what = type(mod).__name__ if mod is not None else (
            getattr(n.target, "__name__", str(n.target)) if n.op == "call_function" else f".{n.target}()")
        label = f"{n.target if mod is not None else n.name} ({what})"
        missing = [a for a in args if a.name not in node_layer]
        if missing:
            raise InputError(f"{label}: reads {missing[0].name}, which is not an activation of the model")
        if isinstance(mod, nn.Linear):
            new_layer(n, "linear", site(str(n.target)), args[:1], mod)
        elif isinstance(mod, nn.Conv2d):
            new_layer(n, "conv", site(str(n.target)), args[:1], mod)
        elif isinstance(mod, nn.MaxPool2d) or (n.op == "call_function" and n.target in _MAXPOOL_F):
            new_layer(n, "maxpool", site(str(n.target)) if mod is not None else n.name, args[:1],
                      fn=_pool_fn(n, gm, True))
        elif isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) or (n.op == "call_function" and n.target in _AVGPOOL_F):
            new_layer(n, "avgpool", site(str(n.target)) if mod is not None else n.name, args[:1],
                      fn=_pool_fn(n, gm, False))
        elif ((n.op == "call_function" and n.target in _ADD) or (n.op == "call_method" and n.target in ("add", "add_"))) \
                and len(args) >= 2:
            shapes = {tuple(a.meta["tensor_meta"].shape) for a in args}
            if len(shapes) != 1 or len(n.args) != 2 or not all(isinstance(a, fx.Node) for a in n.args):
                raise InputError(f"{label}: a sum is a layer only for tensors of one shape, without scaling")
            new_layer(n, "add", n.name, args)
        elif n.op == "call_function" and n.target is torch.cat:
            dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
            if dim not in (1, -3) or len(args[0].meta["tensor_meta"].shape) != 4:
                raise InputError(f"{label}: concatenation is supported along the channels of (N, C, H, W) only, "
                                 f"got dim={dim}")
            new_layer(n, "cat", n.name, args)
        elif len(args) == 1 and (isinstance(mod, _PASS_MODULES) or (n.op == "call_function" and n.target in _PASS_FUNCTIONS)
                                 or (n.op == "call_method" and n.target in _PASS_METHODS)
                                 or (n.op == "call_function" and n.target in _ADD | {operator.mul, operator.truediv,
                                                                                       operator.sub, torch.mul})):
            src = node_layer[args[0].name]
            if n.meta["tensor_meta"].shape.numel() != args[0].meta["tensor_meta"].shape.numel():
                raise InputError(f"{label}: changes the number of entries of {layers[src].name}; not a tail operation")
            node_layer[n.name] = src
            if not _keeps_sign(n, mod):
                sign_changing.add(src)
        else:
            keeps = len(args) == 1 and n.meta["tensor_meta"].shape.numel() == args[0].meta["tensor_meta"].shape.numel()
            if unknown == "pass" and keeps:
                node_layer[n.name] = node_layer[args[0].name]
                sign_changing.add(node_layer[n.name])
                notes.append(f"{label}: unknown operation treated as part of {layers[node_layer[n.name]].name}")
                continue
            hint = " (unknown='pass' treats it as a tail operation)" if keeps else ""
            raise InputError(f"{label}: no contribution rule for this operation{hint}")
    # a layer's tail: the last node mapped to it
    tail_of: dict[int, str] = {}
    for name, k in node_layer.items():
        tail_of[k] = name
    g = LayerGraph(layers, gm, output, notes, {v: k for k, v in tail_of.items()}, arg_nodes, sign_changing)
    return g
