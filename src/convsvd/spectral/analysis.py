"""Random-matrix spectral analysis of every layer of a model: :func:`spectrum` and :func:`compare`.

One call computes, for every conv and linear layer, its ESD in one of three views, the
power-law fit of its tail, the norm metrics, and optionally the Marchenko–Pastur fit
and a randomised baseline; see :mod:`convsvd.spectral.metrics` for the metrics, the
statuses and the phenomenology rule.

**Views** of a conv weight ``W ∈ R^{d × c/g × k1 × k2}`` (a linear layer is its own
matrix in every view):

* ``"unfold"`` (default, the paper's): the ``g`` unfolded matrices
  ``W̄_j ∈ R^{(d/g) × (c/g·k1·k2)}``, pooled; ``N = max(d/g, c/g·k1·k2)``.
* ``"slices"`` (WeightWatcher's): the ``k1·k2`` per-tap matrices ``W[:, :, a, b]``, each
  split into its ``g`` diagonal blocks ``(d/g) × (c/g)``, pooled;
  ``N = max(d/g, c/g)``.
* ``"operator"``: the singular values of the whole convolution on an ``n1 × n2`` input
  with circular padding and stride 1, i.e. of the ``n1·n2`` complex per-frequency
  matrices ``Ŵ_j(ω) ∈ C^{(d/g) × (c/g)}`` (Sedghi, Gupta & Long 2019), pooled. The
  normalisation is ``N = max(d/g, c/g)``, the larger side of one per-frequency block —
  equivalently the larger side of the operator matrix of one group divided by ``n²``.
  With it, the ESD, ``λ_max`` (``= ‖conv‖₂² / N``, the squared operator norm) and an
  MP fit (``σ² = k1·k2·Var(w)`` for an i.i.d. kernel, aspect ratio
  ``max(d/g, c/g)/min(d/g, c/g)``) do not depend on ``n``: a larger grid only samples
  the frequencies more finely. Dividing by the full operator side ``max(d, c)·n²``
  instead would scale every λ by ``1/n²`` and make α̂ depend on the grid. The norms
  are the operator's: ``Σσ² = n²‖W‖_F²`` (Parseval). Stride is ignored (a strided conv
  is this operator followed by subsampling). **Grid**: by default each layer's own
  input size, found by one traced forward pass on ``input_shape`` (or ONNX shape
  inference; :mod:`convsvd.shapes`); ``n=`` sets one side for every layer; with no
  size known the grid is :data:`DEFAULT_OPERATOR_N` and the result says why. The
  cost (``blocks × block-SVD``, :mod:`convsvd.spectral.cost`) is estimated before
  each layer runs; with ``budget=`` seconds a layer whose estimate exceeds it runs on
  the largest smaller grid that fits. α depends on the grid (a finer grid samples
  more frequencies), so every row gives the grid used (``n``), the layer's own size
  (``input_size``) and the reason when they differ (``n_reason``).

**Speed.** In the unfold view the eigenvalues of all layers come from one batched
values-only :func:`~convsvd.decompose.decompose` call (layers of one shape stacked);
with float32 weights it forms the Gram matrices in float32 with BLAS ``ssyrk`` and
takes float64 eigenvalues (``method="gram32"``; error bound in
:mod:`convsvd.decompose`), and with ``dtype="float64"`` it uses the float64 Gram route.
All power-law fits are one :func:`~convsvd.spectral.fit_power_law_batch` call. The
randomised baseline shuffles every layer (:func:`~convsvd.spectral.shuffle_entries`,
seeded per layer) and recomputes all the eigenvalues in one more batched pass; with
float32 precision that pass also solves in float32 (``decompose(method="gram32",
dtype="float32")``, about 2e-5·λ_max absolute error), far below the sampling spread of
a shuffled layer's ESD.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import pandas as pd
import torch
from torch import nn

from convsvd import _validate as check
from convsvd._progress import progress as _progress
from convsvd._typing import PathLike, View
from convsvd.errors import InputError
from convsvd.io import LayerSpec, ModelWeights
from convsvd.io.spec import SkipCode, SkippedParam
from convsvd.spectral._meter import meter
from convsvd.spectral.cost import DEFAULT_OPERATOR_N, OperatorPlan, plan_operator, throughput
from convsvd.spectral.esd import DISTANCE_METHODS, esd_distance
from convsvd.spectral.metrics import (
    CONVENTIONS,
    DEFAULT_MIN_EVALS,
    WW_EVALS_THRESH,
    FRAME_COLUMNS,
    SUMMARY_KEYS,
    LayerSpectrum,
    RandomBaseline,
    classify,
    convention_scale,
    layer_status,
    norms,
    summarize,
)
from convsvd.spectral.mp import fit_marchenko_pastur
from convsvd.spectral.powerlaw import DISTRIBUTIONS, PowerLawFit, fit_power_law_batch
from convsvd.spectral.shuffle import layer_seed, shuffle_entries
from convsvd.spectral.views import operator_singular_values, slice_singular_values
from convsvd.target import Target, TargetOptions, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DEFAULT_OPERATOR_N", "VIEWS", "SpectrumResult", "compare", "spectrum"]

VIEWS: tuple[str, ...] = get_args(View)
"""The views of a conv layer's spectrum (module docstring)."""


