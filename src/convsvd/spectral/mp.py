"""Marchenko–Pastur (MP) fit of the bulk of an ESD, and the spikes above it.

Convention (the one of :mod:`convsvd.spectral.esd`): ``W`` is ``N × M`` with ``N`` the
larger side, ``Q = N/M ≥ 1``, and the ESD is the ``M`` eigenvalues ``λ = σ_i(W)²/N``.
If the entries of ``W`` are i.i.d. with variance ``σ²``, the ESD tends to the MP law

    ρ(λ) = √((λ₊ − λ)(λ − λ₋)) / (2π σ² y λ)   on [λ₋, λ₊],   y = 1/Q,
    λ± = σ² (1 ± 1/√Q)².

Its CDF has a closed form (used for quantiles): with ``x = λ/σ²``,
``x = (1 + y) − 2√y cos θ`` for ``θ ∈ [0, π]``,

    F = [2√y sin θ + (1 + y) θ − 2(1 − y) arctan((1 + √y)/(1 − √y) · tan(θ/2))] / (2π y).

**Fit method** (:func:`fit_marchenko_pastur`): a robust quantile–quantile regression
of the bulk, iterated away from the spikes. The sorted bulk values ``b_(i)`` at
plotting positions ``p_i = (i − ½)/m`` inside ``quantile_range`` (default 5 %–95 %, so
edge fluctuations and outliers carry no weight) are regressed through the origin on
the unit-variance MP quantiles ``q_i(Q)``: ``σ² = Σ q_i b_(i) / Σ q_i²``. With
``fit_Q=True``, ``Q`` is chosen to minimise the residual sum of squares (a log-spaced
grid over ``[1, 10⁴]`` refined by bounded Brent). Then every eigenvalue above the
threshold ``λ₊ + t·s_TW`` is a spike, the bulk is what is left, and the fit is repeated
until the set of spikes no longer changes (at most ``max_iter`` times).

**Tracy–Widom margin**: for a Gaussian ``N × M`` matrix (Johnstone 2001) the largest
eigenvalue of ``WᵀW`` fluctuates around ``(√N + √M)²`` on the scale
``(√N + √M)(1/√N + 1/√M)^{1/3}``; dividing by ``N`` (our normalisation) and writing
``N = QM`` gives the scale of ``λ_max`` around ``λ₊``:

    s_TW = σ² · Q^{-1/2} · M^{-2/3} · (1 + Q^{-1/2})^{4/3}.

The default ``t = 3`` lies well beyond the 99 % quantile of the TW₁ law (≈ 2.02), so
a pure-noise matrix rarely shows a spurious spike; the margin also absorbs the small
error of the fitted ``σ²`` (``λ₊`` is about ``Q^{1/2} M^{2/3}`` TW scales from 0, so a
relative error δ in ``σ²`` moves ``λ₊`` by ``δ·Q^{1/2} M^{2/3}`` scales).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike as NpArrayLike

from convsvd.errors import InputError
from convsvd.spectral._arrays import ArrayLike, as_float64_numpy

__all__ = [
    "DEFAULT_TW_MARGIN",
    "MP_STATUSES",
    "MPFit",
    "fit_marchenko_pastur",
    "mp_cdf",
    "mp_density",
    "mp_edges",
    "mp_quantile",
    "tracy_widom_scale",
]

DEFAULT_TW_MARGIN = 3.0
"""Default number of Tracy–Widom scales above ``λ₊`` before an eigenvalue is a spike."""

MP_STATUSES: tuple[str, ...] = ("ok", "too_few", "nonfinite", "nonpositive", "not_converged")
"""Every value of :attr:`MPFit.status`.

