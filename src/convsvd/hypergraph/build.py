"""The class × neuron incidence of a layer and the HyperNetX hypergraphs built from a SignalTable.

Vertices are the SVD neurons of one layer, labelled ``layer:i`` (``layer:g.i``
for neuron ``i`` of group ``g`` of a grouped convolution). The **input
hypergraph** has one hyperedge per input (its id), made of its influential SVD
neurons; the **class hypergraph** one hyperedge per class (its name), made of
the SVD neurons influential for at least a share ``p`` of the class's inputs.
Their duals swap the roles (:meth:`hypernetx.Hypergraph.dual`, properties kept).

HyperNetX keeps only hyperedges that have a vertex: an input with no
influential neuron (all its signals zero), or a class with no neuron reaching
the share ``p``, is not an edge of the hypergraph (see
:attr:`ClassIncidence.empty`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from convsvd import _validate as check
from convsvd.errors import InputError
from convsvd.hypergraph._hnx import hnx
from convsvd.hypergraph._layer import LayerData, read_layer, resolve_classes
from convsvd.hypergraph.metrics import class_counts
from convsvd.signals.table import SignalTable

if TYPE_CHECKING:  # pragma: no cover
    import hypernetx

__all__ = ["DRAW_MAX_INPUTS", "ClassIncidence", "check_min_share", "class_hypergraph", "class_incidence",
           "incidence_frame", "input_hypergraph"]

DRAW_MAX_INPUTS = 5000  # default cap of input_hypergraph: a HyperNetX object of more inputs takes seconds to build
_TOL = 1e-9  # "at least a share p" is compared as count ≥ p·n up to rounding (0.7 · 10 is 7.000000000000001)


def check_min_share(min_share: float) -> float:
    return check.share(min_share, "min_share")


@dataclass(frozen=True, eq=False)
class ClassIncidence:
    """How often each SVD neuron of a layer is influential for the inputs of each class.

    Attributes
    ----------
    layer : str
    min_share : float
        ``p``: a neuron belongs to a class's hyperedge when it is influential for at least this share of its inputs.
    labels : numpy.ndarray
        ``(C,)`` int64 class labels, ascending.
    classes : tuple of str
        ``(C,)`` class names.
    inputs : numpy.ndarray
        ``(C,)`` int64 inputs of each class.
    vertices : tuple of str
        ``(K,)`` vertex labels ``layer:i``.
    groups, neurons : numpy.ndarray
        ``(K,)`` int64.
    sigma : numpy.ndarray
        ``(K,)`` float64 singular values.
    count : numpy.ndarray
        ``(C, K)`` int64: inputs of the class for which the neuron is influential.
    """

    layer: str
    min_share: float
    labels: np.ndarray
    classes: tuple[str, ...]
    inputs: np.ndarray
    vertices: tuple[str, ...]
    groups: np.ndarray
    neurons: np.ndarray
    sigma: np.ndarray
    count: np.ndarray

    @property
    def share(self) -> np.ndarray:
        """``(C, K)`` float64 ``count / inputs``."""
        return self.count / np.maximum(self.inputs, 1)[:, None]

    @property
    def member(self) -> np.ndarray:
        """``(C, K)`` bool: the neuron is in the class's hyperedge (``count ≥ p · inputs``)."""
        n = self.inputs[:, None].astype(np.float64)
        return (self.count >= self.min_share * n - _TOL * n) & (self.count > 0)

    @property
    def sizes(self) -> np.ndarray:
        """``(C,)`` int64 size of each class hyperedge."""
        return self.member.sum(axis=1)

    @property
    def empty(self) -> tuple[str, ...]:
        """Classes whose hyperedge is empty (no neuron reaches the share ``p``)."""
        return tuple(c for c, s in zip(self.classes, self.sizes) if s == 0)

    def to_frame(self) -> pd.DataFrame:
        """One row per class × neuron.

        Columns: ``layer, label, class, vertex, group, neuron, sigma, inputs, count, share, member``.
        """
        C, K = self.count.shape
        names = np.array(self.classes, dtype=object)
        return pd.DataFrame(dict(
            layer=self.layer, label=np.repeat(self.labels, K), **{"class": np.repeat(names, K)},
            vertex=np.tile(np.array(self.vertices, dtype=object), C), group=np.tile(self.groups, C),
            neuron=np.tile(self.neurons, C), sigma=np.tile(self.sigma, C), inputs=np.repeat(self.inputs, K),
            count=self.count.reshape(-1), share=self.share.reshape(-1), member=self.member.reshape(-1)))

    def matrix(self, values: str = "share") -> pd.DataFrame:
        """``(C, K)`` table of ``values`` (``"share"``, ``"count"`` or ``"member"``), classes × vertices."""
        if values not in ("share", "count", "member"):
            raise InputError(f"values {values!r}: expected 'share', 'count' or 'member'")
        return pd.DataFrame(getattr(self, values), index=pd.Index(self.classes, name="class"),
                            columns=pd.Index(self.vertices, name="vertex"))


