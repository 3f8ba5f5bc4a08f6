"""Reference application of a layer through its unfolded matrices: the identity the SVD rests on.

Test-only: ``apply_unfolded(x, spec)`` must equal the layer's own output for every
kind of conv (stride, padding modes, dilation, groups, transposed), which is what
makes ``W̄ = U Σ Vᵀ`` the SVD of the layer's map.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from convsvd.errors import InputError
from convsvd.io import LayerSpec
from convsvd.layers import unfolded


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
