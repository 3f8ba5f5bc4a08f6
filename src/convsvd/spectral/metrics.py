"""The per-layer spectral metrics row, the phenomenology label, and the model summary.

Everything here is a pure function of one layer's eigenvalues ``λ = σ²/N`` (``N`` the
larger side of the matrix whose ESD is pooled, see :mod:`convsvd.spectral.esd`) and of
the fits made on them; :func:`convsvd.spectral.spectrum` computes those for a model.

Metrics (one row per layer, :data:`FRAME_COLUMNS`):

* ``alpha``, ``xmin``, ``D``, ``sigma``, ``num_pl_spikes`` — the power-law fit of the
  tail (:func:`~convsvd.spectral.fit_power_law`; ``num_pl_spikes`` is its number of
  tail eigenvalues ``λ ≥ x_min``); ``alpha_weighted = α · log10 λ_max``.
* ``lambda_max``; ``log_norm = log10 ‖W‖_F² = log10 Σσ²``;
  ``log_spectral_norm = log10 λ_max``; ``stable_rank = Σλ / λ_max``; ``entropy`` —
  the normalised matrix entropy (:func:`~convsvd.spectral.matrix_entropy`), with the
  rank tolerance of the precision the spectrum was computed in.
* ``num_spikes``, ``mp_softrank = λ₊/λ_max`` — the Marchenko–Pastur fit
  (:func:`~convsvd.spectral.fit_marchenko_pastur`), when asked for.
* ``rand_distance``, ``rand_lambda_max`` — the randomised baseline: the distance
  between the layer's ESD and the ESD of its shuffled weights, and the largest
  eigenvalue of the shuffled layer (a "correlation trap" shows as a ``rand_lambda_max``
  far above the MP edge of the shuffled layer).

**Statuses** (:data:`LAYER_STATUSES`): ``ok``; ``nonfinite`` (NaN/Inf weights or
eigenvalues); ``skipped`` (not loaded: zero-size, non-float, unmaterialised);
``zero`` (all eigenvalues 0); ``too_few`` (fewer than ``min_evals`` eigenvalues);
``rank_one`` (at most one eigenvalue above ``RANK_TOL · λ_max``); ``fit_<status>``
(the power-law fit failed, e.g. ``fit_constant``). Any status but ``ok`` leaves every
fitted metric NaN; the norms are still given where they are defined.

**Phenomenology** (Martin & Mahoney's 5+1 phases, as a rule on α and the MP fit;
the first rule that applies wins):

1. ``rank-collapse`` — at least half of the eigenvalues are ≤ ``RANK_TOL · λ_max``
   (``RANK_TOL = 1e-5``, far above the rounding noise of float32 and float64 routes);
2. ``very heavy-tailed`` — ``α < 2``;
3. ``heavy-tailed`` — ``2 ≤ α ≤ 6``;
4. for ``α > 6`` the bulk is nearly Marchenko–Pastur, and the MP fit, when it was
   made (``mp=True``) and succeeded, tells the three MP-like phases apart:
   ``random-like`` — no spike above the Tracy–Widom threshold;
   ``bleeding-out`` — spikes, but ``λ_max ≤ 2 λ₊`` (``mp_softrank ≥ 0.5``): eigenvalues
   leak just past the bulk edge;
   ``bulk+spikes`` — spikes and ``λ_max > 2 λ₊``: well separated outliers.
   Without an MP fit every ``α > 6`` layer is ``random-like``.

A layer whose status is not ``ok`` has an empty label; a fitted layer whose tail has
fewer than ``HEADLINE_MIN_TAIL`` points is labelled ``too few tail points`` instead
of a phase (an α from a handful of points says nothing about the phase).

**Headline** (what enters α̂ and the means): an ``ok`` layer with at least
``HEADLINE_MIN_EVALS`` eigenvalues and a tail of at least ``HEADLINE_MIN_TAIL``
points. The others are still shown, with ``headline_reason`` saying why they are
left out. 32 eigenvalues is where the digits training study finds α̂ tracking the
test error (``docs/study-digits-training.md``); with 10 tail points the standard
error ``(α − 1)/√n_tail`` of α is still a third of ``α − 1``.

**Evidence for the tail** (``R_exp``, ``p_exp``): the normalised log-likelihood
ratio of the fitted power law against an exponential fitted to the same tail (both
with the same ``x_min``; Clauset, Shalizi & Newman 2009, Vuong's test, as the
``powerlaw`` package's ``distribution_compare``), and its two-sided p-value.
``R_exp > 0`` favours the power law; a large ``p_exp`` (say > 0.1) means the data
cannot tell the two apart and α should not be read as a heavy tail.

**Correlation trap** (``correlation_trap``, with the randomised baseline): the
largest eigenvalue of the shuffled layer lies above ``TRAP_FACTOR`` times the
Marchenko–Pastur edge ``λ₊ = v (1 + √(M/N))²`` of an i.i.d. matrix with the same
entry variance ``v = Σσ² / (M N n_matrices)``: a few large weights create a spike
that no arrangement of the entries removes (WeightWatcher's term).

**Conventions** (:data:`CONVENTIONS`, :func:`convention_scale`): ``λ = c·σ²`` with
``c = 1/N`` (``convsvd``, the default), ``c = 1/d`` with ``d`` the rows (``ddp``,
DeepDataProfiler 2.0.1) or ``c = 1`` (``ww``, WeightWatcher 0.7.7; ``1/2`` for conv
slices, its ``conv2d_norm``); ``alpha_weighted`` uses ``log10``, except ``ddp`` (natural
log). α, D, the stable rank and the entropy do not depend on the convention; ``λ_max``,
``x_min``, ``log_spectral_norm`` (always ``log10 λ_max``) and ``alpha_weighted`` do;
``log_norm`` is ``log10 Σσ²`` in all three.

**Summary** (:func:`summarize`): ``alpha_hat`` is the mean of ``alpha_weighted``
(``α̂ = mean over layers of α·log10 λ_max``, the design's definition); the other
entries are the means of the per-layer metrics. Only ``ok`` layers enter the means;
``n_failed`` counts the others. With the ``λ = σ²/N`` convention, ``λ_max < 1`` for
small layers, so ``log10 λ_max < 0`` and α̂ can be negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
import pandas as pd

from convsvd.errors import InputError
from convsvd.spectral.esd import matrix_entropy
from convsvd.spectral.mp import MPFit
from convsvd.spectral.powerlaw import PowerLawFit

__all__ = [
    "CONVENTIONS",
    "DEFAULT_MIN_EVALS",
    "FRAME_COLUMNS",
    "HEADLINE_MIN_EVALS",
    "HEADLINE_MIN_TAIL",
    "TOO_FEW_TAIL",
    "TRAP_FACTOR",
    "LAYER_STATUSES",
    "PHENOMENOLOGIES",
    "RANK_TOL",
    "SUMMARY_KEYS",
    "LayerSpectrum",
    "RandomBaseline",
    "classify",
    "convention_log",
    "convention_scale",
    "layer_status",
    "pl_vs_exponential",
    "summarize",
]

HEADLINE_MIN_EVALS = 32
"""Fewest eigenvalues for a layer to enter α̂ and the means (module docstring)."""

HEADLINE_MIN_TAIL = 10
"""Fewest tail points ``λ ≥ x_min`` for a layer to enter α̂, the means and a phase label."""

TRAP_FACTOR = 1.5
"""``rand_lambda_max`` above this many times the shuffled layer's MP edge is a correlation trap."""

