"""Each report section built from result objects: tables, figures (from :mod:`convsvd.viz`) and notes.

Nothing is computed here but the small tables a section shows; every function
takes the results of the public API calls made by :mod:`convsvd.report.build`
and returns one :class:`~convsvd.report.content.Section`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from convsvd.report.content import (PICTURE_PX, Data, Figure, Heading, Html, NeuronRow, Note, Picture, Section, Table,
                                    file_key, image_png)
from convsvd.report.html import package_text
from convsvd.viz._common import figure_of

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    from convsvd.decompose import Decomposition, LayerSVD
    from convsvd.features import Exemplars, FeatureVisualization, SingularFilters
    from convsvd.hypergraph import Separation
    from convsvd.io import ModelWeights
    from convsvd.signals import SignalTable
    from convsvd.signals.accuracy import Accuracy
    from convsvd.spectral import LayerSpectrum, SpectrumResult

__all__ = [
    "SECTION_TITLES",
    "filters_section",
    "metadata_section",
    "methods_section",
    "missing_section",
    "model_section",
    "neurons_section",
    "neuron_frame",
    "separation_section",
    "singular_value_frame",
    "spectra_section",
]

#: Every section of a report, in order: id → title (the table of contents).
SECTION_TITLES: dict[str, str] = {
    "model": "The model",
    "spectra": "Spectra",
    "filters": "First-layer singular filters",
    "neurons": "SVD neurons that matter, per layer",
    "separation": "Class separation across depth",
    "profiles": "Attribution profiles",
    "methods": "Methods",
    "metadata": "Run metadata",
}


def missing_section(sid: str, reason: str) -> Section:
    """A section that could not be made, saying why."""
    return Section(sid, SECTION_TITLES[sid], (Note(reason, "missing"),), status="missing")


# --------------------------------------------------------------------------- the model


def singular_value_frame(svd: "Decomposition") -> pd.DataFrame:
    """Every singular value: ``layer, group, index, sigma, share, cumulative`` (share of ``Σ_j ‖W̄_j‖²_F``, groups pooled)."""
    parts = []
    for name, l in svd.layers.items():
        S = l.S.detach().double().cpu().numpy()
        g, r = S.shape
        share = S**2 / float(l.fro2.double().sum())
        order = np.argsort(-S.reshape(-1), kind="stable")
        cumulative = np.empty(g * r)
        cumulative[order] = np.cumsum(share.reshape(-1)[order])
        parts.append(pd.DataFrame(dict(layer=name, group=np.repeat(np.arange(g), r), index=np.tile(np.arange(r), g),
                                       sigma=S.reshape(-1), share=share.reshape(-1), cumulative=cumulative)))
    return pd.concat(parts, ignore_index=True)


def model_section(weights: "ModelWeights", layers: pd.DataFrame, svd: "Decomposition", top_k: int = 10,
                  accuracy: "Accuracy | None" = None) -> Section:
    """Every analysed layer, what was skipped and why, each layer's singular values and, with labelled
    data, the model's own accuracy and confusion matrix.

    ``layers`` is :func:`convsvd.layers.describe` of the model.
    """
    from convsvd.viz import svd_figure

    analysed = layers[layers["status"] == "analysed"]
    skipped = layers[layers["status"] == "skipped"][["name", "weight_shape", "params", "reason"]]
    show = analysed[["name", "type", "weight_shape", "unfolded_shape", "groups", "params"]]
    if (analysed["reason"] != "").any():
        show = analysed[["name", "type", "weight_shape", "unfolded_shape", "groups", "params", "reason"]]
    folded = {name: l.folded for name, l in svd.layers.items() if l.folded}
    if folded:
        show = show.assign(folded=show["name"].map(folded).fillna(""))
    frame = svd.to_frame(top_k=top_k)
    summary = frame[["name", "kind", "groups", "unfolded_shape", "rank", "sigma_max", "sigma_min", "stable_rank",
                     "energy_top_k"]]
    blocks: list = [
        Table("layers", show.reset_index(drop=True),
              f"{len(analysed)} linear maps analysed; the unfolded shape is that of each group's matrix W̄_j.",
              {"weight_shape": "weight shape", "unfolded_shape": "unfolded W̄_j", "params": "parameters",
               "folded": "BatchNorm folded in"}),
    ]
    if len(skipped):
        blocks.append(Table("skipped", skipped.reset_index(drop=True), f"{len(skipped)} parameters not analysed, and why.",
                            {"weight_shape": "shape", "params": "parameters"}))
    else:
        blocks.append(Note("Nothing was skipped: every parameter belongs to an analysed layer."))
    blocks += [
        Figure.from_matplotlib("svd-spectra", svd_figure(svd),
                               "Left: singular values of each layer divided by its σ_max, against the relative index "
                               "i/r. Right: share of ‖W̄‖²_F kept by the k leading triplets (dotted: 90 %).",
                               ("singular_values",), names=list(svd.layers)),
        Table("svd", summary.reset_index(drop=True),
              f"SVD of every layer (groups pooled). Energy: share of ‖W̄‖²_F in the {top_k} largest singular values.",
              {"unfolded_shape": "unfolded W̄_j", "sigma_max": "σ_max", "sigma_min": "σ_min",
               "stable_rank": "stable rank", "energy_top_k": f"energy top {top_k}"}),
    ]
    data = [Data("singular_values", singular_value_frame(svd), "every singular value of every layer")]
    if accuracy is not None and accuracy.confusion is not None:
        from convsvd.viz.accuracy import plot_confusion

        blocks.append(Figure.from_matplotlib(
            "confusion", figure_of(plot_confusion(accuracy)),
            f"The model's own predictions on the data ({accuracy.transform or 'as read'}): each row is a label, "
            f"each column a predicted output, coloured by the share of the label's inputs. A wrong input transform "
            f"shows here first.", ("confusion",)))
        data.append(Data("confusion", accuracy.confusion_frame(), "the confusion matrix: label × predicted output"))
    intro = (f"{weights.source} ({weights.format}): {len(analysed)} conv and linear layers, "
             f"{int(analysed['params'].sum()):,} parameters analysed, {len(skipped)} parameters skipped"
             + (f"; accuracy on the data: {accuracy.describe()}." if accuracy is not None else "."))
    return Section("model", SECTION_TITLES["model"], tuple(blocks), tuple(data), intro=intro)


# --------------------------------------------------------------------------- spectra


_SPECTRA_COLUMNS = ["name", "n_evals", "alpha", "sigma", "num_pl_spikes", "p_exp", "alpha_weighted", "lambda_max",
                    "stable_rank", "num_spikes", "rand_distance", "correlation_trap", "phenomenology",
                    "headline_reason"]
_SPECTRA_LABELS = {"n_evals": "λ count", "alpha": "α", "sigma": "± (s.e.)", "alpha_weighted": "α·log10 λmax",
                   "num_pl_spikes": "tail", "p_exp": "p (vs exp.)", "lambda_max": "λmax", "stable_rank": "stable rank",
                   "num_spikes": "MP spikes", "rand_distance": "vs shuffled", "correlation_trap": "trap",
                   "headline_reason": "in α̂"}
_SUMMARY_COLUMNS = ["label", "alpha_hat", "alpha", "lambda_max", "stable_rank", "entropy", "num_spikes", "rand_distance",
                    "n_headline", "n_analysed", "n_failed", "alpha_hat_all"]


def _shown(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of ``frame``, without those that are empty (NaN or None) everywhere."""
    return frame[[c for c in columns if not frame[c].isna().all()]]


