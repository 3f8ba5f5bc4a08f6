"""Spectral baselines in one place: is a layer's ESD distinguishable from its shuffle and its initialisation?

The paper reads heavy-tailed ESDs as learned structure and Marchenko–Pastur ESDs as
randomness. :func:`spectral_baselines` tests that per layer against two null models:

* **shuffle** — the layer's own entries, shuffled (``spectrum(random_baseline=True)``):
  same entry distribution, no structure;
* **init** — the layer at initialisation (``init=`` another model with the same layers).

Per layer it reports the Kolmogorov–Smirnov distance ``D`` between the trained ESD and
each baseline, the two-sample KS p-value (:func:`scipy.stats.ks_2samp`; nominal only:
eigenvalues of one matrix are not independent draws), and the verdict by a **shuffle-null
threshold**: the largest KS distance between the baseline shuffle (seed ``seed``) and
``n_null`` further shuffles (seeds ``seed+1 …``) of the same layer — the spread of ESDs of
structure-free matrices with exactly these entries. A layer is *distinguishable* from a
baseline when its ``D`` exceeds that threshold (and, with ``alpha_level``, the nominal
p-value is below it). The power-law α and the phenomenology of the trained, shuffled and
initial layers are given beside.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from convsvd.errors import InputError
from convsvd.spectral.analysis import SpectrumResult, spectrum
from convsvd.spectral.esd import esd_distance
from convsvd.spectral.powerlaw import fit_power_law_batch

__all__ = ["BASELINE_COLUMNS", "LayerBaseline", "SpectralBaselines", "spectral_baselines"]

BASELINE_COLUMNS: tuple[str, ...] = (
    "name", "n_evals", "convention", "alpha", "phenomenology",
    "alpha_shuffle", "ks_shuffle", "p_shuffle", "null_threshold", "distinguishable_from_shuffle",
    "alpha_init", "phenomenology_init", "ks_init", "p_init", "distinguishable_from_init", "test",
)
"""Columns of :meth:`SpectralBaselines.to_frame`."""


@dataclass(frozen=True, eq=False)
class LayerBaseline:
    """One layer's ESD against its shuffle and its initialisation.

    Attributes
    ----------
    name : str
    evals, shuffle_evals, init_evals : numpy.ndarray
        Ascending eigenvalues (``init_evals`` empty without ``init``).
    null_ks : numpy.ndarray, shape (n_null,)
        KS distances between the baseline shuffle and the further shuffles.
    row_ : dict
        The table row (keys :data:`BASELINE_COLUMNS`).
    """

    name: str
    evals: np.ndarray = field(repr=False)
    shuffle_evals: np.ndarray = field(repr=False)
    init_evals: np.ndarray = field(repr=False)
    null_ks: np.ndarray = field(repr=False)
    row_: dict[str, object] = field(repr=False)


@dataclass(frozen=True, eq=False)
class SpectralBaselines:
    """Per-layer verdicts (:func:`spectral_baselines`).

    Attributes
    ----------
    layers : tuple of LayerBaseline
    trained, init : SpectrumResult (``init`` None when not given)
    options : dict
    """

    layers: tuple[LayerBaseline, ...]
    trained: SpectrumResult = field(repr=False)
    init: SpectrumResult | None = field(repr=False)
    options: dict[str, object] = field(default_factory=dict)

    def __getitem__(self, name: str) -> LayerBaseline:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise InputError(f"layer {name!r}: not in this result")

    def to_frame(self) -> pd.DataFrame:
        """One row per layer, columns :data:`BASELINE_COLUMNS`."""
        return pd.DataFrame([layer.row_ for layer in self.layers], columns=list(BASELINE_COLUMNS))


def _ks_p(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    if a.size == 0 or b.size == 0:
        return math.nan
    with warnings.catch_warnings():  # scipy falls back to the asymptotic p-value for large samples, and says so
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ks_2samp(a, b).pvalue)


def _alpha(evals: np.ndarray) -> float:
    if evals.size < 10:
        return math.nan
    fit = fit_power_law_batch([evals])[0]
    return float(fit.alpha) if fit.ok else math.nan


def spectral_baselines(
    model: object,
    *,
    init: object | None = None,
    view: str = "unfold",
    layers: str | Sequence[str] | None = None,
    convention: str = "convsvd",
    n_null: int = 5,
    alpha_level: float | None = None,
    seed: int = 0,
    dtype: str | None = None,
    progress: bool | None | Callable[[int, int, str], None] = None,
) -> SpectralBaselines:
    """Trained ESD vs the ESD of its element-wise shuffle and of its initialisation, per layer.

    Parameters
    ----------
    model : anything :func:`~convsvd.spectral.spectrum` reads
    init : optional, same
        The initial model (same layer names); without it the ``init`` columns are NaN.
    view, layers, convention, dtype, progress
        As in :func:`~convsvd.spectral.spectrum`.
    n_null : int, default 5
        Further shuffles (seeds ``seed+1 … seed+n_null``) that set the null threshold.
    alpha_level : float, optional
        Also require the nominal KS p-value below it for a "distinguishable" verdict.
    seed : int
        Seed of the baseline shuffle.

    Returns
    -------
    SpectralBaselines
        ``to_frame()``: one row per layer (layers that could not be fitted have NaN α and
        their KS columns still filled when they have eigenvalues).

    Examples
    --------
    >>> from convsvd import zoo
    >>> res = spectral_baselines(zoo.load("digits-cnn"), init=zoo.load("digits-cnn", epoch=0))  # doctest: +SKIP
    >>> res.to_frame()[["name", "ks_shuffle", "distinguishable_from_shuffle"]]  # doctest: +SKIP
    """
    if isinstance(n_null, bool) or not isinstance(n_null, int) or n_null < 1:
        raise InputError(f"n_null: expected a positive integer, got {n_null!r}")
    if alpha_level is not None and not 0 < float(alpha_level) < 1:
        raise InputError(f"alpha_level: expected a level in (0, 1), got {alpha_level!r}")
    opts = dict(view=view, layers=layers, convention=convention, dtype=dtype, progress=progress, min_evals=2)
    trained = spectrum(model, mp=True, random_baseline=True, seed=seed, **opts)  # type: ignore[arg-type]
    nulls = [spectrum(model, random_baseline=True, seed=seed + i, **opts)  # type: ignore[arg-type]
             for i in range(1, n_null + 1)]
    initial = spectrum(init, mp=True, **opts) if init is not None else None  # type: ignore[arg-type]
    if initial is not None:
        missing = [n for n in trained.names if n not in initial.names]
        if missing:
            raise InputError(f"init: has no layer {missing[0]!r} (its layers: {', '.join(initial.names[:8])})")

    out = []
    for layer in trained.layers:
        own = layer.evals
        shuf = layer.random.evals if layer.random is not None else np.empty(0)
        others = [n[layer.name].random for n in nulls]
        null = np.array([esd_distance(shuf, r.evals, method="ks") for r in others if r is not None and shuf.size])
        threshold = float(null.max()) if null.size else math.nan
        ks_s = esd_distance(own, shuf, method="ks") if shuf.size and own.size else math.nan
        p_s = _ks_p(own, shuf)
        init_layer = initial[layer.name] if initial is not None else None
        iev = init_layer.evals if init_layer is not None else np.empty(0)
        ks_i = esd_distance(own, iev, method="ks") if iev.size and own.size else math.nan
        p_i = _ks_p(own, iev)

        def verdict(ks: float, p: float) -> object:
            if not (math.isfinite(ks) and math.isfinite(threshold)):
                return None
            ok = ks > threshold
            return bool(ok and (alpha_level is None or p < alpha_level))

        test = f"KS distance > max KS of {null.size} shuffle-vs-shuffle pairs" + \
            (f" and KS p < {alpha_level}" if alpha_level is not None else "")
        row = dict(
            name=layer.name, n_evals=int(own.size), convention=convention,
            alpha=layer.alpha if layer.evals.size >= 10 else math.nan,
            phenomenology=layer.phenomenology if layer.evals.size >= 10 else "",
            alpha_shuffle=_alpha(shuf), ks_shuffle=ks_s, p_shuffle=p_s, null_threshold=threshold,
            distinguishable_from_shuffle=verdict(ks_s, p_s),
            alpha_init=(init_layer.alpha if init_layer is not None and iev.size >= 10 else math.nan),
            phenomenology_init=(init_layer.phenomenology if init_layer is not None and iev.size >= 10 else ""),
            ks_init=ks_i, p_init=p_i, distinguishable_from_init=verdict(ks_i, p_i) if init is not None else None,
            test=test,
        )
        out.append(LayerBaseline(layer.name, own, shuf, iev, null, row))
    options: dict[str, object] = dict(view=view, layers=layers, convention=convention, n_null=n_null, alpha_level=alpha_level,
                   seed=seed, init=init is not None)
    return SpectralBaselines(tuple(out), trained, initial, options)
