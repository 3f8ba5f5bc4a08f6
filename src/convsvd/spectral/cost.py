"""Planning the operator view of a conv layer: which grid, at what cost, within which budget.

The operator view (:func:`~convsvd.spectral.operator_singular_values`) decomposes one
complex ``(d/g) × (c/g)`` block per group and per frequency of the ``n1 × n2`` grid
(one of each ``±ω`` pair): ``blocks = g · (n1·n2 + s) / 2`` with ``s`` the number of
self-conjugate frequencies (``2^e``, ``e`` the number of even sides); a 1×1 kernel is
the same block at every frequency, so ``blocks = g``. Each block
costs about ``8·(m·k² − k³/3)`` real operations for its singular values (Householder
bidiagonalisation of an ``m × k`` complex matrix, ``m ≥ k``; a complex operation is
four real ones) plus ``8·taps·m·k`` for its DFT.

:func:`plan_operator` picks the grid of one layer before anything runs: the size
the layer sees (from :mod:`convsvd.shapes`), else ``n`` when given, else
:data:`DEFAULT_OPERATOR_N`; then, with a ``budget`` in seconds, the largest grid of
the same aspect whose estimated time fits (the estimate is the layer's operations
divided by a throughput measured once per device and precision,
:func:`throughput`). The plan states the grid, the layer's own size and the reason
whenever the two differ. Planning is pure apart from that one measurement, so it is
kept apart from the computation (views) and the model-level analysis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from convsvd.errors import InputError

__all__ = ["DEFAULT_OPERATOR_N", "OperatorPlan", "block_operations", "operator_blocks", "plan_operator", "throughput"]

DEFAULT_OPERATOR_N = 32
"""Grid side of the operator view when neither the layer's size nor ``n`` is known."""

_THROUGHPUT: dict[tuple[str, str], float] = {}


@dataclass(frozen=True)
class OperatorPlan:
    """The grid of one conv layer's operator view and its estimated cost.

    Attributes
    ----------
    n : tuple of int
        The grid the spectrum is computed on (one side per spatial dimension).
    size : tuple of int or None
        The spatial size the layer sees (None when it could not be found).
    blocks : int
        Complex ``(d/g) × (c/g)`` blocks decomposed (groups × distinct frequencies).
    operations : float
        Estimated real floating-point operations.
    seconds : float
        Estimated seconds (NaN when no throughput was measured).
    reason : str
        Why ``n`` is not ``size`` (``""`` when it is).
    """

    n: tuple[int, ...]
    size: tuple[int, ...] | None
    blocks: int
    operations: float
    seconds: float
    reason: str = ""


def operator_blocks(n: Sequence[int], groups: int = 1) -> int:
    """Blocks the operator view decomposes on grid ``n`` (one of each ``±ω`` pair, per group).

    Examples
    --------
    >>> operator_blocks((7, 7)), operator_blocks((8, 8), groups=2)
    (25, 68)
    """
    total = math.prod(int(m) for m in n)
    selfconj = math.prod(2 if int(m) % 2 == 0 else 1 for m in n)
    return int(groups) * (total + selfconj) // 2


def block_operations(m: int, k: int, taps: int = 1) -> float:
    """Estimated real operations for the singular values of one complex ``m × k`` block and its DFT.

    Examples
    --------
    >>> block_operations(512, 512, taps=9) > block_operations(256, 256, taps=9)
    True
    """
    big, small = max(m, k), min(m, k)
    return 8.0 * (big * small * small - small**3 / 3.0) + 8.0 * taps * m * k


