"""Figures of the spectral analysis: ESDs with their fits, α across depth, views, training.

Every function takes result objects of :mod:`convsvd.spectral` (a
:class:`~convsvd.spectral.LayerSpectrum` or a :class:`~convsvd.spectral.SpectrumResult`),
draws on ``ax`` (a new figure when None) and returns the Axes; :func:`esd_figure` and
:func:`plot_views` lay out several panels. matplotlib is imported only when a figure
is drawn.

What is drawn on an ESD (:func:`plot_esd`): the histogram of the eigenvalues as a
density; the Marchenko–Pastur density of the fit on exactly its support ``[λ₋, λ₊]``,
scaled by the share of bulk eigenvalues (artist ``gid="mp-density"``); the fitted
power-law density on ``[x_min, λ_max]``, scaled by the share of tail eigenvalues
(``gid="power-law"``); dotted lines at ``x_min`` and ``λ₊``; and, when the layer has a
randomised baseline, the histogram of the shuffled layer's ESD (``gid="random-esd"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from convsvd.errors import InputError
from convsvd.viz._common import new_axes, short_name, style_axes

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon

    from convsvd.spectral import LayerSpectrum, SpectrumResult

__all__ = ["esd_figure", "plot_alpha_depth", "plot_esd", "plot_trained_vs_random", "plot_views"]

_ESD_COLOUR = "#4C72B0"
_MP_COLOUR = "#DD8452"
_PL_COLOUR = "#C44E52"
_RAND_COLOUR = "#8C8C8C"




def _bins(values: np.ndarray, log: bool, bins: int | None) -> list[float]:
    """Bin edges covering ``values`` (positive values only on a log axis)."""
    count = bins if bins is not None else int(np.clip(2 * math.sqrt(values.size), 10, 80))
    lo, hi = float(values.min()), float(values.max())
    if log:
        if hi <= lo:
            lo, hi = lo / 1.5, hi * 1.5
        return np.geomspace(lo, hi, count + 1).tolist()
    if hi <= lo:
        lo, hi = lo - 0.5 * abs(lo) - 1e-12, hi + 0.5 * abs(hi) + 1e-12
    return np.linspace(lo, hi, count + 1).tolist()


def _check_layer(layer: object) -> "LayerSpectrum":
    from convsvd.spectral import LayerSpectrum

    if not isinstance(layer, LayerSpectrum):
        raise InputError(f"layer: expected a LayerSpectrum (an item of spectrum(...).layers), got {type(layer).__name__}")
    return layer


def _title(layer: "LayerSpectrum") -> str:
    name = short_name(layer.name)
    if layer.ok:
        se = layer.fit.sigma if layer.fit is not None else math.nan
        pm = f" ± {se:.2f}" if math.isfinite(se) else ""
        return f"{name} ({layer.view}): α = {layer.alpha:.2f}{pm}, {layer.phenomenology}"
    return f"{name} ({layer.view}): {layer.status}"


#: Below this many eigenvalues an ESD is drawn as its eigenvalues (a rug), not as a histogram.
MIN_HISTOGRAM = 16


def plot_esd(
    layer: "LayerSpectrum",
    *,
    log: bool = False,
    bins: int | None = None,
    ax: "Axes | None" = None,
    random: bool = True,
    label: str | None = None,
    colour: str = _ESD_COLOUR,
    fits: bool = True,
) -> "Axes":
    """Histogram of one layer's ESD with its MP density and power-law tail drawn over it.

    Parameters
    ----------
    layer : LayerSpectrum
        One item of ``spectrum(...).layers``.
    log : bool, default False
        Log-log axes with log-spaced bins (else linear axes).
    bins : int, optional
        Number of bins (default ``2√k`` within [10, 80]).
    ax : matplotlib Axes, optional
        Where to draw (a new figure when None).
    random : bool, default True
        Also draw the randomised baseline's ESD when the layer has one.
    label : str, optional
        Legend label of the histogram (default ``"ESD"``).
    colour : str
        Colour of the histogram.
    fits : bool, default True
        Draw the MP density and the power-law tail (when they were fitted).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from torch import nn
    >>> from convsvd.spectral import spectrum
    >>> ax = plot_esd(spectrum(nn.Linear(200, 100), mp=True).layers[0], log=True)
    """
    layer = _check_layer(layer)
    ax = ax if ax is not None else new_axes((5.0, 3.4))
    lam = layer.evals[layer.evals > 0] if log else layer.evals
    scale = "log" if log else "linear"
    style_axes(ax, "eigenvalue λ" + (" (log)" if log else ""), "density" + (" (log)" if log else ""), _title(layer))
    if lam.size == 0:
        ax.text(0.5, 0.5, "no eigenvalues", ha="center", va="center", transform=ax.transAxes)
        return ax
    if lam.size < MIN_HISTOGRAM:  # a histogram of a handful of values says nothing about a density
        ax.vlines(lam, 0.0, 1.0, color=colour, linewidth=1.5, label=f"{label or 'eigenvalues'} ({lam.size})")
        ax.set_xscale(scale)
        ax.set_yticks([])
        ax.set_ylabel("")
        ax.set_title(_title(layer) + f"\nonly {lam.size} eigenvalues: no histogram", fontsize=10)
        ax.legend(fontsize=8, frameon=False, loc="best")
        return ax
    edges = _bins(lam, log, bins)
    ax.hist(lam, bins=edges, density=True, color=colour, alpha=0.55, label=label or "ESD")
    if random and layer.random is not None:
        r = layer.random.evals[layer.random.evals > 0] if log else layer.random.evals
        if r.size:
            _, _, patches = ax.hist(r, bins=_bins(np.concatenate([lam, r]), log, bins), density=True,
                                    histtype="step", color=_RAND_COLOUR, linewidth=1.2, label="shuffled weights")
            for p in cast("list[Polygon]", patches):  # one data set drawn as a step: a list of Polygons
                p.set_gid("random-esd")
    mp = layer.mp
    if fits and mp is not None and mp.status in ("ok", "not_converged") and math.isfinite(mp.lambda_plus):
        from convsvd.spectral import mp_density

        lo, hi = mp.lambda_minus, mp.lambda_plus
        x = np.geomspace(lo, hi, 400) if (log and lo > 0) else np.linspace(lo, hi, 400)
        if log and lo <= 0:  # Q = 1: the support starts at 0, which a log axis cannot show
            x = np.geomspace(hi * 1e-4, hi, 400)
        share = (layer.evals.size - mp.num_spikes) / layer.evals.size
        (line,) = ax.plot(x, share * mp_density(x, mp.sigma2, mp.Q), color=_MP_COLOUR, linewidth=1.6,
                          label=f"MP fit (σ² = {mp.sigma2:.3g}, {mp.num_spikes} spikes)")
        line.set_gid("mp-density")
        ax.axvline(hi, color=_MP_COLOUR, linestyle=":", linewidth=1.0, label=f"MP edge λ₊ = {hi:.3g}")
    fit = layer.fit
    if fits and layer.ok and fit is not None and fit.distribution == "power_law":
        top = float(layer.evals.max())
        x = np.geomspace(fit.xmin, top, 200)
        dens = (fit.n_tail / layer.evals.size) * (fit.alpha - 1.0) / fit.xmin * (x / fit.xmin) ** (-fit.alpha)
        (line,) = ax.plot(x, dens, color=_PL_COLOUR, linewidth=1.6, linestyle="--",
                          label=f"power law α = {fit.alpha:.2f} ({fit.n_tail} in tail)")
        line.set_gid("power-law")
        ax.axvline(fit.xmin, color=_PL_COLOUR, linestyle=":", linewidth=1.0, label=f"x_min = {fit.xmin:.3g}")
    ax.set_xscale(scale)
    ax.set_yscale(scale)
    if log:
        ax.set_xlim(edges[0], edges[-1])
    ax.legend(fontsize=8, frameon=False, loc="best")
    return ax


def esd_figure(layer: "LayerSpectrum", *, bins: int | None = None) -> "Figure":
    """One layer's ESD on linear and on log-log axes, side by side.

    Parameters
    ----------
    layer : LayerSpectrum
    bins : int, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    layer = _check_layer(layer)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.4), layout="constrained")
    plot_esd(layer, log=False, bins=bins, ax=left)
    plot_esd(layer, log=True, bins=bins, ax=right)
    return fig