``ok``: fitted. ``too_few``: fewer than :data:`MIN_EVALS` eigenvalues, or fewer than
two bulk values inside ``quantile_range``. ``nonfinite``: NaN or ±Inf present.
``nonpositive``: no eigenvalue is > 0. ``not_converged``: the spike set still changed
after ``max_iter`` refits (the last fit is reported).
"""

MIN_EVALS = 4
"""Smallest number of eigenvalues :func:`fit_marchenko_pastur` attempts to fit."""

_Q_MAX = 1e4


@dataclass(frozen=True)
class MPFit:
    """Marchenko–Pastur fit of one ESD.

    Attributes
    ----------
    sigma2 : float
        Fitted entry variance σ².
    Q : float
        Aspect ratio ``N/M ≥ 1`` (given, or fitted with ``fit_Q=True``).
    lambda_minus, lambda_plus : float
        Bulk edges ``σ²(1 ∓ 1/√Q)²``.
    threshold : float
        ``λ₊ + t·s_TW``: eigenvalues above it are spikes.
    num_spikes : int
        Number of spikes.
    spikes : tuple of float
        The spike eigenvalues, descending.
    mp_softrank : float
        ``λ₊ / λ_max``.
    status : str
        One of :data:`MP_STATUSES`; NaN fields unless ``"ok"`` or ``"not_converged"``.
    """

    sigma2: float
    Q: float
    lambda_minus: float
    lambda_plus: float
    threshold: float
    num_spikes: int
    spikes: tuple[float, ...]
    mp_softrank: float
    status: str

    @property
    def ok(self) -> bool:
        """Whether the fit converged (``status == "ok"``)."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, object]:
        """The fields as a plain dict (``spikes`` as a tuple)."""
        return asdict(self)

    def to_frame(self) -> pd.DataFrame:
        """The fit as a one-row DataFrame; ``spikes`` is one cell holding a tuple."""
        return pd.DataFrame([self.to_dict()])


# ---------------------------------------------------------------------- the MP law


def _check_law(sigma2: float, Q: float) -> tuple[float, float]:
    s2, q = float(sigma2), float(Q)
    if not (math.isfinite(s2) and s2 > 0):
        raise InputError(f"sigma2: expected a finite value > 0, got {sigma2!r}")
    if not (math.isfinite(q) and q >= 1):
        raise InputError(f"Q: expected N/M >= 1 with N the larger side, got {Q!r}")
    return s2, q


def mp_edges(sigma2: float, Q: float) -> tuple[float, float]:
    """Edges ``(λ₋, λ₊) = σ²(1 ∓ 1/√Q)²`` of the MP bulk.

    Parameters
    ----------
    sigma2 : float
        Entry variance σ² (> 0).
    Q : float
        Aspect ratio ``N/M ≥ 1``.

    Returns
    -------
    (float, float)

    Examples
    --------
    >>> mp_edges(1.0, 4.0)
    (0.25, 2.25)
    """
    s2, q = _check_law(sigma2, Q)
    r = 1.0 / math.sqrt(q)
    return s2 * (1.0 - r) ** 2, s2 * (1.0 + r) ** 2


def mp_density(x: NpArrayLike, sigma2: float, Q: float) -> np.ndarray:
    """MP density ``ρ(λ)`` of the ESD ``λ = σ_i²/N`` (zero outside the bulk).

    Parameters
    ----------
    x : array-like, any shape
        Points λ.
    sigma2 : float
        Entry variance σ².
    Q : float
        Aspect ratio ``N/M ≥ 1``.

    Returns
    -------
    numpy.ndarray, shape of ``x``, float64
        Integrates to 1 over ``[λ₋, λ₊]``; at ``Q = 1`` it diverges like ``λ^{-1/2}`` at 0.

    Examples
    --------
    >>> float(mp_density(1.0, 1.0, 4.0).round(4))
    0.6164
    """
    s2, q = _check_law(sigma2, Q)
    lo, hi = mp_edges(s2, q)
    xs = np.asarray(x, dtype=np.float64)
    y = 1.0 / q
    inside = (xs > lo) & (xs < hi) & (xs > 0)
    safe = np.where(inside, xs, 1.0)
    dens = np.sqrt(np.clip((hi - safe) * (safe - lo), 0.0, None)) / (2.0 * math.pi * s2 * y * safe)
    return np.where(inside, dens, 0.0)


def _cdf_theta(theta: np.ndarray, y: float) -> np.ndarray:
    """Unit-variance MP CDF as a function of θ, where x = (1 + y) − 2√y cos θ."""
    sy = math.sqrt(y)
    out = 2.0 * sy * np.sin(theta) + (1.0 + y) * theta
    if y < 1.0:
        out = out - 2.0 * (1.0 - y) * np.arctan((1.0 + sy) / (1.0 - sy) * np.tan(theta / 2.0))
    return np.clip(out / (2.0 * math.pi * y), 0.0, 1.0)


