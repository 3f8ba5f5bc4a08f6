"""Power-law fit of the tail of an ESD (Clauset, Shalizi & Newman 2009), vectorised.

For each candidate lower cut-off ``x_min`` the continuous power law
``p(x) = (α − 1)/x_min · (x/x_min)^(−α)`` for ``x ≥ x_min`` is fitted by maximum
likelihood, ``α = 1 + n / Σ ln(x_i / x_min)`` over the ``n`` values ``≥ x_min``, and
the Kolmogorov–Smirnov distance ``D`` between the fitted CDF and the empirical CDF of
that tail is computed; the ``x_min`` with the smallest ``D`` is kept.

The rules are those of the reference implementation, the ``powerlaw`` package 1.5
(``powerlaw.Fit(evals)`` with its defaults), so that ``α``, ``x_min`` and ``D`` agree
with it to rounding:

* values ``≤ 0`` are dropped (``powerlaw`` drops them when a ``0`` is present);
* the candidates are the *distinct* values, minus the largest one (or, with
  ``xmin_range=(lo, hi)``, the distinct values in ``[lo, hi]`` minus the largest of
  those), so every candidate keeps at least two values in its tail;
* ``D = max_j |F_fit(u_j) − F_emp(u_j)|`` over the distinct tail values ``u_j``, where
  ``F_emp(u_j)`` is the fraction of tail values *strictly below* ``u_j`` (the left
  limit of the empirical CDF), and ``F_fit(u) = 1 − (u / x_min)^(1−α)``;
* ties in ``D`` go to the smallest ``x_min``; ``σ = (α − 1)/√n_tail``.

Where the data are degenerate ``powerlaw`` returns infinities (a fixed ``x_min``
leaving one value, or only equal values, in the tail); here such fits have NaN fields
and a ``status`` instead (:data:`FIT_STATUSES`). ``powerlaw``'s ``xmax`` argument,
which switches it to a numerical fit truncated at ``xmax``, is not reproduced.

The values are sorted once and suffix sums of ``ln x`` give every candidate's ``α``
in O(N). Computing ``D`` for every candidate costs O(N²); on the CPU (NumPy, float64,
no thread pool, so timings stay stable on busy machines) the search bounds ``D`` from
below on a few points of each tail and computes it in full only for the candidates
whose bound does not rule them out (:mod:`convsvd.spectral._xmin_search`): the same
terms, so the same ``x_min``, bit for bit, as the exhaustive search, which is kept as
the reference (:func:`_exhaustive_fits`). torch (CUDA tensors, or on request) runs
the exhaustive search on (candidate × value) blocks of at most ``chunk_size``
entries, a few large array operations on a GPU. Many layers are fitted in one call
(:func:`fit_power_law_batch`).

``distribution="truncated_power_law"`` keeps the ``x_min`` chosen by the power-law
search (as ``powerlaw``'s ``Fit(...).truncated_power_law`` does) and fits
``p(x) ∝ x^(−α) e^(−λx)`` on that tail by numerical maximum likelihood, over the same
parameter domain as ``powerlaw`` (``α > 1``, ``λ > 0``); ``D`` is then the KS distance
of the truncated fit, computed with the same empirical-CDF convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from convsvd import _validate as check
from convsvd.errors import InputError
from convsvd.spectral._arrays import ArrayLike, DeviceLike
from convsvd.spectral._backend import Array, Backend, NumpyOps, Ops, ops_for
from convsvd.spectral._xmin_search import search_xmin

__all__ = [
    "DEFAULT_MIN_TAIL",
    "DISTRIBUTIONS",
    "FIT_STATUSES",
    "PowerLawFit",
    "fit_power_law",
    "fit_power_law_batch",
]

Distribution = Literal["power_law", "truncated_power_law"]
DISTRIBUTIONS: tuple[str, ...] = ("power_law", "truncated_power_law")
"""The distributions :func:`fit_power_law` can fit."""

FIT_STATUSES: tuple[str, ...] = (
    "ok",
    "too_few",
    "constant",
    "nonfinite",
    "nonpositive",
    "tpl_failed",
)
"""Every value of :attr:`PowerLawFit.status`.

