"""Empirical spectral densities (ESDs) and the scalar spectral metrics of a layer.

Conventions (exactly those of the design document):

* ESD: the eigenvalues ``λ = σ² / N`` of ``W̄ᵀW̄ / N``, with ``σ`` the singular values
  of the matrix and ``N`` its larger side; pooled over groups (or slices) when a layer
  has several matrices of the same shape.
* Matrix entropy (WeightWatcher's definition): with ``p_i = σ_i² / Σ σ_j²``,
  ``H = −Σ p_i ln p_i / ln r``, where ``r`` is the numerical rank, the number of
  ``σ_i > σ_max · N · ε`` (``ε`` the machine epsilon of the input dtype). ``H ∈ [0, 1]``:
  1 for a flat spectrum, 0 for rank one (``r ≤ 1`` gives 0).
* Stable rank ``‖W‖_F² / ‖W‖_2² = Σσ² / σ_max²``; log norm ``log10 ‖W‖_F²``; log
  spectral norm ``log10 λ_max = log10(σ_max² / N)``.
* ESD distance (:func:`esd_distance`), default ``"js"``: the Jensen–Shannon distance
  (base 2, so in [0, 1]) between the two histograms of ``log10 λ`` on ``bins`` common
  equal-width bins spanning both ESDs' positive values. ``"ks"`` is the two-sample
  Kolmogorov–Smirnov statistic ``sup |F_a − F_b|`` (bin-free). ``"ww"`` reproduces
  WeightWatcher 0.7's ``rand_distance``, which is *not* a histogram distance: the two
  sorted eigenvalue vectors (same length) are each normalised to sum 1 and compared
  entry by entry with the natural-log JS distance.
"""

from __future__ import annotations

import math
from typing import Literal, TypeAlias

import numpy as np
import torch

from convsvd import _validate as check
from convsvd.errors import InputError
from convsvd.spectral._arrays import ArrayLike, as_float64_numpy

__all__ = [
    "DISTANCE_METHODS",
    "esd_distance",
    "esd_from_singular_values",
    "log_norm",
    "log_spectral_norm",
    "matrix_entropy",
    "randomize",
    "stable_rank",
]

DISTANCE_METHODS: tuple[str, ...] = ("js", "ks", "ww")
"""The methods :func:`esd_distance` knows."""

Generator: TypeAlias = "torch.Generator | np.random.Generator | int | None"


def _eps(values: ArrayLike) -> float:
    """Machine epsilon of the input's dtype (float64 for non-float inputs)."""
    if isinstance(values, torch.Tensor) and values.is_floating_point():
        return float(torch.finfo(values.dtype).eps)
    dtype = getattr(values, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.floating):
        return float(np.finfo(dtype).eps)
    return float(np.finfo(np.float64).eps)