@dataclass(frozen=True, eq=False)
class SpectrumResult:
    """The spectral analysis of a model: one :class:`LayerSpectrum` per layer.

    Attributes
    ----------
    layers : tuple of LayerSpectrum
        In model order; layers that could not be analysed are included with a status.
    view : str
    source : str
        The model's source, as loaded.
    model_hash : str
        Digest of the analysed weights (:meth:`convsvd.io.ModelWeights.content_hash`).
    options : dict
        The options of the run (for the run metadata).
    """

    layers: tuple[LayerSpectrum, ...]
    view: str
    source: str = ""
    model_hash: str = ""
    options: dict[str, object] = field(default_factory=dict)

    def __getitem__(self, name: str) -> LayerSpectrum:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise InputError(f"layer {name!r}: not in this result (layers: {', '.join(self.names[:8])})")

    def __iter__(self) -> Iterator[LayerSpectrum]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        """Layer names, in order."""
        return [layer.name for layer in self.layers]

    def to_frame(self) -> pd.DataFrame:
        """One row per layer, columns :data:`~convsvd.spectral.metrics.FRAME_COLUMNS`."""
        return pd.DataFrame([layer.row() for layer in self.layers], columns=list(FRAME_COLUMNS))

    def save(self, folder: PathLike, **metadata: object) -> list[Path]:
        """Write ``spectrum.csv``, ``spectrum.parquet`` and ``spectrum.json`` (run metadata, options and
        :meth:`summary`, plus ``metadata``) into the existing ``folder``; plain writes (the CLI publishes
        the folder whole). Figures are drawn by :func:`convsvd.viz.save_figures`.

        >>> import tempfile
        >>> from torch import nn
        >>> [p.name for p in spectrum(nn.Linear(64, 128)).save(tempfile.mkdtemp())]
        ['spectrum.csv', 'spectrum.parquet', 'spectrum.json']
        """
        from convsvd._meta import run_metadata
        from convsvd._results import finite_or_none, folder as existing, write_frame, write_text

        out = existing(folder)
        paths = write_frame(out, "spectrum", self.to_frame())
        meta = run_metadata(self.source, self.model_hash, self.options, summary=finite_or_none(summarize(self.layers)),
                            **metadata)
        return paths + [write_text(out / "spectrum.json", meta)]

    def __repr__(self) -> str:
        hat = summarize(self.layers)["alpha_hat"]
        return f"SpectrumResult({self.source!r}, view={self.view!r}, {len(self.layers)} layers, alpha_hat={hat:.4g})"

    def _repr_html_(self) -> str:
        from convsvd._results import html_table

        frame = self.to_frame()[["name", "kind", "n_evals", "alpha", "lambda_max", "status"]]
        hat = summarize(self.layers)["alpha_hat"]
        return html_table(f"spectra of {self.source} ({self.view} view): α̂ = {hat:.4g}", frame)

    def summary(self) -> pd.DataFrame:
        """One row: α̂ and the means of the metrics over the headline layers, and the layer counts.

        Columns :data:`~convsvd.spectral.metrics.SUMMARY_KEYS` (see :func:`summarize`), as in
        :func:`compare`, which stacks the summaries of several models.

        >>> from torch import nn
        >>> spectrum(nn.Linear(64, 128)).summary()[["n_layers", "n_analysed"]].values.tolist()
        [[1, 1]]
        """
        return pd.DataFrame([summarize(self.layers)], columns=list(SUMMARY_KEYS))


