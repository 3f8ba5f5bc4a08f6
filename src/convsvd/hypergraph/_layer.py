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
    """Scan one site of ``table`` into dense ``(N, K)`` arrays, keeping only the inputs of ``labels`` when given.

    Memory: two ``N × K`` float64 arrays (signal, weight) and an ``N × K`` bool mask.
    """
    if not isinstance(layer, str) or layer not in table.layers:
        shown = ", ".join(table.layers[:8]) + (" ..." if len(table.layers) > 8 else "")
        raise InputError(f"layer {layer!r}: not profiled in this run (layers: {shown})")
    info = next(l for l in table.manifest["layers"] if l["layer"] == layer)  # type: ignore[union-attr, index]
    g, r = int(info["groups"]), int(info["neurons_per_group"])  # type: ignore[call-overload]
    K = g * r
    t = table.scan(layer=layer, columns=["id", "label", "group", "neuron", "sigma", "signal", "influential", "weight"])
    ids_all = t.column("id").to_numpy()
    lab_all = t.column("label").to_numpy()
    if labels is not None:
        keep = np.isin(lab_all, np.asarray(list(labels), dtype=np.int64))
        missing = sorted(set(labels) - set(np.unique(lab_all[keep]).tolist()))
        if missing:
            names = _names(table)
            which = ", ".join(names[m] if m < len(names) else str(m) for m in missing)
            raise InputError(f"classes {which}: no input of {'this class' if len(missing) == 1 else 'these classes'} "
                             f"in layer {layer!r} of this run")
    else:
        keep = np.ones(len(ids_all), dtype=bool)
    ids_all, lab_all = ids_all[keep], lab_all[keep]
    k = (t.column("group").to_numpy()[keep].astype(np.int64) * r + t.column("neuron").to_numpy()[keep])
    ids, row = np.unique(ids_all, return_inverse=True)
    N = len(ids)
    signal = np.zeros((N, K))
    weight = np.zeros((N, K))
    mask = np.zeros((N, K), dtype=bool)
    signal[row, k] = t.column("signal").to_numpy()[keep]
    weight[row, k] = t.column("weight").to_numpy()[keep]
    mask[row, k] = t.column("influential").to_numpy(zero_copy_only=False)[keep]
    labels_out = np.full(N, -1, dtype=np.int64)
    labels_out[row] = lab_all
    sigma = np.zeros(K)
    sigma[k] = t.column("sigma").to_numpy()[keep]
    groups, neurons = np.repeat(np.arange(g), r), np.tile(np.arange(r), g)
    return LayerData(layer, ids.astype(np.int64), labels_out, signal, mask, weight, groups, neurons, sigma,
                     tuple(vertex_label(layer, int(a), int(b), g) for a, b in zip(groups, neurons)),
                     tuple(_names(table)))
