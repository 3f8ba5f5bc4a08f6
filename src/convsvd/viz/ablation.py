"""Figures of directional ablations (:class:`convsvd.ablation.AblationResult`).

matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convsvd.errors import InputError
from convsvd.viz._common import new_axes, style_axes

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from convsvd.ablation import AblationResult, LayerAblation

__all__ = ["BASIS_STYLE", "plot_ablation"]

BASIS_STYLE: dict[str, tuple[str, str, str]] = {
    "svd-top": ("#C44E52", "o", "top-k SVD directions removed"),
    "svd-bottom": ("#DD8452", "v", "bottom-k SVD directions removed"),
    "channel-norm": ("#4C72B0", "s", "top-k channels by ‖W̄ row‖ zeroed"),
    "channel-act": ("#55A868", "D", "top-k channels by mean |y − b| zeroed"),
    "random": ("#7F7F7F", ".", "k random orthonormal directions removed (mean ± sd)"),
    "svd-keep": ("#8172B3", "^", "only the top-k SVD directions kept (rank-k W̄)"),
}
"""Colour, marker and legend text of each basis (the same in every figure)."""


def plot_ablation(result: "AblationResult | LayerAblation", layer: str | None = None, *,
                  measure: str = "accuracy", ax: "Axes | None" = None) -> "Axes":
    """Accuracy (or another measure) against k, one curve per basis; random with its spread band.

    Parameters
    ----------
    result : AblationResult or LayerAblation
    layer : str, optional
        Which layer of an :class:`AblationResult` (default its first).
    measure : {"accuracy", "loss", "logit_change", "accuracy_drop"}
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = plot_ablation(res, "conv3")  # doctest: +SKIP
    >>> ax.figure.savefig("ablation-conv3.png")  # doctest: +SKIP
    """
    from convsvd.ablation import AblationResult, LayerAblation

    if isinstance(result, AblationResult):
        one = result[layer] if layer is not None else result.layers[0]
    elif isinstance(result, LayerAblation):
        one = result
    else:
        raise InputError(f"result: expected an AblationResult or LayerAblation, got {type(result).__name__}")
    if measure not in ("accuracy", "loss", "logit_change", "accuracy_drop"):
        raise InputError(f"measure {measure!r}: expected accuracy, loss, logit_change or accuracy_drop")
    ax = ax if ax is not None else new_axes((6.4, 4.0))
    summary = one.summary()
    for basis, part in summary.groupby("basis", sort=False):
        colour, marker, label = BASIS_STYLE.get(str(basis), ("black", "x", str(basis)))
        x = part["k"].to_numpy()
        y = part[measure].to_numpy()
        x_plot = [max(k, 0.5) for k in x]  # k = 0 drawn at 0.5 on the log axis
        ax.plot(x_plot, y, marker=marker, markersize=4, color=colour, label=label, linewidth=1.4)
        if basis == "random":
            sd = part[f"{measure}_std"].to_numpy() if f"{measure}_std" in part else 0 * y
            ax.fill_between(x_plot, y - sd, y + sd, color=colour, alpha=0.25, linewidth=0)
    ax.set_xscale("log", base=2)
    if measure == "accuracy":
        ax.axhline(one.accuracy, color="black", linewidth=0.6, linestyle=":")
        ax.set_ylim(-0.02, 1.02)
    ylabel = {"accuracy": "accuracy", "loss": "mean cross-entropy", "logit_change": "mean ‖Δ logits‖₂",
              "accuracy_drop": "accuracy drop"}[measure]
    style_axes(ax, "k (directions per group; k = 0 drawn at ½)", ylabel,
               f"{one.layer}: {one.channels} channels, rank {one.rank}"
               + (f", {one.groups} groups" if one.groups > 1 else ""))
    ax.legend(fontsize=7, frameon=False)
    return ax
