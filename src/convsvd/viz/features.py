"""Figures of the features of SVD neurons: visualisations, exemplars, singular filters.

Every panel is one image grid (a montage drawn with a single ``imshow``) on one
Axes: rows are SVD neurons, columns what is shown for them. Each function takes
a result object from :mod:`convsvd.features`, draws on ``ax`` (a new figure when
None) and returns the Axes; :func:`features_figure` stacks the panels of one
layer into one figure. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from convsvd.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from convsvd.features import Exemplars, FeatureVisualization, SingularFilters

__all__ = ["feature_tiles", "features_figure", "neuron_exemplars_figure", "plot_exemplars", "plot_featureviz",
           "plot_filter_rebuild", "plot_neuron_exemplars", "plot_singular_filters"]

_TILE_PX = 32  # tiles are enlarged (nearest neighbour) to at least this many pixels
_MAX_TILE_PX = 160  # and larger ones shrunk (antialiased) to at most this many: the figures show them smaller
_GAP = 0.25  # gap between tiles, as a share of a tile
_BLOCK_GAP = 0.75  # gap between blocks of columns (e.g. visualisations | exemplars)
_INCH_PER_TILE = 0.5
_BACKGROUND = 1.0  # white


# --------------------------------------------------------------------------- tiles


def _gray_rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=-1)


def _image_tile(img: torch.Tensor, lo: float, hi: float) -> np.ndarray:
    """``(C, H, W)`` → ``(H, W, 3)`` in ``[0, 1]``: gray for one channel, RGB for three, the channel mean otherwise."""
    a = img.detach().double().cpu().numpy()
    a = (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)
    if a.shape[0] == 3:
        return np.clip(np.moveaxis(a, 0, -1), 0, 1)
    return _gray_rgb(a[0] if a.shape[0] == 1 else a.mean(axis=0))


def _heat_tile(a: np.ndarray, limit: float) -> np.ndarray:
    """``(H, W)`` signed values → RGB with a diverging colour map symmetric about 0."""
    from matplotlib import colormaps

    x = 0.5 + 0.5 * a / limit if limit > 0 else np.full_like(a, 0.5)
    return colormaps["RdBu_r"](np.clip(x, 0, 1))[..., :3]


def _overlay_tile(tile: np.ndarray, m: np.ndarray, limit: float) -> np.ndarray:
    """An image tile with a signal map ``(h, w)`` laid over it: the map is stretched over the image
    (nearest neighbour) and blended in with the diverging colours of :func:`_heat_tile`."""
    H, W = tile.shape[:2]
    h, w = m.shape
    big = m[(np.arange(H) * h // H)[:, None], (np.arange(W) * w // W)[None, :]]
    return 0.5 * tile + 0.5 * _heat_tile(big, limit)


def _signed_image_tile(f: np.ndarray, limit: float) -> np.ndarray:
    """A filter ``(C, H, W)`` with C in {1, 3} as an image: 0 → mid gray, ±limit → the extremes."""
    x = 0.5 + 0.5 * f / limit if limit > 0 else np.full_like(f, 0.5)
    return np.clip(np.moveaxis(x, 0, -1), 0, 1) if f.shape[0] == 3 else _gray_rgb(x[0])


class _Grid:
    """Rows of tiles in blocks of columns → one RGB montage with header and row labels."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, list[list[np.ndarray]]]] = []  # (label, blocks of tiles)
        self.captions: list[list[list[str]] | None] = []  # per row: per block, per tile (e.g. the class)
        self.headers: list[str] = []
        self.tile_in = _INCH_PER_TILE

    def add(self, label: str, blocks: list[list[np.ndarray]], captions: list[list[str]] | None = None) -> None:
        self.rows.append((label, blocks))
        self.captions.append(captions)

    def render(self) -> tuple[np.ndarray, list[float], list[float], float]:
        """Montage ``(H, W, 3)``, row centres, block centres (x), and the pixels per tile."""
        tiles = [t for _, blocks in self.rows for b in blocks for t in b]
        if not tiles:
            raise InputError("figure: nothing to draw (no images)")
        side = max(max(t.shape[0], t.shape[1]) for t in tiles)
        scale = max(1, math.ceil(_TILE_PX / side))
        T = min(side * scale, _MAX_TILE_PX)  # large inputs (224 px) are shrunk: the page shows tiles smaller
        gap, bgap = max(1, round(_GAP * T)), max(2, round(_BLOCK_GAP * T))
        widths = [max(len(self.rows[r][1][b]) if b < len(self.rows[r][1]) else 0 for r in range(len(self.rows)))
                  for b in range(max(len(bl) for _, bl in self.rows))]
        block_px = [w * T + max(0, w - 1) * gap for w in widths]
        W = sum(block_px) + bgap * max(0, len(widths) - 1)
        H = len(self.rows) * T + (len(self.rows) - 1) * gap
        out = np.full((H, W, 3), _BACKGROUND)
        starts = np.cumsum([0] + [p + bgap for p in block_px[:-1]])
        self.tile_corners: list[tuple[float, float, str]] = []  # (x, y) of each captioned tile's top-left, text
        for r, (_, blocks) in enumerate(self.rows):
            y0 = r * (T + gap)
            caps = self.captions[r] if r < len(self.captions) else None
            for b, tiles_b in enumerate(blocks):
                for c, t in enumerate(tiles_b):
                    big = _enlarge(t, T)
                    x0 = int(starts[b]) + c * (T + gap) + (T - big.shape[1]) // 2
                    yy = y0 + (T - big.shape[0]) // 2
                    out[yy:yy + big.shape[0], x0:x0 + big.shape[1]] = big
                    if caps is not None and b < len(caps) and c < len(caps[b]) and caps[b][c]:
                        self.tile_corners.append((x0, yy, caps[b][c]))
        row_c = [r * (T + gap) + T / 2 for r in range(len(self.rows))]
        block_c = [float(starts[b]) + block_px[b] / 2 for b in range(len(widths))]
        return out, row_c, block_c, float(T)

    def draw(self, ax: "Axes", title: str) -> "Axes":
        img, row_c, block_c, T = self.render()
        ax.imshow(img, interpolation="nearest")
        ax.set_yticks(row_c, [label for label, _ in self.rows], fontsize=8)
        ax.set_xticks([])
        from matplotlib.transforms import blended_transform_factory

        above = blended_transform_factory(ax.transData, ax.transAxes)  # x in pixels, y just above the axes
        for x, h in zip(block_c, self.headers):
            ax.text(x, 1.0, h, transform=above, ha="center", va="bottom", fontsize=8)
        from matplotlib.patches import Rectangle

        for x, y, text in self.tile_corners:  # the class of an exemplar, in its top-left corner, cut at its edge
            label = ax.text(x + 1, y + 1, text, ha="left", va="top", fontsize=8.5, color="black", clip_on=True,
                            bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.8))
            tile = Rectangle((x - 0.5, y - 0.5), T, T, transform=ax.transData)
            label.set_clip_path(tile)
            label.get_bbox_patch().set_clip_path(tile)  # type: ignore[union-attr]  # the bbox was just given
        ax.set_title(title, fontsize=9, pad=16 if self.headers else 6)
        for s in ax.spines.values():
            s.set_visible(False)
        ax.tick_params(length=0)
        return ax

    def inches(self, title: str = "") -> tuple[float, float]:
        """Figure size that fits the tiles (about half an inch each), the row labels and the title."""
        cols = max(sum(len(b) for b in blocks) + 0.75 * (len(blocks) - 1) for _, blocks in self.rows)
        width = max(4.0, cols * self.tile_in + 1.5, 0.075 * len(title) + 0.5)
        return width, max(1.2, len(self.rows) * self.tile_in + 0.9)


