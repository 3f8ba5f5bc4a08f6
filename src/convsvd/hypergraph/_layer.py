"""One profiled layer of a SignalTable as dense arrays, and the class selection shared by every builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from convsvd.errors import InputError
from convsvd.signals.table import SignalTable

__all__ = ["LayerData", "read_layer", "resolve_classes", "vertex_label"]


def vertex_label(layer: str, group: int, neuron: int, groups: int) -> str:
    """``layer:i`` for SVD neuron ``i`` of an ungrouped layer, ``layer:g.i`` for neuron ``i`` of group ``g``.

    >>> vertex_label("conv2", 0, 3, 1), vertex_label("conv2", 1, 3, 2)
    ('conv2:3', 'conv2:1.3')
    """
    return f"{layer}:{neuron}" if groups == 1 else f"{layer}:{group}.{neuron}"


@dataclass(frozen=True, eq=False)
class LayerData:
    """The rows of one site, one row per input and one column per SVD neuron.

    Attributes
    ----------
    layer : str
    ids, labels : numpy.ndarray
        ``(N,)`` int64, ids ascending; label −1 for an unlabelled input.
    signal, weight : numpy.ndarray
        ``(N, K)`` float64 aggregated signal and relative influence weight (0 outside the influential set).
    mask : numpy.ndarray
        ``(N, K)`` bool, influential.
    groups, neurons : numpy.ndarray
        ``(K,)`` int64 group and index within the group of each column.
    sigma : numpy.ndarray
        ``(K,)`` float64 singular value of each column.
    vertices : tuple of str
        ``(K,)`` vertex labels (:func:`vertex_label`).
    names : tuple of str
        Class name of every label of the run (index = label).
    """

    layer: str
    ids: np.ndarray
    labels: np.ndarray
    signal: np.ndarray
    mask: np.ndarray
    weight: np.ndarray
    groups: np.ndarray
    neurons: np.ndarray
    sigma: np.ndarray
    vertices: tuple[str, ...]
    names: tuple[str, ...]

    def class_name(self, label: int) -> str:
        return self.names[label] if 0 <= label < len(self.names) else str(label)


def _names(table: SignalTable) -> list[str]:
    return [str(c) for c in (table.classes or [])]


def resolve_classes(table: SignalTable, classes: Sequence[str | int] | None) -> list[int] | None:
    """Labels of ``classes`` (names, or indices when a name is not found); None keeps every class.

    Raises
    ------
    InputError
        A class that is not one of the run's (naming them), or an empty selection.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, int)):
        classes = [classes]
    names = _names(table)
    out: list[int] = []
    for c in classes:
        if isinstance(c, str) and c in names:
            out.append(names.index(c))
            continue
        try:
            label = int(c)
        except (TypeError, ValueError):
            label = -1
        if label < 0 or (names and label >= len(names)) or isinstance(c, bool):
            known = ", ".join(names) if names else "integer labels"
            raise InputError(f"class {c!r}: not among the classes of this run ({known})")
        out.append(label)
    if not out:
        raise InputError("classes: the selection is empty (expected at least one class name)")
    return list(dict.fromkeys(out))


def read_layer(table: SignalTable, layer: str, labels: Sequence[int] | None = None) -> LayerData:
    """One site of ``table`` as dense ``(N, K)`` arrays (:meth:`SignalTable.matrix`), ids ascending,
    keeping only the inputs of ``labels`` when given.

    Memory: two ``N × K`` float64 arrays (signal, weight) and an ``N × K`` bool mask.
    """
    if not isinstance(layer, str) or layer not in table.layers:
        shown = ", ".join(table.layers[:8]) + (" ..." if len(table.layers) > 8 else "")
        raise InputError(f"layer {layer!r}: not profiled in this run (layers: {shown})")
    m = table.matrix(layer, labels=None if labels is None else [int(x) for x in labels])
    if labels is not None:
        missing = sorted(set(labels) - set(np.unique(m.labels).tolist()))
        if missing:
            names = _names(table)
            which = ", ".join(names[m_] if m_ < len(names) else str(m_) for m_ in missing)
            raise InputError(f"classes {which}: no input of {'this class' if len(missing) == 1 else 'these classes'} "
                             f"in layer {layer!r} of this run")
    order = np.argsort(m.ids, kind="stable")
    g = int(m.groups.max()) + 1 if m.groups.size else 1
    groups, neurons = m.groups.astype(np.int64), m.neurons.astype(np.int64)
    return LayerData(layer, m.ids[order], m.labels[order], m.signal[order].astype(np.float64),
                     m.mask[order], m.weight[order].astype(np.float64), groups, neurons, m.sigma.astype(np.float64),
                     tuple(vertex_label(layer, int(a), int(b), g) for a, b in zip(groups, neurons)),
                     tuple(_names(table)))
