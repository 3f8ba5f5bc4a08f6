"""Show the features of SVD neurons: feature visualisation, dataset exemplars, singular filters.

>>> from convsvd import zoo
>>> from convsvd.features import featureviz, singular_filters
>>> fv = featureviz(zoo.load("digits-cnn"), "conv2", [0, 1], steps=64, size=8)  # doctest: +SKIP
>>> sf = singular_filters(zoo.load("digits-cnn"), "conv1", rank=3)               # doctest: +SKIP
"""

from convsvd.features.exemplars import Exemplars, attach_maps, exemplars, exemplars_of_layers, fetch_inputs
from convsvd.features.featureviz import (
    DIRECTIONS,
    LOCATIONS,
    FeatureVisualization,
    ImageParam,
    Transforms,
    colour_matrix,
    featureviz,
    image_seed,
)
from convsvd.features.filters import DEFAULT_ENERGY, SingularFilters, singular_filters

__all__ = [
    "DEFAULT_ENERGY",
    "DIRECTIONS",
    "LOCATIONS",
    "Exemplars",
    "FeatureVisualization",
    "ImageParam",
    "SingularFilters",
    "Transforms",
    "attach_maps",
    "colour_matrix",
    "exemplars",
    "exemplars_of_layers",
    "featureviz",
    "fetch_inputs",
    "image_seed",
    "singular_filters",
]