def mp_cdf(x: NpArrayLike, sigma2: float, Q: float) -> np.ndarray:
    """MP cumulative distribution function (closed form).

    Parameters
    ----------
    x : array-like, any shape
    sigma2 : float
    Q : float
        Aspect ratio ``N/M ≥ 1``.

    Returns
    -------
    numpy.ndarray, shape of ``x``, float64 in [0, 1]

    Examples
    --------
    >>> float(mp_cdf(2.25, 1.0, 4.0))
    1.0
    """
    s2, q = _check_law(sigma2, Q)
    y = 1.0 / q
    xs = np.asarray(x, dtype=np.float64) / s2
    cos = np.clip(((1.0 + y) - xs) / (2.0 * math.sqrt(y)), -1.0, 1.0)
    return _cdf_theta(np.arccos(cos), y)


def mp_quantile(p: NpArrayLike, sigma2: float, Q: float) -> np.ndarray:
    """Inverse of :func:`mp_cdf` (vectorised bisection on θ).

    Exact to rounding inside the bulk; near the edges the CDF is flat (it behaves like
    ``(λ₊ − λ)^{3/2}``), so the result there is accurate to about ``1e-10 σ²``;
    ``p = 0`` and ``p = 1`` return the edges exactly.

    Parameters
    ----------
    p : array-like, any shape, values in [0, 1]
    sigma2 : float
    Q : float

    Returns
    -------
    numpy.ndarray, shape of ``p``, float64

    Examples
    --------
    >>> float(mp_quantile(1.0, 1.0, 4.0))
    2.25
    >>> round(float(mp_quantile(0.5, 1.0, 4.0)), 4)
    0.916
    """
    s2, q = _check_law(sigma2, Q)
    y = 1.0 / q
    ps = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    lo = np.zeros_like(ps)
    hi = np.full_like(ps, math.pi)
    for _ in range(60):
        mid = (lo + hi) / 2.0
        below = _cdf_theta(mid, y) < ps
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    theta = np.where(ps <= 0.0, 0.0, np.where(ps >= 1.0, math.pi, (lo + hi) / 2.0))
    return s2 * ((1.0 + y) - 2.0 * math.sqrt(y) * np.cos(theta))


def tracy_widom_scale(sigma2: float, Q: float, M: int) -> float:
    """Scale of the Tracy–Widom fluctuations of ``λ_max`` around ``λ₊``.

    ``s_TW = σ² Q^{-1/2} M^{-2/3} (1 + Q^{-1/2})^{4/3}`` (module docstring).

    Parameters
    ----------
    sigma2 : float
    Q : float
        Aspect ratio ``N/M ≥ 1``.
    M : int
        The smaller side of the matrix.

    Returns
    -------
    float

    Examples
    --------
    >>> round(tracy_widom_scale(1.0, 1.0, 1000), 4)
    0.0252
    """
    s2, q = _check_law(sigma2, Q)
    if int(M) < 1:
        raise InputError(f"M: expected a positive integer, got {M!r}")
    r = 1.0 / math.sqrt(q)
    return s2 * r * float(M) ** (-2.0 / 3.0) * (1.0 + r) ** (4.0 / 3.0)


# ---------------------------------------------------------------------- the fit


def _qq_fit(bulk: np.ndarray, Q: float, quantile_range: tuple[float, float]) -> tuple[float, float]:
    """σ² by regression of the sorted bulk on unit MP quantiles; and the RSS."""
    m = bulk.size
    p = (np.arange(m) + 0.5) / m
    sel = (p >= quantile_range[0]) & (p <= quantile_range[1])
    q = mp_quantile(p[sel], 1.0, Q)
    b = bulk[sel]
    s2 = float(q @ b / (q @ q))
    return s2, float(np.sum((b - s2 * q) ** 2))