def _enlarge(t: np.ndarray, T: int) -> np.ndarray:
    """Nearest-neighbour enlargement so the longer side is ``T`` (an antialiased shrink when the tile is larger)."""
    h, w = t.shape[:2]
    f = T / max(h, w)
    H, W = max(1, round(h * f)), max(1, round(w * f))
    if f < 1:
        x = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32)).permute(2, 0, 1)[None]
        small = torch.nn.functional.interpolate(x, size=(H, W), mode="bilinear", antialias=True, align_corners=False)
        return small[0].permute(1, 2, 0).clamp(0, 1).double().numpy()
    return t[(np.arange(H) * h // H)[:, None], (np.arange(W) * w // W)[None, :]]


def _new_axes(size: tuple[float, float]) -> "Axes":
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size, layout="constrained")
    return fig.add_subplot(1, 1, 1)


def _neuron_label(group: int, neuron: int, grouped: bool, sigma: float | None = None) -> str:
    name = f"g{group} n{neuron}" if grouped else f"n{neuron}"
    return name if sigma is None else f"{name}  σ={sigma:.3g}"


# --------------------------------------------------------------------------- grids


def _featureviz_grid(fv: "FeatureVisualization", exemplars: "Exemplars | None") -> _Grid:
    grid = _Grid()
    grouped = bool(fv.group.max() > 0) if len(fv) else False
    pairs: dict[tuple[int, int], None] = {}
    for g, n in zip(fv.group.tolist(), fv.neuron.tolist()):
        pairs.setdefault((g, n), None)
    dirs = [d for d in (1, -1) if (fv.direction == d).any()]
    copies = int(fv.copy.max()) + 1 if len(fv) else 1
    grid.headers = [("+u" if d > 0 else "−u") + (f" ×{copies}" if copies > 1 else "") for d in dirs]
    ex_imgs = None
    if exemplars is not None:
        if exemplars.images is None:
            raise InputError("exemplars: no images attached (call exemplars(..., data=DATASET))")
        ex_imgs = exemplars.images
        lo, hi = float(ex_imgs.min()), float(ex_imgs.max())
        grid.headers += [f"top {exemplars.k}", f"bottom {exemplars.k}"]
    for g, n in pairs:
        blocks = []
        for d in dirs:
            rows = np.flatnonzero((fv.group == g) & (fv.neuron == n) & (fv.direction == d))
            blocks.append([_image_tile(fv.images[i], 0.0, 1.0) for i in rows])
        captions: list[list[str]] = [[] for _ in blocks]
        if exemplars is not None:
            ex_blocks, ex_caps = _exemplar_blocks(exemplars, g, n, lo, hi)
            blocks += ex_blocks
            captions += ex_caps
        sigma = float(fv.sigma[np.flatnonzero((fv.group == g) & (fv.neuron == n))[0]])
        grid.add(_neuron_label(g, n, grouped, sigma), blocks, captions)
    return grid


def _exemplar_blocks(ex: "Exemplars", g: int, n: int, lo: float, hi: float) -> tuple[list[list[np.ndarray]],
                                                                                      list[list[str]]]:
    """The top and bottom exemplars of one neuron as tiles (with where it fires laid over them when
    the exemplars carry maps), and their class names."""
    assert ex.images is not None
    blocks, captions = [], []
    limit = float(np.abs(ex.maps).max()) if ex.maps is not None and ex.maps.size else 0.0
    for side in ("top", "bottom"):
        idx = ex.rows(n, side, g)
        tiles = [_image_tile(ex.images[i], lo, hi) for i in idx]
        if ex.maps is not None:
            tiles = [_overlay_tile(t, ex.maps[i], limit) for t, i in zip(tiles, idx)]
        blocks.append(tiles)
        captions.append([ex.class_name(int(i)) for i in idx])
    return blocks, captions


def _exemplar_grid(ex: "Exemplars") -> _Grid:
    if ex.images is None:
        raise InputError("exemplars: no images attached (call exemplars(..., data=DATASET))")
    grid = _Grid()
    grid.headers = [f"top {ex.k}", f"bottom {ex.k}"]
    lo, hi = float(ex.images.min()), float(ex.images.max())
    grouped = bool(ex.group.max() > 0) if len(ex) else False
    for g, n in ex.neurons():
        grid.add(_neuron_label(g, n, grouped), *_exemplar_blocks(ex, g, n, lo, hi))
    return grid


def _pick_neurons(sf: "SingularFilters", neurons: Sequence[int] | None, default: int) -> list[tuple[int, int]]:
    g, r = sf.sigma.shape
    flat = list(range(min(default, g * r))) if neurons is None else [int(n) for n in neurons]
    bad = [n for n in flat if not 0 <= n < g * r]
    if bad:
        raise InputError(f"neurons {bad[:5]}: layer {sf.layer!r} has {g * r} singular filters (0–{g * r - 1})")
    return [(n // r, n % r) for n in flat]


def _as_image(sf: "SingularFilters") -> bool:
    return sf.reads_input and sf.in_channels in (1, 3)


def _filter_grid(sf: "SingularFilters", neurons: Sequence[int] | None, max_channels: int) -> _Grid:
    grid = _Grid()
    grouped = sf.groups > 1
    if _as_image(sf):
        pairs = _pick_neurons(sf, neurons, 64)
        per_row = 16
        for start in range(0, len(pairs), per_row):
            chunk = pairs[start:start + per_row]
            tiles = []
            for g, n in chunk:
                f = sf.filters[g, n].double().numpy()
                tiles.append(_signed_image_tile(f, float(np.abs(f).max())))
            last = _neuron_label(*chunk[-1], grouped).split("n")[-1]
            grid.add(f"{_neuron_label(*chunk[0], grouped)}–{last}", [tiles])
        grid.headers = ["v_i as images (gray = 0)"]
        return grid
    pairs = _pick_neurons(sf, neurons, 8)
    c = min(sf.in_channels, max_channels)
    for g, n in pairs:
        f = sf.filters[g, n].double().numpy()
        lim = float(np.abs(f).max())
        grid.add(_neuron_label(g, n, grouped, float(sf.sigma[g, n])), [[_heat_tile(f[ch], lim) for ch in range(c)]])
    more = f" (first {c} of {sf.in_channels})" if c < sf.in_channels else ""
    grid.headers = [f"input channels{more}"]
    return grid


def _rebuild_grid(sf: "SingularFilters", max_filters: int, max_channels: int) -> _Grid:
    grid = _Grid()
    d = min(int(sf.weight.shape[0]), max_filters)
    W, R = sf.weight.double().numpy(), sf.rebuilt.double().numpy()
    if _as_image(sf):
        lim = [float(np.abs(W[o]).max()) for o in range(d)]
        grid.add("original", [[_signed_image_tile(W[o], lim[o]) for o in range(d)]])
        grid.add(f"rank {sf.rank}", [[_signed_image_tile(R[o], lim[o]) for o in range(d)]])
        grid.headers = [f"output filters 0–{d - 1}"]
        return grid
    c = min(sf.in_channels, max_channels)
    for o in range(d):
        top = float(np.abs(W[o]).max())
        grid.add(f"f{o}", [[_heat_tile(W[o, ch], top) for ch in range(c)], [_heat_tile(R[o, ch], top) for ch in range(c)]])
    more = f" (channels 0–{c - 1} of {sf.in_channels})" if c < sf.in_channels else ""
    grid.headers = [f"original{more}", f"rank {sf.rank}{more}"]
    return grid


def _featureviz_title(fv: "FeatureVisualization", exemplars: "Exemplars | None") -> str:
    where = "mean over locations" if fv.location == "mean" else "centre location"
    extra = " · dataset exemplars" if exemplars is not None else ""
    return f"{fv.layer}: inputs that maximise ±u_iᵀ(y−b) ({where}, {fv.steps} steps){extra}"


def _filters_title(sf: "SingularFilters") -> str:
    return f"{sf.layer}: singular filters (rows of Vᵀ)"


def _rebuild_title(sf: "SingularFilters") -> str:
    return f"{sf.layer}: filters and their rank-{sf.rank} rebuild ({100 * sf.energy:.1f} % of ‖W̄‖²_F kept)"


# --------------------------------------------------------------------------- public figures


def plot_featureviz(fv: "FeatureVisualization", ax: "Axes | None" = None, exemplars: "Exemplars | None" = None) -> "Axes":
    """Optimised images, one row per SVD neuron (``+u`` and ``−u`` columns), with exemplars beside them.

    Parameters
    ----------
    fv : FeatureVisualization
    ax : matplotlib Axes, optional
        Drawn on a new figure when None.
    exemplars : Exemplars, optional
        With images; adds the ``top k`` and ``bottom k`` dataset inputs of each neuron.

    Returns
    -------
    matplotlib Axes
    """
    grid, title = _featureviz_grid(fv, exemplars), _featureviz_title(fv, exemplars)
    ax = ax if ax is not None else _new_axes(grid.inches(title))
    return grid.draw(ax, title)


def plot_exemplars(ex: "Exemplars", ax: "Axes | None" = None) -> "Axes":
    """Dataset inputs with the largest and smallest signal, one row per SVD neuron."""
    grid, title = _exemplar_grid(ex), f"{ex.layer}: dataset exemplars"
    ax = ax if ax is not None else _new_axes(grid.inches(title))
    return grid.draw(ax, title)


def feature_tiles(fv: "FeatureVisualization", neuron: int, group: int = 0) -> list[tuple[str, np.ndarray]]:
    """The optimised images of one SVD neuron as ``(label, (H, W, 3) RGB in [0, 1])``: ``+u`` before ``−u``,
    then by copy (labels ``"+u"``, ``"−u"``, ``"+u #2"``, ...); an empty list when the neuron was not optimised."""
    out = []
    for d in (1, -1):
        for i in np.flatnonzero((fv.group == group) & (fv.neuron == neuron) & (fv.direction == d)):
            c = int(fv.copy[i])
            out.append((("+u" if d > 0 else "−u") + (f" #{c + 1}" if c else ""), _image_tile(fv.images[i], 0.0, 1.0)))
    return out


def neuron_exemplars_figure(ex: "Exemplars", neuron: int, group: int = 0) -> "Figure":
    """:func:`plot_neuron_exemplars` on a figure of its own."""
    import matplotlib.pyplot as plt

    grid = _neuron_exemplar_grid(ex, neuron, group)
    fig = plt.figure(figsize=grid.inches(), layout="constrained")
    grid.draw(fig.add_subplot(1, 1, 1), "")
    return fig


def plot_neuron_exemplars(ex: "Exemplars", neuron: int, group: int = 0, ax: "Axes | None" = None) -> "Axes":
    """One SVD neuron's dataset exemplars: the top ``k`` in one row, the bottom ``k`` below, each with its class
    in its corner and, when the exemplars carry maps, where the neuron fires laid over it (red +, blue −)."""
    grid = _neuron_exemplar_grid(ex, neuron, group)
    ax = ax if ax is not None else _new_axes(grid.inches())
    return grid.draw(ax, "")


def _neuron_exemplar_grid(ex: "Exemplars", neuron: int, group: int) -> _Grid:
    if ex.images is None:
        raise InputError("exemplars: no images attached (call exemplars(..., data=DATASET))")
    if (group, neuron) not in set(ex.neurons()):
        raise InputError(f"neuron {neuron} (group {group}): not among the exemplars of {ex.layer!r}")
    lo, hi = float(ex.images.min()), float(ex.images.max())
    blocks, captions = _exemplar_blocks(ex, group, neuron, lo, hi)
    grid = _Grid()
    grid.tile_in = min(0.75, 4.2 / max(1, ex.k))  # as large as fits beside two 1.5-inch visualisations
    for label, tiles, caps in zip((f"top {ex.k}", f"bottom {ex.k}"), blocks, captions):
        grid.add(label, [tiles], [caps])
    return grid


def plot_singular_filters(sf: "SingularFilters", ax: "Axes | None" = None, neurons: Sequence[int] | None = None,
                          max_channels: int = 16) -> "Axes":
    """Right singular vectors as filters.

    The image-reading layer's filters (1 or 3 input channels) are drawn as images
    (gray: 0; scaled by each filter's largest ``|entry|``); other layers as one
    diverging heat-map per input channel and a row per singular vector.

    Parameters
    ----------
    neurons : sequence of int, optional
        Flat indices ``j·r + i`` (default: the first 8, or 64 for images).
    max_channels : int
        Input channels shown per row.
    """
    grid, title = _filter_grid(sf, neurons, max_channels), _filters_title(sf)
    ax = ax if ax is not None else _new_axes(grid.inches(title))
    return grid.draw(ax, title)


def plot_filter_rebuild(sf: "SingularFilters", ax: "Axes | None" = None, max_filters: int = 8,
                        max_channels: int = 8) -> "Axes":
    """The layer's filters beside their rank-``r`` rebuild, titled with the share of ``‖W̄‖²_F`` kept."""
    grid, title = _rebuild_grid(sf, max_filters, max_channels), _rebuild_title(sf)
    ax = ax if ax is not None else _new_axes(grid.inches(title))
    return grid.draw(ax, title)


def features_figure(
    fv: "FeatureVisualization | None" = None,
    exemplars: "Exemplars | None" = None,
    filters: "SingularFilters | None" = None,
    *,
    neurons: Sequence[int] | None = None,
) -> "Figure":
    """One figure for one layer: visualisations (with exemplars beside them), singular filters, rebuild.

    Parameters
    ----------
    fv, exemplars, filters
        Any of them (exemplars alone are drawn as their own panel).
    neurons : sequence of int, optional
        Flat indices of the singular filters to draw (default: those of ``fv``).

    Returns
    -------
    matplotlib Figure
        Sized from the grids (about half an inch per tile).
    """
    import matplotlib.pyplot as plt

    grids: list[tuple[_Grid, str]] = []
    if fv is not None:
        grids.append((_featureviz_grid(fv, exemplars), _featureviz_title(fv, exemplars)))
    elif exemplars is not None:
        grids.append((_exemplar_grid(exemplars), f"{exemplars.layer}: dataset exemplars"))
    if filters is not None:
        if neurons is None and fv is not None:
            neurons = fv.flat_neurons()
        grids.append((_filter_grid(filters, neurons, 16), _filters_title(filters)))
        grids.append((_rebuild_grid(filters, 8, 8), _rebuild_title(filters)))
    if not grids:
        raise InputError("features_figure: give at least one of fv, exemplars, filters")
    sizes = [g.inches(t) for g, t in grids]
    fig = plt.figure(figsize=(max(w for w, _ in sizes), sum(h for _, h in sizes)), layout="constrained")
    spec = fig.add_gridspec(len(grids), 1, height_ratios=[h for _, h in sizes])
    for k, (grid, title) in enumerate(grids):
        grid.draw(fig.add_subplot(spec[k]), title)
    return fig