TOO_FEW_TAIL = "too few tail points"
"""Phenomenology of a fitted layer whose tail is shorter than :data:`HEADLINE_MIN_TAIL`."""

DEFAULT_MIN_EVALS = 10
"""Fewest eigenvalues a layer needs for its fits (WeightWatcher's default too)."""

RANK_TOL = 1e-5
"""Eigenvalues ≤ ``RANK_TOL · λ_max`` count as zero (rank-one status, rank collapse)."""

COLLAPSE_FRACTION = 0.5
"""Share of (numerically) zero eigenvalues from which a layer is ``rank-collapse``."""

ALPHA_HEAVY = 2.0
"""Below it: ``very heavy-tailed``."""

ALPHA_MP = 6.0
"""Above it: one of the MP-like phases."""

BLEEDING_SOFTRANK = 0.5
"""``mp_softrank`` from which spikes are ``bleeding-out`` rather than ``bulk+spikes``."""

PHENOMENOLOGIES: tuple[str, ...] = (
    "random-like",
    "bleeding-out",
    "bulk+spikes",
    "heavy-tailed",
    "very heavy-tailed",
    "rank-collapse",
    TOO_FEW_TAIL,
)
"""Every phenomenology label (a layer that could not be fitted has ``""``)."""

LAYER_STATUSES: tuple[str, ...] = ("ok", "nonfinite", "skipped", "zero", "too_few", "rank_one", "fit_<status>")
"""Every layer status (``fit_<status>``: the power-law fit's own status, e.g. ``fit_constant``)."""

