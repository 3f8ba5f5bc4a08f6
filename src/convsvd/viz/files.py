"""PNG files of a result's figures: the figure half of what the CLI writes (the data half is ``result.save``).

:func:`save_figures` draws every figure of a :class:`~convsvd.spectral.SpectrumResult` or a
:class:`~convsvd.hypergraph.Separation` into an existing folder (plain writes; the CLI
publishes the folder whole), so computing code never plots.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from convsvd._progress import progress as _progress
from convsvd._results import folder as existing, safe_name
from convsvd._typing import PathLike


#: Which figures of a spectrum are drawn: every one, the α-across-depth summary only, or none.
FIGURE_SETS = ("all", "summary", "none")


def _spectrum_figures(res: Any, which: str = "all") -> dict[str, Callable[[], Any]]:
    from convsvd.viz.spectral import esd_figure, plot_alpha_depth

    if which == "none":
        return {}
    figures: dict[str, Callable[[], Any]] = {"alpha-depth.png": lambda: plot_alpha_depth(res).figure}
    for layer in res.layers if which == "all" else ():
        if layer.evals.size:
            figures[f"esd-{safe_name(layer.name)}.png"] = functools.partial(esd_figure, layer)
    return figures


def _separation_figures(res: Any, layers: list[str] | None) -> dict[str, Callable[[], Any]]:
    from convsvd.viz.hypergraph import plot_class_hypergraph, plot_class_overlap, plot_incidence, plot_separation

    def figure_of(plot: Callable[[Any], Any], layer: Any) -> Callable[[], Any]:
        return lambda: plot(layer).figure

    figures: dict[str, Callable[[], Any]] = {"separation.png": lambda: plot_separation(res)}
    for name in layers if layers is not None else res.names:
        layer, safe = res[name], safe_name(name)
        figures[f"class-hypergraph-{safe}.png"] = figure_of(plot_class_hypergraph, layer)
        figures[f"incidence-{safe}.png"] = figure_of(plot_incidence, layer)
        figures[f"overlap-{safe}.png"] = figure_of(plot_class_overlap, layer)
    return figures


def figure_names(result: Any, layers: list[str] | None = None, which: str = "all") -> list[str]:
    """The file names :func:`save_figures` writes for ``result``, without drawing anything."""
    return list(_figures(result, layers, which))


def _figures(result: Any, layers: list[str] | None, which: str = "all") -> dict[str, Callable[[], Any]]:
    from convsvd.hypergraph import Separation
    from convsvd.spectral import SpectrumResult

    if isinstance(result, SpectrumResult):
        return _spectrum_figures(result, which)
    if isinstance(result, Separation):
        return _separation_figures(result, layers)
    raise TypeError(f"no figures for {type(result).__name__}")


def _spectrum_type() -> type:
    from convsvd.spectral import SpectrumResult

    return SpectrumResult


def save_figures(result: Any, folder: PathLike, *, layers: list[str] | None = None, dpi: int | None = None,
                 progress: bool | None = None, which: str = "all") -> list[Path]:
    """Draw every figure of ``result`` into ``folder`` as PNG; returns the paths written.

    Parameters
    ----------
    result : SpectrumResult or Separation
    folder : path
        An existing folder.
    layers : list of str, optional
        Separation only: the layers whose class hypergraph, incidence and overlap are drawn (default all).
    dpi : int, optional
        Default: 90 for spectra, 100 for separation figures (as the CLI has always written them).
    progress : bool, optional
    which : {"all", "summary", "none"}
        Spectra only (:data:`FIGURE_SETS`): every figure, the α-across-depth summary, or none.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = existing(folder)
    figures = _figures(result, layers, which)
    dpi = dpi or (90 if isinstance(result, _spectrum_type()) else 100)
    paths = []
    with _progress(len(figures), "figures", progress) as bar:
        for name, draw in figures.items():
            fig = draw()
            try:
                fig.savefig(out / name, format="png", dpi=dpi)
            finally:
                plt.close(fig)
            paths.append(out / name)
            bar.advance(1, name)
    return paths