def _spectra_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The shown columns of a spectrum table; ``headline_reason`` reads "yes" or why not."""
    shown = _shown(frame, _SPECTRA_COLUMNS).copy()
    if "headline_reason" in shown:
        shown["headline_reason"] = shown["headline_reason"].where(shown["headline_reason"] != "", "yes")
    return shown


def _grid(draw: Callable[[Any, "Axes"], object], items: Sequence[Any], size: tuple[float, float],
          cols: int = 3) -> "MplFigure":
    """One panel per item, ``cols`` to a row."""
    import matplotlib.pyplot as plt

    rows = -(-len(items) // cols)
    ncols = min(cols, len(items))
    fig = plt.figure(figsize=(size[0] * ncols, size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, ncols, squeeze=False).reshape(-1)
    for ax, item in zip(axes, items):
        draw(item, ax)
    for ax in axes[len(items):]:
        ax.set_visible(False)
    return fig


def _esd_frame(result: "SpectrumResult", model: str) -> pd.DataFrame:
    """Every eigenvalue of every layer: ``model, layer, view, lambda`` (the shuffled layers' as ``"<model> shuffled"``)."""
    parts = []
    for layer in result.layers:
        parts.append(pd.DataFrame(dict(model=model, layer=layer.name, view=layer.view, **{"lambda": layer.evals})))
        if layer.random is not None:
            parts.append(pd.DataFrame(dict(model=f"{model} shuffled", layer=layer.name, view=layer.view,
                                           **{"lambda": layer.random.evals})))
    return pd.concat(parts, ignore_index=True)


def _alpha_figure(results: Sequence["SpectrumResult"], labels: Sequence[str]) -> "MplFigure":
    import matplotlib.pyplot as plt

    from convsvd.viz import plot_alpha_depth

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.8), layout="constrained")
    plot_alpha_depth(results, labels=labels, ax=left, quantity="alpha")
    plot_alpha_depth(results, labels=labels, ax=right, quantity="alpha_weighted")
    return fig