FRAME_COLUMNS: tuple[str, ...] = (
    "name",
    "view",
    "convention",
    "kind",
    "shape",
    "n_evals",
    "alpha",
    "alpha_weighted",
    "xmin",
    "D",
    "sigma",
    "num_pl_spikes",
    "lambda_max",
    "log_norm",
    "log_spectral_norm",
    "stable_rank",
    "entropy",
    "num_spikes",
    "mp_softrank",
    "rand_distance",
    "rand_lambda_max",
    "correlation_trap",
    "R_exp",
    "p_exp",
    "status",
    "phenomenology",
    "n",
    "input_size",
    "n_reason",
    "headline",
    "headline_reason",
)
"""Columns of :meth:`LayerSpectrum.to_frame` (``shape``: ``"m×n"`` of one pooled matrix; ``n``, ``input_size``:
``"h×w"`` grid of the operator view and the size the layer sees, ``""`` in the other views or when unknown)."""

CONVENTIONS: tuple[str, ...] = ("convsvd", "ddp", "ww")
"""Eigenvalue conventions (:func:`convention_scale`, :func:`convention_log`)."""

WW_EVALS_THRESH = 1e-5
"""WeightWatcher 0.7's ``EVALS_THRESH``: under the ``ww`` convention, only ``λ > 1e-5`` enter the fit."""

WW_CONV2D_NORM = 0.5
"""WeightWatcher 0.7's ``conv2d_norm`` (on by default): a conv slice is scaled by ``√(1/2)``, so ``λ = σ²/2``."""


def convention_scale(convention: str, shape: tuple[int, int], kind: str = "linear", view: str = "unfold") -> float:
    """The factor ``c`` of the eigenvalues ``λ = c·σ²`` in a convention.

    * ``"convsvd"``: ``c = 1/N``, ``N`` the larger side of the matrix (random-matrix normalisation);
    * ``"ddp"`` (DeepDataProfiler 2.0.1): ``c = 1/d``, ``d`` the number of rows (output channels
      per group; ``len(W)`` of the unfolded matrix);
    * ``"ww"`` (WeightWatcher 0.7.7): ``c = 1``, except conv layers in the ``slices`` view, whose
      slices WeightWatcher scales by ``√(1/2)`` (its default ``conv2d_norm``): ``c = 1/2``.

    Parameters
    ----------
    convention : {"convsvd", "ddp", "ww"}
    shape : (int, int)
        ``(rows, cols)`` of one pooled matrix.
    kind : str
        Layer kind (``"linear"``, ``"conv2d"``, ...).
    view : str
        Spectrum view.

    Returns
    -------
    float

    Examples
    --------
    >>> convention_scale("convsvd", (8, 32)), convention_scale("ddp", (8, 32)), convention_scale("ww", (8, 32))
    (0.03125, 0.125, 1.0)
    """
    if convention == "convsvd":
        return 1.0 / max(shape)
    if convention == "ddp":
        return 1.0 / shape[0]
    if convention == "ww":
        return WW_CONV2D_NORM if (view == "slices" and kind.startswith("conv")) else 1.0
    raise InputError(f"convention {convention!r}: expected one of {', '.join(CONVENTIONS)}")


