"""How well the SVD neurons of each layer separate the classes: overlap, exclusivity, components, modularity, NCC.

Per layer, with ``E_c`` the hyperedge of class ``c`` in the class hypergraph at share ``p``:

- **Jaccard overlap** ``J(a, b) = |E_a ∩ E_b| / |E_a ∪ E_b|`` of every pair of classes
  whose hyperedges are not empty; ``jaccard_mean`` is its mean over those pairs.
- **Exclusive share** of class ``c``: ``|E_c \\ ∪_{b≠c} E_b| / |E_c|``, the share of its
  neurons no other class has; ``exclusive_mean`` averages it over non-empty hyperedges.
- **s-components** for s = 1, 2, 3: the s-edge-connected components of the class
  hypergraph, singletons included: two classes are s-adjacent when they share at
  least ``s`` neurons (HyperNetX's ``s_connected_components``). More components, more separation.
- **Modularity** of the class partition of the inputs on the dual of the input
  hypergraph (inputs as vertices, one hyperedge per SVD neuron: the inputs for
  which it is influential), with HyperNetX's hypergraph modularity
  (Kamiński et al., ``linear`` edge-contribution rule, every hyperedge weight 1).
  Inputs with no influential neuron are not vertices of the dual. Values within
  float noise of 0 (``|q| < 1e-12``) are reported as 0.0.
- **NCC accuracy**: a nearest-class-centroid rule (Euclidean, class means of the
  training folds) on the aggregated signals ``(N, K)``, stratified k-fold
  (scikit-learn's ``StratifiedKFold``, shuffled, seeded); each input is predicted
  once, by the fold that holds it out. Read it against ``ncc_chance`` (always
  predicting the largest class) and ``ncc_shuffled`` (the same procedure on
  randomly permuted labels, mean of ``shuffles`` seeded permutations).
- **Influential sets**: ``influential_mean`` / ``influential_median`` are the mean and
  median number of influential SVD neurons per input; ``collapsed`` is set when the
  class hyperedges have collapsed to one neuron each (mean size ≤ 1), where overlap,
  exclusivity and components say little.

Every metric is computed on sparse incidence matrices, vectorised over inputs
(:mod:`convsvd.hypergraph.metrics`), and equals the value HyperNetX gives on the
same hypergraphs (:mod:`convsvd.hypergraph._reference` keeps that computation for
the tests and the benchmark); no HyperNetX object is built here.

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

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from convsvd import _validate as check
from convsvd._progress import progress as _progress
from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.hypergraph._layer import LayerData, read_layer, resolve_classes
from convsvd.hypergraph.build import ClassIncidence, _incidence_of, _subsample, check_min_share
from convsvd.hypergraph.metrics import (
    components_of_shared,
    exclusive_counts,
    exclusive_share,
    jaccard,
    modularity,
    ncc_predict,
)
from convsvd.signals.table import SignalTable

__all__ = ["LayerSeparation", "Separation", "class_separation", "layer_separation", "separation"]

S_VALUES = (1, 2, 3)
SHUFFLES = 3      # label shuffles averaged for the NCC baseline
ZERO = 1e-12      # |modularity| below this is float noise around 0 and reported as 0.0

COLUMNS = ["layer", "neurons", "inputs", "classes", "min_share", "mean_size", "collapsed", "influential_mean",
           "influential_median", "empty_hyperedges", "jaccard_mean", "exclusive_mean", "components_s1",
           "components_s2", "components_s3", "modularity", "modularity_inputs", "ncc_accuracy", "ncc_chance",
           "ncc_shuffled", "ncc_folds", "status", "message"]


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
    influential_mean, influential_median : float
        Mean and median size of the influential set of an input (SVD neurons), over the ``inputs``.
    collapsed : bool
        The class hyperedges have collapsed to single neurons: their mean size (non-empty
        ones) is ≤ 1, so overlap, exclusivity and components compare one neuron per class.
    ncc_chance : float
        Accuracy of always predicting the largest class (its share of the NCC inputs).
    ncc_shuffled : float
        Mean NCC accuracy, same folds procedure, over ``ncc_shuffles`` random permutations of the labels.
    ncc_shuffles : int
        0 when NCC was not run.
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
    influential_mean: float = math.nan
    influential_median: float = math.nan
    collapsed: bool = False
    ncc_chance: float = math.nan
    ncc_shuffled: float = math.nan
    ncc_shuffles: int = 0

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
                   collapsed=self.collapsed, influential_mean=self.influential_mean,
                   influential_median=self.influential_median, empty_hyperedges=int((sizes == 0).sum()),
                   jaccard_mean=self.jaccard_mean,
                   exclusive_mean=self.exclusive_mean, components_s1=self.components[0],
                   components_s2=self.components[1], components_s3=self.components[2], modularity=self.modularity,
                   modularity_inputs=self.modularity_inputs, ncc_accuracy=self.ncc_accuracy, ncc_chance=self.ncc_chance,
                   ncc_shuffled=self.ncc_shuffled, ncc_folds=self.ncc_folds,
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
                                 size=inc.sizes, exclusive_neurons=exclusive_counts(inc.member),
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
    shuffles : int
        Label shuffles of the NCC baseline.
    """

    layers: tuple[LayerSeparation, ...]
    min_share: float
    folds: int
    seed: int
    max_inputs: int | None
    shuffles: int = SHUFFLES

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