def spectra_section(trained: "SpectrumResult", init: "SpectrumResult | None", views: Sequence["LayerSpectrum"],
                    shown: Sequence[str], baselines: pd.DataFrame | None = None) -> Section:
    """α per layer and α̂; ESDs with their MP and power-law fits; trained vs initialisation; three views of a conv."""
    from convsvd.spectral import compare
    from convsvd.viz import plot_esd, plot_trained_vs_random, plot_views

    results = [trained] if init is None else [trained, init]
    labels = ["trained"] if init is None else ["trained", "initialisation"]
    summary = _shown(compare(results, labels=labels), _SUMMARY_COLUMNS)
    layers = [trained[n] for n in shown if n in trained.names]
    hat = float(summary["alpha_hat"].iloc[0]) if "alpha_hat" in summary else float("nan")
    blocks: list = [
        Table("spectra_summary", summary,
              "α̂ = mean of α·log10 λmax over the headline layers (fitted, at least 32 eigenvalues and 10 tail "
              "points), and the means of the layer metrics over them; α̂ (all) takes every fitted layer"
              + (" — trained, and at the random initialisation." if init is not None else "."),
              {"label": "model", "alpha_hat": "α̂", "alpha": "mean α", "lambda_max": "mean λmax",
               "stable_rank": "mean stable rank", "entropy": "mean entropy", "num_spikes": "mean MP spikes",
               "rand_distance": "mean distance to shuffled", "n_headline": "layers in α̂",
               "n_analysed": "layers fitted", "n_failed": "not fitted", "alpha_hat_all": "α̂ (all)"}),
        Figure.from_matplotlib("spectra-alpha", _alpha_figure(results, labels),
                               "Left: power-law exponent α of each layer with its standard error (the heavy-tailed band "
                               "2 ≤ α ≤ 6 shaded); right: α·log10 λmax, whose mean over the headline layers is α̂. "
                               "Hollow markers: layers left out of α̂ (fewer than 32 eigenvalues or 10 tail points).",
                               ("spectra_layers", "spectra_init") if init is not None else ("spectra_layers",),
                               names=trained.names),
        Table("spectra", _spectra_table(trained.to_frame()),
              f"Every layer's ESD (view: {trained.view}): power-law fit of the tail (α ± its standard error, tail "
              f"size), p: the p-value of the power law against an exponential on the same tail (large p: the data "
              f"cannot tell them apart), norms, spikes above the Marchenko–Pastur bulk, the KS distance to the ESD "
              f"of the layer's shuffled weights, trap: the shuffled layer still has a spike (a few large weights), "
              f"the phenomenology, and whether the layer enters α̂ (at least 32 eigenvalues and 10 tail points) or "
              f"why not. Every metric, x_min, D and the MP fit included, is in spectra_layers.", _SPECTRA_LABELS),
    ]
    if layers:
        shuffled = ", and the ESD of the layer's shuffled weights (gray)" if layers[0].random is not None else ""
        blocks.append(Figure.from_matplotlib(
            "spectra-esd", _grid(lambda l, ax: plot_esd(l, log=True, ax=ax), layers, (4.2, 3.2)),
            f"ESD of each layer on log-log axes: histogram of λ = σ²/N, Marchenko–Pastur density of the bulk (solid), "
            f"fitted power law of the tail (dashed, from x_min){shuffled}.", ("esd",), names=[l.name for l in layers]))
    pairs = [(l, init[l.name]) for l in layers if l.name in init.names] if init is not None else []
    if pairs:
        blocks.append(Figure.from_matplotlib(
            "spectra-init", _grid(lambda p, ax: plot_trained_vs_random(p[0], p[1], ax=ax), pairs, (4.2, 3.2)),
            "ESD of each layer trained (blue) and at its random initialisation (gray), each with its "
            "Marchenko–Pastur fit: training moves eigenvalues out of the random bulk.", ("esd",),
            names=[p[0].name for p in pairs]))
    data = [Data("spectra_layers", trained.to_frame(), "every spectral metric of every layer"),
            Data("esd", pd.concat([_esd_frame(trained, "trained")] + ([_esd_frame(init, "initialisation")]
                                                                       if init is not None else []),
                                  ignore_index=True), "every eigenvalue of every layer")]
    if init is not None:
        data.append(Data("spectra_init", init.to_frame(), "the layer metrics at the random initialisation"))
    if views:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(4.2 * len(views), 3.4), layout="constrained")
        plot_views(views, axes=list(fig.subplots(1, len(views), squeeze=False)[0]))
        blocks.append(Figure.from_matplotlib(
            "spectra-views", fig,
            f"Three views of {views[0].name}, the conv layer with the most weights: its unfolded matrix W̄ (the "
            f"paper's), its per-tap k×k slices (WeightWatcher's), and the whole convolution as an operator on an "
            f"n×n input (circular padding, stride 1; n: the size the layer sees, traced from the model's input, "
            f"unless its cost estimate exceeds the budget; see the table).",
            ("views",), names=[views[0].name]))
        data.append(Data("views", pd.concat([pd.DataFrame(dict(layer=v.name, view=v.view, **{"lambda": v.evals}))
                                             for v in views], ignore_index=True),
                         "the eigenvalues of one conv layer in each view"))
        blocks.append(Table("views_metrics", pd.concat([v.to_frame() for v in views])[
            ["name", "view", "shape", "n_evals", "alpha", "lambda_max", "stable_rank", "status", "n", "input_size",
             "n_reason"]],
            f"{views[0].name} in each view.", _SPECTRA_LABELS))
    if baselines is not None and len(baselines):
        cols = [c for c in ("name", "n_evals", "alpha", "alpha_shuffle", "ks_shuffle", "null_threshold",
                            "distinguishable_from_shuffle", "alpha_init", "ks_init", "distinguishable_from_init")
                if c in baselines.columns and not baselines[c].isna().all()]
        blocks.append(Table("spectra_baselines", baselines[cols],
                            "Is each trained layer distinguishable from random? KS distance between its ESD and that "
                            "of its element-wise shuffle (and of its initialisation, when known); a layer is "
                            "distinguishable when the distance exceeds the largest distance between the shuffle and "
                            "further shuffles (null_threshold). Every column is in spectra_baselines.",
                            {"n_evals": "λ count", "alpha": "α", "alpha_shuffle": "α shuffled",
                             "ks_shuffle": "KS vs shuffle", "null_threshold": "null threshold",
                             "distinguishable_from_shuffle": "≠ shuffle", "alpha_init": "α init",
                             "ks_init": "KS vs init", "distinguishable_from_init": "≠ init"}))
    failed = trained.to_frame().query("status != 'ok'")
    for _, row in failed.iterrows():
        blocks.append(Note(f"{row['name']}: not fitted ({row['status']}).", "warning"))
    intro = (f"The empirical spectral density (ESD) of each layer and its heavy tail: α̂ = {hat:.3g}. Heavy tails "
             f"(small α) mark layers that learned correlations; α > 6 is close to random.")
    return Section("spectra", SECTION_TITLES["spectra"], tuple(blocks), tuple(data), intro=intro)


