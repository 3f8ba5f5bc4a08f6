"""Small helpers shared by the figure modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Smallest text in a figure, in points: 8.5 pt is 11.3 CSS pixels at the report's 96 pixels per inch.
MIN_FONT_PT = 8.5
#: Widest figure, in inches (CSS pixels / 96): the report's content column at a 1280-pixel window, so that
#: figures are shown at their own size and their text is never shrunk below :data:`MIN_FONT_PT`.
MAX_WIDTH_IN = 9.0


def new_axes(size: tuple[float, float]) -> "Axes":
    """One axes on a new constrained-layout figure (matplotlib imported lazily)."""
    import matplotlib.pyplot as plt

    return plt.figure(figsize=size, layout="constrained").add_subplot(1, 1, 1)


def figure_of(ax: "Axes") -> "Figure":
    """The figure ``ax`` is drawn in: its root figure when the axes sit in a subfigure."""
    from matplotlib.figure import SubFigure

    fig = ax.figure
    return fig.figure if isinstance(fig, SubFigure) else fig


def short_name(name: str, width: int = 22) -> str:
    """A layer name shortened to ``width`` characters for axes labels, keeping its end.

    >>> short_name("/backbone/layer4/layer4.0/conv1/Conv", 20)
    '…layer4.0/conv1/Conv'
    >>> short_name("features.denseblock4.denselayer16.conv2", 20)
    '…denselayer16.conv2'
    >>> short_name("conv2")
    'conv2'
    """
    if len(name) <= width:
        return name
    tail = name[-width:]
    cut = tail.find("/" if "/" in name else ".")
    return "…" + (tail[cut + 1:] if 0 <= cut < width - 4 else tail)


def legible(fig: "Figure") -> float:
    """Apply the house minimums to a finished figure; return its smallest font size in points.

    Every visible text is raised to at least :data:`MIN_FONT_PT`; on log axes only the
    major ticks are labelled (minor labels such as ``2×10⁻³`` run into each other).
    The figure's width is left to the caller (see :func:`convsvd.report.content.figure_png`).
    """
    from matplotlib.text import Text
    from matplotlib.ticker import NullFormatter

    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_formatter(NullFormatter())
    sizes = []
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip():
            if float(t.get_fontsize()) < MIN_FONT_PT:
                t.set_fontsize(MIN_FONT_PT)
            sizes.append(float(t.get_fontsize()))
    return min(sizes) if sizes else MIN_FONT_PT


def style_axes(ax: "Axes", xlabel: str, ylabel: str, title: str) -> None:
    """The house look: labels at least :data:`MIN_FONT_PT`, a light grid, no top/right spines."""
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    ax.set_title(title, fontsize=11)
    ax.tick_params(labelsize=MIN_FONT_PT)
    ax.grid(True, which="major", alpha=0.3, linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
