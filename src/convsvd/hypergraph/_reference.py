"""The HyperNetX-based separation metrics, as computed before the sparse ones: the reference for tests and benchmarks.

Nothing in the library calls this module. It builds the HyperNetX objects the
metrics were first defined on — the class hypergraph for the s-components, the
dual of the input hypergraph for the modularity (one scalar ``scipy.stats``
call per hyperedge size, part and count) — and scikit-learn's
``NearestCentroid`` for the NCC accuracy, so that
:mod:`convsvd.hypergraph.metrics` can be compared with them value for value and
timed against them in the same run (``benchmarks/separation.py``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from convsvd.hypergraph._hnx import hnx
from convsvd.hypergraph._layer import LayerData, read_layer, resolve_classes
from convsvd.hypergraph.build import ClassIncidence, _incidence_of, _input_hypergraph_of, _subsample, class_hypergraph
from convsvd.hypergraph.metrics import exclusive_share, jaccard
from convsvd.hypergraph.separation import S_VALUES, _labelled
from convsvd.signals.table import SignalTable

__all__ = ["hnx_components", "hnx_modularity", "reference_layer", "reference_separation", "sklearn_ncc"]


def hnx_components(inc: ClassIncidence) -> tuple[float, float, float]:
    """s-components (s = 1, 2, 3) of the class hypergraph by HyperNetX; NaN without a hyperedge."""
    if not inc.member.any():
        return (math.nan, math.nan, math.nan)
    H = class_hypergraph(inc)
    return tuple(float(sum(1 for _ in H.s_connected_components(s=s, edges=True, return_singletons=True)))
                 for s in S_VALUES)  # type: ignore[return-value]


def _wdc(rule: str) -> Callable[[int, int], float]:
    from hypernetx.algorithms import hypergraph_modularity as hmod

    return {"linear": hmod.linear, "majority": hmod.majority, "strict": hmod.strict}[rule]


def hnx_modularity(data: LayerData, max_inputs: int | None = None, seed: int = 0,
                   rule: str = "linear") -> tuple[float, int]:
    """Modularity of the class partition on the dual input hypergraph by HyperNetX; and the vertices it counted."""
    rows = np.flatnonzero(data.mask.any(axis=1))
    if rows.size == 0:
        return math.nan, 0
    if max_inputs is not None and rows.size > max_inputs:
        rows = rows[_subsample(data.labels[rows], max_inputs, seed)]
    sub = LayerData(data.layer, data.ids[rows], data.labels[rows], data.signal[rows], data.mask[rows],
                    data.weight[rows], data.groups, data.neurons, data.sigma, data.vertices, data.names)
    dual = _input_hypergraph_of(sub, dual=True)
    from hypernetx.algorithms import hypergraph_modularity as hmod

    parts = [set(sub.ids[sub.labels == c].tolist()) for c in np.unique(sub.labels)]
    return float(hmod.modularity(dual, parts, wdc=_wdc(rule))), int(rows.size)


def sklearn_ncc(signal: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> tuple[float, int]:
    """Pooled held-out accuracy of scikit-learn's NearestCentroid under stratified k-fold."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import NearestCentroid

    counts = np.unique(labels, return_counts=True)[1]
    k = int(min(folds, counts.min()))
    correct = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*zero standard deviation", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)  # its per-class spreads of tiny classes
        for train, test in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(signal, labels):
            model = NearestCentroid().fit(signal[train], labels[train])
            correct += int((model.predict(signal[test]) == labels[test]).sum())
    return correct / len(labels), k


def reference_layer(data: LayerData, min_share: float = 0.5, folds: int = 5, seed: int = 0,
                    max_inputs: int | None = None) -> dict[str, Any]:
    """The metrics of one layer the HyperNetX way: ``jaccard_mean, exclusive_mean, components_s1..3,
    modularity, modularity_inputs, ncc_accuracy, ncc_folds`` (plus ``layer, inputs, classes``)."""
    data = _labelled(data)
    inc = _incidence_of(data, min_share)
    overlap, _ = jaccard(inc.member)
    pairs = overlap[np.triu_indices(len(inc.classes), 1)]
    pairs = pairs[~np.isnan(pairs)]
    ex = exclusive_share(inc.member)
    ex = ex[~np.isnan(ex)]
    comps = hnx_components(inc)
    modularity, mod_inputs = hnx_modularity(data, max_inputs, seed) if len(inc.classes) >= 2 else (math.nan, 0)
    accuracy, nfolds = math.nan, 0
    keep = np.isin(data.labels, inc.labels[inc.inputs >= 2])
    if len(np.unique(data.labels[keep])) >= 2 and np.isfinite(data.signal[keep]).all():
        accuracy, nfolds = sklearn_ncc(data.signal[keep], data.labels[keep], folds, seed)
    return dict(layer=data.layer, inputs=int(len(data.ids)), classes=len(inc.classes),
                jaccard_mean=float(pairs.mean()) if pairs.size else math.nan,
                exclusive_mean=float(ex.mean()) if ex.size else math.nan, components_s1=comps[0],
                components_s2=comps[1], components_s3=comps[2], modularity=modularity, modularity_inputs=mod_inputs,
                ncc_accuracy=accuracy, ncc_folds=nfolds)


def reference_separation(table: SignalTable, *, min_share: float = 0.5, layers: Sequence[str] | None = None,
                         classes: Sequence[str | int] | None = None, folds: int = 5, seed: int = 0,
                         max_inputs: int | None = None) -> pd.DataFrame:
    """:func:`reference_layer` of every layer (reading each layer as :func:`~convsvd.hypergraph.separation` does)."""
    hnx()
    names = list(table.layers) if layers is None else list(layers)
    labels = resolve_classes(table, classes)
    return pd.DataFrame([reference_layer(read_layer(table, name, labels), min_share, folds, seed, max_inputs)
                         for name in names])
