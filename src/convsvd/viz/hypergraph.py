"""Figures of class hypergraphs and of class separation across depth.

Each function takes a result object from :mod:`convsvd.hypergraph` (a
:class:`~convsvd.hypergraph.LayerSeparation`, a
:class:`~convsvd.hypergraph.ClassIncidence` or a
:class:`~convsvd.hypergraph.Separation`), draws on ``ax`` (a new figure when
None) and returns the Axes (:func:`plot_separation`: the Figure). A class has
the same colour in every figure. matplotlib and HyperNetX are imported only
when a figure is drawn.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from convsvd.errors import InputError
from convsvd.viz._common import figure_of

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from convsvd.hypergraph import ClassIncidence, LayerSeparation, Separation

__all__ = ["plot_class_hypergraph", "plot_class_overlap", "plot_incidence", "plot_separation",
           "plot_separation_baselines"]


def _incidence(source: "LayerSeparation | ClassIncidence") -> "ClassIncidence":
    from convsvd.hypergraph import ClassIncidence, LayerSeparation

    if isinstance(source, LayerSeparation):
        return source.incidence
    if isinstance(source, ClassIncidence):
        return source
    raise InputError(f"figure: expected a LayerSeparation or ClassIncidence, got {type(source).__name__}")


def class_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours: tab10, tab20, then evenly spaced hues."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]


def _new_axes(size: tuple[float, float]) -> "Axes":
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size, layout="constrained")
    return fig.add_subplot(1, 1, 1)


def _empty(ax: "Axes", title: str, text: str) -> "Axes":
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, transform=ax.transAxes, wrap=True)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return ax


def plot_class_hypergraph(source: "LayerSeparation | ClassIncidence", ax: "Axes | None" = None, *, seed: int = 0,
                          node_labels: bool = True, edge_labels: bool = False) -> "Axes":
    """The class hypergraph of a layer drawn by HyperNetX: classes as coloured hyperedges, SVD neurons as vertices.

    Parameters
    ----------
    source : LayerSeparation or ClassIncidence
    ax : matplotlib Axes, optional
        Drawn on a new figure when None.
    seed : int
        Seed of the spring layout (the drawing is reproducible).
    node_labels : bool
        Label the vertices ``layer:i``.
    edge_labels : bool
        Also write the class names on the bands (the legend names the colours).

    Returns
    -------
    matplotlib Axes
    """
    from convsvd.hypergraph import class_hypergraph
    from convsvd.hypergraph._hnx import hnx

    inc = _incidence(source)
    ax = ax if ax is not None else _new_axes((7.0, 6.0))
    title = f"{inc.layer}: class hypergraph (neurons influential for ≥ {inc.min_share:g} of a class's inputs)"
    if not inc.member.any():
        return _empty(ax, title, f"no SVD neuron reaches the share {inc.min_share:g} for any class")
    H = class_hypergraph(inc)
    colours = dict(zip(inc.classes, class_colours(len(inc.classes))))
    hnx().draw(H, ax=ax, layout_kwargs={"seed": seed},
               edges_kwargs={"edgecolors": {e: colours[e] for e in H.edges}, "linewidths": 2.0},
               with_edge_labels=edge_labels, edge_labels_kwargs={"fontsize": 8}, node_labels_kwargs={"fontsize": 8},
               with_node_labels=node_labels, nodes_kwargs={"facecolors": "black"})
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[c], lw=2, label=c) for c in inc.classes if c in set(H.edges)]
    ax.legend(handles=handles, title="class", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.0, 1.0), frameon=False)
    empty = inc.empty
    if empty:
        title += f"\nno hyperedge: class {', '.join(empty)}"
    ax.set_title(title, fontsize=9)
    return ax


def plot_incidence(source: "LayerSeparation | ClassIncidence", ax: "Axes | None" = None, *,
                   neurons: str = "active") -> "Axes":
    """Class × SVD neuron heat-map of the share of each class's inputs for which the neuron is influential.

    Cells in a class's hyperedge (share ≥ ``p``) carry a dot.

    Parameters
    ----------
    source : LayerSeparation or ClassIncidence
    ax : matplotlib Axes, optional
    neurons : {"active", "all"}
        ``"active"``: only the neurons influential for some input (the columns that are not all zero).

    Returns
    -------
    matplotlib Axes
    """
    if neurons not in ("active", "all"):
        raise InputError(f"neurons {neurons!r}: expected 'active' or 'all'")
    inc = _incidence(source)
    share, member = inc.share, inc.member
    cols = np.arange(share.shape[1]) if neurons == "all" else np.flatnonzero(inc.count.sum(axis=0) > 0)
    C = len(inc.classes)
    title = f"{inc.layer}: share of a class's inputs for which\nthe neuron is influential (• ≥ {inc.min_share:g})"
    if ax is None:
        ax = _new_axes((max(4.5, 0.32 * len(cols) + 2.2), max(2.5, 0.3 * C + 1.6)))
    if cols.size == 0:
        return _empty(ax, title, "no neuron is influential for any input")
    im = ax.imshow(share[:, cols], cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    r, c = np.nonzero(member[:, cols])
    ax.scatter(c, r, s=12, c="white", edgecolors="black", linewidths=0.6)
    ax.set_yticks(range(C), list(inc.classes), fontsize=8)
    labels = [inc.vertices[k] for k in cols]
    step = max(1, math.ceil(len(cols) / 64))
    ax.set_xticks(range(0, len(cols), step), labels[::step], rotation=90, fontsize=7)
    ax.set_ylabel("class")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="share")
    return ax


def plot_class_overlap(source: "LayerSeparation", ax: "Axes | None" = None, *, annotate: bool | None = None) -> "Axes":
    """The class × class Jaccard overlap of the class hyperedges (gray: a class with an empty hyperedge).

    Parameters
    ----------
    source : LayerSeparation
    ax : matplotlib Axes, optional
    annotate : bool, optional
        Write the values in the cells (default: up to 15 classes).

    Returns
    -------
    matplotlib Axes
    """
    from convsvd.hypergraph import LayerSeparation

    if not isinstance(source, LayerSeparation):
        raise InputError(f"figure: expected a LayerSeparation, got {type(source).__name__}")
    from matplotlib import colormaps

    C = len(source.classes)
    ax = ax if ax is not None else _new_axes((max(3.5, 0.42 * C + 2.2), max(3.0, 0.42 * C + 1.4)))
    cmap = colormaps["Reds"].with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(source.overlap), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(C), list(source.classes), fontsize=8)
    ax.set_yticks(range(C), list(source.classes), fontsize=8)
    if annotate if annotate is not None else C <= 15:
        for i in range(C):
            for j in range(C):
                v = source.overlap[i, j]
                if not np.isnan(v):
                    text = "0" if v == 0 else ("1" if v == 1 else f"{v:.2f}")
                    ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white" if v > 0.6 else "black")
    jm = source.jaccard_mean
    ax.set_title(f"{source.layer}: Jaccard overlap of class hyperedges (mean {jm:.3g})", fontsize=9)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="Jaccard")
    return ax


_PANELS = (  # (column, title): the arrow points the way of more separation
    ("jaccard_mean", "mean Jaccard overlap ↓"),
    ("exclusive_mean", "mean exclusive share ↑"),
    ("components", "s-components ↑"),
    ("modularity", "modularity of the classes ↑"),
    ("ncc_accuracy", "NCC accuracy (CV) ↑"),
    ("mean_size", "mean class hyperedge size"),
)


def plot_separation(result: "Separation | Mapping[str, Separation]", axes: "Sequence[Axes] | None" = None) -> "Figure":
    """Every separation metric across depth, one panel each (arrows: the direction of more separation).

    Parameters
    ----------
    result : Separation or mapping of name → Separation
        Several results (e.g. a trained and a randomly initialised network) are drawn together.
    axes : sequence of 6 matplotlib Axes, optional
        Default: a new 2 × 3 figure.

    Returns
    -------
    matplotlib Figure
    """
    from convsvd.hypergraph import Separation

    runs = {"": result} if isinstance(result, Separation) else dict(result)
    if not runs or not all(isinstance(r, Separation) for r in runs.values()):
        raise InputError("plot_separation: expected a Separation or a mapping of names to Separation results")
    if axes is None:
        import matplotlib.pyplot as plt

        fig, grid = plt.subplots(2, 3, figsize=(11, 6), layout="constrained")
        axes = list(grid.reshape(-1))
    elif len(axes) != len(_PANELS):
        raise InputError(f"axes: expected {len(_PANELS)} Axes, got {len(axes)}")
    names: list[str] = []
    for r in runs.values():
        names += [n for n in r.names if n not in names]
    pos = {n: i for i, n in enumerate(names)}
    colours = class_colours(max(1, len(runs)))
    styles = {1: "-", 2: "--", 3: ":"}
    for (run, r), colour in zip(runs.items(), colours):
        frame = r.to_frame()
        x = frame["layer"].map(pos).to_numpy()
        for ax, (col, title) in zip(axes, _PANELS):
            if col == "components":
                for s, ls in styles.items():
                    ax.plot(x, frame[f"components_s{s}"], ls, marker="o", ms=3, color=colour,
                            label=f"{run + ' ' if run else ''}s={s}")
            else:
                ax.plot(x, frame[col], "-", marker="o", ms=3, color=colour, label=run or None)
    for ax, (col, title) in zip(axes, _PANELS):
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3)
        if col in ("jaccard_mean", "exclusive_mean", "ncc_accuracy"):
            ax.set_ylim(-0.03, 1.03)
        if col == "components" or (len(runs) > 1 and col == "jaccard_mean"):
            ax.legend(fontsize=7)
    first = next(iter(runs.values()))
    fig = figure_of(axes[0])
    fig.suptitle(f"class separation by SVD neurons across depth (p = {first.min_share:g})", fontsize=10)
    return fig


def plot_separation_baselines(frame: "pd.DataFrame", metrics: Sequence[str] = ("jaccard_mean", "exclusive_mean",
                                                                               "ncc_accuracy")) -> "Figure":
    """Separation metrics across depth, one line per basis (one small panel per metric).

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`convsvd.hypergraph.separation` with a ``basis`` column (e.g. ``svd``, ``channel``,
        ``random``, ``svd, random initialisation``), as :func:`convsvd.bases.compare_bases` returns.
    metrics : sequence of str
        Columns to draw.

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    from convsvd.viz._common import short_name, style_axes

    missing = [m for m in (*metrics, "layer", "basis") if m not in frame.columns]
    if missing:
        raise InputError(f"frame: missing columns {', '.join(missing)} (expected compare_bases(...) rows)")
    layers = list(dict.fromkeys(frame["layer"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.0 * len(metrics), 3.2), layout="constrained", squeeze=False)
    labels = {"jaccard_mean": "Jaccard (lower: more separated)", "exclusive_mean": "exclusive share",
              "ncc_accuracy": "NCC accuracy", "modularity": "modularity"}
    styles = {"svd": ("-", "o"), "channel": ("--", "s"), "random": (":", "^")}
    for ax, metric in zip(axes[0], metrics):
        for basis, rows in frame.groupby("basis", sort=False):
            rows = rows.set_index("layer").reindex(layers)
            line, marker = styles.get(str(basis), ("-.", "x"))
            ax.plot(range(len(layers)), rows[metric].to_numpy(float), linestyle=line, marker=marker, label=str(basis))
        style_axes(ax, "layer", labels.get(metric, metric), labels.get(metric, metric))
        ax.set_xticks(range(len(layers)), [short_name(l, 12) for l in layers], rotation=45, ha="right")
    axes[0][0].legend(fontsize=8.5, frameon=False)
    return fig
