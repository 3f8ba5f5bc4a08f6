"""Which layers count, and each layer's unfolded matrix ``W̄`` per group.

Convention (also in the README):

- Conv weight ``W ∈ R^{d × c/g × k1 × … }`` with ``g`` groups → per group ``j``,
  ``W̄_j ∈ R^{(d/g) × (c/g·k1·…)}`` = rows ``j·d/g … (j+1)·d/g − 1`` of ``W``,
  flattened in PyTorch's ``(c, k1, …)`` order, so that the convolution equals
  ``W̄_j @ patches_j(x)`` (stride, padding, padding mode and dilation included).
- Transposed conv weight ``W ∈ R^{c × d/g × k1 × …}`` → ``W̄_j ∈ R^{(c/g) × (d/g·k1·…)}``
  (the same reshape); the layer computes ``col2im(W̄_jᵀ @ x_j)``, the adjoint of a
  convolution, so ``W̄_j`` has the same singular values as the map.
- Linear ``W ∈ R^{out × in}`` is its own matrix (one group).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from convsvd.errors import InputError
from convsvd.io import LayerSpec, ModelWeights, from_module
from convsvd.io.spec import MODULE_KINDS

__all__ = [
    "MODULE_KINDS",
    "describe",
    "fold_batchnorm",
    "unfolded",
    "as_weights",
]


def as_weights(source: object) -> ModelWeights:
    """``ModelWeights`` of an ``nn.Module``, a ``ModelWeights``, a :class:`convsvd.Target` (its loaded
    weights), or a file / spec (via :func:`convsvd.io.load`)."""
    if isinstance(source, ModelWeights):
        return source
    held = getattr(source, "weights", None)  # a Target (defined above this box, so not imported here)
    if isinstance(held, ModelWeights):
        return held
    if isinstance(source, nn.Module):
        return from_module(source)
    from convsvd.io import load

    return load(source)  # type: ignore[arg-type]


def unfolded(spec: LayerSpec, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The unfolded matrices of a layer, stacked by group.

    Returns
    -------
    torch.Tensor
        ``(g, m, n)`` with ``(m, n) = spec.unfolded_shape``.

    >>> import torch
    >>> from convsvd.io import LayerSpec
    >>> unfolded(LayerSpec("c", "conv2d", torch.zeros(8, 2, 3, 3), groups=2)).shape
    torch.Size([2, 4, 18])
    """
    m, n = spec.unfolded_shape
    w = spec.weight.detach()
    if dtype is not None:
        w = w.to(dtype)
    return w.reshape(spec.groups, m, n)


# --------------------------------------------------------------------------- BatchNorm folding

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _following_batchnorms(model: nn.Module) -> dict[str, tuple[str, _BatchNorm]]:
    """Map conv/linear name → (bn name, bn) for a BatchNorm that directly follows it.

    The data flow is read with ``torch.fx`` when the model traces; otherwise a
    BatchNorm registered right after the layer in the same parent counts.
    """
    names = {id(m): n for n, m in model.named_modules()}
    pairs: dict[str, tuple[str, _BatchNorm]] = {}
    try:
        import torch.fx

        gm = torch.fx.symbolic_trace(model)
        mods = dict(gm.named_modules())
        for node in gm.graph.nodes:
            bn = mods.get(str(node.target))
            if node.op != "call_module" or not isinstance(bn, _BN):
                continue
            src = node.args[0] if node.args else None
            if isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1:
                layer = mods.get(str(src.target))
                kind = None if layer is None else MODULE_KINDS.get(type(layer))
                if kind is not None and not kind.startswith("convtranspose"):
                    pairs[names.get(id(layer), str(src.target))] = (names.get(id(bn), str(node.target)), bn)
        return pairs
    except Exception:  # untraceable forward: fall back on registration order
        pass
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for (n1, m1), (n2, m2) in zip(children, children[1:]):
            if isinstance(m2, _BN) and type(m1) in MODULE_KINDS and not MODULE_KINDS[type(m1)].startswith("convtranspose"):
                prefix = f"{parent_name}." if parent_name else ""
                pairs[prefix + n1] = (prefix + n2, m2)
    return pairs


def fold_batchnorm(weights: ModelWeights) -> ModelWeights:
    """Fold every BatchNorm that directly follows a conv/linear layer into it.

    ``W' = W · γ/√(var+ε)`` per output channel and ``b' = (b − μ)·γ/√(var+ε) + β``:
    the effective linear map in eval mode. The model itself is not changed.
    Layers without a following BatchNorm are returned as they are. An ONNX
    model's pairs are read from its graph
    (:func:`convsvd.io.onnx_io.fold_onnx_batchnorm`).
    """
    if weights.format == "onnx" and weights.model is not None:
        from convsvd.io.onnx_io import fold_onnx_batchnorm

        return fold_onnx_batchnorm(weights)
    if weights.model is None:
        raise InputError(f"model {weights.source!r}: folding BatchNorm needs the module tree, not a weights-only file")
    pairs = _following_batchnorms(weights.model)
    out = []
    for spec in weights.layers:
        hit = pairs.get(spec.name)
        if hit is None:
            out.append(spec)
            continue
        bn_name, bn = hit
        with torch.no_grad():
            var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
            mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
            gamma = bn.weight if bn.weight is not None else torch.ones_like(var)
            beta = bn.bias if bn.bias is not None else torch.zeros_like(var)
            scale = gamma / torch.sqrt(var + bn.eps)
            w = spec.weight * scale.reshape(-1, *([1] * (spec.weight.dim() - 1)))
            b0 = spec.bias if spec.bias is not None else torch.zeros_like(mean)
            b = (b0 - mean) * scale + beta
        out.append(replace(spec, weight=w.detach().clone(), bias=b.detach().clone(), folded=bn_name))
    return replace(weights, layers=tuple(out))


# --------------------------------------------------------------------------- describe


def describe(source: object) -> pd.DataFrame:
    """One row per linear map (and per skipped parameter), before any heavy work.

    Columns: ``name, type, kind, weight_shape, unfolded_shape, groups, params,
    status, reason, alias`` (``alias``: the ONNX node name of a layer named after
    its weight, else empty). ``unfolded_shape`` is ``"m×n"`` per group.

    >>> from torch import nn
    >>> describe(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 2)))[["name", "unfolded_shape"]].values.tolist()
    [['0', '8×27'], ['1', '2×8']]
    """
    mw = as_weights(source)
    rows = []
    for s in mw.layers:
        m, n = s.unfolded_shape
        rows.append(
            dict(
                name=s.name,
                type=type(s.module).__name__ if s.module is not None else s.kind,
                kind=s.kind,
                weight_shape="×".join(map(str, s.weight.shape)),
                unfolded_shape=f"{m}×{n}",
                groups=s.groups,
                params=int(s.weight.numel() + (s.bias.numel() if s.bias is not None else 0)),
                status="analysed",
                reason="geometry assumed (weights-only file)" if s.inferred else "",
                alias=s.alias or "",
            )
        )
    for k in mw.skipped:
        rows.append(
            dict(name=k.name, type="", kind="", weight_shape="×".join(map(str, k.shape)), unfolded_shape="",
                 groups=0, params=int(math.prod(k.shape)) if k.shape else 0, status="skipped", reason=k.reason,
                 alias="")
        )
    return pd.DataFrame(rows, columns=["name", "type", "kind", "weight_shape", "unfolded_shape", "groups", "params", "status",
                                       "reason", "alias"])