def _incidence_of(data: LayerData, min_share: float) -> ClassIncidence:
    """The class incidence of the labelled inputs of ``data`` (one sparse product: cost ∝ influential cells)."""
    labelled = data.labels >= 0
    labels, codes = np.unique(data.labels[labelled], return_inverse=True)
    if labels.size == 0:
        raise InputError(f"layer {data.layer!r}: no labelled input (class hypergraphs need class labels)")
    codes = codes.reshape(-1)
    count = class_counts(data.mask[labelled], codes, labels.size)
    return ClassIncidence(data.layer, min_share, labels, tuple(data.class_name(int(c)) for c in labels),
                          np.bincount(codes, minlength=labels.size).astype(np.int64), data.vertices, data.groups,
                          data.neurons, data.sigma, count)


def _subsample(labels: np.ndarray, max_inputs: int, seed: int) -> np.ndarray:
    """Indices of a stratified random subsample of about ``max_inputs`` (each class keeps its share, at least 1)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    keep = []
    for c in np.unique(labels):  # one step per class, not per input
        idx = np.flatnonzero(labels == c)
        take = max(1, int(round(len(idx) * max_inputs / n)))
        keep.append(np.sort(rng.permutation(idx)[:take]))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def class_incidence(table: SignalTable, layer: str, *, min_share: float = 0.5,
                    classes: Sequence[str | int] | None = None) -> ClassIncidence:
    """Class × SVD neuron influence counts of one layer, and the class hyperedges at share ``min_share``.

    Parameters
    ----------
    table : SignalTable
    layer : str
        A profiled site.
    min_share : float
        ``p`` in (0, 1].
    classes : sequence of str or int, optional
        Class names (or labels); default every labelled class.

    Returns
    -------
    ClassIncidence

    >>> inc = class_incidence(table, "fc2", min_share=0.5)  # doctest: +SKIP
    >>> inc.matrix("member")                                # doctest: +SKIP
    """
    min_share = check_min_share(min_share)
    return _incidence_of(read_layer(table, layer, resolve_classes(table, classes)), min_share)


def _vertex_properties(layer: str, vertices: Sequence[str], groups: np.ndarray, neurons: np.ndarray,
                       sigma: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(dict(vertex=list(vertices), layer=layer, group=groups.astype(np.int64),
                             neuron=neurons.astype(np.int64), sigma=sigma.astype(np.float64)))


def class_hypergraph(source: SignalTable | ClassIncidence, layer: str | None = None, *, min_share: float = 0.5,
                     classes: Sequence[str | int] | None = None, dual: bool = False) -> "hypernetx.Hypergraph":
    """The class hypergraph of a layer: a hyperedge per class, of the SVD neurons influential for ≥ ``p`` of its inputs.

    Parameters
    ----------
    source : SignalTable or ClassIncidence
        A table (then ``layer`` is required), or an incidence already computed (``layer``,
        ``min_share`` and ``classes`` are then taken from it).
    layer : str, optional
    min_share : float
        ``p`` in (0, 1].
    classes : sequence of str or int, optional
    dual : bool
        Return the dual: a hyperedge per SVD neuron, of the classes it belongs to.

    Returns
    -------
    hypernetx.Hypergraph
        Edges: class names, properties ``label, inputs, size``; vertices ``layer:i``,
        properties ``layer, group, neuron, sigma``; incidences: ``weight`` = ``share``
        (of the class's inputs for which the neuron is influential) and ``count``.

    >>> H = class_hypergraph(table, "conv3")        # doctest: +SKIP
    >>> H.incidence_dict["3"]                       # doctest: +SKIP
    ['conv3:1', 'conv3:6']
    """
    if isinstance(source, ClassIncidence):
        inc = source
    else:
        if layer is None:
            raise InputError("layer: required when class_hypergraph is given a SignalTable")
        inc = class_incidence(source, layer, min_share=min_share, classes=classes)
    h = hnx()
    c, k = np.nonzero(inc.member)
    names, vertices = np.array(inc.classes, dtype=object), np.array(inc.vertices, dtype=object)
    cells = pd.DataFrame(dict(edge=names[c], vertex=vertices[k], weight=inc.share[c, k], share=inc.share[c, k],
                              count=inc.count[c, k]))
    edges = pd.DataFrame(dict(edge=list(inc.classes), label=inc.labels.astype(np.int64), inputs=inc.inputs,
                              size=inc.sizes.astype(np.int64)))
    H = h.Hypergraph(cells, edge_col="edge", node_col="vertex", cell_weight_col="weight", edge_properties=edges,
                     node_properties=_vertex_properties(inc.layer, inc.vertices, inc.groups, inc.neurons, inc.sigma),
                     name=f"{inc.layer} classes (p={inc.min_share:g})")
    return H.dual(name=f"{inc.layer} classes (p={inc.min_share:g}) dual") if dual else H


def _input_hypergraph_of(data: LayerData, dual: bool = False, name: str | None = None) -> "hypernetx.Hypergraph":
    h = hnx()
    i, k = np.nonzero(data.mask)
    cells = pd.DataFrame(dict(edge=data.ids[i], vertex=np.array(data.vertices, dtype=object)[k],
                              weight=data.weight[i, k], signal=data.signal[i, k]))
    edges = pd.DataFrame(dict(edge=data.ids, id=data.ids, label=data.labels,
                              **{"class": [data.class_name(int(l)) if l >= 0 else None for l in data.labels]}))
    vertices = _vertex_properties(data.layer, data.vertices, data.groups, data.neurons, data.sigma)
    name = name or f"{data.layer} inputs"
    H = h.Hypergraph(cells, edge_col="edge", node_col="vertex", cell_weight_col="weight", edge_properties=edges,
                     node_properties=vertices, name=name)
    return H.dual(name=f"{name} dual") if dual else H


def _rows(data: LayerData, rows: np.ndarray) -> LayerData:
    return LayerData(data.layer, data.ids[rows], data.labels[rows], data.signal[rows], data.mask[rows],
                     data.weight[rows], data.groups, data.neurons, data.sigma, data.vertices, data.names)


def input_hypergraph(table: SignalTable, layer: str, *, classes: Sequence[str | int] | None = None,
                     ids: Sequence[int] | None = None, dual: bool = False, max_inputs: int | None = DRAW_MAX_INPUTS,
                     seed: int = 0) -> "hypernetx.Hypergraph":
    """The input hypergraph of a layer: a hyperedge per input (its id), of its influential SVD neurons.

    Parameters
    ----------
    table : SignalTable
    layer : str
    classes : sequence of str or int, optional
        Keep only the inputs of these classes.
    ids : sequence of int, optional
        Keep only these inputs.
    dual : bool
        Return the dual: a hyperedge per SVD neuron, of the inputs for which it is influential
        (the hypergraph whose modularity :func:`~convsvd.hypergraph.class_separation` reports).
    max_inputs : int or None
        Cap on the inputs, for drawing and export: above it, a stratified random sample of
        about ``max_inputs`` inputs (each class keeps its share, seeded by ``seed``; the name
        says ``sample of n of N``). Default :data:`DRAW_MAX_INPUTS` (5000); None keeps every
        input. The separation metrics never build this object.
    seed : int
        Seeds the sample.

    Returns
    -------
    hypernetx.Hypergraph
        Edges: input ids, properties ``id, label, class``; vertices ``layer:i`` with
        ``layer, group, neuron, sigma``; incidences: ``weight`` (the input's relative
        influence weight, summing to 1 over its hyperedge) and ``signal``.

    >>> H = input_hypergraph(table, "fc2", classes=["3", "5"])   # doctest: +SKIP
    """
    if max_inputs is not None and (isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 1):
        raise InputError(f"max_inputs: expected an int ≥ 1 or None, got {max_inputs!r}")
    data = read_layer(table, layer, resolve_classes(table, classes))
    if ids is not None:
        data = _rows(data, np.flatnonzero(np.isin(data.ids, np.asarray(list(ids), dtype=np.int64))))
    name = None
    if max_inputs is not None and len(data.ids) > max_inputs:
        n = len(data.ids)
        data = _rows(data, _subsample(data.labels, max_inputs, seed))
        name = f"{data.layer} inputs (sample of {len(data.ids)} of {n})"
    return _input_hypergraph_of(data, dual, name)


def incidence_frame(H: "hypernetx.Hypergraph") -> pd.DataFrame:
    """The incidences of a hypergraph as a long table: ``edge, node, weight`` and every incidence property.

    Edge and vertex properties are joined with ``edge_`` and ``node_`` prefixes, so
    the CSV holds the whole hypergraph.
    """
    cells = H.incidences.to_dataframe.reset_index()
    cells = cells.rename(columns={cells.columns[0]: "edge", cells.columns[1]: "node"}).drop(columns="misc_properties",
                                                                                           errors="ignore")
    edges = H.edges.to_dataframe.drop(columns=["misc_properties", "weight"], errors="ignore").add_prefix("edge_")
    nodes = H.nodes.to_dataframe.drop(columns=["misc_properties", "weight"], errors="ignore").add_prefix("node_")
    out = cells.merge(edges, left_on="edge", right_index=True, how="left")
    return out.merge(nodes, left_on="node", right_index=True, how="left")
