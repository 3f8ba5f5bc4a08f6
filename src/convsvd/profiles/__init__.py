"""Attribution profiles: the sparse graph of neurons and synapses that carried each decision.

>>> from convsvd import zoo
>>> from convsvd.profiles import profile_graph
>>> ps = profile_graph(zoo.load("digits-cnn"), "digits:test", neuron_type="channel")  # doctest: +SKIP
>>> ps.class_profiles()[3].to_frame()                                                  # doctest: +SKIP
"""

from convsvd.profiles.build import STARTS, Profiler, profile_graph
from convsvd.profiles.contrib import NEURON_TYPES, LayerOp
from convsvd.profiles.graph import KINDS, Layer, LayerGraph, layer_graph
from convsvd.profiles.profile import InputProfiles, LayerInfo, Profile
from convsvd.profiles.files import write_outputs
from convsvd.profiles.run import ProfileRun
from convsvd.profiles.select import RULES, select
from convsvd.profiles.similarity import ClassSimilarity, class_matrix, class_similarity, instance_jaccard, jaccard
from convsvd.profiles.topology import Homology, attribution_graph, diagram_distances, homology

__all__ = [
    "KINDS",
    "NEURON_TYPES",
    "RULES",
    "STARTS",
    "ClassSimilarity",
    "Homology",
    "InputProfiles",
    "Layer",
    "LayerGraph",
    "LayerInfo",
    "LayerOp",
    "Profile",
    "ProfileRun",
    "Profiler",
    "attribution_graph",
    "class_matrix",
    "class_similarity",
    "diagram_distances",
    "homology",
    "instance_jaccard",
    "jaccard",
    "layer_graph",
    "profile_graph",
    "select",
    "write_outputs",
]