# --------------------------------------------------------------------------- first-layer filters


def filters_section(sf: "SingularFilters | None", reason: str = "") -> Section:
    """The first layer's singular filters and its rank-r rebuild."""
    if sf is None:
        return missing_section("filters", reason)
    from convsvd.viz import features_figure

    g, r = sf.sigma.shape
    fig = features_figure(filters=sf, neurons=list(range(g * r)))
    values = sf.to_frame().assign(filter=[f.reshape(-1).tolist() for f in sf.filters.reshape(g * r, -1).double()],
                                  filter_shape=[list(sf.filters.shape[2:])] * (g * r))
    blocks = (
        Figure.from_matplotlib("filters", fig,
                               f"Singular filters of {sf.layer} (rows of Vᵀ reshaped to the kernel; gray is 0), and the "
                               f"layer's filters beside their rank-{sf.rank} rebuild, which keeps "
                               f"{100 * sf.energy:.1f} % of ‖W̄‖²_F.", ("filters", "filter_values"),
                               names=[sf.layer]),
        Table("filters", sf.to_frame().drop(columns=["layer"] + (["group"] if g == 1 else [])),
              f"{sf.layer}: singular value, share of ‖W̄‖²_F and cumulative share of each singular filter; "
              f"'kept' marks the rank-{sf.rank} rebuild.",
              {"neuron": "filter", "sigma": "σ", "share": "share", "cumulative": "cumulative"}),
    )
    intro = (f"The right singular vectors of the layer that reads the image, {sf.layer}: the input patterns its SVD "
             f"neurons respond to (signal = σ_i v_iᵀ patch).")
    return Section("filters", SECTION_TITLES["filters"], blocks,
                   (Data("filter_values", values, "each singular filter's values, flattened in (c, k1, k2) order"),),
                   intro=intro)