``ok``: fitted. ``too_few``: fewer than ``min_tail`` positive values, or no candidate
``x_min`` (in ``xmin_range``) keeps ``min_tail`` values in its tail. ``constant``: the
positive values (or the tail at a fixed ``x_min``) are all equal. ``nonfinite``: NaN or
±Inf in the input. ``nonpositive``: no value is > 0. ``tpl_failed``: the truncated
power-law optimiser did not converge (α, λ and D are NaN; ``x_min`` and ``n_tail`` of
the power-law search are kept).
"""

DEFAULT_MIN_TAIL = 2
"""Default minimum number of values at or above ``x_min``.

Two is ``powerlaw`` 1.5's implicit rule (it never tries the largest distinct value, so
a tail always holds two values), so the default reproduces its fits exactly; raise it
(e.g. to 10) to refuse fits on a handful of eigenvalues.
"""

DEFAULT_CHUNK_SIZE = 2**16
"""Default maximum number of (candidate, value) pairs evaluated at once for ``D``."""


@dataclass(frozen=True)
class PowerLawFit:
    """One power-law fit of an ESD tail.

    Attributes
    ----------
    alpha : float
        Exponent α of the density ``x^(−α)`` (NaN when no fit could be made).
    xmin : float
        Lower cut-off of the tail.
    D : float
        Kolmogorov–Smirnov distance between the fitted and empirical tail CDFs.
    sigma : float
        Standard error ``(α − 1)/√n_tail`` of α (power law); NaN for the truncated
        power law, which has no closed form.
    n_tail : int
        Number of values ``≥ xmin`` (0 when no fit).
    n : int
        Number of positive values that entered the fit (all values for
        ``status="nonfinite"``).
    status : str
        One of :data:`FIT_STATUSES`.
    distribution : str
        ``"power_law"`` or ``"truncated_power_law"``.
    lam : float
        Rate λ of the exponential cut-off ``e^(−λx)`` (truncated power law only; NaN
        otherwise), in the units of the values.
    """

    alpha: float
    xmin: float
    D: float
    sigma: float
    n_tail: int
    n: int
    status: str
    distribution: str = "power_law"
    lam: float = math.nan

    @property
    def ok(self) -> bool:
        """Whether the fit was made (``status == "ok"``)."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, float | int | str]:
        """The fields as a plain dict (column name → value)."""
        return asdict(self)

    def to_frame(self) -> pd.DataFrame:
        """The fit as a one-row DataFrame whose columns are the fields."""
        return pd.DataFrame([self.to_dict()])