def convention_log(convention: str) -> Callable[[float], float]:
    """The logarithm of ``α̂ = mean α·log λ_max``: natural for ``ddp``, base 10 otherwise.

    >>> convention_log("ddp")(math.e), convention_log("ww")(100.0)
    (1.0, 2.0)
    """
    if convention not in CONVENTIONS:
        raise InputError(f"convention {convention!r}: expected one of {', '.join(CONVENTIONS)}")
    return math.log if convention == "ddp" else math.log10

_MEAN_KEYS: tuple[str, ...] = (
    "alpha",
    "D",
    "lambda_max",
    "log_norm",
    "log_spectral_norm",
    "stable_rank",
    "entropy",
    "num_spikes",
    "mp_softrank",
    "rand_distance",
)

SUMMARY_KEYS: tuple[str, ...] = ("alpha_hat", *_MEAN_KEYS, "n_layers", "n_analysed", "n_headline", "n_failed",
                                 "alpha_hat_all")
"""Keys of :func:`summarize` (and columns of ``compare``, after the model's label)."""


@dataclass(frozen=True, eq=False)
class RandomBaseline:
    """The ESD of a layer whose weights were shuffled, compared with the layer's own.

    Attributes
    ----------
    evals : numpy.ndarray, shape (k,)
        Eigenvalues of the shuffled layer, ascending (same view and normalisation).
    distance : float
        Distance between the two ESDs (see :func:`convsvd.spectral.esd_distance`).
    lambda_max : float
        Largest eigenvalue of the shuffled layer.
    method : str
        The distance's method (``"ks"``, ``"js"`` or ``"ww"``).
    """

    evals: np.ndarray = field(repr=False)
    distance: float
    lambda_max: float
    method: str