def _as_results(results: object) -> list["SpectrumResult"]:
    from convsvd.spectral import SpectrumResult

    items = [results] if isinstance(results, SpectrumResult) else list(results)  # type: ignore[call-overload]
    if not items or not all(isinstance(r, SpectrumResult) for r in items):
        raise InputError("results: expected a SpectrumResult or a list of them (from spectrum(...))")
    return items


def plot_alpha_depth(
    results: "SpectrumResult | Sequence[SpectrumResult]",
    *,
    labels: Sequence[str] | None = None,
    ax: "Axes | None" = None,
    quantity: str = "alpha",
) -> "Axes":
    """α (or ``α·log10 λ_max``) of every layer against depth, one line per result.

    One quantity per axes: draw ``quantity="alpha"`` and ``quantity="alpha_weighted"`` on two
    axes side by side to see both. For α the band ``2 ≤ α ≤ 6`` (heavy-tailed) is shaded and
    the standard error of each α is drawn as an error bar; layers that could not be fitted
    leave gaps, and layers left out of α̂ (too few eigenvalues or tail points) are drawn as
    hollow markers. Each result's α̂ is in its legend entry. Long layer names are shortened
    (:func:`convsvd.viz._common.short_name`).

    Parameters
    ----------
    results : SpectrumResult or sequence of them
        One line per result (e.g. one per training epoch).
    labels : sequence of str, optional
        Legend labels (default: each result's source).
    ax : matplotlib Axes, optional
    quantity : {"alpha", "alpha_weighted"}

    Returns
    -------
    matplotlib.axes.Axes
    """
    items = _as_results(results)
    if labels is not None and len(labels) != len(items):
        raise InputError(f"labels: expected {len(items)} labels, got {len(labels)}")
    if quantity not in ("alpha", "alpha_weighted"):
        raise InputError(f"quantity {quantity!r}: expected 'alpha' or 'alpha_weighted'")
    ax = ax if ax is not None else new_axes((6.0, 3.6))
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    names = items[0].names
    if quantity == "alpha":
        style_axes(ax, "layer (depth order)", "α", "power-law exponent α across depth")
        ax.axhspan(2.0, 6.0, color="#55A868", alpha=0.08, linewidth=0, label="heavy-tailed band 2 ≤ α ≤ 6")
    else:
        style_axes(ax, "layer (depth order)", "α·log10 λ_max", "α·log10 λ_max across depth (mean: α̂)")
    for i, res in enumerate(items):
        frame = res.to_frame()
        colour = cmap(0.9 * i / max(1, len(items) - 1))
        x = np.arange(len(frame))
        y = frame[quantity].to_numpy(float)
        head = frame["headline"].to_numpy(bool)
        name = labels[i] if labels is not None else res.source
        hat = res.summary()["alpha_hat"].iloc[0]
        ax.plot(x, y, marker="o", markersize=4, color=colour, label=f"{name}: α̂ = {hat:.2f}")
        if quantity == "alpha":
            ax.errorbar(x, y, yerr=frame["sigma"].to_numpy(float), fmt="none", ecolor=colour, elinewidth=1,
                        capsize=2)
        ax.plot(x[~head], y[~head], linestyle="none", marker="o", markersize=6, markerfacecolor="white",
                markeredgecolor=colour, label="not in α̂ (too few eigenvalues or tail points)" if i == 0 else None)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([short_name(n) for n in names], rotation=45 if len(names) > 6 else 0,
                       ha="right" if len(names) > 6 else "center")
    ax.legend(fontsize=8, frameon=False, loc="best")
    return ax


def plot_trained_vs_random(
    trained: "LayerSpectrum",
    initial: "LayerSpectrum",
    *,
    log: bool = True,
    bins: int | None = None,
    ax: "Axes | None" = None,
) -> "Axes":
    """The ESD of one layer trained and at its random initialisation, each with its MP fit.

    Parameters
    ----------
    trained, initial : LayerSpectrum
        The same layer of the trained and of the randomly initialised model.
    log : bool, default True
        Log-log axes.
    bins : int, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    trained, initial = _check_layer(trained), _check_layer(initial)
    ax = ax if ax is not None else new_axes((5.0, 3.4))
    pooled = np.concatenate([trained.evals, initial.evals])
    pooled = pooled[pooled > 0] if log else pooled
    if pooled.size == 0:
        raise InputError("trained, initial: no eigenvalues to draw")
    edges = _bins(pooled, log, bins)
    for layer, colour, what in ((initial, _RAND_COLOUR, "initialisation"), (trained, _ESD_COLOUR, "trained")):
        lam = layer.evals[layer.evals > 0] if log else layer.evals
        alpha = f"α = {layer.alpha:.2f}" if layer.ok else layer.status
        ax.hist(lam, bins=edges, density=True, histtype="stepfilled", alpha=0.35, color=colour,
                label=f"{what} ({alpha})")
        mp = layer.mp
        if mp is not None and mp.status in ("ok", "not_converged"):
            from convsvd.spectral import mp_density

            lo, hi = mp.lambda_minus, mp.lambda_plus
            x = np.geomspace(max(lo, hi * 1e-4), hi, 300) if log else np.linspace(lo, hi, 300)
            share = (layer.evals.size - mp.num_spikes) / layer.evals.size
            ax.plot(x, share * mp_density(x, mp.sigma2, mp.Q), color=colour, linewidth=1.5,
                    label=f"MP fit, {what} ({mp.num_spikes} spikes)")
    scale = "log" if log else "linear"
    ax.set_xscale(scale)
    ax.set_yscale(scale)
    style_axes(ax, "eigenvalue λ", "density", f"{trained.name} ({trained.view}): trained vs initialisation")
    ax.legend(fontsize=7, frameon=False, loc="best")
    return ax


def plot_views(
    layers: Sequence["LayerSpectrum"],
    *,
    log: bool = True,
    bins: int | None = None,
    axes: Sequence["Axes"] | None = None,
) -> list["Axes"]:
    """The ESDs of one conv layer in several views (unfold, slices, operator), side by side.

    Parameters
    ----------
    layers : sequence of LayerSpectrum
        The same layer analysed in each view (``spectrum(model, view=v, layers=name)``).
    log : bool, default True
    bins : int, optional
    axes : sequence of matplotlib Axes, optional
        One per layer (default: a new figure with one row of panels).

    Returns
    -------
    list of matplotlib.axes.Axes
    """
    items = [_check_layer(layer) for layer in layers]
    if not items:
        raise InputError("layers: expected at least one LayerSpectrum")
    if axes is None:
        import matplotlib.pyplot as plt

        fig, grid = plt.subplots(1, len(items), figsize=(4.2 * len(items), 3.4), layout="constrained", squeeze=False)
        axes = list(grid[0])
    elif len(axes) != len(items):
        raise InputError(f"axes: expected {len(items)} Axes (one per view), got {len(axes)}")
    for layer, ax in zip(items, axes):
        plot_esd(layer, log=log, bins=bins, ax=ax, random=False)
        ax.set_title(f"{layer.name}, {layer.view} view: {layer.evals.size} λ, α = {layer.alpha:.2f}", fontsize=9)
    return list(axes)