def fit_power_law(
    evals: ArrayLike,
    *,
    xmin: float | None = None,
    xmin_range: tuple[float, float] | None = None,
    min_tail: int = DEFAULT_MIN_TAIL,
    distribution: Distribution = "power_law",
    device: DeviceLike = None,
    backend: Backend = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> PowerLawFit:
    """Fit a power law to the tail of one set of eigenvalues.

    Parameters
    ----------
    evals : array-like, shape (n,)
        Eigenvalues (any order; any float dtype; NumPy, torch CPU/CUDA or a sequence).
        Computed in float64.
    xmin : float, optional
        Fixed cut-off: no search, α and D are computed at this ``x_min`` (which need not
        be one of the values).
    xmin_range : (float, float), optional
        Search only the candidates in ``[lo, hi]`` (``powerlaw``'s ``xmin=(lo, hi)``).
    min_tail : int, default :data:`DEFAULT_MIN_TAIL`
        Minimum number of values ``≥ x_min`` for a candidate to be considered (≥ 2).
    distribution : {"power_law", "truncated_power_law"}
        Model fitted at the chosen ``x_min``.
    device : str or torch.device, optional
        Where to compute (default: the tensor's device, else the CPU).
    backend : {"auto", "numpy", "torch"}, default "auto"
        Array library of the search: ``"auto"`` uses NumPy on the CPU and torch on a
        GPU. Both give the same fit.
    chunk_size : int
        Maximum number of (candidate, value) pairs held in memory at once by the
        exhaustive search of the torch backend (the NumPy search needs far fewer).

    Returns
    -------
    PowerLawFit
        Never raises on bad *data*: a fit that cannot be made has NaN fields and a
        ``status`` explaining why.

    Raises
    ------
    InputError
        If an *option* is invalid (e.g. both ``xmin`` and ``xmin_range``).

    Examples
    --------
    >>> import numpy as np
    >>> x = (1 - np.random.default_rng(0).random(1000)) ** (-1 / 1.5)
    >>> fit = fit_power_law(x)
    >>> fit.status, round(fit.alpha, 1)
    ('ok', 2.5)
    """
    return fit_power_law_batch(
        [evals],
        xmin=xmin,
        xmin_range=xmin_range,
        min_tail=min_tail,
        distribution=distribution,
        device=device,
        backend=backend,
        chunk_size=chunk_size,
    )[0]


def fit_power_law_batch(
    evals_list: Sequence[ArrayLike],
    *,
    xmin: float | None = None,
    xmin_range: tuple[float, float] | None = None,
    min_tail: int = DEFAULT_MIN_TAIL,
    distribution: Distribution = "power_law",
    device: DeviceLike = None,
    backend: Backend = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> list[PowerLawFit]:
    """Fit a power law to each of many sets of eigenvalues in one computation.

    The search over every candidate of every set runs as the same few array
    operations (on the concatenated sets in NumPy, on sets padded to a common length
    in torch); the result equals calling :func:`fit_power_law` on each set.

    Parameters
    ----------
    evals_list : sequence of array-like, each of shape (n_b,)
        One set of eigenvalues per layer; lengths may differ.
    xmin, xmin_range, min_tail, distribution, device, backend, chunk_size
        As in :func:`fit_power_law`, applied to every set.

    Returns
    -------
    list of PowerLawFit
        One fit per set, in order.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fits = fit_power_law_batch([rng.pareto(2.0, 300) + 1, rng.pareto(3.0, 500) + 1])
    >>> [f.status for f in fits]
    ['ok', 'ok']
    """
    return _fit_batch(
        evals_list,
        xmin=xmin,
        xmin_range=xmin_range,
        min_tail=min_tail,
        distribution=distribution,
        device=device,
        backend=backend,
        chunk_size=chunk_size,
        exhaustive=False,
    )


def _exhaustive_fits(evals_list: Sequence[ArrayLike], **options: Any) -> list[PowerLawFit]:
    """:func:`fit_power_law_batch` with the exhaustive O(N²) search on every backend.

    The reference for the bound-and-prune search of the NumPy backend
    (:mod:`convsvd.spectral._xmin_search`), which must give the very same fits.
    """
    defaults: dict[str, Any] = {
        "xmin": None,
        "xmin_range": None,
        "min_tail": DEFAULT_MIN_TAIL,
        "distribution": "power_law",
        "device": None,
        "backend": "auto",
        "chunk_size": DEFAULT_CHUNK_SIZE,
    }
    return _fit_batch(evals_list, **{**defaults, **options}, exhaustive=True)


def _fit_batch(
    evals_list: Sequence[ArrayLike],
    *,
    xmin: float | None,
    xmin_range: tuple[float, float] | None,
    min_tail: int,
    distribution: Distribution,
    device: DeviceLike,
    backend: Backend,
    chunk_size: int,
    exhaustive: bool,
) -> list[PowerLawFit]:
    """:func:`fit_power_law_batch`; ``exhaustive`` picks the reference search on NumPy."""
    _check_options(xmin, xmin_range, min_tail, distribution, chunk_size)
    if isinstance(evals_list, (np.ndarray, torch.Tensor)) and evals_list.ndim == 1:
        raise InputError("evals_list: expected a sequence of arrays, got one 1-D array")
    ops = ops_for(list(evals_list), backend, device)

    results: list[PowerLawFit | None] = [None] * len(evals_list)
    rows: list[Array] = []
    row_of: list[int] = []
    for i, values in enumerate(evals_list):
        try:
            x = ops.asarray(values)
        except (TypeError, ValueError) as exc:
            raise InputError(f"evals_list[{i}]: expected an array of real numbers ({exc})") from exc
        early = _screen(ops, x, min_tail)
        if isinstance(early, PowerLawFit):
            results[i] = early
        else:
            rows.append(early)
            row_of.append(i)

    if rows:
        if isinstance(ops, NumpyOps) and not exhaustive:
            xm, alpha, D, n_tail, found = _fit_rows_numpy(rows, xmin, xmin_range, min_tail)
        else:
            xm, alpha, D, n_tail, found = _fit_rows(ops, rows, xmin, xmin_range, min_tail, chunk_size)
        for r, i in enumerate(row_of):
            n, nt, a = len(rows[r]), int(n_tail[r]), float(alpha[r])
            if not found[r]:
                distinct = bool(ops.to_numpy(rows[r] != rows[r][0]).any())
                fit = _failed("too_few" if distinct else "constant", n)
            elif nt < min_tail:
                fit = _failed("too_few", n)
            elif not math.isfinite(a):
                fit = _failed("constant", n)
            else:
                fit = PowerLawFit(
                    alpha=a,
                    xmin=float(xm[r]),
                    D=float(D[r]),
                    sigma=(a - 1.0) / math.sqrt(nt),
                    n_tail=nt,
                    n=n,
                    status="ok",
                )
            if distribution == "truncated_power_law":
                fit = _truncated(fit, ops.to_numpy(rows[r]))
            results[i] = fit
    out = [r for r in results if r is not None]
    assert len(out) == len(evals_list)
    return out


# --------------------------------------------------------------------------- checks


def _check_options(
    xmin: float | None,
    xmin_range: tuple[float, float] | None,
    min_tail: int,
    distribution: str,
    chunk_size: int,
) -> None:
    if distribution not in DISTRIBUTIONS:
        raise InputError(f"distribution: expected one of {DISTRIBUTIONS}, got {distribution!r}")
    if xmin is not None and xmin_range is not None:
        raise InputError("xmin and xmin_range: give at most one of them")
    if xmin is not None and not (math.isfinite(float(xmin)) and float(xmin) > 0):
        raise InputError(f"xmin: expected a finite value > 0, got {xmin!r}")
    if xmin_range is not None:
        try:
            lo, hi = (float(v) for v in xmin_range)
        except (TypeError, ValueError) as exc:
            raise InputError(f"xmin_range: expected (lo, hi), got {xmin_range!r}") from exc
        if math.isnan(lo) or math.isnan(hi):
            raise InputError(f"xmin_range: expected numbers, got {xmin_range!r}")
    check.integer(min_tail, "min_tail", minimum=2)
    check.integer(chunk_size, "chunk_size", minimum=1)


def _failed(status: str, n: int) -> PowerLawFit:
    nan = math.nan
    return PowerLawFit(alpha=nan, xmin=nan, D=nan, sigma=nan, n_tail=0, n=n, status=status)


def _screen(ops: Ops[Any], x: Array, min_tail: int) -> PowerLawFit | Array:
    """Sorted positive values, or the failed fit explaining why there are none to fit."""
    if len(x) and not ops.isfinite_all(x):
        return _failed("nonfinite", len(x))
    pos = x[x > 0]
    if len(x) and len(pos) == 0:
        return _failed("nonpositive", 0)
    if len(pos) < min_tail:
        return _failed("too_few", len(pos))
    return ops.sort(pos)


# --------------------------------------------------------------------------- kernels

_Fits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""x_min, α, D, n_tail and whether a candidate existed, one entry per row."""


def _fit_rows_numpy(
    rows: list[np.ndarray],
    xmin: float | None,
    xmin_range: tuple[float, float] | None,
    min_tail: int,
) -> _Fits:
    """The fits of sorted positive rows in NumPy: bound-and-prune search, then α and D.

    Bitwise the fits of :func:`_fit_rows` (see :mod:`convsvd.spectral._xmin_search`
    and :func:`_fit_at_row`).
    """
    if xmin is not None:
        xm = np.full(len(rows), float(xmin))
        found = np.ones(len(rows), dtype=bool)
    else:
        best, found = search_xmin(rows, xmin_range, min_tail)
        xm = np.array([r[b] for r, b in zip(rows, best.tolist())])
    fits = [_fit_at_row(r, c) for r, c in zip(rows, xm.tolist())]
    alpha, D, n_tail = (np.array(v) for v in zip(*fits))
    return xm, alpha, D, n_tail, found


def _fit_rows(
    ops: Ops[Any],
    rows: list[Array],
    xmin: float | None,
    xmin_range: tuple[float, float] | None,
    min_tail: int,
    chunk_size: int,
) -> _Fits:
    """The fits of sorted positive rows, padded into one array, with the exhaustive search.

    What the torch backend runs (on a GPU the O(N²) search is a few large array
    operations); on NumPy, the reference for :func:`_fit_rows_numpy`.
    """
    V, L = ops.stack_padded(rows, max(len(r) for r in rows)), ops.ints([len(r) for r in rows])
    if xmin is not None:
        xm = ops.full((len(rows),), float(xmin))
        found = np.ones(len(rows), dtype=bool)
    else:
        xm, found_b = _search_xmin_exhaustive(ops, V, L, xmin_range, min_tail, chunk_size)
        found = ops.to_numpy(found_b)
    alpha, D, n_tail = (ops.to_numpy(v) for v in _fit_at(ops, V, L, xm))
    return ops.to_numpy(xm), alpha, D, n_tail, found


def _first_index(ops: Ops[Any], V: Array, valid: Array) -> Array:
    """For each sorted value, the index of the first occurrence of that value."""
    new = ops.true_like(valid)
    new[:, 1:] = V[:, 1:] != V[:, :-1]
    j = ops.arange(V.shape[1])[None, :]
    return ops.cummax(ops.where(new & valid, j, 0))


def _search_xmin_exhaustive(
    ops: Ops[Any],
    V: Array,
    L: Array,
    xmin_range: tuple[float, float] | None,
    min_tail: int,
    chunk_size: int,
) -> tuple[Array, Array]:
    """x_min minimising D for each row of V (B, M); and whether a candidate existed."""
    B, M = V.shape
    rows, j = ops.arange(B), ops.arange(M)
    valid = j[None, :] < L[:, None]
    logx = ops.log(V)
    first = _first_index(ops, V, valid)
    n_k = ops.clamp0_(ops.as_float(L[:, None] - j[None, :]))

    # Σ_{i≥k} ln(x_i/x_k) from suffix sums of ln(x/x_max): small terms are summed
    # first, so the short tails (the ones with small sums) are the accurate ones.
    y = ops.where(valid, logx - logx[rows, L - 1][:, None], 0.0)
    sumlog = ops.suffix_sum(y) - n_k * y
    positive = sumlog > 0
    alpha = 1.0 + n_k / ops.where(positive, sumlog, 1.0)

    in_range = valid
    if xmin_range is not None:
        lo, hi = sorted(float(v) for v in xmin_range)
        in_range = valid & (V >= lo) & (V <= hi)
    top = ops.rowmax(ops.where(in_range, V, -math.inf))
    cand = in_range & (first == j[None, :]) & (V < top[:, None]) & (n_k >= min_tail) & positive

    # D for every candidate, on blocks of candidates × values. Pairs with j < k are
    # clamped to a zero gap; padding repeats each row's maximum, so it only repeats
    # the gap at that maximum and needs no mask.
    first_f = ops.as_float(first)
    coef = 1.0 - alpha
    inv_n = 1.0 / ops.where(n_k > 0, n_k, 1.0)
    D_all = ops.full((B, M), math.inf)
    rb, rk = ops.nonzero(cand)
    rows_per_chunk = max(1, chunk_size // max(M, 1))
    for s in range(0, len(rb), rows_per_chunk):
        b, k = rb[s : s + rows_per_chunk], rk[s : s + rows_per_chunk]
        lo_col, hi_col = int(k.min()), int(L[b].max())
        gap = ops.take_rows(logx, b)[:, lo_col:hi_col]
        gap -= logx[b, k][:, None]
        ops.clamp0_(gap)
        gap *= coef[b, k][:, None]
        ops.expm1_(gap)
        emp = ops.take_rows(first_f, b)[:, lo_col:hi_col]
        emp -= ops.as_float(k)[:, None]
        ops.clamp0_(emp)
        emp *= inv_n[b, k][:, None]
        gap += emp  # |F_fit − F_emp| = |−expm1(·) − emp| = |expm1(·) + emp|
        D_all[b, k] = ops.nan_to_inf(ops.rowmax(ops.abs_(gap)))

    best = ops.rowargmin(D_all)  # first minimum: ties go to the smallest x_min
    return V[rows, best], ops.rowany(cand)


def _fit_at(ops: Ops[Any], V: Array, L: Array, xm: Array) -> tuple[Array, Array, Array]:
    """α, D and tail size of each row of V at its cut-off xm (B,), as powerlaw computes them."""
    valid = ops.arange(V.shape[1])[None, :] < L[:, None]
    tail = valid & (V >= xm[:, None])
    n = ops.rowsum(tail)
    ratio = ops.where(tail, ops.log(V / xm[:, None]), 0.0)
    # Summed from the top down, so padding (zeros past each row's end) cannot change
    # the rounding: a set fitted alone or in a batch gives the same bits.
    total = ops.suffix_sum(ratio)[:, 0]
    alpha = ops.where(total > 0, 1.0 + n / ops.where(total > 0, total, 1.0), math.inf)
    below = (L - n)[:, None]
    empirical = ops.as_float(_first_index(ops, V, valid) - below) / ops.where(n > 0, n, 1)[:, None]
    fitted = ops.neg_expm1_of_product((1.0 - alpha)[:, None], ratio)
    gap = ops.where(tail, ops.abs_(fitted - empirical), 0.0)
    D = ops.where(n >= 2, ops.rowmax(gap), math.nan)
    return alpha, D, n


def _fit_at_row(x: np.ndarray, cut: float) -> tuple[float, float, int]:
    """:func:`_fit_at` for one sorted row in NumPy, with the same operations in the same order.

    Bitwise equal to it: the tail is the suffix ``x ≥ cut``; the sum of ``ln(x/cut)``
    is the same sequential top-down sum (the zeros that :func:`_fit_at` adds below the
    tail and in the padding change no bit).
    """
    start = int(np.searchsorted(x, cut, side="left"))
    n = x.size - start
    if n == 0:
        return math.inf, math.nan, 0
    tail = x[start:]
    ratio = np.log(tail / cut)
    total = float(np.cumsum(ratio[::-1])[-1])
    alpha = 1.0 + n / total if total > 0 else math.inf
    if n < 2:
        return alpha, math.nan, n
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(tail[1:], tail[:-1], out=new[1:])
    empirical = np.maximum.accumulate(np.where(new, np.arange(n), 0)) / n
    with np.errstate(over="ignore", invalid="ignore"):
        fitted = -np.expm1((1.0 - alpha) * ratio)
    return alpha, float(np.max(np.abs(fitted - empirical))), n


# --------------------------------------------------------------------------- truncated


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_CUT = 64.0  # integrands are cut where they fall below e^-64 of their peak


def _tpl_limit(alpha: float, mu: float) -> float:
    """Upper limit in v = ln t for the integrands g, v·g, e^v·g defined below."""
    upper = math.log1p(_CUT / mu)
    if alpha > 2.0:
        upper = min(upper, _CUT / (alpha - 2.0))
    return upper


def _edges(alpha: float, mu: float, a: float, b: float) -> np.ndarray:
    """Panel edges on [a, b] for the composite Gauss–Legendre rule.

    The integrands are ``exp(f(v))`` times 1, v or e^v, with
    ``|f'(v)| ≤ α + μ e^v``; each panel is kept narrow enough that f changes by at
    most 4 across it (and at most 0.5 wide), where 16 nodes integrate to rounding.
    """
    edges = [a]
    v = a
    while v < b:
        v = min(b, v + min(0.5, 4.0 / (alpha + mu * math.exp(v))))
        edges.append(v)
    return np.asarray(edges)


def _rule(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights, shape (panels, 16), of the composite rule on ``edges``."""
    half = np.diff(edges)[:, None] / 2.0
    nodes = (edges[:-1, None] + half) + half * _GL_NODES[None, :]
    return nodes, half * _GL_WEIGHTS[None, :]


def _tpl_g(alpha: float, mu: float, v: np.ndarray) -> np.ndarray:
    """g(v) = exp((1 − α)v − μ(e^v − 1)), the integrand of J in v = ln t."""
    return np.exp((1.0 - alpha) * v - mu * np.expm1(v))


def _tpl_moments(alpha: float, mu: float) -> tuple[float, float, float]:
    """log J, E[ln t], E[t] for the density ∝ t^(−α) e^(−μt) on t ≥ 1.

    ``J(α, μ) = ∫_1^∞ t^(−α) e^(−μt) dt = e^(−μ) ∫_0^∞ g(v) dv`` with ``v = ln t``.
    """
    v, w = _rule(_edges(alpha, mu, 0.0, _tpl_limit(alpha, mu)))
    g = _tpl_g(alpha, mu, v) * w
    j0 = float(g.sum())
    return math.log(j0) - mu, float((v * g).sum()) / j0, float((np.exp(v) * g).sum()) / j0


def _tpl_survival(alpha: float, mu: float, t: np.ndarray) -> np.ndarray:
    """P(T ≥ t) under the truncated power law on t ≥ 1, for sorted distinct t ≥ 1."""
    v = np.log(t)
    grid = _edges(alpha, mu, 0.0, max(_tpl_limit(alpha, mu), float(v[-1])))
    edges = np.union1d(grid, v)
    nodes, weights = _rule(edges)
    panels = (_tpl_g(alpha, mu, nodes) * weights).sum(axis=1)
    above = np.concatenate([np.cumsum(panels[::-1])[::-1], [0.0]])
    return above[np.searchsorted(edges, v)] / above[0]


def _tpl_mle(tail: np.ndarray) -> tuple[float, float] | None:
    """Maximum-likelihood (α, μ) of the truncated power law on ``tail = x/x_min ≥ 1``.

    Minimises the mean negative log-likelihood ``α·mean(ln t) + μ·mean(t) + ln J(α, μ)``
    (``μ = λ x_min``) with L-BFGS-B and its exact gradient
    ``(mean ln t − E[ln t], mean t − E[t])`` over ``α ∈ (1, 10³]``, ``μ ∈ (0, 10⁶]``.
    Returns None if the optimiser does not converge.
    """
    from scipy.optimize import minimize

    mean_log, mean_t = float(np.mean(np.log(tail))), float(np.mean(tail))
    bounds = [(1.0 + 1e-9, 1e3), (1e-12, 1e6)]
    low, high = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        log_j, e_log, e_t = _tpl_moments(float(p[0]), float(p[1]))
        return float(p[0] * mean_log + p[1] * mean_t + log_j), np.array([mean_log - e_log, mean_t - e_t])

    start = np.array([1.0 + tail.size / np.sum(np.log(tail)), 1.0 / mean_t])
    try:
        for _ in range(2):  # a stalled line search is restarted once from where it stopped
            res = minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000},
            )
            if res.success or not np.all(np.isfinite(res.x)):
                break
            start = res.x
    except (ValueError, ArithmeticError, FloatingPointError):
        return None
    if not np.all(np.isfinite(res.x)):
        return None
    if not res.success:  # accept a stall only where the projected gradient vanishes
        grad = np.array(res.jac, dtype=np.float64)
        grad[(res.x <= low) & (grad > 0)] = 0.0
        grad[(res.x >= high) & (grad < 0)] = 0.0
        if np.max(np.abs(grad)) >= 1e-5:
            return None
    return float(res.x[0]), float(res.x[1])


def _truncated(fit: PowerLawFit, data: np.ndarray) -> PowerLawFit:
    """Refit ``fit``'s tail (``data`` sorted) with the truncated power law x^(−α) e^(−λx)."""
    if not fit.ok:
        return replace(fit, distribution="truncated_power_law")
    tail = data[data >= fit.xmin] / fit.xmin
    mle = _tpl_mle(tail)
    if mle is None:
        nan = math.nan
        return replace(
            fit, distribution="truncated_power_law", status="tpl_failed", alpha=nan, D=nan, sigma=nan
        )
    alpha, mu = mle
    distinct, first = np.unique(tail, return_index=True)
    fitted_cdf = 1.0 - _tpl_survival(alpha, mu, distinct)
    D = float(np.max(np.abs(fitted_cdf - first / tail.size)))
    return replace(
        fit, alpha=alpha, lam=mu / fit.xmin, D=D, sigma=math.nan, distribution="truncated_power_law"
    )