# --------------------------------------------------------------------------- options


def _precision(specs: Sequence[LayerSpec], dtype: torch.dtype | None) -> torch.dtype:
    """``dtype`` (checked by :func:`convsvd.target.resolve`), else float64 when any weight is, else float32."""
    if dtype is not None:
        return dtype
    return torch.float64 if any(s.weight.dtype == torch.float64 for s in specs) else torch.float32


def _check_options(view: str, n: int | None, min_evals: int, distance: str, distribution: str,
                   budget: float | None = None) -> None:
    check.choice(view, "view", View)
    check.optional_integer(n, "n", minimum=1)  # the input side of the operator view
    if budget is not None:
        check.number(budget, "budget", low=0, low_open=True)  # seconds per layer
    check.integer(min_evals, "min_evals", minimum=2)
    check.choice(distance, "distance", DISTANCE_METHODS)
    check.choice(distribution, "distribution", DISTRIBUTIONS)


def _select(mw: ModelWeights, patterns: str | Sequence[str] | None
            ) -> tuple[ModelWeights, list[tuple[str, tuple[int, ...], SkippedParam]]]:
    """The selected layers, and the selected layers that were not loaded (name, shape, what was skipped)."""
    failed = [(s.name, tuple(s.shape), s) for s in mw.skipped if s.code is not None and s.code.failed_layer]
    if patterns is None:
        return mw, failed
    pats = [p for p in patterns.split(",") if p] if isinstance(patterns, str) else list(patterns)
    loaded = [p for p in pats if any(check.glob_match(name, p) for name in mw.names)]
    failed = [f for f in failed if any(check.glob_match(f[0], p) for p in pats)]
    unknown = [p for p in pats if p not in loaded and not any(check.glob_match(f[0], p) for f in failed)]
    if unknown:
        mw.select(unknown)  # raises the one-line error naming the pattern and the layers
    return mw.select(loaded), failed


# --------------------------------------------------------------------------- eigenvalues


@dataclass(frozen=True)
class _Spectrum:
    """Eigenvalues of one layer in one view, with what normalises them."""

    evals: np.ndarray  # ascending float64
    shape: tuple[int, int]  # one pooled matrix
    n_matrices: int
    plan: OperatorPlan | None = None  # the operator view's grid


