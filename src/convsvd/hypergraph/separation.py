"""How well the SVD neurons of each layer separate the classes: overlap, exclusivity, components, modularity, NCC.

Per layer, with ``E_c`` the hyperedge of class ``c`` in the class hypergraph at share ``p``:

- **Jaccard overlap** ``J(a, b) = |E_a ∩ E_b| / |E_a ∪ E_b|`` of every pair of classes
  whose hyperedges are not empty; ``jaccard_mean`` is its mean over those pairs.
- **Exclusive share** of class ``c``: ``|E_c \\ ∪_{b≠c} E_b| / |E_c|``, the share of its
  neurons no other class has; ``exclusive_mean`` averages it over non-empty hyperedges.
- **s-components** for s = 1, 2, 3: the s-edge-connected components of the class
  hypergraph (HyperNetX), singletons included: two classes are s-adjacent when they
  share at least ``s`` neurons. More components, more separation.
- **Modularity** of the class partition of the inputs on the dual of the input
  hypergraph (inputs as vertices, one hyperedge per SVD neuron: the inputs for
  which it is influential), with HyperNetX's hypergraph modularity
  (Kamiński et al., ``linear`` edge-contribution rule, every hyperedge weight 1).
  Inputs with no influential neuron are not vertices of the dual.
- **NCC accuracy**: a nearest-class-centroid rule (scikit-learn ``NearestCentroid``,
  Euclidean) on the aggregated signals ``(N, K)``, stratified k-fold (shuffled,
  seeded); each input is predicted once, by the fold that holds it out.

Metrics that are undefined are NaN and the ``status`` column names why (a
comma-separated list of codes, ``ok`` when none; ``message`` says it in words):

=====================  ==============================================================================
``one-class``          fewer than 2 classes: Jaccard, exclusive share, modularity and NCC are NaN
``single-input-class`` a class with one input: its hyperedge is its input's set; it is left out of NCC
``no-hyperedge``       no neuron reaches the share p for any class: Jaccard, exclusive, components NaN
``empty-hyperedge``    some classes have no neuron reaching p: they are left out of the class metrics
``one-neuron``         the layer has a single SVD neuron: the metrics are defined but coarse
``no-influential``     no input has an influential neuron: modularity is NaN
``non-finite``         some signals are NaN or infinite: NCC is NaN
=====================  ==============================================================================
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from convsvd import _validate as check
from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.hypergraph._hnx import hnx
from convsvd.hypergraph._layer import LayerData, read_layer, resolve_classes
from convsvd.hypergraph.build import (
    ClassIncidence,
    _incidence_of,
    _input_hypergraph_of,
    check_min_share,
    class_hypergraph,
)
from convsvd.signals.table import SignalTable

__all__ = ["LayerSeparation", "Separation", "class_separation", "layer_separation", "separation"]

S_VALUES = (1, 2, 3)

COLUMNS = ["layer", "neurons", "inputs", "classes", "min_share", "mean_size", "empty_hyperedges", "jaccard_mean",
           "exclusive_mean", "components_s1", "components_s2", "components_s3", "modularity", "modularity_inputs",
           "ncc_accuracy", "ncc_folds", "status", "message"]


@dataclass(frozen=True, eq=False)
class LayerSeparation:
    """The separation metrics of one layer (see the module docstring for the definitions).

    Attributes
    ----------
    layer : str
    incidence : ClassIncidence
        Class × neuron counts and the class hyperedges.
    inputs : int
        Labelled inputs of the selected classes.
    overlap : numpy.ndarray
        ``(C, C)`` Jaccard overlap; NaN on a row or column whose hyperedge is empty.
    shared : numpy.ndarray
        ``(C, C)`` int64 neurons shared by two class hyperedges (the diagonal: the sizes).
    exclusive : numpy.ndarray
        ``(C,)`` exclusive share of each class; NaN for an empty hyperedge or one class.
    components : tuple of float
        s-components for s = 1, 2, 3 (NaN without a hyperedge).
    modularity : float
    modularity_inputs : int
        Vertices of the dual the modularity was measured on (after any subsampling).
    ncc_accuracy : float
    ncc_folds : int
        0 when NCC was not run.
    status, message : str
    """

    layer: str
    incidence: ClassIncidence
    inputs: int
    overlap: np.ndarray
    shared: np.ndarray
    exclusive: np.ndarray
    components: tuple[float, float, float]
    modularity: float
    modularity_inputs: int
    ncc_accuracy: float
    ncc_folds: int
    status: str
    message: str

    @property
    def classes(self) -> tuple[str, ...]:
        return self.incidence.classes

    @property
    def jaccard_mean(self) -> float:
        iu = np.triu_indices(len(self.classes), 1)
        pairs = self.overlap[iu]
        pairs = pairs[~np.isnan(pairs)]
        return float(pairs.mean()) if pairs.size else math.nan

    @property
    def exclusive_mean(self) -> float:
        e = self.exclusive[~np.isnan(self.exclusive)]
        return float(e.mean()) if e.size else math.nan

    def to_frame(self) -> pd.DataFrame:
        """One row: the columns of :func:`separation`."""
        sizes = self.incidence.sizes
        row = dict(layer=self.layer, neurons=len(self.incidence.vertices), inputs=self.inputs,
                   classes=len(self.classes), min_share=self.incidence.min_share,
                   mean_size=float(sizes[sizes > 0].mean()) if (sizes > 0).any() else math.nan,
                   empty_hyperedges=int((sizes == 0).sum()), jaccard_mean=self.jaccard_mean,
                   exclusive_mean=self.exclusive_mean, components_s1=self.components[0],
                   components_s2=self.components[1], components_s3=self.components[2], modularity=self.modularity,
                   modularity_inputs=self.modularity_inputs, ncc_accuracy=self.ncc_accuracy, ncc_folds=self.ncc_folds,
                   status=self.status, message=self.message)
        return pd.DataFrame([row], columns=COLUMNS)

    def overlap_frame(self) -> pd.DataFrame:
        """The ``(C, C)`` Jaccard matrix with class names as index and columns."""
        idx = pd.Index(self.classes, name="class")
        return pd.DataFrame(self.overlap, index=idx, columns=idx.rename(None))

    def exclusive_frame(self) -> pd.DataFrame:
        """One row per class: ``layer, label, class, inputs, size, exclusive_neurons, exclusive_share``."""
        inc = self.incidence
        return pd.DataFrame(dict(layer=self.layer, label=inc.labels, **{"class": list(inc.classes)}, inputs=inc.inputs,
                                 size=inc.sizes, exclusive_neurons=_exclusive_counts(inc.member),
                                 exclusive_share=self.exclusive))

    def pairs_frame(self) -> pd.DataFrame:
        """One row per pair of classes: ``layer, class_a, class_b, shared, jaccard, shared_neurons``."""
        member, names, verts = self.incidence.member, self.classes, np.array(self.incidence.vertices, dtype=object)
        rows = []
        for a, b in zip(*np.triu_indices(len(names), 1)):
            both = member[a] & member[b]
            rows.append(dict(layer=self.layer, class_a=names[a], class_b=names[b], shared=int(self.shared[a, b]),
                             jaccard=float(self.overlap[a, b]), shared_neurons=" ".join(verts[both])))
        return pd.DataFrame(rows, columns=["layer", "class_a", "class_b", "shared", "jaccard", "shared_neurons"])


@dataclass(frozen=True, eq=False)
class Separation:
    """Separation metrics of every analysed layer, in the table's (call) order.

    Attributes
    ----------
    layers : tuple of LayerSeparation
    min_share : float
    folds, seed : int
        NCC cross-validation.
    max_inputs : int or None
        Modularity subsampling bound.
    """

    layers: tuple[LayerSeparation, ...]
    min_share: float
    folds: int
    seed: int
    max_inputs: int | None

    @property
    def names(self) -> list[str]:
        return [l.layer for l in self.layers]

    def __getitem__(self, layer: str) -> LayerSeparation:
        for l in self.layers:
            if l.layer == layer:
                return l
        raise InputError(f"layer {layer!r}: not in this separation result (layers: {', '.join(self.names)})")

    def __iter__(self) -> Iterator[LayerSeparation]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def to_frame(self) -> pd.DataFrame:
        """One row per layer (see :func:`separation`)."""
        frames = [l.to_frame() for l in self.layers]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)

    def exclusive_frame(self) -> pd.DataFrame:
        """Per layer and class: hyperedge size and exclusive share (long table)."""
        return pd.concat([l.exclusive_frame() for l in self.layers], ignore_index=True)

    def pairs_frame(self) -> pd.DataFrame:
        """Per layer and pair of classes: shared neurons and Jaccard overlap (long table)."""
        return pd.concat([l.pairs_frame() for l in self.layers], ignore_index=True)

    def deepest_shared(self) -> pd.DataFrame:
        """Per pair of classes, the deepest layer where their hyperedges still share a neuron.

        Returns
        -------
        pandas.DataFrame
            ``class_a, class_b, deepest_layer, depth, shared, jaccard, shared_neurons`` (``depth``
            is the layer's position, 0 first; −1 and no layer when they never share),
            sorted by depth descending, then by Jaccard descending.
        """
        pairs = self.pairs_frame()
        depth = {name: i for i, name in enumerate(self.names)}
        pairs["depth"] = pairs["layer"].map(depth)
        rows = []
        for (a, b), g in pairs.groupby(["class_a", "class_b"], sort=False):
            hit = g[g["shared"] > 0]
            if hit.empty:
                rows.append(dict(class_a=a, class_b=b, deepest_layer=None, depth=-1, shared=0, jaccard=math.nan,
                                 shared_neurons=""))
            else:
                last = hit.loc[hit["depth"].idxmax()]
                rows.append(dict(class_a=a, class_b=b, deepest_layer=last["layer"], depth=int(last["depth"]),
                                 shared=int(last["shared"]), jaccard=float(last["jaccard"]),
                                 shared_neurons=last["shared_neurons"]))
        out = pd.DataFrame(rows, columns=["class_a", "class_b", "deepest_layer", "depth", "shared", "jaccard",
                                          "shared_neurons"])
        return out.sort_values(["depth", "jaccard"], ascending=[False, False], kind="stable").reset_index(drop=True)

    def save(self, folder: PathLike, layers: Sequence[str] | None = None) -> list[Path]:
        """Write the tables into the existing ``folder`` (plain writes; the CLI publishes the folder whole):
        ``separation.csv``, ``exclusive.csv``, ``pairs.csv``, ``deepest-shared.csv``, and per layer
        (``layers``, default all) ``class-incidence-LAYER.csv`` and ``overlap-LAYER.csv``.
        Figures: :func:`convsvd.viz.save_figures`."""
        from convsvd._results import folder as existing, safe_name, write_frame

        out = existing(folder)
        paths = []
        for stem, frame in (("separation", self.to_frame()), ("exclusive", self.exclusive_frame()),
                            ("pairs", self.pairs_frame()), ("deepest-shared", self.deepest_shared())):
            paths += write_frame(out, stem, frame, ("csv",))
        for name in self.names if layers is None else layers:
            layer, safe = self[name], safe_name(name)
            paths += write_frame(out, f"class-incidence-{safe}", layer.incidence.to_frame(), ("csv",))
            paths += write_frame(out, f"overlap-{safe}", layer.overlap_frame().reset_index(), ("csv",))
        return paths

    def __repr__(self) -> str:
        return f"Separation({len(self.layers)} layers, min_share={self.min_share:g})"

    def _repr_html_(self) -> str:
        from convsvd._results import html_table

        cols = ["layer", "mean_size", "jaccard_mean", "exclusive_mean", "modularity", "ncc_accuracy", "status"]
        frame = self.to_frame()
        return html_table(f"class separation at p = {self.min_share:g}", frame[[c for c in cols if c in frame]])


# --------------------------------------------------------------------------- metrics


def _overlap(member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C, C)`` Jaccard (NaN where a hyperedge is empty) and shared counts."""
    m = member.astype(np.int64)
    shared = m @ m.T
    sizes = np.diag(shared)
    union = sizes[:, None] + sizes[None, :] - shared
    ok = (sizes[:, None] > 0) & (sizes[None, :] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(ok, shared / np.where(union > 0, union, 1), np.nan)
    return jac, shared


def _exclusive_counts(member: np.ndarray) -> np.ndarray:
    """``(C,)`` neurons of each class hyperedge that no other class has (0 with a single class)."""
    C = member.shape[0]
    if C < 2:
        return np.zeros(C, dtype=np.int64)
    in_others = member.sum(axis=0, keepdims=True) - member.astype(np.int64) > 0
    return (member & ~in_others).sum(axis=1)


def _exclusive(member: np.ndarray) -> np.ndarray:
    """``(C,)`` exclusive share of each class; NaN for an empty hyperedge, and for all with a single class."""
    sizes = member.sum(axis=1)
    out = np.full(member.shape[0], np.nan)
    if member.shape[0] >= 2:
        ok = sizes > 0
        out[ok] = _exclusive_counts(member)[ok] / sizes[ok]
    return out


def _components(inc: ClassIncidence) -> tuple[float, float, float]:
    if not inc.member.any():
        return (math.nan, math.nan, math.nan)
    H = class_hypergraph(inc)
    return tuple(float(sum(1 for _ in H.s_connected_components(s=s, edges=True, return_singletons=True)))
                 for s in S_VALUES)  # type: ignore[return-value]


def _subsample(labels: np.ndarray, max_inputs: int, seed: int) -> np.ndarray:
    """Indices of a stratified random subsample of about ``max_inputs`` (each class keeps its share, at least 1)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        take = max(1, int(round(len(idx) * max_inputs / n)))
        keep.append(np.sort(rng.permutation(idx)[:take]))
    return np.sort(np.concatenate(keep))


def _modularity(data: LayerData, max_inputs: int | None, seed: int) -> tuple[float, int]:
    """Modularity of the class partition on the dual of the input hypergraph; and the vertices it counted."""
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
    return float(hmod.modularity(dual, parts)), int(rows.size)


def _ncc(signal: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> tuple[float, int]:
    """Pooled held-out accuracy of NearestCentroid under stratified k-fold; classes need ≥ 2 inputs (caller's job)."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import NearestCentroid

    counts = np.unique(labels, return_counts=True)[1]
    k = int(min(folds, counts.min()))
    correct = 0
    with warnings.catch_warnings():
        # scikit-learn ≥ 1.5 also fits per-class spreads (for its decision function, unused here) and warns
        # when a feature is constant within a class, as zero signals often are
        warnings.filterwarnings("ignore", message=".*zero standard deviation", category=UserWarning)
        warnings.filterwarnings("ignore", message="divide by zero", category=RuntimeWarning)
        for train, test in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(signal, labels):
            model = NearestCentroid().fit(signal[train], labels[train])
            correct += int((model.predict(signal[test]) == labels[test]).sum())
    return correct / len(labels), k


def _separate(data: LayerData, min_share: float, folds: int, seed: int, max_inputs: int | None) -> LayerSeparation:
    # inputs in id order, so the seeded cross-validation folds do not depend on the order the rows arrived in
    keep = np.flatnonzero(data.labels >= 0)
    keep = keep[np.argsort(data.ids[keep], kind="stable")]
    data = LayerData(data.layer, data.ids[keep], data.labels[keep], data.signal[keep],
                     data.mask[keep], data.weight[keep], data.groups, data.neurons, data.sigma,
                     data.vertices, data.names)
    inc = _incidence_of(data, min_share)
    C, K = inc.count.shape
    notes: list[tuple[str, str]] = []
    if C < 2:
        notes.append(("one-class", f"one class ({inc.classes[0]}): no separation between classes to measure"))
    single = [c for c, n in zip(inc.classes, inc.inputs) if n == 1]
    if single:
        notes.append(("single-input-class", f"class {', '.join(single)} has one input: left out of the NCC "
                                            f"cross-validation"))
    empty = inc.empty
    if len(empty) == C:
        notes.append(("no-hyperedge", f"no neuron is influential for a share {min_share:g} of any class's inputs"))
    elif empty:
        notes.append(("empty-hyperedge", f"class {', '.join(empty)}: no neuron reaches the share {min_share:g}; "
                                         f"left out of the overlap, exclusivity and components"))
    if K == 1:
        notes.append(("one-neuron", "the layer has a single SVD neuron: the metrics are coarse"))
    overlap, shared = _overlap(inc.member)
    exclusive = _exclusive(inc.member)
    components = _components(inc)
    if C >= 2:
        modularity, mod_inputs = _modularity(data, max_inputs, seed)
        if mod_inputs == 0:
            notes.append(("no-influential", "no input has an influential neuron: modularity is undefined"))
    else:
        modularity, mod_inputs = math.nan, 0
    accuracy, nfolds = math.nan, 0
    keep = np.isin(data.labels, inc.labels[inc.inputs >= 2])
    if len(np.unique(data.labels[keep])) >= 2:
        if np.isfinite(data.signal[keep]).all():
            accuracy, nfolds = _ncc(data.signal[keep], data.labels[keep], folds, seed)
        else:
            notes.append(("non-finite", "some signals are NaN or infinite: the NCC accuracy is undefined"))
    status = ",".join(code for code, _ in notes) or "ok"
    return LayerSeparation(data.layer, inc, int(len(data.ids)), overlap, shared, exclusive, components, modularity,
                           mod_inputs, accuracy, nfolds, status, "; ".join(text for _, text in notes))


def _check_options(folds: int, seed: int, max_inputs: int | None) -> None:
    check.integer(folds, "folds", minimum=2)  # cross-validation folds
    check.integer(seed, "seed")
    check.optional_integer(max_inputs, "max_inputs", minimum=2)


def layer_separation(table: SignalTable, layer: str, *, min_share: float = 0.5,
                     classes: Sequence[str | int] | None = None, folds: int = 5, seed: int = 0,
                     max_inputs: int | None = None) -> LayerSeparation:
    """Separation metrics of one layer (see :func:`class_separation`)."""
    min_share = check_min_share(min_share)
    _check_options(folds, seed, max_inputs)
    hnx()  # fail early, with the install hint, when HyperNetX is missing
    return _separate(read_layer(table, layer, resolve_classes(table, classes)), min_share, folds, seed, max_inputs)


def class_separation(table: SignalTable, *, min_share: float = 0.5, layers: Sequence[str] | None = None,
                     classes: Sequence[str | int] | None = None, folds: int = 5, seed: int = 0,
                     max_inputs: int | None = None) -> Separation:
    """Separation metrics of every layer, as result objects (the matrices and per-class values included).

    Parameters
    ----------
    table : SignalTable
        A finished profile run with class labels.
    min_share : float
        ``p`` in (0, 1]: a neuron is in a class's hyperedge when influential for ≥ ``p`` of its inputs.
    layers : sequence of str, optional
        Default: every profiled site, in call order.
    classes : sequence of str or int, optional
        Analyse only the inputs of these classes (names, or labels).
    folds : int
        NCC cross-validation folds (fewer when the smallest class has fewer inputs).
    seed : int
        Seeds the fold shuffling and the modularity subsample.
    max_inputs : int, optional
        Measure the modularity on a stratified random subsample of at most about this
        many inputs (the ``modularity_inputs`` column says how many); default all.

    Returns
    -------
    Separation

    Raises
    ------
    InputError
        An unknown layer or class, a share outside (0, 1], a run without labels.

    >>> result = class_separation(table)            # doctest: +SKIP
    >>> result["fc2"].overlap_frame()               # doctest: +SKIP
    """
    min_share = check_min_share(min_share)
    _check_options(folds, seed, max_inputs)
    names = list(table.layers) if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    if not names:
        raise InputError("layers: the selection is empty (expected at least one profiled layer)")
    labels = resolve_classes(table, classes)
    hnx()
    out = tuple(_separate(read_layer(table, name, labels), min_share, folds, seed, max_inputs) for name in names)
    return Separation(out, min_share, folds, seed, max_inputs)


def separation(table: SignalTable, *, min_share: float = 0.5, layers: Sequence[str] | None = None,
               classes: Sequence[str | int] | None = None, folds: int = 5, seed: int = 0,
               max_inputs: int | None = None) -> Separation:
    """Separation of the classes by the SVD neurons: :func:`class_separation` (the same result object).

    Returns
    -------
    Separation
        Its ``to_frame()`` has one row per layer: ``layer, neurons, inputs, classes, min_share, mean_size, empty_hyperedges,
        jaccard_mean, exclusive_mean, components_s1, components_s2, components_s3,
        modularity, modularity_inputs, ncc_accuracy, ncc_folds, status, message``
        (``mean_size``: mean size of the non-empty class hyperedges).

    >>> from convsvd import zoo
    >>> from convsvd.signals import profile
    >>> table = profile(zoo.load("digits-cnn"), "digits:test", progress=False)  # doctest: +SKIP
    >>> separation(table).to_frame()[["layer", "jaccard_mean", "ncc_accuracy"]]  # doctest: +SKIP
    """
    return class_separation(table, min_share=min_share, layers=layers, classes=classes, folds=folds, seed=seed,
                            max_inputs=max_inputs)