# --------------------------------------------------------------------------- top SVD neurons


def neuron_frame(layer: "LayerSVD", neurons: Sequence[int] | Mapping[int, str], table: "SignalTable | None" = None,
                 ) -> pd.DataFrame:
    """``neuron, group, index, sigma, share, cumulative`` of the chosen SVD neurons of a layer, ``why`` when
    ``neurons`` maps each neuron to why it is shown, and with a signal table ``influential`` (share of the
    inputs for which it is influential) and ``mean_signal``."""
    S = layer.S.detach().double().cpu()
    g, r = S.shape
    flat = S.reshape(-1).numpy()
    share = flat**2 / float(layer.fro2.double().sum())
    order = np.argsort(-flat, kind="stable")
    cumulative = np.empty_like(share)
    cumulative[order] = np.cumsum(share[order])
    idx = np.asarray(list(neurons), dtype=np.int64)
    frame = pd.DataFrame(dict(neuron=idx, group=idx // r, index=idx % r, sigma=flat[idx], share=share[idx],
                              cumulative=cumulative[idx]))
    if isinstance(neurons, Mapping):
        frame.insert(1, "why", [neurons[int(i)] for i in idx])
    if table is not None and layer.name in table.layers:
        prof = table.class_profile(layer.name)  # streams the layer's rows: per class × neuron
        key = prof["group"].to_numpy(np.int64) * r + prof["neuron"].to_numpy(np.int64)
        sums = pd.DataFrame(dict(key=key, inputs=prof["inputs"], count=prof["influential_count"],
                                 signal=prof["mean_signal"] * prof["inputs"])).groupby("key").sum()
        frame["influential"] = (sums["count"] / sums["inputs"]).reindex(idx).to_numpy()
        frame["mean_signal"] = (sums["signal"] / sums["inputs"]).reindex(idx).to_numpy()
    if g == 1:
        frame = frame.drop(columns=["group", "index"])
    return frame


def _fv_frame(fv: "FeatureVisualization") -> pd.DataFrame:
    """The optimised images with their signals; pixels flattened in (c, h, w) order."""
    frame = fv.to_frame()
    frame["image_shape"] = [list(fv.images.shape[1:])] * len(frame)
    frame["image"] = [im.reshape(-1).tolist() for im in fv.images.double()]
    return frame


