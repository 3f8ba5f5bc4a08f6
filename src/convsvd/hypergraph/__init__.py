"""Hypergraphs of class separation, layer by layer, from a SignalTable, built on HyperNetX.

Vertices are the SVD neurons of a layer, labelled ``layer:i`` (``layer:g.i``
for neuron ``i`` of group ``g`` when the layer has several groups).

- **Input hypergraph** (:func:`input_hypergraph`): one hyperedge per input, its
  influential SVD neurons (incidence weight: the neuron's relative influence weight).
- **Class hypergraph** (:func:`class_hypergraph`): one hyperedge per class, the
  SVD neurons influential for at least a share ``p`` (default 0.5) of the class's
  inputs (incidence weight: that share).
- Their duals (``dual=True``); all are ``hypernetx.Hypergraph`` objects with
  vertex properties ``layer, group, neuron, sigma`` and edge properties
  (``label, inputs, size`` of a class; ``id, label, class`` of an input).
- **Separation** (:func:`separation`, :func:`class_separation`): per layer, the
  Jaccard overlap of class hyperedges, the share of each class's neurons
  exclusive to it, the s-connected components (s = 1, 2, 3), the hypergraph
  modularity of the class partition of the inputs on the dual input hypergraph,
  and the cross-validated accuracy of a nearest-class-centroid rule on the signals, with
  its chance level and shuffled-label baseline, the influential-set sizes and a flag for
  class hyperedges collapsed to one neuron (definitions and undefined cases:
  :mod:`convsvd.hypergraph.separation`). Computed on sparse incidence matrices,
  vectorised over inputs (:mod:`convsvd.hypergraph.metrics`), equal to HyperNetX's values.
- **Export**: HIF JSON (:func:`write_hif`, :func:`read_hif`) and CSV incidence
  tables (:meth:`ClassIncidence.to_frame`, :func:`incidence_frame`).

HyperNetX is imported on first use (it is slow to import).

>>> from convsvd import zoo
>>> from convsvd.signals import profile
>>> from convsvd.hypergraph import class_hypergraph, separation
>>> table = profile(zoo.load("digits-cnn"), "digits:test", progress=False)   # doctest: +SKIP
>>> separation(table)                                                       # doctest: +SKIP
>>> H = class_hypergraph(table, "fc2", min_share=0.5)                        # doctest: +SKIP
"""

from convsvd.hypergraph._layer import vertex_label
from convsvd.hypergraph.build import (
    ClassIncidence,
    class_hypergraph,
    class_incidence,
    incidence_frame,
    input_hypergraph,
)
from convsvd.hypergraph.export import read_hif, to_hif, write_hif
from convsvd.hypergraph.separation import LayerSeparation, Separation, class_separation, layer_separation, separation

__all__ = [
    "ClassIncidence",
    "LayerSeparation",
    "Separation",
    "class_hypergraph",
    "class_incidence",
    "class_separation",
    "incidence_frame",
    "input_hypergraph",
    "layer_separation",
    "read_hif",
    "separation",
    "to_hif",
    "vertex_label",
    "write_hif",
]