@dataclass(frozen=True, eq=False)
class LayerSpectrum:
    """The ESD of one layer in one view, its fits and its metrics.

    Attributes
    ----------
    name, kind : str
        Layer name and kind (``"conv2d"``, ``"linear"``, ...; ``""`` if not loaded).
    view : str
        ``"unfold"``, ``"slices"`` or ``"operator"``.
    shape : (int, int)
        ``(rows, cols)`` of one of the pooled matrices; ``N = max(shape)``.
    n_matrices : int
        How many such matrices are pooled (groups, groups × taps, groups × frequencies).
    evals : numpy.ndarray, shape (n_evals,)
        The eigenvalues ``λ = c·σ²`` (``c = 1/N`` in the default convention), ascending, float64.
    fit : PowerLawFit or None
        The power-law fit (None when the layer was not fitted).
    mp : MPFit or None
        The Marchenko–Pastur fit, when asked for and possible.
    random : RandomBaseline or None
        The randomised baseline, when asked for and possible.
    status, phenomenology : str
        See the module docstring.
    lambda_max, log_norm, log_spectral_norm, stable_rank, entropy : float
        Norm-based metrics (NaN where undefined).
    n : tuple of int or None
        Operator view: the grid the spectrum was computed on (α depends on it).
    input_size : tuple of int or None
        Operator view: the spatial size the layer sees (None when unknown).
    n_reason : str
        Operator view: why ``n`` differs from ``input_size`` (budget, unknown size, ``n=`` given).
    convention : str
        Eigenvalue convention (:data:`CONVENTIONS`): it sets ``λ``'s scale and the logarithm
        of ``alpha_weighted``.
    """

    name: str
    kind: str
    view: str
    shape: tuple[int, int]
    n_matrices: int
    evals: np.ndarray = field(repr=False)
    fit: PowerLawFit | None
    mp: MPFit | None
    random: RandomBaseline | None
    status: str
    phenomenology: str
    lambda_max: float
    log_norm: float
    log_spectral_norm: float
    stable_rank: float
    entropy: float
    n: tuple[int, ...] | None = None
    input_size: tuple[int, ...] | None = None
    n_reason: str = ""
    convention: str = "convsvd"

    @property
    def ok(self) -> bool:
        """Whether every metric could be computed (``status == "ok"``)."""
        return self.status == "ok"

    @property
    def alpha(self) -> float:
        """Power-law exponent α (NaN unless ``ok``)."""
        return self.fit.alpha if self.ok and self.fit is not None else math.nan

    @property
    def alpha_weighted(self) -> float:
        """``α · log λ_max``: ``log10``, or the natural log under the ``ddp`` convention."""
        if not (self.ok and self.lambda_max > 0):
            return math.nan
        return self.alpha * convention_log(self.convention)(self.lambda_max)

    @property
    def headline_reason(self) -> str:
        """Why the layer is left out of α̂ and the means (``""`` when it enters them)."""
        if not self.ok:
            return f"status {self.status}"
        if self.evals.size < HEADLINE_MIN_EVALS:
            return f"{self.evals.size} eigenvalues (< {HEADLINE_MIN_EVALS})"
        n_tail = self.fit.n_tail if self.fit is not None else 0
        if n_tail < HEADLINE_MIN_TAIL:
            return f"{n_tail} tail points (< {HEADLINE_MIN_TAIL})"
        return ""

    @property
    def headline(self) -> bool:
        """Whether the layer enters α̂ and the means (:data:`HEADLINE_MIN_EVALS`, :data:`HEADLINE_MIN_TAIL`)."""
        return self.headline_reason == ""

    @property
    def pl_vs_exponential(self) -> tuple[float, float]:
        """``(R, p)``: normalised log-likelihood ratio power law vs exponential on the tail, and its p-value."""
        fit = self.fit
        if not (self.ok and fit is not None and fit.distribution == "power_law" and fit.n_tail >= 2):
            return math.nan, math.nan
        return pl_vs_exponential(self.evals, fit.alpha, fit.xmin)

    @property
    def correlation_trap(self) -> bool | None:
        """Whether the shuffled layer's λ_max is far above its MP edge (None without the baseline)."""
        if self.random is None or not self.ok or not self.shape:
            return None
        M, N = sorted(self.shape)
        total = float(np.sum(self.evals)) * N  # Σσ² = N Σλ
        v = total / (M * N * max(self.n_matrices, 1))
        edge = v * (1.0 + math.sqrt(M / N)) ** 2
        return bool(self.random.lambda_max > TRAP_FACTOR * edge)

    def row(self) -> dict[str, object]:
        """The metrics as one table row (keys: :data:`FRAME_COLUMNS`)."""
        nan = math.nan
        fit = self.fit if self.ok and self.fit is not None else None
        mp = self.mp if self.ok and self.mp is not None and self.mp.status in ("ok", "not_converged") else None
        rnd = self.random if self.ok else None
        return {
            "name": self.name,
            "view": self.view,
            "convention": self.convention,
            "kind": self.kind,
            "shape": f"{self.shape[0]}×{self.shape[1]}" if self.shape else "",
            "n_evals": int(self.evals.size),
            "alpha": fit.alpha if fit else nan,
            "alpha_weighted": self.alpha_weighted,
            "xmin": fit.xmin if fit else nan,
            "D": fit.D if fit else nan,
            "sigma": fit.sigma if fit else nan,
            "num_pl_spikes": fit.n_tail if fit else nan,
            "lambda_max": self.lambda_max,
            "log_norm": self.log_norm,
            "log_spectral_norm": self.log_spectral_norm,
            "stable_rank": self.stable_rank,
            "entropy": self.entropy,
            "num_spikes": mp.num_spikes if mp else nan,
            "mp_softrank": mp.mp_softrank if mp else nan,
            "rand_distance": rnd.distance if rnd else nan,
            "rand_lambda_max": rnd.lambda_max if rnd else nan,
            "correlation_trap": self.correlation_trap,
            "R_exp": self.pl_vs_exponential[0],
            "p_exp": self.pl_vs_exponential[1],
            "status": self.status,
            "phenomenology": self.phenomenology,
            "n": "×".join(map(str, self.n)) if self.n else "",
            "input_size": "×".join(map(str, self.input_size)) if self.input_size else "",
            "n_reason": self.n_reason,
            "headline": self.headline,
            "headline_reason": self.headline_reason,
        }

    def to_frame(self) -> pd.DataFrame:
        """The metrics as a one-row DataFrame with the columns :data:`FRAME_COLUMNS`."""
        return pd.DataFrame([self.row()], columns=list(FRAME_COLUMNS))