def _neuron_rows(name: str, layer: "LayerSVD", neurons: Sequence[int] | Mapping[int, str],
                 fv: "FeatureVisualization | None", ex: "Exemplars | None", data: tuple[str, ...]) -> list[NeuronRow]:
    """One row per shown SVD neuron: its optimised images at full size, its exemplars (with classes) beside them."""
    from convsvd.viz.features import feature_tiles, neuron_exemplars_figure

    g_count, r = layer.S.shape
    S = layer.S.detach().double().cpu().reshape(-1).numpy()
    with_ex = set(ex.neurons()) if ex is not None and ex.images is not None else set()
    rows: list[NeuronRow] = []
    for flat in neurons:
        g, i = divmod(int(flat), r)
        tiles = feature_tiles(fv, i, g) if fv is not None else []
        if not tiles and (g, i) not in with_ex:
            continue
        who = f"g{g} n{i}" if g_count > 1 else f"n{i}"
        why = neurons[flat] if isinstance(neurons, Mapping) else ""
        label = f"{who} · σ = {S[int(flat)]:.3g}" + (f" · {why}" if why else "")
        pictures = tuple(Picture(image_png(rgb), lab, f"{name} {who}: input optimised for {lab}")
                         for lab, rgb in tiles)
        figure = None
        if (g, i) in with_ex:
            assert ex is not None
            figure = Figure.from_matplotlib(f"exemplars-{file_key(name)}-{who.replace(' ', '-')}",
                                            neuron_exemplars_figure(ex, i, g), "", names=(name,))
        caption = ""
        if not rows:  # the first row of a layer says what every row shows, and links the numbers
            what = ", then ".join(x for x in (
                f"inputs optimised for +u_i and −u_i ({fv.steps} steps, {fv.images.shape[-1]} px, shown at "
                f"{PICTURE_PX} px)" if fv is not None else "",
                f"the {ex.k} dataset inputs with the largest (top row) and the smallest (bottom row) signal, each "
                "with its class and where the neuron fires (red +, blue −)" if with_ex and ex is not None else "")
                if x)
            caption = f"{name}: one row per SVD neuron: {what}."
        rows.append(NeuronRow(f"neuron-{file_key(name)}-{who.replace(' ', '-')}", name, label, pictures, figure,
                              caption, data))
    return rows


def neurons_section(
    svd: "Decomposition",
    neurons: Mapping[str, Sequence[int] | Mapping[int, str]],
    table: "SignalTable | None",
    fvs: Mapping[str, "FeatureVisualization"],
    exs: Mapping[str, "Exemplars"],
    notes: Sequence[Note] = (),
    separation: "Separation | None" = None,
) -> Section:
    """Per layer: the SVD neurons that matter (largest σ, and the ones the inputs rely on), their σ and share
    of energy, how often each class relies on them, their feature visualisations and exemplars.

    ``neurons`` maps each layer to its neurons, or to ``{neuron: why shown}``
    (:func:`convsvd.report.analysis.choose_neurons`).
    """
    from convsvd.viz import plot_incidence

    blocks: list = list(notes)
    data: list[Data] = []
    for name, idx in neurons.items():
        key = file_key(name)
        blocks.append(Heading(name, f"neurons-{key}", layer=True))
        profiled = table is not None and name in table.layers
        blocks.append(Table(f"neurons-{key}", neuron_frame(svd[name], idx, table),
                            f"{name}: the {len(idx)} SVD neurons shown — the ones with the largest singular values"
                            + (" and the ones the inputs rely on (influential for the most inputs, or for at least "
                               "20 % of them)" if profiled else "") + "; why: which ranking picked each. "
                            "share: σ²/‖W̄‖²_F; "
                            + ("influential: share of the inputs for which the neuron is influential; mean signal: "
                               "over the inputs." if profiled else ""),
                            {"sigma": "σ", "influential": "influential", "mean_signal": "mean signal"}))
        if separation is not None and name in separation.names:
            ax = plot_incidence(separation[name])
            blocks.append(Figure.from_matplotlib(
                f"classes-{key}", figure_of(ax), f"{name}: for each class (row) and SVD neuron (column), the share of "
                "the class's inputs for which the neuron is influential; a dot marks the class's hyperedge.",
                (f"neurons-{key}",), names=[name]))
        fv, ex = fvs.get(name), exs.get(name)
        if fv is None and ex is None:
            continue
        parts = []
        if fv is not None:
            data.append(Data(f"featureviz-{key}", _fv_frame(fv), f"{name}: optimised images"))
            parts.append(f"featureviz-{key}")
        if ex is not None:
            data.append(Data(f"exemplars-{key}", ex.to_frame(), f"{name}: dataset exemplars"))
            parts.append(f"exemplars-{key}")
        blocks += _neuron_rows(name, svd[name], idx, fv, ex, tuple(parts))
    status = "partial" if any(n.kind == "missing" for n in notes) else "done"
    intro = ("For each layer, the SVD neurons with the largest singular values and, when a dataset was profiled, "
             "the ones its inputs rely on most: how much of the layer's energy each carries, how often each class "
             "relies on it, what input drives its signal, and which inputs of the dataset drive it most.")
    return Section("neurons", SECTION_TITLES["neurons"], tuple(blocks), tuple(data), status, intro)


# --------------------------------------------------------------------------- class separation