def esd_from_singular_values(S: ArrayLike, shape: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Eigenvalues ``λ = σ² / N`` of one matrix, or pooled over several of one shape.

    Parameters
    ----------
    S : array-like, shape (k,) or (..., k)
        Singular values of one matrix, or of several matrices of the same shape
        (e.g. ``(groups, k)``); all are pooled. ``k ≤ min(shape)``.
    shape : (int, int)
        Shape ``(rows, cols)`` of one matrix; ``N = max(shape)``.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (S.numel(),), float64
        Sorted ascending (a tensor on ``S``'s device if ``S`` is a tensor).

    Examples
    --------
    >>> esd_from_singular_values([2.0, 4.0], (8, 2))
    array([0.5, 2. ])
    """
    try:
        rows, cols = (int(v) for v in shape)
    except (TypeError, ValueError) as exc:
        raise InputError(f"shape: expected (rows, cols), got {shape!r}") from exc
    if rows < 1 or cols < 1:
        raise InputError(f"shape: expected positive sides, got {shape!r}")
    n_big = max(rows, cols)
    if isinstance(S, torch.Tensor):
        s = S.detach().to(torch.float64)
        if s.ndim and s.shape[-1] > min(rows, cols):
            raise InputError(f"S: {s.shape[-1]} singular values for a {rows}x{cols} matrix")
        return torch.sort((s * s / n_big).reshape(-1)).values
    arr = np.asarray(S, dtype=np.float64)
    if arr.ndim and arr.shape[-1] > min(rows, cols):
        raise InputError(f"S: {arr.shape[-1]} singular values for a {rows}x{cols} matrix")
    return np.sort((arr * arr / n_big).reshape(-1))


def matrix_entropy(S: ArrayLike, N: int | None = None) -> float:
    """Normalised spectral entropy ``−Σ p ln p / ln r`` (WeightWatcher's definition).

    Parameters
    ----------
    S : array-like, shape (k,) or (..., k)
        Singular values (pooled if several matrices).
    N : int, optional
        Larger side of the matrix, for the rank tolerance ``σ_max · N · ε``
        (default: the number of singular values).

    Returns
    -------
    float
        In [0, 1]; NaN if there is no nonzero singular value.

    Examples
    --------
    >>> matrix_entropy([1.0, 1.0, 1.0, 1.0])
    1.0
    """
    s = np.abs(as_float64_numpy(S, "S"))
    if s.size == 0 or not np.isfinite(s).all() or s.max() <= 0:
        return math.nan
    n_big = int(N) if N is not None else s.size
    rank = int(np.count_nonzero(s > s.max() * n_big * _eps(S)))
    if rank <= 1:
        return 0.0
    p = s * s / np.sum(s * s)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)) / math.log(rank))


def stable_rank(S: ArrayLike) -> float:
    """Stable rank ``Σσ² / σ_max² = ‖W‖_F² / ‖W‖_2²`` (NaN for a zero matrix).

    Parameters
    ----------
    S : array-like, shape (k,) or (..., k)

    Returns
    -------
    float

    Examples
    --------
    >>> stable_rank([2.0, 1.0, 1.0])
    1.5
    """
    s = as_float64_numpy(S, "S")
    top = float(np.max(np.abs(s))) if s.size else 0.0
    return float(np.sum(s * s)) / top**2 if top > 0 else math.nan


def log_norm(S: ArrayLike) -> float:
    """``log10 ‖W‖_F² = log10 Σσ²`` (−inf for a zero matrix, NaN if empty).

    Parameters
    ----------
    S : array-like, shape (k,) or (..., k)

    Returns
    -------
    float

    Examples
    --------
    >>> log_norm([3.0, 1.0])
    1.0
    """
    s = as_float64_numpy(S, "S")
    if s.size == 0:
        return math.nan
    total = float(np.sum(s * s))
    return math.log10(total) if total > 0 else -math.inf


def log_spectral_norm(S: ArrayLike, N: int) -> float:
    """``log10 λ_max = log10(σ_max² / N)``, with ``N`` the larger side of the matrix.

    Parameters
    ----------
    S : array-like, shape (k,) or (..., k)
    N : int
        Larger side of the matrix (the ESD normalisation).

    Returns
    -------
    float

    Examples
    --------
    >>> log_spectral_norm([10.0, 1.0], N=10)
    1.0
    """
    if int(N) < 1:
        raise InputError(f"N: expected a positive integer, got {N!r}")
    s = as_float64_numpy(S, "S")
    if s.size == 0:
        return math.nan
    top = float(np.max(np.abs(s))) ** 2 / int(N)
    return math.log10(top) if top > 0 else -math.inf


def randomize(W: np.ndarray | torch.Tensor, generator: Generator = None) -> np.ndarray | torch.Tensor:
    """Shuffle the entries of a layer's weight (same values, same shape, new places).

    The ESD of the result is the null model of "no learned structure": for i.i.d.
    entries it follows the Marchenko–Pastur law.

    Parameters
    ----------
    W : numpy.ndarray or torch.Tensor, any shape
    generator : torch.Generator, numpy.random.Generator or int, optional
        Source of randomness (an int seeds a fresh generator of ``W``'s library).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, shape, dtype and device as ``W``; ``W`` is not modified.

    Examples
    --------
    >>> import torch
    >>> W = torch.arange(6.0).reshape(2, 3)
    >>> sorted(randomize(W, 0).flatten().tolist())
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    if isinstance(W, torch.Tensor):
        if isinstance(generator, np.random.Generator):
            raise InputError("generator: a torch tensor needs a torch.Generator or an int seed")
        if isinstance(generator, (int, np.integer)):
            generator = torch.Generator().manual_seed(int(generator))
        where = generator.device if generator is not None else torch.device("cpu")
        perm = torch.randperm(W.numel(), generator=generator, device=where).to(W.device)
        return W.detach().reshape(-1)[perm].reshape(W.shape).clone()
    if isinstance(generator, torch.Generator):
        raise InputError("generator: a NumPy array needs a numpy Generator or an int seed")
    arr = np.asarray(W)
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    return arr.reshape(-1)[rng.permutation(arr.size)].reshape(arr.shape)


def esd_distance(
    a: ArrayLike,
    b: ArrayLike,
    method: Literal["js", "ks", "ww"] = "js",
    bins: int = 100,
) -> float:
    """Distance between two ESDs (e.g. a layer and its :func:`randomize`-d copy).

    Parameters
    ----------
    a, b : array-like, shapes (n,) and (m,)
        Eigenvalues.
    method : {"js", "ks", "ww"}, default "js"
        ``"js"``: Jensen–Shannon distance (base 2) between histograms of ``log10 λ``
        on ``bins`` shared bins (positive values only). ``"ks"``: two-sample KS
        statistic. ``"ww"``: WeightWatcher 0.7's ``rand_distance`` (requires
        ``n == m``). See the module docstring.
    bins : int, default 100
        Number of histogram bins for ``"js"``.

    Returns
    -------
    float
        In [0, 1] for ``"js"`` and ``"ks"``; NaN when undefined (an empty ESD).

    Examples
    --------
    >>> esd_distance([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    0.0
    """
    if method not in DISTANCE_METHODS:
        raise InputError(f"method: expected one of {DISTANCE_METHODS}, got {method!r}")
    x = np.sort(as_float64_numpy(a, "a"))
    y = np.sort(as_float64_numpy(b, "b"))
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("a, b: eigenvalues must be finite")
    if method == "ks":
        if x.size == 0 or y.size == 0:
            return math.nan
        grid = np.concatenate([x, y])
        fx = np.searchsorted(x, grid, side="right") / x.size
        fy = np.searchsorted(y, grid, side="right") / y.size
        return float(np.max(np.abs(fx - fy)))
    from scipy.spatial.distance import jensenshannon

    if method == "ww":
        if x.size != y.size:
            raise InputError(f"a, b: method 'ww' needs ESDs of equal length, got {x.size} and {y.size}")
        if x.size == 0 or x.sum() <= 0 or y.sum() <= 0:
            return math.nan
        return float(jensenshannon(x, y))
    bins = check.integer(bins, "bins", minimum=1)
    lx, ly = np.log10(x[x > 0]), np.log10(y[y > 0])
    if lx.size == 0 or ly.size == 0:
        return math.nan
    lo, hi = min(lx[0], ly[0]), max(lx[-1], ly[-1])
    if hi <= lo:
        return 0.0
    edges = np.linspace(lo, hi, int(bins) + 1)
    px = np.histogram(lx, bins=edges)[0].astype(np.float64)
    py = np.histogram(ly, bins=edges)[0].astype(np.float64)
    return float(jensenshannon(px, py, base=2.0))
