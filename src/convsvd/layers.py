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

import itertools
import math
from dataclasses import replace
from typing import Iterable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from convsvd.errors import InputError
from convsvd.io import LayerSpec, ModelWeights, from_module
from convsvd.io.spec import MODULE_KINDS

__all__ = [
    "MODULE_KINDS",
    "apply_unfolded",
    "describe",
    "fold_batchnorm",
    "im2col",
    "resolved_padding",
    "unfolded",
    "as_weights",
]


def as_weights(source: object) -> ModelWeights:
    """``ModelWeights`` of an ``nn.Module``, a ``ModelWeights``, or a file / spec (via :func:`convsvd.io.load`)."""
    if isinstance(source, ModelWeights):
        return source
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


# --------------------------------------------------------------------------- geometry


def resolved_padding(spec: LayerSpec) -> tuple[tuple[int, int], ...]:
    """Padding ``(before, after)`` per spatial dimension, with ``"same"``/``"valid"`` resolved.

    ``"same"`` follows PyTorch: total ``dilation·(k−1)``, the extra element after.
    """
    n = spec.spatial_dims
    if spec.padding == "valid":
        return ((0, 0),) * n
    if spec.padding == "same":
        out = []
        for k, d in zip(spec.kernel_size, spec.dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    pad = tuple(spec.padding) if spec.padding else (0,) * n  # type: ignore[arg-type]
    return tuple((int(p), int(p)) for p in pad)


def _pad_input(x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    pads = resolved_padding(spec)
    if not any(a or b for a, b in pads):
        return x
    flat: list[int] = []
    for a, b in reversed(pads):  # F.pad wants the last dimension first
        flat += [a, b]
    mode = "constant" if spec.padding_mode == "zeros" else spec.padding_mode
    return F.pad(x, flat, mode=mode)


def im2col(x: torch.Tensor, spec: LayerSpec) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Patches of a convolution's input, grouped like ``W̄``.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, c, *spatial)`` input of a (non-transposed) conv layer.

    Returns
    -------
    patches : torch.Tensor
        ``(N, g, c/g·k1·…, L)`` where ``L`` is the number of output locations.
    out_shape : tuple of int
        Spatial shape of the output.
    """
    if spec.kind == "linear" or spec.transposed:
        raise InputError(f"layer {spec.name!r}: im2col needs a convolution, got {spec.kind}")
    xp = _pad_input(x, spec)
    nsp = spec.spatial_dims
    ks, st, dl = spec.kernel_size, spec.stride, spec.dilation
    out_shape = tuple(
        (xp.shape[2 + i] - dl[i] * (ks[i] - 1) - 1) // st[i] + 1 for i in range(nsp)
    )
    if any(o <= 0 for o in out_shape):
        raise InputError(f"layer {spec.name!r}: input of spatial size {tuple(x.shape[2:])} is smaller than its kernel")
    cols = []
    for offs in itertools.product(*(range(k) for k in ks)):
        sl = [slice(None), slice(None)]
        for i in range(nsp):
            start = offs[i] * dl[i]
            sl.append(slice(start, start + st[i] * (out_shape[i] - 1) + 1, st[i]))
        cols.append(xp[tuple(sl)])
    # (N, c, K, *out) with the kernel offsets innermost in (c, k1, …) order
    patches = torch.stack(cols, dim=2)
    N, c = x.shape[0], x.shape[1]
    L = math.prod(out_shape)
    patches = patches.reshape(N, spec.groups, (c // spec.groups) * math.prod(ks), L)
    return patches, out_shape


def _col2im(cols: torch.Tensor, spec: LayerSpec, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Scatter-add ``(N, d, K, *in_shape)`` kernel contributions into a transposed conv's output."""
    nsp = spec.spatial_dims
    ks, st, dl = spec.kernel_size, spec.stride, spec.dilation
    pads = resolved_padding(spec)
    op = spec.output_padding or (0,) * nsp
    full = tuple((in_shape[i] - 1) * st[i] + dl[i] * (ks[i] - 1) + 1 + op[i] for i in range(nsp))
    N, d = cols.shape[0], cols.shape[1]
    out = cols.new_zeros((N, d) + full)
    for kidx, offs in enumerate(itertools.product(*(range(k) for k in ks))):
        sl = [slice(None), slice(None)]
        for i in range(nsp):
            start = offs[i] * dl[i]
            sl.append(slice(start, start + st[i] * (in_shape[i] - 1) + 1, st[i]))
        out[tuple(sl)] += cols[:, :, kidx]
    crop = [slice(None), slice(None)] + [slice(pads[i][0], full[i] - pads[i][1]) for i in range(nsp)]
    return out[tuple(crop)]


def apply_unfolded(x: torch.Tensor, spec: LayerSpec, bias: bool = True) -> torch.Tensor:
    """Apply a layer through its unfolded matrices (the identity the SVD rests on).

    For a conv, ``y_j = W̄_j @ patches_j(x)``; for a transposed conv,
    ``y = col2im(W̄_jᵀ @ x_j)``; for linear, ``y = x W̄ᵀ``. The result equals the
    layer's own output.
    """
    W = unfolded(spec, dtype=x.dtype)
    b = spec.bias.to(x.dtype) if (bias and spec.bias is not None) else None
    if spec.kind == "linear":
        y = x @ W[0].T
        return y + b if b is not None else y
    g = spec.groups
    if not spec.transposed:
        patches, out_shape = im2col(x, spec)  # (N, g, n, L)
        y = torch.einsum("gmn,bgnl->bgml", W, patches)
        y = y.reshape(x.shape[0], spec.out_channels, *out_shape)
    else:
        N, c = x.shape[0], x.shape[1]
        in_shape = tuple(x.shape[2:])
        xg = x.reshape(N, g, c // g, -1)  # (N, g, c/g, L)
        cols = torch.einsum("gmn,bgml->bgnl", W, xg)  # (N, g, d/g·K, L)
        K = math.prod(spec.kernel_size)
        cols = cols.reshape(N, spec.out_channels, K, *in_shape)
        y = _col2im(cols, spec, in_shape)
    if b is not None:
        y = y + b.reshape(1, -1, *([1] * spec.spatial_dims))
    return y


# --------------------------------------------------------------------------- BatchNorm folding

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _following_batchnorms(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Map conv/linear name → (bn name, bn) for a BatchNorm that directly follows it.

    The data flow is read with ``torch.fx`` when the model traces; otherwise a
    BatchNorm registered right after the layer in the same parent counts.
    """
    names = {id(m): n for n, m in model.named_modules()}
    pairs: dict[str, tuple[str, nn.Module]] = {}
    try:
        import torch.fx

        gm = torch.fx.symbolic_trace(model)
        mods = dict(gm.named_modules())
        for node in gm.graph.nodes:
            if node.op != "call_module" or not isinstance(mods.get(node.target), _BN):
                continue
            src = node.args[0] if node.args else None
            if getattr(src, "op", None) == "call_module" and len(src.users) == 1:
                layer = mods.get(src.target)
                if type(layer) in MODULE_KINDS and not str(MODULE_KINDS[type(layer)]).startswith("convtranspose"):
                    pairs[names.get(id(layer), src.target)] = (names.get(id(mods[node.target]), node.target), mods[node.target])
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


def iter_groups(weights: Iterable[LayerSpec]) -> Iterable[tuple[LayerSpec, int]]:
    """Every (layer, group index) pair, in order."""
    for spec in weights:
        for j in range(spec.groups):
            yield spec, j