_SEPARATION_COLUMNS = ["layer", "neurons", "influential_mean", "mean_size", "empty_hyperedges", "jaccard_mean",
                       "exclusive_mean", "components_s1", "components_s2", "components_s3", "modularity",
                       "ncc_accuracy", "ncc_shuffled", "ncc_chance", "status"]


def _pair_figure(draw: Callable[[Any, "Axes"], object], first: object, last: object,
                 size: tuple[float, float]) -> "MplFigure":
    """Two panels side by side, the first layer's and the last layer's (one panel when they are the same)."""
    import matplotlib.pyplot as plt

    items = [first] if first is last else [first, last]
    fig = plt.figure(figsize=(size[0] * len(items), size[1]), layout="constrained")
    for ax, item in zip(fig.subplots(1, len(items), squeeze=False)[0], items):
        draw(item, ax)
    return fig


def _separation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The shown columns; modularity to 3 decimals (its value is not meaningful beyond, and float noise
    around 0 must not read as −1e−100)."""
    shown = frame[[c for c in _SEPARATION_COLUMNS if c in frame.columns]].copy()
    if "modularity" in shown:
        shown["modularity"] = shown["modularity"].astype(float).round(3) + 0.0  # + 0.0: no "-0.0"
    return shown


def separation_section(sep: "Separation", baselines: pd.DataFrame | None = None, note: str = "") -> Section:
    """Separation metrics across depth, the class-overlap matrices and class hypergraphs of the first and last layers."""
    from convsvd.viz import plot_class_hypergraph, plot_class_overlap, plot_separation

    frame = sep.to_frame()
    first, last = sep.layers[0], sep.layers[-1]
    ends = [first] if first is last else [first, last]
    which = " and ".join(l.layer for l in ends)
    C = len(first.classes)
    deepest = sep.deepest_shared()
    deepest = deepest[deepest["depth"] >= 0].head(10)
    blocks: list = [
        Figure.from_matplotlib("separation", plot_separation(sep),
                               f"Separation metrics layer by layer (p = {sep.min_share:g}: a neuron is in a class's "
                               f"hyperedge when it is influential for at least that share of the class's inputs); "
                               f"arrows point the way of more separation.", ("separation",), names=sep.names),
        Table("separation", _separation_table(frame),
              f"{int(frame['inputs'].iloc[0])} inputs of {int(frame['classes'].iloc[0])} classes. "
              "One row per layer: mean number of influential SVD neurons per input, mean class-hyperedge size, "
              "empty hyperedges, mean Jaccard overlap of the class hyperedges, mean exclusive share, s-connected "
              "components (s = 1, 2, 3), modularity of the classes on the dual input hypergraph (3 decimals), and the "
              "cross-validated nearest-class-centroid (NCC) accuracy on the signals — a measure of how separable "
              "the classes are, not the model's accuracy — beside the same NCC with shuffled labels and the chance "
              "level (the largest class's share).",
              {"influential_mean": "influential / input", "mean_size": "hyperedge size",
               "empty_hyperedges": "empty", "jaccard_mean": "Jaccard", "exclusive_mean": "exclusive",
               "components_s1": "comp. s=1", "components_s2": "comp. s=2", "components_s3": "comp. s=3",
               "ncc_accuracy": "NCC accuracy", "ncc_shuffled": "NCC, shuffled labels", "ncc_chance": "chance"}),
        Figure.from_matplotlib("class-overlap",
                               _pair_figure(lambda l, ax: plot_class_overlap(l, ax), first, last,
                                            (max(3.8, 0.42 * C + 2.4), max(3.2, 0.42 * C + 1.4))),
                               f"Jaccard overlap of the class hyperedges in {which} (gray: a class with no hyperedge).",
                               ("class_pairs",), names=[l.layer for l in ends]),
        Figure.from_matplotlib("class-hypergraphs",
                               _pair_figure(lambda l, ax: plot_class_hypergraph(l, ax), first, last, (5.6, 5.2)),
                               f"Class hypergraphs of {which}: each class is a hyperedge around the SVD neurons that "
                               f"are influential for at least {sep.min_share:g} of its inputs.", ("class_incidence",),
                               names=[l.layer for l in ends]),
    ]
    if len(deepest):
        blocks.append(Table("deepest_shared", deepest,
                            "Pairs of classes whose hyperedges still share SVD neurons deepest in the network.",
                            {"class_a": "class a", "class_b": "class b", "deepest_layer": "deepest layer",
                             "shared_neurons": "shared neurons"}))
    data: tuple[Data, ...] = (
        Data("class_pairs", sep.pairs_frame(), "per layer and pair of classes: shared neurons and Jaccard overlap"),
        Data("class_exclusive", sep.exclusive_frame(), "per layer and class: hyperedge size and exclusive share"),
        Data("class_incidence", pd.concat([l.incidence.to_frame() for l in sep.layers], ignore_index=True),
             "per layer, class and SVD neuron: inputs for which it is influential, share, hyperedge membership"),
    )
    notes = frame[frame["status"] != "ok"]
    for _, row in notes.iterrows():
        blocks.append(Note(f"{row['layer']}: {row['message']}", "warning"))
    if baselines is not None and len(baselines):
        from convsvd.viz.hypergraph import plot_separation_baselines

        svd = frame.assign(basis="svd")
        both = pd.concat([svd, baselines], ignore_index=True)
        blocks.append(Figure.from_matplotlib(
            "separation-baselines", plot_separation_baselines(both),
            "Does separation grow with depth because of the SVD? The same metrics with the SVD neurons (solid), the "
            "layers' raw output channels (dashed), a seeded random orthonormal basis (dotted), and the SVD neurons "
            "of a randomly initialised copy of the model. NCC accuracy does not depend on an orthonormal basis "
            "(a rotation keeps distances).", ("separation_baselines",), names=sep.names))
        data = data + (Data("separation_baselines", both, "separation metrics per layer and basis"),)
    elif note:
        blocks.append(Note(note, "missing"))
    if "collapsed" in frame:
        collapsed = frame.loc[frame["collapsed"].astype(bool), "layer"].tolist()
        if collapsed:
            blocks.append(Note(
                f"In {', '.join(collapsed)} every class hyperedge is a single SVD neuron (most inputs have one "
                f"influential neuron): overlap, exclusive shares and components there compare one neuron per class. "
                f"A larger threshold (report --threshold, e.g. 0.5) or --top-k gives larger influential sets.",
                "warning"))
    intro = ("How well the influential SVD neurons of each layer tell the classes apart: each class is a hyperedge "
             "of the SVD neurons that are influential for most of its inputs.")
    return Section("separation", SECTION_TITLES["separation"], tuple(blocks), data, intro=intro)


# --------------------------------------------------------------------------- methods, metadata


def methods_section() -> Section:
    """The definitions as implemented, and the reference to the paper."""
    from string import Template

    from convsvd.report.analysis import DEFAULTS, FEATURE_SIDE, QUICK, RANGE_INPUTS, REPORT_TV, STEP_TOLERANCE

    text = Template(package_text("methods.html")).substitute(
        range_inputs=RANGE_INPUTS, fv_steps_full=DEFAULTS["steps"], fv_steps_quick=QUICK["steps"], fv_tv=REPORT_TV,
        fv_side=FEATURE_SIDE, picture_px=PICTURE_PX, fv_full_tol=f"{100 * (1 - STEP_TOLERANCE['full']):.0f} %",
        fv_quick_tol=f"{100 * (1 - STEP_TOLERANCE['quick']):.0f} %")
    return Section("methods", SECTION_TITLES["methods"], (Html(text),))


def metadata_section(facts: Sequence[tuple[str, str]], options: Mapping[str, object], timings: Mapping[str, float],
                     versions: Mapping[str, str]) -> Section:
    """Model hash, data, options, versions and the time each step took."""
    blocks = (
        Table("run", pd.DataFrame(list(facts), columns=["item", "value"]), "What was analysed."),
        Table("options", pd.DataFrame([(k, _text(v)) for k, v in options.items()], columns=["option", "value"]),
              "Options of this report."),
        Table("timings", pd.DataFrame(list(timings.items()), columns=["step", "seconds"]),
              f"Wall-clock time of each step ({sum(timings.values()):.1f} s in all, the report's own writing excluded).",
              digits=3),
        Table("versions", pd.DataFrame(list(versions.items()), columns=["package", "version"]), "Versions."),
    )
    return Section("metadata", SECTION_TITLES["metadata"], blocks,
                   intro="Everything needed to trace this report: the model's hash, the data, the options and versions.")


def _text(v: object) -> str:
    if v is None:
        return "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "–"
    return str(v)
