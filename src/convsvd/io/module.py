"""Linear maps of an ``nn.Module`` tree (any structure, not only Sequential)."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.parameter import UninitializedParameter

from convsvd.errors import InputError
from convsvd.io.spec import MODULE_KINDS, LayerSpec, ModelWeights, SkippedParam, check_weight


def _kind_of(module: nn.Module) -> str | None:
    for cls in type(module).__mro__:
        if cls in MODULE_KINDS:
            return MODULE_KINDS[cls]
    return None


def _tuple(v: object, n: int) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v)
    return (int(v),) * n  # type: ignore[call-overload]


def spec_from_module(name: str, module: nn.Module) -> LayerSpec | SkippedParam | None:
    """The LayerSpec of one module, a SkippedParam when it cannot be used, or None."""
    kind = _kind_of(module)
    if kind is None:
        return None
    weight = module.weight
    if isinstance(weight, UninitializedParameter):
        return SkippedParam(name, (), "lazy module not materialised: run one forward pass first")
    if not isinstance(weight, torch.Tensor):
        return SkippedParam(name, (), "its weight is not a tensor")
    reason = check_weight(name, weight)
    if reason:
        return SkippedParam(name, tuple(weight.shape), reason)
    bias = getattr(module, "bias", None)
    bias = bias if isinstance(bias, torch.Tensor) else None
    if kind == "linear":
        return LayerSpec(name, kind, weight.detach(), None if bias is None else bias.detach(), module=module)
    conv = cast(_ConvNd, module)  # every kind but "linear" is a _ConvNd subclass (MODULE_KINDS)
    n = weight.dim() - 2
    padding = conv.padding if isinstance(conv.padding, str) else _tuple(conv.padding, n)
    return LayerSpec(
        name=name,
        kind=kind,
        weight=weight.detach(),
        bias=None if bias is None else bias.detach(),
        stride=_tuple(conv.stride, n),
        padding=padding,
        dilation=_tuple(conv.dilation, n),
        groups=int(conv.groups),
        output_padding=_tuple(getattr(module, "output_padding", 0), n),
        padding_mode=str(getattr(module, "padding_mode", "zeros")),
        module=module,
    )


def from_module(model: nn.Module, source: str | None = None) -> ModelWeights:
    """Every linear map of ``model`` in registration order.

    A module registered under several names (a layer used twice) is one layer,
    under its first name. Parameters of other modules (norms, embeddings, ...) are
    listed in ``skipped`` with the reason.

    >>> from torch import nn
    >>> mw = from_module(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)))
    >>> mw.names, [s.name for s in mw.skipped]
    (['0'], ['3'])
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    src = source or type(model).__name__
    layers: list[LayerSpec] = []
    skipped: list[SkippedParam] = []
    for name, module in model.named_modules():
        name = name or "<root>"
        res = spec_from_module(name, module)
        if isinstance(res, LayerSpec):
            layers.append(res)
        elif isinstance(res, SkippedParam):
            skipped.append(res)
        elif res is None:
            for pname, p in module.named_parameters(recurse=False):
                shape = () if isinstance(p, UninitializedParameter) else tuple(p.shape)
                skipped.append(SkippedParam(f"{name}.{pname}" if name != "<root>" else pname, shape,
                                            f"parameter of {type(module).__name__}, not a linear map"))
    if not layers:
        why = f"; skipped: {'; '.join(f'{s.name} ({s.reason})' for s in skipped[:4])}" if skipped else ""
        raise InputError(f"model {src!r}: has no convolutional or linear layer to analyse{why}")
    return ModelWeights(tuple(layers), tuple(skipped), source=src, format="module", model=model)
