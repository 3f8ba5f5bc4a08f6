"""Spectral analysis kernels: pure functions of singular values, eigenvalues and weights.

* :mod:`~convsvd.spectral.esd` — ESDs (``λ = σ²/N``) and scalar metrics (entropy,
  stable rank, norms), randomisation and ESD distances.
* :mod:`~convsvd.spectral.powerlaw` — vectorised Clauset–Shalizi–Newman power-law
  fit (same α, x_min, D as the ``powerlaw`` package), batched over layers.
* :mod:`~convsvd.spectral.mp` — Marchenko–Pastur law, bulk fit and spikes.
* :mod:`~convsvd.spectral.views` — the k×k-slice and FFT-operator spectra of a conv.
* :mod:`~convsvd.spectral.cost` — the operator view's grid per layer, its cost estimate and budget.
* :mod:`~convsvd.spectral.shuffle` — fast shuffling of a layer's entries (randomised baseline).
* :mod:`~convsvd.spectral.metrics` — the per-layer metrics row, statuses, phenomenology, α̂.
* :mod:`~convsvd.spectral.analysis` — :func:`spectrum` of a whole model and :func:`compare`.
"""

from convsvd.spectral.esd import (
    DISTANCE_METHODS,
    esd_distance,
    esd_from_singular_values,
    log_norm,
    log_spectral_norm,
    matrix_entropy,
    randomize,
    stable_rank,
)
from convsvd.spectral.mp import (
    DEFAULT_TW_MARGIN,
    MP_STATUSES,
    MPFit,
    fit_marchenko_pastur,
    mp_cdf,
    mp_density,
    mp_edges,
    mp_quantile,
    tracy_widom_scale,
)
from convsvd.spectral.powerlaw import (
    DEFAULT_MIN_TAIL,
    DISTRIBUTIONS,
    FIT_STATUSES,
    PowerLawFit,
    fit_power_law,
    fit_power_law_batch,
)
from convsvd.spectral.views import operator_singular_values, slice_singular_values

__all__ = [
    "DEFAULT_MIN_TAIL",
    "DEFAULT_TW_MARGIN",
    "DISTANCE_METHODS",
    "DISTRIBUTIONS",
    "FIT_STATUSES",
    "MP_STATUSES",
    "MPFit",
    "PowerLawFit",
    "esd_distance",
    "esd_from_singular_values",
    "fit_marchenko_pastur",
    "fit_power_law",
    "fit_power_law_batch",
    "log_norm",
    "log_spectral_norm",
    "matrix_entropy",
    "mp_cdf",
    "mp_density",
    "mp_edges",
    "mp_quantile",
    "operator_singular_values",
    "randomize",
    "slice_singular_values",
    "stable_rank",
    "tracy_widom_scale",
]

from convsvd.spectral.analysis import (  # noqa: E402  (the model-level analysis, on the kernels above)
    DEFAULT_OPERATOR_N,
    VIEWS,
    SpectrumResult,
    compare,
    spectrum,
)
from convsvd.spectral.metrics import (  # noqa: E402
    CONVENTIONS,
    DEFAULT_MIN_EVALS,
    FRAME_COLUMNS,
    LAYER_STATUSES,
    PHENOMENOLOGIES,
    SUMMARY_KEYS,
    LayerSpectrum,
    RandomBaseline,
    classify,
    convention_log,
    convention_scale,
    summarize,
)
from convsvd.spectral.shuffle import shuffle_entries  # noqa: E402
from convsvd.spectral.cost import OperatorPlan, operator_blocks, plan_operator  # noqa: E402

__all__ += [
    "CONVENTIONS",
    "DEFAULT_MIN_EVALS",
    "DEFAULT_OPERATOR_N",
    "FRAME_COLUMNS",
    "LAYER_STATUSES",
    "PHENOMENOLOGIES",
    "SUMMARY_KEYS",
    "VIEWS",
    "LayerSpectrum",
    "OperatorPlan",
    "RandomBaseline",
    "SpectrumResult",
    "classify",
    "compare",
    "operator_blocks",
    "plan_operator",
    "convention_log",
    "convention_scale",
    "shuffle_entries",
    "spectrum",
    "summarize",
]

from convsvd.spectral.baselines import (  # noqa: E402  (the baselines, on spectrum())
    BASELINE_COLUMNS,
    LayerBaseline,
    SpectralBaselines,
    spectral_baselines,
)

__all__ += ["BASELINE_COLUMNS", "LayerBaseline", "SpectralBaselines", "spectral_baselines"]
