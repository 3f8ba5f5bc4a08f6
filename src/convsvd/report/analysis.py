"""The computations behind a report: one public API call per step, results kept for the section builders.

:class:`Analysis` holds the model, the data and the options, and one method per
step (:data:`STEPS`), each filling in its results. A part that cannot be made
(no data, a weights-only model, a model that does not read images) records why,
so its section says so instead of failing the whole report.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, Union, cast

import numpy as np
import pandas as pd
import torch

from convsvd import _validate as check
from convsvd._progress import _duration
from convsvd.data import as_source
from convsvd.decompose import decompose
from convsvd.errors import InputError, NotComputedError
from convsvd.features import ImageParam, exemplars_of_layers, featureviz, singular_filters
from convsvd.hypergraph import class_separation
from convsvd.layers import as_weights, describe
from convsvd.report.content import Note
from convsvd.report.defaults import DEFAULTS, QUICK
from convsvd.signals import plan_projection, profile
from convsvd.signals.accuracy import PredictionRecorder, accuracy
from convsvd.spectral import spectrum

if TYPE_CHECKING:  # pragma: no cover
    from convsvd.data import DataSource
    from convsvd.decompose import Decomposition, LayerSVD
    from convsvd.features import Exemplars, FeatureVisualization, SingularFilters
    from convsvd.profiles import InputProfiles
    from convsvd.hypergraph import Separation
    from convsvd.io import LayerSpec, ModelWeights
    from convsvd.signals import SignalTable
    from convsvd.signals.accuracy import Accuracy
    from convsvd.spectral import LayerSpectrum, SpectrumResult

__all__ = ["Analysis", "DEFAULTS", "FEATURE_SIDE", "INFLUENTIAL_SHOWN", "Options", "QUICK", "RANGE_INPUTS", "STEPS",
           "STEP_TOLERANCE", "choose_neurons", "data_range", "feature_side", "top_neurons"]

#: What each step passes on as ``progress=`` to the API calls it makes.
Progress = Union[bool, Callable[[int, int, str], None]]

#: How close to its plateau the feature-visualisation objective gets with DEFAULTS["steps"] (full) and
#: QUICK["steps"] (quick): on the digits CNN, the fewest steps at which every layer's median image is within
#: this share of its objective after 512 steps (studies/featureviz_convergence.py, docs/featureviz-convergence.md;
#: on a small photo model 256 steps reach 89–94 % and 128 steps 71–81 %, and 512 steps are no plateau yet).
STEP_TOLERANCE: dict[str, float] = dict(full=0.03, quick=0.10)
#: Total-variation penalty of the report's feature visualisations (:class:`convsvd.features.ImageParam`):
#: on the digits CNN it lowers the saturated pixels from 10.5 % to 8.4 % for 15 % less signal.
REPORT_TV = 0.3
#: Seconds the feature visualisations of a report may take, estimated from one timed step before they
#: start (fewer layers, or fewer steps, otherwise; see :meth:`Analysis._feature_budget`).
FEATURE_BUDGET: dict[str, float] = dict(quick=90.0, full=360.0)
#: Steps of the timed probe of :meth:`Analysis._feature_budget`.
FEATURE_PROBE_STEPS = 3
#: The fewest steps worth running when even one layer does not fit the budget.
FEATURE_MIN_STEPS = 16
#: Inputs of the report's attribution profiles, and the seconds they may take (the first
#: PROFILE_PROBE inputs timed first; fewer inputs when the rest would not fit).
PROFILE_INPUTS: dict[str, int] = dict(quick=128, full=512)
PROFILE_BUDGET: dict[str, float] = dict(quick=60.0, full=180.0)
PROFILE_PROBE = 8
#: Side of the images optimised for a model whose input size is not known.
GUESSED_SIDE = 224
#: Longest side at which the report runs the model for feature visualisation: a model that takes larger inputs
#: (224 for ImageNet models) is run on images of this side when it can (conv layers take any size; Lucid renders
#: its ImageNet visualisations at 128 too), which makes each step about (224/128)² ≈ 3× cheaper.
FEATURE_SIDE = 128
#: Seconds the operator view of the report's one conv layer may take (estimated first; a smaller grid otherwise).
VIEW_BUDGET = 60.0


@dataclass(frozen=True)
class Options:
    """The options of one report, defaults filled in (see :func:`convsvd.report.report`)."""

    quick: bool = False
    layers: str | tuple[str, ...] | None = None
    neurons: int = DEFAULTS["neurons"]
    steps: int = DEFAULTS["steps"]
    k: int = DEFAULTS["k"]
    feature_layers: int = DEFAULTS["feature_layers"]
    input_shape: tuple[int, ...] | None = None
    batch_size: int = 128
    device: str | None = None
    fold_bn: bool = False
    seed: int = 0
    data: str | None = None
    init: str | None = None
    threshold: float | str | None = None
    top_k: int | None = None
    min_share: float = 0.5

    @property
    def mode(self) -> str:
        """``"quick"`` or ``"full"``: the key of the per-mode budgets (:data:`FEATURE_BUDGET`, …)."""
        return "quick" if self.quick else "full"

    @classmethod
    def resolve(cls, *, quick: bool, neurons: int | None, steps: int | None, k: int | None,
                layers: str | Sequence[str] | None, input_shape: Sequence[int] | None, batch_size: int,
                device: str | None, fold_bn: bool, seed: int, data: str | None, init: str | None,
                threshold: float | str | None = None, top_k: int | None = None,
                min_share: float = 0.5) -> "Options":
        """Fill the counts from :data:`DEFAULTS` or :data:`QUICK`, checking the ones given."""
        base = QUICK if quick else DEFAULTS
        counts = {}
        for key, value in (("neurons", neurons), ("steps", steps), ("k", k)):
            value = check.optional_integer(value, key, minimum=1)
            counts[key] = base[key] if value is None else value
        check.integer(batch_size, "batch_size", minimum=1)
        from convsvd.hypergraph.build import check_min_share
        from convsvd.signals.influence import check_influence_options

        threshold, top_k = check_influence_options(threshold, top_k)
        check_min_share(min_share)
        return cls(quick=bool(quick), neurons=counts["neurons"], steps=counts["steps"], k=counts["k"],
                   threshold=threshold, top_k=top_k, min_share=float(min_share),
                   feature_layers=base["feature_layers"], batch_size=batch_size, device=device, fold_bn=bool(fold_bn),
                   seed=seed, data=data, init=init, input_shape=tuple(int(s) for s in input_shape) if input_shape else None,
                   layers=layers if layers is None or isinstance(layers, str) else tuple(layers))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _evenly_spaced(names: list[str], most: int) -> list[str]:
    """All names when there are at most ``most``, else ``most`` evenly spaced ones, first and last included."""
    if len(names) <= most:
        return names
    picks = sorted({round(i * (len(names) - 1) / (most - 1)) for i in range(most)})
    return [names[i] for i in picks]


def top_neurons(layer: "LayerSVD", n: int) -> list[int]:
    """Flat indices ``j·r + i`` of the ``n`` largest singular values of a layer (groups pooled), largest first."""
    S = layer.S.detach().double().cpu().reshape(-1).numpy()
    return [int(i) for i in np.argsort(-S, kind="stable")[:n]]


#: A neuron influential for at least this share of the inputs is always shown.
INFLUENTIAL_SHOWN = 0.2


def choose_neurons(layer: "LayerSVD", n: int, profile: pd.DataFrame | None = None) -> dict[int, str]:
    """The SVD neurons of a layer worth showing, each with why (flat index ``j·r + i`` → reason).

    Three rankings, in this order and without repeats: the ``n`` largest singular values
    (``"σ #k"``); with a class profile (:meth:`~convsvd.signals.SignalTable.class_profile`), the
    ``n`` neurons influential for the most inputs and every neuron influential for at least
    :data:`INFLUENTIAL_SHOWN` of them (``"influential for p %"``), then the ``n`` with the largest
    mean influence weight (``"weight #k"``) where they add any. A neuron picked by several
    rankings lists every reason.

    >>> import torch
    >>> from convsvd.decompose import decompose
    >>> svd = decompose(torch.nn.Sequential(torch.nn.Linear(4, 3)))
    >>> choose_neurons(svd["0"], 2)
    {0: 'σ #1', 1: 'σ #2'}
    """
    why: dict[int, list[str]] = {}
    for rank, i in enumerate(top_neurons(layer, n), 1):
        why.setdefault(i, []).append(f"σ #{rank}")
    if profile is not None and len(profile):
        r = int(layer.S.shape[-1])
        key = profile["group"].to_numpy(np.int64) * r + profile["neuron"].to_numpy(np.int64)
        sums = pd.DataFrame(dict(key=key, inputs=profile["inputs"].to_numpy(np.float64),
                                 count=profile["influential_count"].to_numpy(np.float64),
                                 weight=(profile["mean_weight"] * profile["inputs"]).to_numpy(np.float64)))
        per = sums.groupby("key").sum()
        share = per["count"] / per["inputs"].where(per["inputs"] > 0, 1.0)
        mean_weight = per["weight"] / per["inputs"].where(per["inputs"] > 0, 1.0)
        by_share = share.sort_values(ascending=False, kind="stable")
        for i, p in by_share.items():
            if p > 0 and (len([k for k in why if "influential" in " ".join(why[k])]) < n or p >= INFLUENTIAL_SHOWN):
                why.setdefault(int(i), []).append(f"influential for {100 * p:.0f} %")
        for rank, (i, w) in enumerate(mean_weight.sort_values(ascending=False, kind="stable").head(n).items(), 1):
            if w > 0 and int(i) not in why:
                why[int(i)] = [f"weight #{rank}"]
    return {i: ", ".join(reasons) for i, reasons in why.items()}


#: Inputs read to find the data's range, to which feature visualisations are clipped.
RANGE_INPUTS = 512


def data_range(source: "DataSource", most: int = RANGE_INPUTS,
               batch_size: int = 128) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Per channel ``(lo, hi)`` over the first ``most`` inputs of a data source, as the model sees them
    (after its transform); None when there are no image inputs or a channel is constant."""
    lo = hi = None
    seen = 0
    for _, batch in source.iter_batches(batch_size):
        x = batch.inputs
        if x.dim() != 4 or not x.shape[0]:
            return None
        x = x.detach().double().transpose(0, 1).reshape(x.shape[1], -1)
        b_lo, b_hi = x.min(dim=1).values, x.max(dim=1).values
        lo = b_lo if lo is None else lo.minimum(b_lo)
        hi = b_hi if hi is None else hi.maximum(b_hi)
        seen += int(batch.inputs.shape[0])
        if seen >= most:
            break
    if lo is None or hi is None or not bool((hi > lo).all()):
        return None
    return tuple(float(v) for v in lo.tolist()), tuple(float(v) for v in hi.tolist())


