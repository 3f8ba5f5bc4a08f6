"""Compiled CPU kernel for DeepDataProfiler's channel contributions of a conv (``rule="ddp"``).

For rows ``(b, o)`` and every input channel ``c`` of ``o``'s group it computes
``max(0, max_p Σ_tap W[o, c, tap] · x[b, c, p + tap])`` straight from the channels-last
activations: no copy of an input per row, no per-position output written out.
The torch path (a depthwise convolution per chunk of rows) computes the same numbers and is
used where this kernel is not: on a GPU, for dtypes other than float32/float64, and when numba
cannot be imported. Both are checked against each other and against a loop in the tests.

numba compiles the kernels on first use (a few seconds, cached on disk beside this file or in
numba's per-user cache). They run on as many threads as torch uses. numba's OpenMP layer shares
torch's OpenMP runtime and sets its thread count when it starts (a ``torch.set_num_threads(1)``
became 2 after the first call): torch's count is put back after every call. numba's thread pools
are not all safe to enter from two threads at once, so calls are serialised by a lock.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch

__all__ = ["ddp_conv_max", "available"]

_LOCK = threading.Lock()
_KERNELS: dict[str, Any] = {}


def _build() -> dict[str, Any]:
    """The two kernels (compiled or loaded from the cache on first use); none when numba is missing."""
    if _KERNELS:
        return _KERNELS
    with _LOCK:  # two threads asking at once: one builds
        return _KERNELS if _KERNELS else _compile()


def _compile() -> dict[str, Any]:
    try:
        import numba
        from numba import njit, prange
    except ImportError:  # numba is a dependency; a platform without its wheels keeps the torch path
        _KERNELS["none"] = None
        return _KERNELS

    def jit(fn: Any) -> Any:
        try:
            return njit(parallel=True, fastmath={"contract"}, boundscheck=False, cache=True)(fn)
        except RuntimeError:  # no writable place for numba's cache: compile in each process instead
            return njit(parallel=True, fastmath={"contract"}, boundscheck=False)(fn)

    # Indices are uint64 where an inner loop reads memory: numba then skips its negative-index
    # wrap-around, and the loops over channels vectorise.
    @jit
    def by_position(x, w, rows_b, rows_o, C, H, W, cg, og, kh, kw, sh, sw, dh, dw, top, left, Ho, Wo, out):
        """Any geometry: per output position, the taps summed into one vector over the group's channels."""
        ucg = np.uint64(cg)
        for m in prange(rows_b.shape[0]):
            b, o = rows_b[m], rows_o[m]
            c0 = (o // og) * cg
            mx = np.full(cg, -np.inf, dtype=x.dtype)
            acc = np.empty(cg, dtype=x.dtype)
            for i in range(Ho):
                for j in range(Wo):
                    for c in range(ucg):
                        acc[c] = 0
                    for r in range(kh):
                        ii = i * sh - top + r * dh
                        if ii < 0 or ii >= H:
                            continue
                        for s in range(kw):
                            jj = j * sw - left + s * dw
                            if jj < 0 or jj >= W:
                                continue
                            xo = np.uint64(((b * H + ii) * W + jj) * C + c0)
                            wo = np.uint64(((o * kh + r) * kw + s) * cg)
                            for c in range(ucg):
                                acc[c] += w[wo + c] * x[xo + c]
                    for c in range(ucg):
                        if acc[c] > mx[c]:
                            mx[c] = acc[c]
            for c in range(cg):
                out[m, c] = mx[c] if mx[c] > 0 else 0

    @jit
    def by_row(x, w, rows_b, rows_o, C, H, W, kh, kw, dh, dw, top, left, Ho, Wo, out):
        """Stride 1, one group: a tap's terms for a whole output row are one contiguous run of
        ``x`` (positions × channels), multiplied by the tap's weights tiled along the row."""
        uC = np.uint64(C)
        L = Wo * C
        for m in prange(rows_b.shape[0]):
            b, o = rows_b[m], rows_o[m]
            wt = np.empty(kh * kw * L, dtype=x.dtype)
            for t in range(kh * kw):
                src = np.uint64((o * kh * kw + t) * C)
                for j in range(Wo):
                    dst = np.uint64(t * L + j * C)
                    for c in range(uC):
                        wt[dst + c] = w[src + c]
            mx = np.full(C, -np.inf, dtype=x.dtype)
            acc = np.empty(L, dtype=x.dtype)
            for i in range(Ho):
                for q in range(np.uint64(L)):
                    acc[q] = 0
                for r in range(kh):
                    ii = i - top + r * dh
                    if ii < 0 or ii >= H:
                        continue
                    for s in range(kw):
                        off = s * dw - left
                        jlo, jhi = max(0, -off), min(Wo, W - off)
                        if jhi <= jlo:
                            continue
                        n = np.uint64((jhi - jlo) * C)
                        a0 = np.uint64(jlo * C)
                        w0 = np.uint64((r * kw + s) * L + jlo * C)
                        x0 = np.uint64(((b * H + ii) * W + jlo + off) * C)
                        for q in range(n):
                            acc[a0 + q] += wt[w0 + q] * x[x0 + q]
                for j in range(Wo):
                    base = np.uint64(j * C)
                    for c in range(uC):
                        if acc[base + c] > mx[c]:
                            mx[c] = acc[base + c]
            for c in range(C):
                out[m, c] = mx[c] if mx[c] > 0 else 0

    _KERNELS.update(numba=numba, by_position=by_position, by_row=by_row)
    return _KERNELS


def available(x: torch.Tensor) -> bool:
    """Whether the compiled kernel takes activations like ``x`` (CPU, float32/float64, numba present)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and _build().get("by_position") is not None)


def ddp_conv_max(x: torch.Tensor, weight: torch.Tensor, b: torch.Tensor, o: torch.Tensor, *,
                 stride: tuple[int, ...], dilation: tuple[int, ...], top: int, left: int,
                 out_size: tuple[int, int], groups: int) -> torch.Tensor:
    """``(M, C/groups)``: ``max(0, max_p Σ_tap weight[o, c, tap] · x[b, c, p·stride + tap·dilation − pad])``.

    Parameters
    ----------
    x : (B, C, H, W) activations, zero-padded by ``top``/``left`` (and as much as ``out_size``
        needs at the bottom/right); any other padding must already be applied.
    weight : (O, C/groups, kh, kw) the conv's weight.
    b, o : (M,) rows: input and output channel.
    out_size : (Ho, Wo) the conv's output size.
    """
    k = _build()
    B, C, H, W = x.shape
    O, cg, kh, kw = weight.shape
    M = len(b)
    out = np.empty((M, cg), dtype=np.float32 if x.dtype == torch.float32 else np.float64)
    if M == 0:
        return torch.from_numpy(out)
    xn = x.detach().permute(0, 2, 3, 1).contiguous().numpy().reshape(-1)  # a view when x is channels-last
    wn = weight.detach().to(x.dtype).permute(0, 2, 3, 1).contiguous().numpy().reshape(-1)
    bn = b.to(torch.int64).contiguous().numpy()
    on = o.to(torch.int64).contiguous().numpy()
    (sh, sw), (dh, dw), (Ho, Wo) = stride, dilation, out_size
    with _LOCK:
        threads = torch.get_num_threads()
        try:
            k["numba"].set_num_threads(max(1, min(threads, k["numba"].config.NUMBA_NUM_THREADS)))
            if groups == 1 and sw == 1 and sh == 1:
                k["by_row"](xn, wn, bn, on, C, H, W, kh, kw, dh, dw, top, left, Ho, Wo, out)
            else:
                k["by_position"](xn, wn, bn, on, C, H, W, cg, O // groups, kh, kw, sh, sw, dh, dw, top, left,
                                 Ho, Wo, out)
        finally:
            torch.set_num_threads(threads)
    return torch.from_numpy(out)