def throughput(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Real operations per second of batched complex ``svdvals`` here (measured once, then cached).

    A batch of 8 complex ``128 × 128`` blocks is decomposed twice (the first call warms
    the libraries up) and timed; the result is cached per device type and precision.

    Examples
    --------
    >>> throughput() > 0
    True
    """
    dev = torch.device(device)
    key = (dev.type, str(dtype))
    if key not in _THROUGHPUT:
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        gen = torch.Generator().manual_seed(0)
        blocks = torch.randn(8, 128, 128, dtype=cdtype, generator=gen).to(dev)
        torch.linalg.svdvals(blocks[:1])
        _sync(dev)
        t0 = time.perf_counter()
        torch.linalg.svdvals(blocks)
        _sync(dev)
        _THROUGHPUT[key] = 8 * block_operations(128, 128) / max(time.perf_counter() - t0, 1e-6)
    return _THROUGHPUT[key]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _min_side(kernel: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) * (int(k) - 1) + 1 for k, d in zip(kernel, dilation))


def _fmt(size: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in size)


def plan_operator(
    weight_shape: Sequence[int],
    *,
    groups: int = 1,
    dilation: Sequence[int] | int = 1,
    size: Sequence[int] | None = None,
    n: int | None = None,
    budget: float | None = None,
    rate: float | None = None,
    unknown: str = "",
) -> OperatorPlan:
    """The grid of a conv layer's operator view: its own size, ``n``, or what a budget allows.

    Parameters
    ----------
    weight_shape : sequence of int
        ``(d, c/g, *kernel)``.
    groups : int, default 1
    dilation : int or sequence of int, default 1
    size : sequence of int, optional
        The spatial size the layer sees (:mod:`convsvd.shapes`). A size smaller than
        the dilated kernel gives the kernel's extent, and says so.
    n : int, optional
        A grid side chosen by the user: every side is ``n`` (it takes precedence over
        ``size``; it must cover the dilated kernel).
    budget : float, optional
        Seconds the layer may take. When the estimate at the chosen grid exceeds it,
        the sides are scaled down together (down to the kernel's extent) until it fits.
    rate : float, optional
        Real operations per second (default: :func:`throughput` on the CPU in float32
        when a budget is given).
    unknown : str
        Why ``size`` is not known (stated in the reason when the default grid is used).

    Returns
    -------
    OperatorPlan

    Raises
    ------
    InputError
        ``n`` smaller than the dilated kernel, or a budget that is not positive.

    Examples
    --------
    >>> plan = plan_operator((512, 512, 3, 3), size=(224, 224), budget=10.0, rate=1e10)
    >>> plan.n, plan.size, plan.reason.startswith("budget")
    ((16, 16), (224, 224), True)
    """
    kernel = tuple(int(k) for k in weight_shape[2:])
    dims = len(kernel)
    dil = (int(dilation),) * dims if isinstance(dilation, int) else tuple(int(d) for d in dilation) or (1,) * dims
    least = _min_side(kernel, dil)
    if budget is not None and (isinstance(budget, bool) or not budget > 0):
        raise InputError(f"budget={budget!r}: expected a positive number of seconds")
    own = tuple(int(s) for s in size) if size is not None else None
    reasons: list[str] = []
    if n is not None:
        grid = (int(n),) * dims
        if any(g < m for g, m in zip(grid, least)):
            raise InputError(f"n={n}: smaller than the (dilated) kernel {_fmt(least)}; expected n ≥ {max(least)}")
        if own is not None and grid != own:
            reasons.append(f"n={n} given (the layer sees {_fmt(own)})")
    elif own is not None:
        grid = tuple(max(s, m) for s, m in zip(own, least))
        if grid != own:
            reasons.append(f"the layer sees {_fmt(own)}, less than its dilated kernel {_fmt(least)}")
    else:
        grid = tuple(max(DEFAULT_OPERATOR_N, m) for m in least)
        reasons.append(f"size unknown ({unknown or 'not traced'}): default n={DEFAULT_OPERATOR_N}")

    d, cg = int(weight_shape[0]) // int(groups), int(weight_shape[1])
    per_block = block_operations(d, cg, math.prod(kernel))

    def cost(g: tuple[int, ...]) -> tuple[int, float]:
        blocks = operator_blocks(g, groups) if math.prod(kernel) > 1 else int(groups)  # 1×1: one block per group
        return blocks, blocks * per_block

    blocks, ops = cost(grid)
    if budget is not None:
        speed = rate if rate is not None else throughput()
        if ops / speed > budget:
            before, seconds = grid, ops / speed
            scale = (budget * speed / ops) ** (1.0 / dims)
            grid = tuple(max(m, int(math.floor(g * scale))) for g, m in zip(grid, least))
            while cost(grid)[1] / speed > budget and any(g > m for g, m in zip(grid, least)):
                grid = tuple(max(m, g - 1) for g, m in zip(grid, least))
            blocks, ops = cost(grid)
            note = "" if ops / speed <= budget else f"; the smallest grid for the kernel, still ~{ops / speed:.3g} s"
            reasons.insert(0, f"budget {budget:g} s: ~{seconds:.3g} s estimated at {_fmt(before)}, "
                              f"reduced to {_fmt(grid)}{note}")
        return OperatorPlan(grid, own, blocks, ops, ops / speed, "; ".join(reasons))
    return OperatorPlan(grid, own, blocks, ops, ops / rate if rate else math.nan, "; ".join(reasons))