def feature_side(side: tuple[int, int], most: int = FEATURE_SIDE) -> tuple[int, int]:
    """The side of the report's feature visualisations: the model's own, shrunk (keeping its aspect) so that the
    longer side is at most ``most``.

    >>> feature_side((224, 224)), feature_side((8, 8)), feature_side((256, 192))
    ((128, 128), (8, 8), (128, 96))
    """
    h, w = side
    if max(h, w) <= most:
        return (h, w)
    f = most / max(h, w)
    return (max(1, round(h * f)), max(1, round(w * f)))


def _first_input_shape(source: "DataSource") -> tuple[int, ...] | None:
    """``(C, *spatial)`` of the first input of a data source (reads one input)."""
    for _, batch in source.iter_batches(1, [0]):
        if batch.inputs.shape[0]:
            return tuple(int(s) for s in batch.inputs.shape[1:])
    return None


@dataclass(eq=False)
class Analysis:
    """The results of every step of one report, filled in step by step (:data:`STEPS`)."""

    model: object
    data: object | None
    options: Options
    signals_dir: Path
    weights: "ModelWeights | None" = None
    layer_table: pd.DataFrame | None = None
    source: "DataSource | None" = None
    svd: "Decomposition | None" = None
    table: "SignalTable | None" = None
    input_shape: tuple[int, ...] | None = None
    top: dict[str, list[int]] = field(default_factory=dict)
    why: dict[str, dict[int, str]] = field(default_factory=dict)
    exemplars: "dict[str, Exemplars]" = field(default_factory=dict)
    featureviz: "dict[str, FeatureVisualization]" = field(default_factory=dict)
    neuron_notes: list[Note] = field(default_factory=list)
    value_range: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    filters: "SingularFilters | None" = None
    filters_reason: str = ""
    init: object | None = None
    init_weights: "ModelWeights | None" = None
    spectrum: "SpectrumResult | None" = None
    spectrum_init: "SpectrumResult | None" = None
    views: "list[LayerSpectrum]" = field(default_factory=list)
    separation: "Separation | None" = None
    separation_reason: str = ""
    baselines: "pd.DataFrame | None" = None
    separation_baselines: "pd.DataFrame | None" = None
    baselines_note: str = ""
    accuracy: "Accuracy | None" = None
    profiles: "InputProfiles | None" = None
    profiles_reason: str = ""
    profiles_note: str = ""
    profile_seconds: float = 0.0

    # ------------------------------------------------------------------ helpers

    @property
    def mw(self) -> "ModelWeights":
        """The model's layers (after the load step)."""
        if self.weights is None:
            raise NotComputedError("report: the model is not loaded yet (run the load step first)")
        return self.weights

    @property
    def dec(self) -> "Decomposition":
        """The SVD of every layer (after the svd step)."""
        if self.svd is None:
            raise NotComputedError("report: the layers are not decomposed yet (run the svd step first)")
        return self.svd

    @property
    def first(self) -> "LayerSpec | None":
        """The model's first layer (registration order): the one that reads the input."""
        return self.mw.layers[0] if len(self.mw.layers) else None

    @property
    def runnable(self) -> bool:
        return self.weights is not None and self.weights.model is not None

    # ------------------------------------------------------------------ steps

    def load(self, progress: Progress) -> None:
        """Read the model and check the data (cheap: before any heavy work)."""
        self.weights = as_weights(self.model).select(self.options.layers)
        self.layer_table = describe(self.weights)
        self.input_shape = self.options.input_shape
        if self.init is not None:
            init = as_weights(self.init)
            missing = [n for n in self.weights.names if n not in init.names]
            if missing:
                raise InputError(f"init {init.source!r}: has no layer {missing[0]!r} (expected the same model at its "
                                 f"random initialisation)")
            self.init_weights = init.select(self.weights.names)
        if self.data is not None:
            self.source = as_source(self.data)
            if not self.runnable:
                raise InputError(f"model {self.mw.source!r}: the data sections run the model, so it needs an "
                                 f"nn.Module, not a weights-only {self.mw.format} file (load it with its "
                                 f"'package.module:factory', or give no data)")

    def decompose(self, progress: Progress) -> None:
        """Full SVD of every layer, and the top SVD neurons of the layers shown."""
        o = self.options
        self.svd = decompose(self.mw, mode="full", device=o.device, fold_bn=o.fold_bn, progress=progress)
        shown = _evenly_spaced(list(self.dec.layers), o.feature_layers)
        self.why = {n: choose_neurons(self.dec[n], o.neurons) for n in shown}
        self.top = {n: list(w) for n, w in self.why.items()}
        if len(shown) < len(self.dec):
            self.neuron_notes.append(Note(f"{len(shown)} of the {len(self.dec)} layers are shown, evenly spaced "
                                          f"in depth."))

    def profile(self, progress: Progress) -> None:
        """Signals of the dataset on every SVD neuron (a SignalTable in the data folder)."""
        if self.source is None:
            return
        o = self.options
        expected = plan_projection(self.mw, svd=self.dec, fold_bn=o.fold_bn).expected_input(self.input_shape)
        self.source = self.source.conform(expected)
        # the model's own accuracy under the data transform, from the predictions of the profiling pass
        # (one forward call per batch); a second pass over the data only when they cannot be paired
        t0 = time.perf_counter()
        net = self.mw.model if isinstance(self.mw.model, torch.nn.Module) else None
        with PredictionRecorder(net) if net is not None else contextlib.nullcontext() as recorder:
            self.table = profile(self.mw, self.source, layers=list(self.dec.layers), batch_size=o.batch_size,
                                 threshold=o.threshold, top_k=o.top_k, device=o.device, fold_bn=o.fold_bn,
                                 input_shape=self.input_shape, out=self.signals_dir, svd=self.dec, progress=progress)
        self.profile_seconds = time.perf_counter() - t0
        self.input_shape = self.input_shape or _first_input_shape(self.source)
        got = None
        if recorder is not None and self.table.layers:
            labels = [lab for _, lab, _, _ in self.table.chunks(self.table.layers[0])]
            got = recorder.accuracy(np.concatenate(labels) if labels else np.empty(0, np.int64),
                                    str(self.source.describe().get("transform", "")), self.source.classes or ())
        self.accuracy = got or accuracy(self.mw.model, self.source, batch_size=o.batch_size, device=o.device)
        for name in list(self.top):  # add the neurons the inputs rely on to the largest-σ ones
            if name in self.table.layers:
                self.why[name] = choose_neurons(self.dec[name], o.neurons, self.table.class_profile(name))
                self.top[name] = list(self.why[name])

    def find_exemplars(self, progress: Progress) -> None:
        """The dataset inputs with the largest and smallest signal of each top SVD neuron."""
        if self.table is None:
            return
        # from the signal store: one read of the data for every layer's exemplar images, and (runnable
        # models) one pass of the model over them for where each exemplar's neuron fires
        wanted = {name: neurons for name, neurons in self.top.items() if name in self.table.layers}
        self.exemplars.update(exemplars_of_layers(
            self.table, wanted, k=self.options.k, data=self.source, model=self.mw if self.runnable else None,
            svd=self.dec, fold_bn=self.options.fold_bn, batch_size=min(self.options.batch_size, 64)))

    def visualise(self, progress: Progress) -> None:
        """Feature visualisation of the top SVD neurons (needs a runnable model that reads images)."""
        first = self.first
        if self.runnable and self.mw.format == "onnx":
            self.neuron_notes.append(Note(f"Feature visualisation needs gradients; {self.mw.source} is an ONNX file, "
                                          f"run without them (load the torch model to add it).", "missing"))
            return
        if not self.runnable:
            self.neuron_notes.append(Note(
                f"Feature visualisation runs the model; {self.mw.source} is a weights-only {self.mw.format} file "
                f"(load it with its 'package.module:factory' to add it).", "missing"))
            return
        if first is None or first.kind != "conv2d":
            self.neuron_notes.append(Note("Feature visualisation needs a model that reads images (a first conv2d "
                                          "layer).", "missing"))
            return
        o = self.options
        if self.source is not None:  # clip what the model sees to the range of the data it was given
            self.value_range = data_range(self.source, batch_size=o.batch_size)
            if self.value_range is not None and len(self.value_range[0]) != first.in_channels:
                self.value_range = None
        guessed = not (self.input_shape and len(self.input_shape) == 3)
        shape = self.input_shape if self.input_shape is not None and not guessed else (0, GUESSED_SIDE, GUESSED_SIDE)
        side = (int(shape[1]), int(shape[2]))
        small = feature_side(side)

        def run(name: str, steps: int, bar: Progress) -> "FeatureVisualization":
            return self._visualise_layer(name, self.top[name], steps, small, side, bar)

        try:
            started = time.perf_counter()  # the probe times steps 2 and 3 only: one-off costs are no step's cost
            layers, steps = self._feature_budget(list(self.top), o.steps, run)
            self._visualise_within(layers, steps, run, progress, started)
        except InputError as e:
            if not guessed:
                raise
            self.featureviz = {}  # the size was a guess: say so in the report instead of failing it
            self.neuron_notes.append(Note(f"Feature visualisation at the default input size {GUESSED_SIDE}×"
                                          f"{GUESSED_SIDE} failed ({e}); give the model's input size (input_shape=, "
                                          f"--input-size).", "missing"))

    def _visualise_layer(self, name: str, neurons: list[int], steps: int, small: tuple[int, int],
                         side: tuple[int, int], progress: Progress) -> "FeatureVisualization":
        """One layer's feature visualisations, the model run at the ``small`` side when it takes it."""
        o = self.options
        for input_size in dict.fromkeys([small, side]):
            try:
                return featureviz(self.mw, name, neurons, steps=steps, size=small, input_size=input_size,
                                  seed=o.seed, device=o.device, fold_bn=o.fold_bn, svd=self.dec,
                                  image=ImageParam(tv=REPORT_TV), value_range=self.value_range, progress=progress)
            except InputError:
                if input_size == side:
                    raise
                # a model that takes only its own size: the images are optimised at the smaller side and
                # enlarged to it (each step then costs what the full side costs)
        raise AssertionError("unreachable: the last size re-raises")  # pragma: no cover

    def _feature_budget(self, layers: list[str], steps: int,
                        run: Callable[[str, int, Progress], object]) -> tuple[list[str], int]:
        """The layers (and steps) of feature visualisation that fit :data:`FEATURE_BUDGET`.

        A few steps are timed on the deepest layer (the costliest: the forward and backward pass run
        up to the layer, on every image of its neurons) and on the first (the cheapest), from the first
        step's end to the last's, so that setting-up is left out; the layers between are estimated
        linearly by their position. When every layer's ``steps`` do not fit the budget, evenly spaced
        layers (first and last kept) are visualised instead, as many as fit; when not even one fits,
        the deepest layer with the steps that fit (at least :data:`FEATURE_MIN_STEPS`). The report
        says which and why.
        """
        budget = FEATURE_BUDGET[self.options.mode]
        if not layers:
            return layers, steps

        def per_step(name: str) -> float:
            stamps: list[float] = []
            run(name, FEATURE_PROBE_STEPS, lambda done, total, what: stamps.append(time.perf_counter()))
            return (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else 0.0

        last = per_step(layers[-1])
        first = per_step(layers[0]) if len(layers) > 1 else last
        n = len(layers)
        cost = {name: steps * (first + (last - first) * i / max(n - 1, 1)) for i, name in enumerate(layers)}
        if sum(cost.values()) <= budget:
            return layers, steps
        why = (f"at about {first:.2f} s a step on {layers[0]} and {last:.2f} s on {layers[-1]} (timed; the layers "
               f"between estimated from their depth), {steps} steps of each of the {n} layers would take about "
               f"{_duration(sum(cost.values()))}, over the {self.options.mode} report's "
               f"budget of {_duration(budget)} for this step")
        for m in range(n - 1, 0, -1):
            chosen = _evenly_spaced(layers, m) if m >= 2 else [layers[-1]]
            if sum(cost[c] for c in chosen) <= budget:
                self.neuron_notes.append(Note(f"Feature visualisation of {len(chosen)} of {n} layers "
                                              f"({', '.join(chosen)}): {why}. The other layers show their "
                                              f"exemplars.", "warning"))
                return chosen, steps
        fewer = int(budget // max(last, 1e-9))
        if fewer < FEATURE_MIN_STEPS:
            self.neuron_notes.append(Note(f"No feature visualisation: {why}, and even {FEATURE_MIN_STEPS} steps of "
                                          f"one layer would not fit.", "missing"))
            return [], steps
        self.neuron_notes.append(Note(f"Feature visualisation of {layers[-1]} only, with {fewer} steps instead of "
                                      f"{steps}: {why}.", "warning"))
        return [layers[-1]], fewer

    def _visualise_within(self, layers: list[str], steps: int,
                          run: Callable[[str, int, Progress], "FeatureVisualization"],
                          progress: Progress, started: float) -> None:
        """Visualise ``layers`` in turn, stopping before the next one once the budget is spent (the steps
        can take longer than the probe measured, e.g. when other work starts on the machine)."""
        budget = FEATURE_BUDGET[self.options.mode]
        for k, name in enumerate(layers):
            spent = time.perf_counter() - started
            if k and spent > budget:
                self.neuron_notes.append(Note(
                    f"Feature visualisation stopped after {k} of {len(layers)} layers: {_duration(spent)} spent, "
                    f"over the budget of {_duration(budget)} (the steps took longer than timed at the start).",
                    "warning"))
                return
            self.featureviz[name] = run(name, steps, progress)

    def singular_filters(self, progress: Progress) -> None:
        """The first layer's singular filters (a conv2d layer that reads images)."""
        first = self.first
        if first is None or first.kind != "conv2d":
            self.filters_reason = (f"The first layer, {first.name if first else '–'}, is "
                                   f"{first.kind if first else 'missing'}, not a conv2d layer that reads images.")
            return
        self.filters = singular_filters(self.mw, first.name, svd=self.dec, fold_bn=self.options.fold_bn)

    def spectra(self, progress: Progress) -> None:
        """ESDs, power-law and MP fits of every layer; the same at initialisation; three views of one conv layer.

        The trained layers are also compared with their own weights shuffled (the randomised baseline),
        except with ``quick``.
        """
        o = self.options
        common = dict(mp=True, fold_bn=o.fold_bn, device=o.device, progress=progress)
        self.spectrum = spectrum(self.mw, random_baseline=not o.quick, **common)  # type: ignore[arg-type]
        if self.init_weights is not None:
            self.spectrum_init = spectrum(self.init_weights, **common)  # type: ignore[arg-type]
        convs = [s for s in self.mw.layers if s.kind == "conv2d"]
        if convs:
            conv = max(convs, key=lambda s: s.weight.numel())  # the conv layer with the most weights
            # the operator view on the size the layer sees (traced from the input shape), within VIEW_BUDGET
            shape = self.input_shape if self.runnable else None
            try:
                op = spectrum(self.mw, view="operator", layers=[conv.name], input_shape=shape, budget=VIEW_BUDGET,
                              **common)  # type: ignore[arg-type]
            except InputError:  # the input shape does not fit the model: the default grid, and the row says so
                op = spectrum(self.mw, view="operator", layers=[conv.name], budget=VIEW_BUDGET, **common)  # type: ignore[arg-type]
            self.views = [self.spectrum[conv.name],
                          spectrum(self.mw, view="slices", layers=[conv.name], **common)[conv.name],  # type: ignore[arg-type]
                          op[conv.name]]

    def separate(self, progress: Progress) -> None:
        """Class separation across depth from the signal table (needs class labels)."""
        if self.table is None:
            self.separation_reason = "Class separation needs a dataset with class labels: none was given."
            return
        labels = self.table.scan(layer=self.table.layers[0], columns=["label"]).column("label").to_numpy()
        if not (labels >= 0).any():
            self.separation_reason = "Class separation needs class labels; the data have none."
            return
        self.separation = class_separation(self.table, min_share=self.options.min_share)

    def compare_baselines(self, progress: Progress) -> None:
        """What the claims are read against: per layer, the trained ESD against its shuffle and its
        initialisation (:func:`convsvd.spectral.spectral_baselines`); class separation in the channel
        and random bases and in a randomly initialised copy (:func:`convsvd.bases.compare_bases`).

        The separation baselines profile the dataset three more times: a quick report makes them when
        three times the profiling step's own time fits :data:`BASELINE_BUDGET` (a full report always),
        else the section says so.
        """
        from convsvd.spectral import spectral_baselines

        o = self.options
        init = self.init_weights if self.init_weights is not None else None
        self.baselines = spectral_baselines(self.mw, init=init, layers=list(self.dec.layers),
                                            progress=progress).to_frame()
        if self.separation is None or self.table is None or not self.runnable:
            return
        if o.quick and 3 * self.profile_seconds > BASELINE_BUDGET:
            self.baselines_note = (f"The separation baselines (channel and random bases, a random-initialisation "
                                   f"copy) were not made: they profile the {self.table.n_inputs} inputs three more "
                                   f"times, about {_duration(3 * self.profile_seconds)} at the profiling step's "
                                   f"{_duration(self.profile_seconds)}, over the quick report's budget of "
                                   f"{_duration(BASELINE_BUDGET)} for them (a full report makes them).")
            return
        from convsvd.bases import compare_bases

        common = dict(layers=list(self.table.layers), threshold=o.threshold, top_k=o.top_k, min_share=o.min_share,
                      batch_size=o.batch_size, device=o.device, progress=progress)
        frames = [compare_bases(self.mw, self.source, bases=("channel", "random"), **common)]  # type: ignore[arg-type]
        copy = self._initial_copy()
        if copy is not None:
            init = compare_bases(copy, self.source, bases=("svd",), **common)  # type: ignore[arg-type]
            init["basis"] = "svd, random initialisation"
            frames.append(init)
        self.separation_baselines = pd.concat(frames, ignore_index=True)

    def attribution_profiles(self, progress: Progress) -> None:
        """Attribution profiles (:func:`convsvd.profiles.profile_graph`) of the first inputs of the data.

        At most :data:`PROFILE_INPUTS` inputs, and as many as fit :data:`PROFILE_BUDGET`: the first
        :data:`PROFILE_PROBE` inputs are profiled and timed first, and the count is cut to what the
        budget allows at that rate (the section says so).
        """
        from convsvd.errors import ConvSVDError
        from convsvd.profiles import profile_graph

        if self.source is None or not self.runnable:
            self.profiles_reason = "Attribution profiles run the model on data: none was given."
            return
        o = self.options
        mode = o.mode
        want, budget = PROFILE_INPUTS[mode], PROFILE_BUDGET[mode]

        def run(n: int, bar: Progress) -> "InputProfiles":
            return cast("InputProfiles", profile_graph(  # held in memory (not streamed)
                self.mw, self.source, batch_size=min(o.batch_size, n), device=o.device,
                input_shape=self.input_shape, limit=n, progress=bar))

        try:
            total = min(want, len(self.source))
            probe = min(total, PROFILE_PROBE)
            t0 = time.perf_counter()
            ps = run(probe, False)
            per_input = (time.perf_counter() - t0) / probe
            n = min(total, max(probe, int(budget // max(per_input, 1e-9))))
            if n < total:
                self.profiles_note = (f"Profiles of the first {n} inputs instead of {total}: "
                                      f"at about {per_input:.2f} s an input (timed on the first {probe}), more would "
                                      f"pass the {mode} report's budget of {_duration(budget)} for this step.")
            self.profiles = ps if n <= probe else run(n, progress)
        except ConvSVDError as e:
            self.profiles_reason = f"No attribution profiles: {e}"

    def _initial_copy(self) -> "object | None":
        """The runnable model at its initialisation: the ``init`` model when it runs, else the same
        architecture with every layer re-initialised (``reset_parameters``, seeded)."""
        import copy

        if self.init is not None and getattr(as_weights(self.init), "model", None) is not None:
            return as_weights(self.init).model
        model = self.mw.model
        if model is None or self.mw.format == "onnx" or not isinstance(model, torch.nn.Module):
            return None  # an ONNX graph runs in ONNX Runtime: there is no module to re-initialise
        fresh = copy.deepcopy(model)
        torch.manual_seed(self.options.seed)
        for m in fresh.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
        return fresh


#: Seconds a quick report may spend on the separation baselines (three more profile passes, estimated
#: from the profiling step's own time).
BASELINE_BUDGET = 30.0

#: The computing steps, in order: (name shown in the progress bar and the timings, method).
STEPS: tuple[tuple[str, Callable[[Analysis, Progress], None]], ...] = (
    ("load", Analysis.load),
    ("svd", Analysis.decompose),
    ("profile", Analysis.profile),
    ("exemplars", Analysis.find_exemplars),
    ("feature visualisation", Analysis.visualise),
    ("singular filters", Analysis.singular_filters),
    ("spectra", Analysis.spectra),
    ("class separation", Analysis.separate),
    ("baselines", Analysis.compare_baselines),
    ("attribution profiles", Analysis.attribution_profiles),
)
