"""Small helpers shared by the figure modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def new_axes(size: tuple[float, float]) -> "Axes":
    """One axes on a new constrained-layout figure (matplotlib imported lazily)."""
    import matplotlib.pyplot as plt

    return plt.figure(figsize=size, layout="constrained").add_subplot(1, 1, 1)


def style_axes(ax: "Axes", xlabel: str, ylabel: str, title: str) -> None:
    """The house look: small labels, a light grid, no top/right spines."""
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(True, which="major", alpha=0.3, linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
