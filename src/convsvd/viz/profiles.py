"""Figures of attribution profiles: the graph across layers, class similarity, depth, persistence diagrams."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from convsvd.viz._common import new_axes, style_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from convsvd.profiles import ClassSimilarity, Homology, Profile

__all__ = ["plot_profile_graph", "plot_class_matrix", "plot_depth_accuracy", "plot_persistence"]


def plot_profile_graph(profile: "Profile", ax: "Axes | None" = None, max_per_layer: int = 12,
                       title: str | None = None) -> "Axes":
    """The attribution graph across layers (left: input, right: output), the strongest path in red.

    Each column is a layer; its dots are the neurons in the profile (at most ``max_per_layer``, the
    heaviest, then in index order), sized by weight; lines are synapses, wider for heavier ones.
    """
    by = {l.name: l for l in profile.layers}
    shown: dict[str, list[int]] = {}
    for l in profile.layers:
        cnt = profile.neuron_counts[l.name].tocoo()
        w = profile.neuron_weights[l.name].toarray().ravel()
        idx = cnt.col
        if len(idx) > max_per_layer:
            key = w[idx] if w[idx].any() else cnt.data.astype(float)
            idx = idx[np.argsort(-key, kind="stable")[:max_per_layer]]
        shown[l.name] = sorted(int(i) for i in idx)
    cols = {l.name: k for k, l in enumerate(profile.layers)}
    pos = {}
    for name, idx in shown.items():
        for r, n in enumerate(idx):
            pos[(name, n)] = (cols[name], (r + 1) / (len(idx) + 1))
    if ax is None:
        ax = new_axes((max(6.0, 0.9 * len(profile.layers)), 4.0))
    scale = max(profile.num_inputs, 1)
    path = profile.strongest_path()
    on_path = set(zip(path, path[1:]))
    for l in profile.layers:
        if not l.inputs:
            continue
        m = profile.synapse_weights[l.name].tocoo()
        offs = np.cumsum([0] + [by[i].neurons for i in l.inputs])
        part = np.searchsorted(offs, m.col, side="right") - 1
        for o, c, p_, w in zip(m.row, m.col, part, m.data):
            a, b = (l.name, int(o)), (l.inputs[p_], int(c - offs[p_]))
            if a in pos and b in pos:
                red = (a, b) in on_path
                ax.plot([pos[b][0], pos[a][0]], [pos[b][1], pos[a][1]], color="tab:red" if red else "0.55",
                        lw=(2.5 if red else 0.3 + 2.0 * w / scale), alpha=1.0 if red else 0.5, zorder=2 if red else 1)
    for l in profile.layers:
        w = profile.neuron_weights[l.name].toarray().ravel() / scale
        pts = [(pos[(l.name, n)], w[n]) for n in shown[l.name]]
        if pts:
            xy = np.array([p for p, _ in pts])
            ax.scatter(xy[:, 0], xy[:, 1], s=12 + 80 * np.array([v for _, v in pts]), color="tab:blue", zorder=3)
    for name, n in path:
        if (name, n) in pos:
            ax.scatter(*pos[(name, n)], s=40, color="tab:red", zorder=4)
    ax.set_xticks(range(len(profile.layers)))
    ax.set_xticklabels([l.name for l in profile.layers], rotation=45, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_xlim(-0.5, len(profile.layers) - 0.5)
    ax.set_ylim(0, 1)
    style_axes(ax, "", "", title or f"attribution graph ({profile.neuron_type} neurons, {profile.num_inputs} input"
                                      f"{'s' if profile.num_inputs != 1 else ''})")
    ax.grid(False)
    return ax


def plot_class_matrix(matrix: pd.DataFrame, ax: "Axes | None" = None, title: str = "class profiles: Jaccard") -> "Axes":
    """Class × class similarity (from :func:`convsvd.profiles.class_matrix`) as a heat map."""
    if ax is None:
        ax = new_axes((4.2, 3.6))
    im = ax.imshow(matrix.values, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(matrix.columns)))
    ax.set_xticklabels(matrix.columns, fontsize=7)
    ax.set_yticks(range(len(matrix.index)))
    ax.set_yticklabels(matrix.index, fontsize=7)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=10)
    return ax


def plot_depth_accuracy(sim: "ClassSimilarity", ax: "Axes | None" = None) -> "Axes":
    """Nearest-class-profile accuracy per layer (leave-one-out), with the all-layers value dashed."""
    f = sim.to_frame()
    per = f[f["layer"] != "all"]
    if ax is None:
        ax = new_axes((max(4.5, 0.6 * len(per)), 3.2))
    ax.plot(per["depth"], per["accuracy"], marker="o", color="tab:blue", label="this layer")
    allv = f.loc[f["layer"] == "all", "accuracy"]
    if len(allv):
        ax.axhline(float(allv.iloc[0]), ls="--", color="0.4", lw=1, label="all layers")
    ax.set_xticks(per["depth"])
    ax.set_xticklabels(per["layer"], rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, frameon=False)
    style_axes(ax, "", "accuracy", "nearest class profile, per layer")
    return ax


def plot_persistence(hom: "Homology", ax: "Axes | None" = None, title: str = "persistence diagram") -> "Axes":
    """Birth vs death of each class (H0 dots, H1 triangles); classes that never die on the top line."""
    if ax is None:
        ax = new_axes((3.8, 3.6))
    finite = [d[np.isfinite(d[:, 1])] for d in hom.diagrams]
    top = max([float(d.max()) for d in finite if d.size] + [float(d[:, 0].max()) for d in hom.diagrams if d.size] + [1e-9])
    inf_y = top * 1.1
    for dim, (d, marker) in enumerate(zip(hom.diagrams, ["o", "^", "s"])):
        if not d.size:
            continue
        y = np.where(np.isfinite(d[:, 1]), d[:, 1], inf_y)
        ax.scatter(d[:, 0], y, marker=marker, s=18, label=f"H{dim} ({len(d)})", alpha=0.8)
    ax.plot([0, inf_y], [0, inf_y], color="0.5", lw=0.8)
    ax.axhline(inf_y, color="0.5", lw=0.8, ls=":")
    ax.legend(fontsize=8, frameon=False)
    style_axes(ax, "birth", "death", title)
    return ax