def _to_evals(S: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    s = S.detach().to("cpu", torch.float64).reshape(-1).numpy()
    return np.sort(s * s / max(shape))


def _in_convention(spectra: dict[str, _Spectrum], specs: Sequence[LayerSpec], convention: str,
                   view: str) -> dict[str, _Spectrum]:
    """The spectra rescaled from ``λ = σ²/N`` to the convention's ``λ = c·σ²``."""
    if convention == "convsvd":
        return spectra
    kinds = {s.name: s.kind for s in specs}
    return {name: replace(sp, evals=sp.evals * (max(sp.shape) * convention_scale(convention, sp.shape,
                                                                                kinds.get(name, "linear"), view)))
            for name, sp in spectra.items()}


def _unfold_spectra(
    specs: Sequence[LayerSpec],
    precision: torch.dtype,
    device: str | torch.device | None,
    progress: bool | None | Callable[[int, int, str], None],
    baseline: bool = False,
) -> dict[str, _Spectrum]:
    """Unfolded spectra of ``specs`` (a ``baseline``'s solved in float32 when ``precision`` is float32)."""
    from convsvd.decompose import decompose

    if not specs:
        return {}
    mw = ModelWeights(tuple(specs), source="<spectrum>")
    if precision == torch.float32:
        # a shuffled layer's ESD is a random sample: float32 eigenvalues are ample (decompose docs)
        dec = decompose(mw, mode="values", method="gram32", dtype=torch.float32 if baseline else None,
                        device=device, progress=progress)
    else:
        dec = decompose(mw, mode="values", method="gram", dtype=torch.float64, device=device, progress=progress)
    return {
        name: _Spectrum(_to_evals(layer.S, layer.shape), tuple(layer.shape), layer.groups)
        for name, layer in dec.items()
    }


def _conv_spectrum(
    spec: LayerSpec,
    view: str,
    plan: OperatorPlan | None,
    precision: torch.dtype,
    device: torch.device,
    outer: object = None,
    show: bool = False,
) -> _Spectrum:
    W = spec.weight.detach().to(device=device, dtype=precision)
    g = spec.groups
    shape = (int(W.shape[0]) // g, int(W.shape[1]))
    if view == "slices":
        S = slice_singular_values(W, groups=g)
        return _Spectrum(_to_evals(S, shape), shape, int(S.shape[0]) * g)
    assert plan is not None  # every conv layer of the operator view has a plan (spectrum)
    dilation = spec.dilation or 1
    if not show:
        S = operator_singular_values(W, plan.n, groups=g, dilation=dilation)
    else:
        grid = "×".join(map(str, plan.n))
        with meter(f"operator view of {spec.name} ({grid}, {plan.blocks} blocks of {shape[0]}×{shape[1]})",
                   plan.blocks, outer) as tick:
            S = operator_singular_values(W, plan.n, groups=g, dilation=dilation,
                                         progress=lambda done, total: tick(done * g, total * g))
    return _Spectrum(_to_evals(S, shape), shape, int(np.prod(S.shape[:-1])), plan)


SHOW_WITHIN_LAYER = 2e10
"""Estimated operations from which one layer's operator view shows its own progress."""


def _spectra(
    specs: Sequence[LayerSpec],
    view: str,
    plans: dict[str, OperatorPlan],
    precision: torch.dtype,
    device: str | torch.device | None,
    progress: bool | None | Callable[[int, int, str], None],
    what: str,
    baseline: bool = False,
) -> dict[str, _Spectrum]:
    """Eigenvalues of every layer (convs in their view, the rest unfolded)."""
    if view == "unfold":
        return _unfold_spectra(specs, precision, device, progress, baseline)
    convs = [s for s in specs if s.kind != "linear"]
    out = _unfold_spectra([s for s in specs if s.kind == "linear"], precision, device, progress, baseline)
    from convsvd.decompose import default_device

    dev = torch.device(device) if device is not None else default_device()
    within = progress is not False and not callable(progress)
    with _progress(len(convs), f"{what} ({view})", progress) as bar:
        for spec in convs:
            plan = plans.get(spec.name)
            show = within and plan is not None and plan.operations >= SHOW_WITHIN_LAYER
            out[spec.name] = _conv_spectrum(spec, view, plan, precision, dev, bar, show)
            bar.advance(1, spec.name)
    return out


def _shuffled(spec: LayerSpec, seed: int) -> LayerSpec:
    return replace(spec, weight=shuffle_entries(spec.weight.detach(), layer_seed(seed, spec.name)))


def _random_baselines(
    specs: Sequence[LayerSpec],
    own: dict[str, _Spectrum],
    view: str,
    plans: dict[str, OperatorPlan],
    precision: torch.dtype,
    device: str | torch.device | None,
    distance: str,
    progress: bool | None | Callable[[int, int, str], None],
    shuffled: dict[str, LayerSpec],
    convention: str = "convsvd",
) -> dict[str, RandomBaseline]:
    """Spectra of the shuffled ``specs`` (``shuffled[name]``) and their distance to the layers' own."""
    rand = _spectra([shuffled[s.name] for s in specs], view, plans, precision, device, progress, "random baseline",
                    baseline=True)
    rand = _in_convention(rand, specs, convention, view)
    out = {}
    for spec in specs:
        r = rand[spec.name].evals
        out[spec.name] = RandomBaseline(
            evals=r, distance=esd_distance(own[spec.name].evals, r, method=distance),  # type: ignore[arg-type]
            lambda_max=float(r[-1]) if r.size else math.nan, method=distance,
        )
    return out


# --------------------------------------------------------------------------- entry


def spectrum(
    model: object,
    *,
    view: View = "unfold",
    mp: bool = False,
    random_baseline: bool = False,
    n: int | None = None,
    input_shape: Sequence[int] | None = None,
    budget: float | None = None,
    xmin_range: tuple[float, float] | None = None,
    distribution: Literal["power_law", "truncated_power_law"] = "power_law",
    min_evals: int = DEFAULT_MIN_EVALS,
    distance: Literal["ks", "js", "ww"] = "ks",
    seed: int = 0,
    progress: bool | None | Callable[[int, int, str], None] = None,
    convention: str = "convsvd",
    **options: Unpack[TargetOptions],
) -> SpectrumResult:
    """Spectral (random-matrix) analysis of every conv and linear layer of a model.

    Parameters
    ----------
    model : Target, nn.Module, ModelWeights, path, built-in name or ``"pkg.module:factory"``
        Anything :func:`convsvd.target.resolve` accepts (``"digits-cnn"``, ``"digits-cnn@5"``, ...).
    view : {"unfold", "slices", "operator"}, default "unfold"
        Which matrices of a conv layer make its ESD (module docstring).
    mp : bool, default False
        Fit the Marchenko–Pastur law to each bulk (``num_spikes``, ``mp_softrank``,
        and the MP-based phenomenology labels).
    random_baseline : bool, default False
        Shuffle each layer's weights and compare the two ESDs (``rand_distance``,
        ``rand_lambda_max``).
    n : int, optional
        Grid side of the ``operator`` view for every conv layer. Default: each
        layer's own input size (traced from ``input_shape``, or from an ONNX file's
        shapes); :data:`DEFAULT_OPERATOR_N` where no size can be found (the rows say
        why, column ``n_reason``).
    input_shape : sequence of int, optional
        Shape of one input without the batch, e.g. ``(3, 224, 224)``: the model is run
        once on zeros of that shape to find the size each conv layer sees (operator
        view only; :func:`convsvd.shapes.layer_input_sizes`).
    budget : float, optional
        Seconds one layer's operator view may take (estimated before it runs,
        :mod:`convsvd.spectral.cost`); a layer over it runs on the largest smaller grid
        that fits, and its ``n_reason`` says so. Default: no bound.
    xmin_range : (float, float), optional
        Search the power-law cut-off only in ``[lo, hi]`` (in units of λ, every layer).
    distribution : {"power_law", "truncated_power_law"}
        Model fitted to the tail.
    min_evals : int, default 10
        Fewest eigenvalues a layer needs to be fitted (else status ``too_few``).
    distance : {"ks", "js", "ww"}, default "ks"
        ESD distance of the randomised baseline (:func:`~convsvd.spectral.esd_distance`);
        the Kolmogorov–Smirnov distance needs no binning, so it is also meaningful for
        layers with a few dozen eigenvalues. For an i.i.d. Gaussian layer it is of
        order ``1/M`` (below 0.05 for ``M ≥ 100`` in the tests); for a layer with
        learned low-rank structure it is close to 1.
    seed : int, default 0
        Seed of the shuffles; each layer's shuffle depends only on ``seed`` and its name.
    progress : bool, None or callable
        Progress bars (None: automatic for many layers) or ``fn(done, total, what)``.
    convention : {"convsvd", "ddp", "ww"}, default "convsvd"
        Eigenvalue scale and logarithm (:func:`~convsvd.spectral.metrics.convention_scale`):
        ``σ²/N`` with log10; DeepDataProfiler's ``σ²/d`` with the natural log; WeightWatcher's
        ``σ²`` (``σ²/2`` for conv slices) with log10 — and, as WeightWatcher does, only
        ``λ > 1e-5`` enter the power-law fit. The ``convention`` column says which was used.
    **options
        ``layers`` (glob patterns of layer names, comma-separated in a string), ``fold_bn`` (fold a
        BatchNorm that directly follows a layer into it first), ``dtype``, ``device``: checked by
        :func:`convsvd.target.resolve` (or carried by a Target).

        ``dtype`` ({"float32", "float64"}) is the precision of the spectra. Default: float32 for float32 (or
        half) weights — float32 Gram matrices with float64 eigenvalues in the unfold view, error bound
        in :mod:`convsvd.decompose` (leading eigenvalues to about 6 digits) — and float64 when any
        weight is float64. ``"float64"`` gives the float64 Gram route. ``device`` is where the
        eigenvalues are computed (default: CUDA when available for the unfold view, else the CPU);
        fits run on the CPU.

    Returns
    -------
    SpectrumResult
        ``.layers`` (one :class:`LayerSpectrum` each), ``.to_frame()``, ``.summary()``.
        Degenerate layers (NaN weights, all zero, rank one, fewer than ``min_evals``
        eigenvalues) are listed with NaN metrics and a status; the others are analysed.

    Raises
    ------
    InputError
        An unreadable model, an unknown view or option, a pattern matching no layer.

    Examples
    --------
    >>> from torch import nn
    >>> res = spectrum(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32)))
    >>> res.to_frame()[["name", "n_evals", "status"]].values.tolist()
    [['0', 64, 'ok'], ['2', 32, 'ok']]
    """
    _check_options(view, n, min_evals, distance, distribution, budget)
    check.choice(convention, "convention", CONVENTIONS)
    target = resolve(model, **options)
    device, fold_bn = target.device, target.fold_bn
    if input_shape is None and view == "operator":
        input_shape = target.stated_input_shape()  # the user's input_size, the zoo's or the ONNX graph's
    mw, not_loaded = _select(target.folded, target.layers)
    precision = _precision(mw.layers, target.dtype)

    finite = [s for s in mw.layers if _finite(s.weight)]
    plans: dict[str, OperatorPlan] = {}
    sizes_how = None
    if view == "operator":
        plans, sizes_how = _operator_plans(mw, finite, n, input_shape, budget, precision, device)
    # Shuffling for the baseline is memory-bound single-threaded work: it runs beside the
    # eigenvalue solvers (torch releases the GIL), which leave the cores partly idle.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        shuffling = (pool.submit(lambda: {sp.name: _shuffled(sp, seed) for sp in finite})
                     if random_baseline and finite else None)
        own = _in_convention(_spectra(finite, view, plans, precision, device, progress, "spectra"), finite,
                             convention, view)
        status = {name: layer_status(sp.evals, min_evals) for name, sp in own.items()}
        fittable = [s for s in finite if status[s.name] == "ok"]

        fits: dict[str, PowerLawFit] = dict(zip(
            (s.name for s in fittable),
            fit_power_law_batch([_fitted_part(own[s.name].evals, convention) for s in fittable],
                                xmin_range=xmin_range, distribution=distribution),
        ))
        for name, fit in fits.items():
            if not fit.ok:
                status[name] = f"fit_{fit.status}"
        fitted = [s for s in fittable if status[s.name] == "ok"]

        mps = {}
        if mp:
            with _progress(len(fitted), "MP fits", progress) as bar:
                for s in fitted:
                    sp = own[s.name]
                    mps[s.name] = fit_marchenko_pastur(sp.evals, Q=max(sp.shape) / min(sp.shape), M=min(sp.shape))
                    bar.advance(1, s.name)
        rands = {}
        if random_baseline and fitted:
            rands = _random_baselines(fitted, own, view, plans, precision, device, distance, progress,
                                      shuffling.result(), convention)  # type: ignore[union-attr]

    eps = float(torch.finfo(precision).eps)
    built: dict[str, LayerSpectrum] = {}
    for spec in mw.layers:
        name = spec.name
        got = own.get(name)
        st = status.get(name, "nonfinite")
        evals = got.evals if got is not None else np.empty(0)
        shape = got.shape if got is not None else spec.unfolded_shape
        layer_fit = fits.get(name)
        plan = plans.get(name)
        built[name] = LayerSpectrum(
            name=name, kind=spec.kind, view=view, shape=shape, n_matrices=got.n_matrices if got else 0,
            evals=evals, fit=layer_fit, mp=mps.get(name), random=rands.get(name), status=st,
            phenomenology=(classify(evals, layer_fit.alpha, mps.get(name), layer_fit.n_tail)
                           if st == "ok" and layer_fit else ""),
            **norms(evals, max(shape), eps, convention_scale(convention, shape, spec.kind, view)),
            convention=convention,
        )
        if plan is not None:
            built[name] = replace(built[name], n=plan.n, input_size=plan.size, n_reason=plan.reason)
    for name, shp, skipped in not_loaded:
        built[name] = LayerSpectrum(
            name=name, kind="", view=view, shape=(), n_matrices=0, evals=np.empty(0),  # type: ignore[arg-type]
            fit=None, mp=None, random=None, status="nonfinite" if skipped.code is SkipCode.NONFINITE else "skipped",
            phenomenology="", **norms(np.empty(0), 1, eps), convention=convention,
        )
    chosen = None if target.layers is None else list(target.layers)
    recorded: dict[str, object] = dict(
                   view=view, layers=chosen, mp=mp, random_baseline=random_baseline,
                   n=n if view == "operator" else None, budget=budget if view == "operator" else None,
                   input_shape=list(input_shape) if input_shape is not None else None, sizes=sizes_how,
                   xmin_range=xmin_range, distribution=distribution,
                   min_evals=min_evals, distance=distance, dtype=str(precision).replace("torch.", ""),
                   fold_bn=fold_bn, device=str(device) if device is not None else None, seed=seed,
                   convention=convention)
    ordered = tuple(built[k] for k in _model_order(mw, list(built)))
    return SpectrumResult(ordered, view, mw.source, ModelWeights(tuple(finite)).content_hash(), recorded)


def _operator_plans(
    mw: ModelWeights,
    specs: Sequence[LayerSpec],
    n: int | None,
    input_shape: Sequence[int] | None,
    budget: float | None,
    precision: torch.dtype,
    device: str | torch.device | None,
) -> tuple[dict[str, OperatorPlan], str]:
    """The grid of every conv layer of the operator view, and how the layers' sizes were found."""
    from convsvd.decompose import default_device
    from convsvd.shapes import SpatialSizes, layer_input_sizes

    convs = [s for s in specs if s.kind != "linear"]
    sizes = layer_input_sizes(mw, input_shape) if convs and n is None else SpatialSizes(reason="n given")
    rate = None
    if budget is not None and convs:
        rate = throughput(torch.device(device) if device is not None else default_device(), precision)
    plans = {
        s.name: plan_operator(tuple(s.weight.shape), groups=s.groups, dilation=s.dilation or 1,
                              size=sizes.get(s.name), n=None if n is None else int(n), budget=budget, rate=rate,
                              unknown=sizes.reason)
        for s in convs
    }
    return plans, f"{sizes.how}: {sizes.reason}" if sizes.reason else sizes.how
def _fitted_part(evals: np.ndarray, convention: str) -> np.ndarray:
    """The eigenvalues the power-law fit sees: WeightWatcher drops ``λ ≤ 1e-5`` first (``ww`` convention)."""
    return evals[evals > WW_EVALS_THRESH] if convention == "ww" else evals


def _finite(W: torch.Tensor) -> bool:
    """Whether every weight is finite (the sum is NaN/Inf whenever an entry is; full check only then,
    which also settles a sum that overflowed)."""
    if W.numel() == 0 or not W.is_floating_point():
        return False
    return math.isfinite(float(W.detach().sum())) or bool(torch.isfinite(W).all())


def _model_order(mw: ModelWeights, names: list[str]) -> list[str]:
    """``names`` in the order of the module tree when there is one (else as given)."""
    if mw.model is None:
        return names
    position = {name or "<root>": i for i, (name, _) in enumerate(mw.model.named_modules())}
    return sorted(names, key=lambda k: (position.get(k, len(position)), names.index(k)))


# --------------------------------------------------------------------------- compare


def _default_label(source: object, index: int) -> str:
    if isinstance(source, SpectrumResult):
        return source.source or f"model{index}"
    if isinstance(source, Target):
        return source.name
    if isinstance(source, ModelWeights):
        return source.source
    if isinstance(source, nn.Module):
        return type(source).__name__
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        return path.stem if path.suffix else str(source)
    return f"model{index}"


def compare(
    sources: Sequence[object],
    *,
    labels: Sequence[str] | None = None,
    view: View = "unfold",
    mp: bool = False,
    random_baseline: bool = False,
    n: int | None = None,
    min_evals: int = DEFAULT_MIN_EVALS,
    seed: int = 0,
    progress: bool | None | Callable[[int, int, str], None] = None,
    input_shape: Sequence[int] | None = None,
    budget: float | None = None,
    convention: str = "convsvd",
    **options: Unpack[TargetOptions],
) -> pd.DataFrame:
    """The spectral summary of several models (or checkpoints of one), one row each.

    Parameters
    ----------
    sources : sequence
        Models: anything :func:`convsvd.target.resolve` accepts (Targets, ``nn.Module``,
        :class:`~convsvd.io.ModelWeights`, files, built-in names such as ``"digits-cnn@3"``), or
        :class:`SpectrumResult` objects already computed.
    labels : sequence of str, optional
        One per source (default: the file stem, class name or source; repeated names
        get ``#2``, ``#3``, ...).
    view, mp, random_baseline, n, min_evals, seed, progress, input_shape, budget, convention, **options
        As in :func:`spectrum`, for every source (``layers``, ``fold_bn``, ``dtype``, ``device``).

    Returns
    -------
    pandas.DataFrame
        Columns ``label, source, view, convention`` then :data:`~convsvd.spectral.metrics.SUMMARY_KEYS`
        (``alpha_hat`` = α̂, the means of the metrics over the layers analysed, and the
        numbers of layers, analysed and failed).

    Examples
    --------
    >>> from torch import nn
    >>> a, b = nn.Linear(64, 128), nn.Linear(64, 128)
    >>> compare([a, b], labels=["a", "b"])[["label", "n_analysed"]].values.tolist()
    [['a', 1], ['b', 1]]
    """
    if isinstance(sources, (str, os.PathLike, nn.Module)) or not isinstance(sources, Sequence):
        raise InputError("sources: expected a list of models, files or checkpoints")
    if not sources:
        raise InputError("sources: expected at least one model")
    if labels is not None and len(labels) != len(sources):
        raise InputError(f"labels: expected {len(sources)} labels (one per model), got {len(labels)}")
    names = [str(x) for x in labels] if labels is not None else [_default_label(s, i) for i, s in enumerate(sources)]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    rows = []
    with _progress(len(sources), "models", progress, threshold=2) as bar:
        for label, source in zip(unique, sources):
            res = source if isinstance(source, SpectrumResult) else spectrum(
                source, view=view, mp=mp, random_baseline=random_baseline, n=n, min_evals=min_evals, seed=seed,
                progress=False, input_shape=input_shape, budget=budget, convention=convention, **options,
            )
            conv = res.layers[0].convention if res.layers else convention
            rows.append({"label": label, "source": res.source, "view": res.view, "convention": conv, **summarize(res.layers)})
            bar.advance(1, label)
    return pd.DataFrame(rows, columns=["label", "source", "view", "convention", *SUMMARY_KEYS])
