"""The model's own accuracy on labelled data: its confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from convsvd.errors import InputError
from convsvd.viz._common import new_axes, style_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from convsvd.signals.accuracy import Accuracy

__all__ = ["plot_confusion"]


def plot_confusion(acc: "Accuracy", ax: "Axes | None" = None) -> "Axes":
    """Confusion matrix (rows: label, columns: predicted output), each row as shares of that label's inputs.

    Cells carry their count when there are at most 20 classes.

    Parameters
    ----------
    acc : Accuracy
        From :func:`convsvd.signals.accuracy.accuracy` (with a measured confusion matrix).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if acc.confusion is None:
        raise InputError(f"accuracy: no confusion matrix was measured ({acc.reason or 'no labelled input'})")
    M = np.asarray(acc.confusion, dtype=np.float64)
    C, K = M.shape
    share = M / np.maximum(M.sum(axis=1, keepdims=True), 1)
    ax = ax if ax is not None else new_axes((max(4.0, 0.42 * K + 2.2), max(3.4, 0.38 * C + 1.6)))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    names = [acc.classes[i] if i < len(acc.classes) else str(i) for i in range(C)]
    step_y, step_x = max(1, C // 30), max(1, K // 30)
    ax.set_yticks(range(0, C, step_y), names[::step_y])
    ax.set_xticks(range(0, K, step_x), [str(k) for k in range(0, K, step_x)])
    if C <= 20 and K <= 20:
        for i in range(C):
            for j in range(K):
                if M[i, j]:
                    ax.text(j, i, f"{int(M[i, j])}", ha="center", va="center", fontsize=8.5,
                            color="white" if share[i, j] > 0.5 else "black")
    style_axes(ax, "predicted output", "label", f"confusion matrix: {acc.describe()}")
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="share of the label's inputs")
    return ax
