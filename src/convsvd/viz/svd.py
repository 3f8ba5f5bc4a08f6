"""Figures of a :class:`~convsvd.decompose.Decomposition`: singular values and energy, layer by layer.

Each function draws on ``ax`` (a new figure when None) and returns the Axes;
:func:`svd_figure` puts both panels side by side. matplotlib is imported only
when a figure is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from convsvd.errors import InputError
from convsvd.viz._common import new_axes, style_axes

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from convsvd.decompose import Decomposition

__all__ = ["plot_energy", "plot_singular_values", "svd_figure"]


def _curves(dec: "Decomposition") -> list[tuple[str, np.ndarray, float]]:
    """``(layer, σ descending (groups pooled), Σ‖W̄_j‖²_F)`` of every layer with values."""
    out = []
    for name, l in dec.layers.items():
        s = l.singular_values().detach().double().cpu().numpy()
        if s.size:
            out.append((name, s, float(l.fro2.double().sum())))
    if not out:
        raise InputError("decomposition: no layer has singular values to draw")
    return out


def _colours(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.9 * i / max(1, n - 1)) for i in range(n)]




def plot_singular_values(dec: "Decomposition", ax: "Axes | None" = None, normalise: bool = True) -> "Axes":
    """Singular values of every layer against their relative index ``i / r``, log scale.

    Parameters
    ----------
    dec : Decomposition
    ax : matplotlib Axes, optional
    normalise : bool
        Divide each layer's values by its ``σ_max`` so layers of any scale share one axis.

    Returns
    -------
    matplotlib Axes
    """
    curves = _curves(dec)
    ax = ax if ax is not None else new_axes((5.0, 3.4))
    for (name, s, _), colour in zip(curves, _colours(len(curves))):
        x = (np.arange(s.size) + 0.5) / s.size
        y = s / s[0] if normalise and s[0] > 0 else s
        ax.plot(x, np.where(y > 0, y, np.nan), marker="o" if s.size <= 16 else None, markersize=3, linewidth=1.4,
                color=colour, label=f"{name} ({s.size})")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    style_axes(ax, "relative index i / r", "σ_i / σ_max" if normalise else "σ_i",
           "Singular values per layer" + (" (normalised)" if normalise else ""))
    ax.legend(fontsize=7, frameon=False, loc="lower left", ncol=1 + len(curves) // 9)
    return ax


def plot_energy(dec: "Decomposition", ax: "Axes | None" = None) -> "Axes":
    """Cumulative share of ``‖W̄‖²_F`` kept by the ``k`` leading singular triplets, per layer."""
    curves = _curves(dec)
    ax = ax if ax is not None else new_axes((5.0, 3.4))
    for (name, s, fro2), colour in zip(curves, _colours(len(curves))):
        kept = np.cumsum(s**2) / fro2 if fro2 > 0 else np.zeros_like(s)
        ax.step(np.arange(1, s.size + 1) / s.size, kept, where="post", linewidth=1.4, color=colour, label=name)
    ax.axhline(0.9, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    style_axes(ax, "share of triplets k / r", "share of ‖W̄‖²_F", "Energy kept by the top-k triplets")
    return ax


def svd_figure(dec: "Decomposition") -> "Figure":
    """Both panels side by side: normalised singular values and cumulative energy."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10.0, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_singular_values(dec, left)
    plot_energy(dec, right)
    return fig
