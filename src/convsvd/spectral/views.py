"""Two alternative spectra of a convolution weight ``W ∈ R^{d × c/g × k1 × k2}``.

The main view of convsvd is the unfolded matrix ``W̄_j`` of each group (see
``convsvd.decompose``). This module gives the two others:

**Slices** (:func:`slice_singular_values`) — WeightWatcher's view of a conv layer: the
``k1·k2`` matrices ``W[:, :, i, j]`` (one per kernel tap, ``d × c/g``), each with its
own singular values; WeightWatcher pools them into one ESD (each slice an ``N × M``
matrix with ``N = max(d, c/g)``). WeightWatcher ignores groups; with ``groups > 1``
this function splits each slice into its ``g`` diagonal blocks ``(d/g) × (c/g)`` (the
actual per-tap operator), and ``groups=1`` reproduces WeightWatcher's slices. (It also
rescales conv slices and does not divide by ``N`` by default; such constant factors
leave α unchanged but shift ``x_min`` and the log norms.)

**Operator** (:func:`operator_singular_values`) — the exact singular values of the
whole convolution as a linear map on ``c`` channels of an ``n × n`` input with
circular padding and stride 1 (Sedghi, Gupta & Long 2019): the map is block-circulant,
diagonalised by the 2-D DFT, so its singular values are those of the ``n²`` complex
``(d/g) × (c/g)`` matrices ``Ŵ_j(ω) = Σ_a W_j[:, :, a] e^{−2πi ⟨ω, a⟩/n}`` — the DFT of
the kernel zero-padded to ``n × n`` (``torch.fft.fftn(W, s=(n, n))``), one batched
``svdvals`` over all frequencies, block-diagonal across groups. Cross-correlation
versus convolution, and any circular shift of the padding, only conjugate or rotate
``Ŵ`` by unit phases: same singular values. A 1×1 kernel has ``Ŵ(ω) = W`` at every
frequency: one SVD per group, repeated. Parseval gives
``Σ σ² = n² ‖W‖_F²``. Since ``Ŵ(−ω) = conj Ŵ(ω)``, only one of each ``±ω`` pair is
decomposed; the DFT is evaluated as a small matrix product over the ``k1·k2`` taps, a
chunk of frequencies at a time, so memory stays bounded for large layers. Dilation is
supported (taps at multiples of the dilation); 1-D and 3-D kernels work the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
import torch

from convsvd.errors import InputError

__all__ = ["operator_singular_values", "slice_singular_values"]

SizeLike: TypeAlias = "int | Sequence[int]"

DEFAULT_CHUNK_ELEMENTS = 2**22
"""Default maximum number of complex entries of ``Ŵ`` held at once."""


def _as_weight(W: torch.Tensor | np.ndarray, groups: int) -> torch.Tensor:
    t = W.detach() if isinstance(W, torch.Tensor) else torch.as_tensor(np.asarray(W))
    if t.dim() < 3:
        raise InputError(f"W: expected a conv weight (d, c/g, *kernel), got shape {tuple(t.shape)}")
    if t.is_complex() or not t.is_floating_point():
        raise InputError(f"W: expected a real floating-point tensor, got {t.dtype}")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if isinstance(groups, bool) or int(groups) < 1 or t.shape[0] % int(groups):
        raise InputError(f"groups: expected a positive divisor of d={t.shape[0]}, got {groups!r}")
    return t


def _per_dim(value: SizeLike, dims: int, name: str) -> tuple[int, ...]:
    out = (int(value),) * dims if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(out) != dims or any(v < 1 for v in out):
        raise InputError(f"{name}: expected a positive int or {dims} of them, got {value!r}")
    return out


def slice_singular_values(W: torch.Tensor | np.ndarray, groups: int = 1) -> torch.Tensor:
    """Singular values of the per-tap slices ``W[:, :, i, j]`` (WeightWatcher's view).

    Parameters
    ----------
    W : torch.Tensor, shape (d, c/g, *kernel)
        Conv weight (1-D, 2-D or 3-D kernel).
    groups : int, default 1
        Split each slice into its ``groups`` diagonal blocks ``(d/g) × (c/g)``;
        ``1`` treats the slice as one ``d × c/g`` matrix, as WeightWatcher does.

    Returns
    -------
    torch.Tensor, shape (prod(kernel), groups, min(d/g, c/g))
        Row ``t`` is the tap ``t`` in row-major order (``t = i·k2 + j``), each row
        descending; ``.flatten()`` pools them into one spectrum.

    Examples
    --------
    >>> import torch
    >>> slice_singular_values(torch.ones(4, 2, 3, 3)).shape
    torch.Size([9, 1, 2])
    """
    t = _as_weight(W, groups)
    d, cg = t.shape[0], t.shape[1]
    taps = math.prod(t.shape[2:])
    mats = t.reshape(d, cg, taps).permute(2, 0, 1).reshape(taps, int(groups), d // int(groups), cg)
    return torch.linalg.svdvals(mats)


def operator_singular_values(
    W: torch.Tensor | np.ndarray,
    n: SizeLike,
    *,
    groups: int = 1,
    dilation: SizeLike = 1,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Exact singular values of the circular convolution operator on an ``n × n`` input.

    Parameters
    ----------
    W : torch.Tensor, shape (d, c/g, *kernel)
        Conv weight (1-D, 2-D or 3-D kernel); computed in its dtype (float32 →
        complex64, float64 → complex128) on its device.
    n : int or sequence of int
        Input size per spatial dimension; ``n ≥ dilation·(k − 1) + 1``.
    groups : int, default 1
        Groups of the convolution; the operator is block-diagonal across them.
    dilation : int or sequence of int, default 1
    chunk_elements : int
        Maximum number of complex entries of ``Ŵ`` materialised at once (the blocks of
        a chunk go to one batched ``svdvals`` call).
    progress : callable, optional
        ``progress(done, total)`` after each chunk, in frequencies decomposed (one of
        each ``±ω`` pair; times ``groups`` blocks each).

    Returns
    -------
    torch.Tensor, shape (groups, *n, min(d/g, c/g))
        ``out[j, u, v]`` are the singular values (descending) of group ``j`` at
        frequency ``(u, v)``; all of them together are the operator's singular values
        (the operator maps ``R^{c·n²} → R^{d·n²}``; if ``d/g > c/g`` the rest are zero).

    Examples
    --------
    >>> import torch
    >>> s = operator_singular_values(torch.ones(1, 1, 3, 3), n=4)
    >>> float(s.max())  # |DFT| at frequency 0 = sum of the kernel
    9.0
    """
    t = _as_weight(W, groups)
    g = int(groups)
    dims = t.dim() - 2
    kernel = tuple(t.shape[2:])
    size = _per_dim(n, dims, "n")
    dil = _per_dim(dilation, dims, "dilation")
    for s, (k, m, dl) in enumerate(zip(kernel, size, dil)):
        if m < dl * (k - 1) + 1:
            raise InputError(
                f"n: input size {m} along spatial dim {s} is smaller than the "
                f"(dilated) kernel {dl * (k - 1) + 1}"
            )
    if isinstance(chunk_elements, bool) or int(chunk_elements) < 1:
        raise InputError(f"chunk_elements: expected a positive integer, got {chunk_elements!r}")

    dev = t.device
    cdtype = torch.complex128 if t.dtype == torch.float64 else torch.complex64
    d, cg = t.shape[0], t.shape[1]
    dg = d // g
    taps = math.prod(kernel)
    if taps == 1:  # a 1×1 kernel: Ŵ(ω) = W at every frequency, one SVD per group repeated
        one = torch.linalg.svdvals(t.reshape(g, dg, cg))  # (g, rank)
        if progress is not None:
            progress(1, 1)
        return one.reshape(g, *([1] * dims), -1).expand(g, *size, one.shape[-1]).clone()
    mats = t.reshape(g * dg * cg, taps).T.to(cdtype)  # (taps, g·dg·cg)

    # Tap offsets (taps, dims) and every frequency (F, dims), both in row-major order.
    offsets = torch.cartesian_prod(*[torch.arange(k, device=dev) * dl for k, dl in zip(kernel, dil)])
    freqs = torch.cartesian_prod(*[torch.arange(m, device=dev) for m in size])
    offsets, freqs = offsets.reshape(taps, dims), freqs.reshape(-1, dims)
    sizes = torch.tensor(size, device=dev)
    strides = torch.tensor([math.prod(size[s + 1 :]) for s in range(dims)], device=dev)
    flat = (freqs * strides).sum(1)
    mirror = (((-freqs) % sizes) * strides).sum(1)
    reps = torch.nonzero(flat <= mirror, as_tuple=True)[0]  # one of each ±ω pair

    rank = min(dg, cg)
    out_rep = torch.empty(reps.numel(), g, rank, dtype=t.dtype, device=dev)
    per_chunk = max(1, int(chunk_elements) // max(1, g * dg * cg))
    real = torch.float64 if cdtype == torch.complex128 else torch.float32
    for s in range(0, reps.numel(), per_chunk):
        idx = reps[s : s + per_chunk]
        # ⟨ω, a⟩/n exactly in integers, per dimension, then summed as turns.
        turns = (((freqs[idx][:, None, :] * offsets[None, :, :]) % sizes).to(real) / sizes.to(real)).sum(-1)
        phase = torch.polar(torch.ones_like(turns), -2.0 * math.pi * turns)  # (chunk, taps)
        spectrum = (phase @ mats).reshape(-1, g, dg, cg)
        out_rep[s : s + per_chunk] = torch.linalg.svdvals(spectrum).to(t.dtype)
        if progress is not None:
            progress(min(s + per_chunk, reps.numel()), reps.numel())

    where = torch.full((flat.numel(),), -1, dtype=torch.long, device=dev)
    where[reps] = torch.arange(reps.numel(), device=dev)
    full = out_rep[where[torch.minimum(flat, mirror)]]  # (F, g, rank)
    return full.permute(1, 0, 2).reshape(g, *size, rank)