# --------------------------------------------------------------------------- rules


def layer_status(evals: np.ndarray, min_evals: int = DEFAULT_MIN_EVALS) -> str:
    """Status of a layer before its fit: ``ok`` or why it cannot be fitted.

    Parameters
    ----------
    evals : numpy.ndarray, shape (k,)
        Eigenvalues (any order).
    min_evals : int
        Fewest eigenvalues needed.

    Returns
    -------
    str
        ``"nonfinite"``, ``"zero"``, ``"too_few"``, ``"rank_one"`` or ``"ok"``.

    Examples
    --------
    >>> layer_status(np.array([0.0, 0.0, 2.0]), min_evals=2)
    'rank_one'
    """
    lam = np.asarray(evals, dtype=np.float64)
    if lam.size and not np.isfinite(lam).all():
        return "nonfinite"
    if lam.size == 0 or lam.max() <= 0:
        return "zero" if lam.size else "too_few"
    if lam.size < min_evals:
        return "too_few"
    if int(np.count_nonzero(lam > RANK_TOL * lam.max())) <= 1:
        return "rank_one"
    return "ok"


def pl_vs_exponential(evals: np.ndarray, alpha: float, xmin: float) -> tuple[float, float]:
    """Vuong's test of a power law against an exponential on the tail ``λ ≥ x_min``.

    Both are fitted to the same tail by maximum likelihood: the power law has density
    ``(α−1)/x_min · (λ/x_min)^(−α)`` (α given), the exponential ``μ e^(−μ(λ−x_min))`` with
    ``μ = 1/mean(λ − x_min)``. With ``ℓ_i`` the per-point log-likelihood differences,
    ``R = Σℓ_i / (√n · sd(ℓ))`` and ``p = erfc(|Σℓ_i| / (√(2n) · sd(ℓ)))``, as the
    ``powerlaw`` package's ``distribution_compare(..., normalized_ratio=True)``.

    Returns
    -------
    (float, float)
        ``(R, p)``; NaN when the tail has fewer than two points or no spread.

    Examples
    --------
    >>> lam = (1 - np.random.default_rng(0).random(500)) ** (-1 / 1.5)   # α = 2.5
    >>> R, p = pl_vs_exponential(lam, 2.5, 1.0)
    >>> R > 0 and p < 0.01
    True
    """
    lam = np.asarray(evals, dtype=np.float64)
    x = lam[lam >= xmin]
    n = x.size
    if n < 2 or not (math.isfinite(alpha) and alpha > 1 and xmin > 0):
        return math.nan, math.nan
    spread = float(np.mean(x - xmin))
    if spread <= 0:
        return math.nan, math.nan
    mu = 1.0 / spread
    l_pl = math.log((alpha - 1) / xmin) - alpha * np.log(x / xmin)
    l_exp = math.log(mu) - mu * (x - xmin)
    d = l_pl - l_exp
    sd = float(np.std(d))
    if not sd > 0:
        return math.nan, math.nan
    total = float(np.sum(d))
    return total / (math.sqrt(n) * sd), float(math.erfc(abs(total) / (math.sqrt(2 * n) * sd)))


def classify(evals: np.ndarray, alpha: float, mp: MPFit | None = None, n_tail: int | None = None) -> str:
    """The phenomenology label of a fitted layer (rule in the module docstring).

    Parameters
    ----------
    evals : numpy.ndarray, shape (k,)
        Eigenvalues.
    alpha : float
        Power-law exponent (NaN gives ``""``).
    mp : MPFit, optional
        Marchenko–Pastur fit, to tell the MP-like phases apart when ``α > 6``.
    n_tail : int, optional
        Tail points of the fit; fewer than :data:`HEADLINE_MIN_TAIL` give ``too few tail points``.

    Returns
    -------
    str
        One of :data:`PHENOMENOLOGIES`, or ``""``.

    Examples
    --------
    >>> classify(np.linspace(1.0, 2.0, 50), alpha=3.1)
    'heavy-tailed'
    """
    lam = np.asarray(evals, dtype=np.float64)
    if not math.isfinite(alpha) or lam.size == 0 or lam.max() <= 0:
        return ""
    if np.mean(lam <= RANK_TOL * lam.max()) >= COLLAPSE_FRACTION:
        return "rank-collapse"
    if n_tail is not None and n_tail < HEADLINE_MIN_TAIL:
        return TOO_FEW_TAIL
    if alpha < ALPHA_HEAVY:
        return "very heavy-tailed"
    if alpha <= ALPHA_MP:
        return "heavy-tailed"
    if mp is None or mp.status not in ("ok", "not_converged") or mp.num_spikes == 0:
        return "random-like"
    return "bleeding-out" if mp.mp_softrank >= BLEEDING_SOFTRANK else "bulk+spikes"