def _fit_Q(bulk: np.ndarray, quantile_range: tuple[float, float]) -> float:
    from scipy.optimize import minimize_scalar

    def rss(log_q: float) -> float:
        return _qq_fit(bulk, math.exp(log_q), quantile_range)[1]

    grid = np.linspace(0.0, math.log(_Q_MAX), 49)
    values = [rss(g) for g in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = minimize_scalar(rss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
    best = float(res.x) if res.fun <= values[i] else float(grid[i])
    return math.exp(best)


def _nan_fit(status: str, Q: float) -> MPFit:
    nan = math.nan
    return MPFit(nan, Q, nan, nan, nan, 0, (), nan, status)


def fit_marchenko_pastur(
    evals: ArrayLike,
    Q: float,
    *,
    M: int | None = None,
    fit_Q: bool = False,
    tw_margin: float = DEFAULT_TW_MARGIN,
    quantile_range: tuple[float, float] = (0.05, 0.95),
    max_iter: int = 50,
) -> MPFit:
    """Fit the MP law to the bulk of an ESD and count the spikes above it.

    Parameters
    ----------
    evals : array-like, shape (n,)
        Eigenvalues ``λ = σ_i²/N`` (any order; the ``M`` nonzero ones of one matrix,
        or several matrices' pooled).
    Q : float
        Aspect ratio ``N/M ≥ 1`` of the matrix (the start value when ``fit_Q``).
    M : int, optional
        Smaller side of one matrix, for the Tracy–Widom scale (default: ``len(evals)``;
        pass it when ``evals`` pools several matrices).
    fit_Q : bool, default False
        Also fit ``Q``.
    tw_margin : float, default :data:`DEFAULT_TW_MARGIN`
        Spikes are the eigenvalues above ``λ₊ + tw_margin · s_TW``.
    quantile_range : (float, float), default (0.05, 0.95)
        Plotting positions of the bulk used in the regression.
    max_iter : int, default 50
        Maximum number of refits.

    Returns
    -------
    MPFit
        Never raises on bad data: see :data:`MP_STATUSES`.

    Raises
    ------
    InputError
        If ``Q < 1`` or another option is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.random.default_rng(0).standard_normal((1000, 500))
    >>> fit = fit_marchenko_pastur(np.linalg.svd(W, compute_uv=False) ** 2 / 1000, Q=2.0)
    >>> fit.num_spikes, round(fit.sigma2, 2)
    (0, 1.0)
    """
    q0 = float(Q)
    if not (math.isfinite(q0) and q0 >= 1):
        raise InputError(f"Q: expected N/M >= 1 with N the larger side, got {Q!r}")
    lo_q, hi_q = (float(v) for v in quantile_range)
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise InputError(f"quantile_range: expected 0 <= lo < hi <= 1, got {quantile_range!r}")
    if not (math.isfinite(float(tw_margin)) and tw_margin >= 0):
        raise InputError(f"tw_margin: expected a finite value >= 0, got {tw_margin!r}")
    if int(max_iter) < 1:
        raise InputError(f"max_iter: expected a positive integer, got {max_iter!r}")

    lam = np.sort(as_float64_numpy(evals, "evals"))
    if lam.size and not np.isfinite(lam).all():
        return _nan_fit("nonfinite", q0)
    if lam.size < MIN_EVALS:
        return _nan_fit("too_few", q0)
    if lam[-1] <= 0:
        return _nan_fit("nonpositive", q0)
    m_side = int(M) if M is not None else lam.size
    if m_side < 1:
        raise InputError(f"M: expected a positive integer, got {M!r}")

    bulk = lam
    q = q0
    status = "not_converged"
    for _ in range(int(max_iter)):
        p = (np.arange(bulk.size) + 0.5) / bulk.size
        if int(((p >= lo_q) & (p <= hi_q)).sum()) < 2:
            return _nan_fit("too_few", q)
        if fit_Q:
            q = _fit_Q(bulk, (lo_q, hi_q))
        s2, _ = _qq_fit(bulk, q, (lo_q, hi_q))
        if not s2 > 0:
            return _nan_fit("nonpositive", q)
        lam_minus, lam_plus = mp_edges(s2, q)
        threshold = lam_plus + float(tw_margin) * tracy_widom_scale(s2, q, m_side)
        new_bulk = lam[lam <= threshold]
        if new_bulk.size == bulk.size:
            status = "ok"
            break
        bulk = new_bulk
        if bulk.size == 0:
            return _nan_fit("too_few", q)

    spikes = tuple(float(v) for v in lam[lam > threshold][::-1])
    return MPFit(
        sigma2=s2,
        Q=q,
        lambda_minus=lam_minus,
        lambda_plus=lam_plus,
        threshold=threshold,
        num_spikes=len(spikes),
        spikes=spikes,
        mp_softrank=lam_plus / float(lam[-1]),
        status=status,
    )