def _components(shared: np.ndarray) -> tuple[float, float, float]:
    """s-components of the class hypergraph for s = 1, 2, 3 from its shared-neuron matrix; NaN without a hyperedge."""
    if not (np.diag(shared) > 0).any():
        return (math.nan, math.nan, math.nan)
    return tuple(float(components_of_shared(shared, s)) for s in S_VALUES)  # type: ignore[return-value]


def _clean(q: float) -> float:
    """``q`` with float noise around 0 (``|q| < ZERO``) set to 0.0."""
    return 0.0 if math.isfinite(q) and abs(q) < ZERO else q


def _modularity(data: LayerData, max_inputs: int | None, seed: int) -> tuple[float, int]:
    """Modularity of the class partition on the dual of the input hypergraph; and the vertices it counted."""
    rows = np.flatnonzero(data.mask.any(axis=1))
    if rows.size == 0:
        return math.nan, 0
    if max_inputs is not None and rows.size > max_inputs:
        rows = rows[_subsample(data.labels[rows], max_inputs, seed)]
    # the dual's vertices are the inputs and its hyperedges the SVD neurons: B is the (inputs, neurons) mask
    return _clean(modularity(data.mask[rows], data.labels[rows])), int(rows.size)


def _folds(labels: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, int]:
    """``(N,)`` stratified fold of each input (shuffled, seeded) and the number of folds."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.unique(labels, return_counts=True)[1]
    k = int(min(folds, counts.min()))
    fold = np.empty(len(labels), dtype=np.int64)
    split = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros((len(labels), 1)), labels)
    for f, (_, test) in enumerate(split):
        fold[test] = f
    return fold, k


@functools.lru_cache(maxsize=8)
def _plan(key: bytes, folds: int, seed: int, shuffles: int) -> tuple[tuple[np.ndarray, np.ndarray, int], ...]:
    """Class codes, folds and fold count of the labels (first) and of ``shuffles`` seeded permutations of them.

    Every layer of a run has the same labelled inputs, so the plan is made once per run
    (cached on the labels' bytes) instead of once per layer.
    """
    labels = np.frombuffer(key, dtype=np.int64)
    out = []
    for i in range(shuffles + 1):
        lab = labels if i == 0 else np.random.default_rng([seed, i - 1]).permutation(labels)
        fold, k = _folds(lab, folds, seed)
        codes = np.unique(lab, return_inverse=True)[1].reshape(-1)
        for a in (codes, fold):
            a.flags.writeable = False
        out.append((codes, fold, k))
    return tuple(out)


def _accuracy(signal: np.ndarray, codes: np.ndarray, fold: np.ndarray) -> float:
    return float(np.mean(ncc_predict(signal, codes, fold) == codes))


def _ncc(signal: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> tuple[float, int]:
    """Pooled held-out accuracy of the nearest class centroid under stratified k-fold; classes need ≥ 2 inputs."""
    codes, fold, k = _plan(np.ascontiguousarray(labels, dtype=np.int64).tobytes(), folds, seed, 0)[0]
    return _accuracy(signal, codes, fold), k


def _labelled(data: LayerData) -> LayerData:
    """The labelled inputs of ``data`` in id order (so seeded folds do not depend on the order rows arrived in)."""
    keep = np.flatnonzero(data.labels >= 0)
    keep = keep[np.argsort(data.ids[keep], kind="stable")]
    return LayerData(data.layer, data.ids[keep], data.labels[keep], data.signal[keep], data.mask[keep],
                     data.weight[keep], data.groups, data.neurons, data.sigma, data.vertices, data.names)


def _separate(data: LayerData, min_share: float, folds: int, seed: int, max_inputs: int | None,
              shuffles: int = SHUFFLES) -> LayerSeparation:
    data = _labelled(data)
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
    member = inc.member
    overlap, shared = jaccard(member)
    exclusive = exclusive_share(member)
    components = _components(shared)
    if C >= 2:
        q, mod_inputs = _modularity(data, max_inputs, seed)
        if mod_inputs == 0:
            notes.append(("no-influential", "no input has an influential neuron: modularity is undefined"))
    else:
        q, mod_inputs = math.nan, 0
    accuracy, nfolds, chance, shuffled = math.nan, 0, math.nan, math.nan
    keep = np.isin(data.labels, inc.labels[inc.inputs >= 2])
    if len(np.unique(data.labels[keep])) >= 2:
        signal, labels = data.signal[keep], data.labels[keep]
        if np.isfinite(signal).all():
            plan = _plan(np.ascontiguousarray(labels, dtype=np.int64).tobytes(), folds, seed, shuffles)
            (codes, fold, nfolds), shuffled_plan = plan[0], plan[1:]
            accuracy = _accuracy(signal, codes, fold)
            chance = float(np.bincount(codes).max() / len(codes))
            if shuffled_plan:
                shuffled = float(np.mean([_accuracy(signal, c, f) for c, f, _ in shuffled_plan]))
        else:
            notes.append(("non-finite", "some signals are NaN or infinite: the NCC accuracy is undefined"))
    set_sizes = data.mask.sum(axis=1)
    sizes = inc.sizes
    status = ",".join(code for code, _ in notes) or "ok"
    return LayerSeparation(data.layer, inc, int(len(data.ids)), overlap, shared, exclusive, components, q,
                           mod_inputs, accuracy, nfolds, status, "; ".join(text for _, text in notes),
                           influential_mean=float(set_sizes.mean()) if set_sizes.size else math.nan,
                           influential_median=float(np.median(set_sizes)) if set_sizes.size else math.nan,
                           collapsed=bool((sizes > 0).any() and sizes[sizes > 0].mean() <= 1),
                           ncc_chance=chance, ncc_shuffled=shuffled, ncc_shuffles=shuffles if nfolds else 0)


def _check_options(folds: int, seed: int, max_inputs: int | None, shuffles: int = SHUFFLES) -> None:
    check.integer(folds, "folds", minimum=2)  # cross-validation folds
    check.integer(seed, "seed")
    check.optional_integer(max_inputs, "max_inputs", minimum=2)
    check.integer(shuffles, "shuffles", minimum=0)  # label shuffles of the NCC baseline


def layer_separation(table: SignalTable, layer: str, *, min_share: float = 0.5,
                     classes: Sequence[str | int] | None = None, folds: int = 5, seed: int = 0,
                     max_inputs: int | None = None, shuffles: int = SHUFFLES) -> LayerSeparation:
    """Separation metrics of one layer (see :func:`class_separation`).

    >>> layer_separation(table, "fc2").to_frame()   # doctest: +SKIP
    """
    min_share = check_min_share(min_share)
    _check_options(folds, seed, max_inputs, shuffles)
    return _separate(read_layer(table, layer, resolve_classes(table, classes)), min_share, folds, seed, max_inputs,
                     shuffles)


def class_separation(table: SignalTable, *, min_share: float = 0.5, layers: Sequence[str] | None = None,
                     classes: Sequence[str | int] | None = None, folds: int = 5, seed: int = 0,
                     max_inputs: int | None = None, shuffles: int = SHUFFLES,
                     progress: bool | None | Callable[[int, int, str], None] = None) -> Separation:
    """Separation metrics of every layer, as result objects (the matrices and per-class values included).

    Every metric is computed on sparse incidence matrices, vectorised over inputs
    (:mod:`convsvd.hypergraph.metrics`); no HyperNetX object is built. The cost of a
    layer is one read of its signals plus a few sparse products and
    ``(folds + shuffles · folds)`` centroid matrix products.

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
        Seeds the fold shuffling, the label shuffles of the NCC baseline and the modularity subsample.
    max_inputs : int, optional
        Measure the modularity on a stratified random subsample of at most about this
        many inputs (the ``modularity_inputs`` column says how many); default all.
    shuffles : int
        Label permutations averaged for the ``ncc_shuffled`` baseline (0: none, NaN).
    progress : bool, callable or None
        A bar over the layers (None: on a terminal when there are ≥ 8 layers), or ``fn(done, total, layer)``.

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
    _check_options(folds, seed, max_inputs, shuffles)
    names = list(table.layers) if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    if not names:
        raise InputError("layers: the selection is empty (expected at least one profiled layer)")
    labels = resolve_classes(table, classes)
    out = []
    with _progress(len(names), "separation", progress) as bar:
        for name in names:
            out.append(_separate(read_layer(table, name, labels), min_share, folds, seed, max_inputs, shuffles))
            bar.advance(1, name)
    return Separation(tuple(out), min_share, folds, seed, max_inputs, shuffles)


def separation(table: SignalTable, *, min_share: float = 0.5, layers: Sequence[str] | None = None,
               classes: Sequence[str | int] | None = None, folds: int = 5, seed: int = 0,
               max_inputs: int | None = None, shuffles: int = SHUFFLES,
               progress: bool | None | Callable[[int, int, str], None] = None) -> Separation:
    """Separation of the classes by the SVD neurons: :func:`class_separation` (the same result object).

    Returns
    -------
    Separation
        Its ``to_frame()`` has one row per layer: ``layer, neurons, inputs, classes, min_share, mean_size,
        collapsed, influential_mean, influential_median, empty_hyperedges, jaccard_mean,
        exclusive_mean, components_s1, components_s2, components_s3, modularity,
        modularity_inputs, ncc_accuracy, ncc_chance, ncc_shuffled, ncc_folds, status,
        message`` (``mean_size``: mean size of the non-empty class hyperedges;
        ``collapsed``: ``mean_size ≤ 1``; ``influential_*``: influential-set size per
        input; ``ncc_chance``: largest class share; ``ncc_shuffled``: NCC accuracy
        with shuffled labels).

    >>> from convsvd import zoo
    >>> from convsvd.signals import profile
    >>> table = profile(zoo.load("digits-cnn"), "digits:test", progress=False)  # doctest: +SKIP
    >>> separation(table).to_frame()[["layer", "jaccard_mean", "ncc_accuracy", "ncc_shuffled"]]  # doctest: +SKIP
    """
    return class_separation(table, min_share=min_share, layers=layers, classes=classes, folds=folds, seed=seed,
                            max_inputs=max_inputs, shuffles=shuffles, progress=progress)
