"""Figures built from result objects (matplotlib imported lazily, when a figure is drawn)."""

from convsvd.viz.features import (
    feature_tiles,
    features_figure,
    plot_exemplars,
    plot_featureviz,
    plot_filter_rebuild,
    plot_neuron_exemplars,
    plot_singular_filters,
)

__all__ = ["feature_tiles", "features_figure", "plot_exemplars", "plot_featureviz", "plot_filter_rebuild",
           "plot_neuron_exemplars", "plot_singular_filters"]

from convsvd.viz.hypergraph import (  # noqa: E402  (appended after the features figures)
    plot_class_hypergraph,
    plot_class_overlap,
    plot_incidence,
    plot_separation,
)

__all__ += ["plot_class_hypergraph", "plot_class_overlap", "plot_incidence", "plot_separation"]

from convsvd.viz.spectral import (  # noqa: E402  (appended after the figures above)
    esd_figure,
    plot_alpha_depth,
    plot_esd,
    plot_trained_vs_random,
    plot_views,
)

__all__ += ["esd_figure", "plot_alpha_depth", "plot_esd", "plot_trained_vs_random", "plot_views"]

from convsvd.viz.svd import plot_energy, plot_singular_values, svd_figure  # noqa: E402  (the report's SVD figures)

__all__ += ["plot_energy", "plot_singular_values", "svd_figure"]

from convsvd.viz.files import figure_names, save_figures  # noqa: E402  (PNG files of a result's figures)

__all__ += ["figure_names", "save_figures"]
from convsvd.viz.ablation import plot_ablation  # noqa: E402  (directional ablation curves)

__all__ += ["plot_ablation"]