class Norms(TypedDict):
    """The norm-based metrics of one ESD (:func:`norms`)."""

    lambda_max: float
    log_norm: float
    log_spectral_norm: float
    stable_rank: float
    entropy: float


def norms(evals: np.ndarray, N: int, eps: float, scale: float | None = None) -> Norms:
    """``lambda_max, log_norm, log_spectral_norm, stable_rank, entropy`` of one ESD.

    Parameters
    ----------
    evals : numpy.ndarray, shape (k,)
        Eigenvalues ``λ = σ²/N``.
    N : int
        The larger side of one pooled matrix.
    eps : float
        Machine epsilon of the precision the spectrum was computed in (the entropy's
        rank tolerance is ``σ_max · N · eps``).
    scale : float, optional
        ``c`` of ``λ = c·σ²`` (default ``1/N``); ``log_norm`` is ``log10 Σσ²`` in every convention.

    Returns
    -------
    Norms
        A dict; NaN where undefined (no positive or a non-finite eigenvalue).
    """
    lam = np.asarray(evals, dtype=np.float64)
    nan = math.nan
    if lam.size == 0 or not np.isfinite(lam).all() or lam.max() <= 0:
        return {"lambda_max": nan, "log_norm": nan, "log_spectral_norm": nan, "stable_rank": nan, "entropy": nan}
    top = float(lam.max())
    total = float(lam.sum())
    inv = float(N) if scale is None else 1.0 / scale
    sv = np.sqrt(np.clip(lam, 0.0, None) * inv)
    return {
        "lambda_max": top,
        "log_norm": math.log10(total * inv),
        "log_spectral_norm": math.log10(top),
        "stable_rank": total / top,
        "entropy": _entropy(sv, N, eps),
    }


def _entropy(sv: np.ndarray, N: int, eps: float) -> float:
    """matrix_entropy with the rank tolerance of the computing precision ``eps``."""
    if eps >= float(np.finfo(np.float32).eps):
        return matrix_entropy(sv.astype(np.float32), N)
    return matrix_entropy(sv, N)


def summarize(layers: list[LayerSpectrum] | tuple[LayerSpectrum, ...]) -> dict[str, float | int]:
    """Model summary: α̂ and the means of the metrics over the headline layers.

    Parameters
    ----------
    layers : sequence of LayerSpectrum

    Returns
    -------
    dict
        Keys :data:`SUMMARY_KEYS`: ``alpha_hat`` (mean of ``α·log10 λ_max`` over the
        headline layers, see the module docstring), the mean of each metric over them
        (NaN when none has it), ``n_layers``, ``n_analysed`` (``ok`` layers),
        ``n_headline`` (the layers in the means), ``n_failed`` (not ``ok``) and
        ``alpha_hat_all`` (α̂ over every ``ok`` layer, for comparison).
    """
    ok = [layer.row() for layer in layers if layer.ok]
    rows = [r for r in ok if r["headline"]]
    out: dict[str, float | int] = {"alpha_hat": _mean([r["alpha_weighted"] for r in rows])}
    for key in _MEAN_KEYS:
        out[key] = _mean([r[key] for r in rows])
    out["n_layers"] = len(layers)
    out["n_analysed"] = len(ok)
    out["n_headline"] = len(rows)
    out["n_failed"] = len(layers) - len(ok)
    out["alpha_hat_all"] = _mean([r["alpha_weighted"] for r in ok])
    return out


def _mean(values: list[object]) -> float:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)  # type: ignore[arg-type]
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan
