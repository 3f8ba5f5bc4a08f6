"""Similarity of profiles: Jaccard of neuron or synapse sets, inputs against class profiles, class × class.

Definitions (DeepDataProfiler's, ``algorithms/jaccard.py``):

- a profile's *neuron set* in a layer: the neurons with a non-zero count; its
  *synapse set*: the synapses with a non-zero count;
- ``jaccard(p, q)``: ``|P ∩ Q| / |P ∪ Q|`` with the sets of all chosen layers
  pooled (DeepDataProfiler's ``jaccard``); ``average="layers"`` takes the mean of
  the per-layer values instead (its ``avg_jaccard``; a layer where both sets are
  empty counts 0 there, here it is left out);
- ``instance_jaccard(p, q)``: ``|P ∩ Q| / |P|``, the share of ``p`` inside ``q``;
- ``weighted=True`` (convsvd's extension): ``Σ min(a, b) / Σ max(a, b)`` over the
  mean weights (weights divided by the number of inputs) instead of sets.

An input is compared with each class profile *without itself* (leave-one-out),
so the nearest-class-profile accuracy is not inflated.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from convsvd.errors import InputError
from convsvd.profiles.profile import InputProfiles, Profile, check_by
from convsvd.profiles.run import ProfileRun

__all__ = ["jaccard", "instance_jaccard", "class_similarity", "ClassSimilarity", "class_matrix"]


def _layers(p: Profile | InputProfiles | ProfileRun, layers: object, synapses: bool) -> list[str]:
    names = [l.name for l in p.layers if (l.inputs or not synapses)]
    if layers is None:
        return names
    want = [layers] if isinstance(layers, str) else list(layers)  # type: ignore[call-overload]
    bad = [w for w in want if w not in names]
    if bad:
        raise InputError(f"layers: {bad[0]!r} is not a layer of the profile{' with synapses' if synapses else ''} "
                         f"(layers: {', '.join(names)})")
    return want


def _mats(p: Profile | InputProfiles, synapses: bool, weighted: bool) -> dict[str, sp.csr_matrix]:
    if synapses:
        return p.synapse_weights if weighted else p.synapse_counts
    return p.neuron_weights if weighted else p.neuron_counts


def jaccard(p: Profile, q: Profile, *, synapses: bool = False, weighted: bool = False, layers: object = None,
            average: str = "pooled") -> float:
    """Jaccard similarity of two profiles.

    Parameters
    ----------
    p, q : Profile
    synapses : bool
        Compare synapse sets instead of neuron sets.
    weighted : bool
        ``Σ min / Σ max`` of the mean weights instead of set sizes.
    layers : str or list of str, optional
    average : {"pooled", "layers"}

    Returns
    -------
    float
        In ``[0, 1]``; NaN when every compared set is empty.

    >>> from convsvd.profiles.profile import LayerInfo
    >>> p = Profile.empty((LayerInfo("x_in", "input", 3, (), (3, 1, 1)),), "channel")
    >>> import math; math.isnan(jaccard(p, p))
    True
    """
    if average not in ("pooled", "layers"):
        raise InputError(f"average: expected 'pooled' or 'layers', got {average!r}")
    names = _layers(p, layers, synapses)
    a_m, b_m = _mats(p, synapses, weighted), _mats(q, synapses, weighted)
    inter, union = [], []
    for name in names:
        a, b = a_m[name], b_m[name]
        if weighted:
            a = a / max(p.num_inputs, 1)
            b = b / max(q.num_inputs, 1)
            inter.append(float(a.minimum(b).sum()))
            union.append(float(a.maximum(b).sum()))
        else:
            a, b = a != 0, b != 0
            inter.append(float(a.multiply(b).nnz))
            union.append(float((a + b).nnz))
    if average == "pooled":
        u = sum(union)
        return sum(inter) / u if u > 0 else float("nan")
    vals = [i / u for i, u in zip(inter, union) if u > 0]
    return float(np.mean(vals)) if vals else float("nan")


def instance_jaccard(p: Profile, q: Profile, *, synapses: bool = False, layers: object = None) -> float:
    """``|P ∩ Q| / |P|``: the share of ``p``'s neurons (or synapses) also in ``q`` (NaN when ``p`` is empty)."""
    names = _layers(p, layers, synapses)
    a_m, b_m = _mats(p, synapses, False), _mats(q, synapses, False)
    inter = sum((a_m[n] != 0).multiply(b_m[n] != 0).nnz for n in names)
    size = sum((a_m[n] != 0).nnz for n in names)
    return inter / size if size else float("nan")


@dataclass(frozen=True)
class ClassSimilarity:
    """Every input against every class profile, per layer.

    Attributes
    ----------
    classes : numpy.ndarray
        ``(K,)`` class indices.
    layers : list of str
    values : numpy.ndarray
        ``(L + 1, N, K)``: per layer, then (last) all layers pooled.
    labels : numpy.ndarray
        ``(N,)`` the classes compared against (the grouping of the class profiles).
    options : dict
    """

    classes: np.ndarray
    layers: list[str]
    values: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    options: dict = field(default_factory=dict)

    def predictions(self) -> np.ndarray:
        """``(L + 1, N)`` nearest class profile (highest similarity; ties: the lower class); ``-1`` where it
        tells nothing: no similarity is defined (the input and every class profile have no neuron there,
        e.g. a layer that ``start="layers"`` did not profile), or every class is as similar (e.g. an input
        layer of one channel, in every profile)."""
        v = np.where(np.isnan(self.values), -np.inf, self.values)
        pred = self.classes[np.argmax(v, axis=2)]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: undefined, as wanted
            flat = np.nanmax(self.values, axis=2) == np.nanmin(self.values, axis=2)
        undecided = np.isnan(self.values).all(axis=2) | (flat if len(self.classes) > 1 else False)
        return np.where(undecided, -1, pred)

    def to_frame(self) -> pd.DataFrame:
        """One row per layer (and ``all``): depth, nearest-class-profile accuracy and mean similarity to the
        own class over the labelled inputs that have a nearest class profile there (``inputs``; the
        accuracy is NaN when none has)."""
        pred = self.predictions()
        K = len(self.classes)
        pos = np.searchsorted(self.classes, self.labels)
        ok = (self.labels >= 0) & (pos < K)
        rows = []
        for d, name in enumerate(self.layers + ["all"]):
            has = ok & (pred[d] >= 0)
            own = self.values[d, np.flatnonzero(has), pos[has]] if has.any() else np.array([np.nan])
            rows.append(dict(layer=name, depth=d if name != "all" else len(self.layers),
                             accuracy=float(np.mean(pred[d, has] == self.labels[has])) if has.any() else float("nan"),
                             own_class=float(np.nanmean(own)) if np.isfinite(own).any() else float("nan"),
                             inputs=int(has.sum())))
        return pd.DataFrame(rows)


def _used_columns(m: sp.csr_matrix) -> sp.csr_matrix:
    """``m`` without the columns where it has no entry (set sizes and intersections are unchanged; a
    product with the transpose would otherwise allocate per column: billions for element synapses)."""
    cols, inv = np.unique(m.indices, return_inverse=True)
    return sp.csr_matrix((m.data, inv.ravel(), m.indptr), shape=(m.shape[0], len(cols)))


def _merge(keys: np.ndarray, counts: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ``keys`` with their ``counts``, and ``new`` keys (any order, each occurrence counted):
    merged by binary search and one insertion, linear in the keys held (not a sort of them all again)."""
    u, c = np.unique(new, return_counts=True)
    if len(keys) == 0:
        return u, c.astype(np.int64)
    pos = np.searchsorted(keys, u)
    hit = pos < len(keys)
    hit[hit] = keys[pos[hit]] == u[hit]
    counts[pos[hit]] += c[hit]  # the positions of distinct keys: no repeats
    miss = ~hit
    return np.insert(keys, pos[miss], u[miss]), np.insert(counts, pos[miss], c[miss])


def _class_sets(chunks: Iterable[InputProfiles], names: list[str], synapses: bool, by: str
                ) -> tuple[np.ndarray, dict[str, "_Sets"], np.ndarray]:
    """First pass: the classes, per layer the class sets (:class:`_Sets`: the ``(class, column)`` pairs as
    sorted keys ``class · width + column`` with the number of inputs of the class holding each column),
    and every input's class (-1: none), in input order."""
    keys: dict[str, tuple[np.ndarray, np.ndarray]] = {n: (np.zeros(0, np.int64), np.zeros(0, np.int64)) for n in names}
    widths: dict[str, int] = {}
    own = []
    for ps in chunks:
        key = ps._key(by)
        own.append(key)
        for name in names:
            m = (ps.synapse_counts if synapses else ps.neuron_counts)[name]
            width = widths[name] = max(1, m.shape[1])
            if key.size and int(key.max()) >= (2**62) // width:
                raise InputError(f"class_similarity: classes up to {int(key.max())} with {width} columns in layer "
                                 f"{name!r} do not fit one int64 key")
            cls = np.repeat(key, np.diff(m.indptr))
            held = cls >= 0
            keys[name] = _merge(*keys[name], cls[held].astype(np.int64) * width + m.indices[held].astype(np.int64))
    labels = np.concatenate(own) if own else np.zeros(0, np.int64)
    classes = np.unique(labels[labels >= 0])
    return classes, {n: _Sets.build(*keys[n], widths.get(n, 1), classes) for n in names}, labels


@dataclass(frozen=True)
class _Sets:
    """One layer's class sets: sorted keys ``class · width + column`` with their counts (inputs of the
    class holding the column), the columns of some class set (``used``, ascending) and the ``(K, used)``
    binary class × column matrix ``B``; built once, then every chunk's inputs are compared with them."""

    keys: np.ndarray
    counts: np.ndarray
    width: int
    used: np.ndarray
    B: sp.csr_matrix

    @classmethod
    def build(cls, keys: np.ndarray, counts: np.ndarray, width: int, classes: np.ndarray) -> "_Sets":
        cols = keys % width
        used = np.unique(cols)  # compact, whatever the layer's width
        B = sp.csr_matrix((np.ones(len(keys)), (np.searchsorted(classes, keys // width), np.searchsorted(used, cols))),
                          shape=(len(classes), len(used)))
        return cls(keys, counts, width, used, B)


def _layer_scores(A: sp.csr_matrix, key: np.ndarray, classes: np.ndarray, sets: _Sets, loo: bool,
                  instance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Intersections and unions (or sizes) ``(n, K)`` of the inputs' sets (the entries of ``A``) with the
    class sets; each input with a class is compared with its own class's set without itself where ``loo``."""
    keys, counts, width, used, B = sets.keys, sets.counts, sets.width, sets.used, sets.B
    K = len(classes)
    j = np.searchsorted(used, A.indices)
    hit = j < len(used)
    hit[hit] = used[j[hit]] == A.indices[hit]
    row = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    Ah = sp.csr_matrix((np.ones(int(hit.sum())), (row[hit], j[hit])), shape=(A.shape[0], len(used)))
    inter = np.asarray((Ah @ B.T).todense(), dtype=np.float64).reshape(A.shape[0], K)
    sizeA = np.diff(A.indptr).astype(np.float64).reshape(-1, 1)
    sizeB = np.asarray(B.sum(1)).reshape(1, -1).repeat(A.shape[0], 0)
    if loo and len(keys):
        pos = np.searchsorted(classes, key)
        mine = (key >= 0)[row]
        k = key[row[mine]].astype(np.int64) * width + A.indices[mine].astype(np.int64)
        at = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
        cnt = np.where(keys[at] == k, counts[at], 0)  # inputs of its class holding the entry, itself included
        r = row[mine]
        inter_own = np.bincount(r, weights=(cnt >= 2), minlength=A.shape[0])
        lose = np.bincount(r, weights=(cnt == 1), minlength=A.shape[0])
        rows = np.flatnonzero(key >= 0)
        inter[rows, pos[rows]] = inter_own[rows]
        sizeB[rows, pos[rows]] -= lose[rows]
    union = sizeA + sizeB - inter
    return inter, (np.broadcast_to(sizeA, inter.shape).astype(np.float64) if instance else union)


def class_similarity(ps: InputProfiles | ProfileRun, *, synapses: bool = False, by: str = "labels",
                     metric: str = "jaccard", layers: object = None, leave_one_out: bool = True) -> ClassSimilarity:
    """Every input's neuron (or synapse) sets against each class profile, by sparse matrix products.

    Parameters
    ----------
    ps : InputProfiles or ProfileRun
        A run folder's profiles are read chunk by chunk, twice (the class sets, then the inputs against
        them): memory holds the class sets and one chunk, never every input's profile.
    synapses : bool
    by : {"labels", "targets", "predictions"}
        How the class profiles are formed.
    metric : {"jaccard", "instance"}
        ``|A ∩ B| / |A ∪ B|`` or ``|A ∩ B| / |A|``.
    layers : str or list of str, optional
    leave_one_out : bool
        Compare each input with its own class profile without it.

    Returns
    -------
    ClassSimilarity
    """
    if metric not in ("jaccard", "instance"):
        raise InputError(f"metric: expected 'jaccard' or 'instance', got {metric!r}")
    check_by(by)  # before a run's first chunk is read
    names = _layers(ps, layers, synapses)
    def chunks(what: str) -> Iterable[InputProfiles]:
        return ps.chunks(what) if isinstance(ps, ProfileRun) else [ps]

    classes, sets, key = _class_sets(chunks("class sets"), names, synapses, by)
    if len(classes) == 0:
        raise InputError(f"class_similarity: no input has a class ({by})")
    N, K = len(key), len(classes)
    vals = np.empty((len(names) + 1, N, K))
    lo = 0
    for part in chunks("inputs against the class sets"):
        k = part._key(by)
        hi = lo + len(k)
        I_tot = np.zeros((len(k), K))
        U_tot = np.zeros((len(k), K))
        for d, name in enumerate(names):
            A = (part.synapse_counts if synapses else part.neuron_counts)[name]
            inter, den = _layer_scores(A, k, classes, sets[name], leave_one_out, metric == "instance")
            with np.errstate(invalid="ignore", divide="ignore"):
                vals[d, lo:hi] = np.where(den > 0, inter / np.where(den > 0, den, 1), np.nan)
            I_tot += inter
            U_tot += den
        with np.errstate(invalid="ignore", divide="ignore"):
            vals[-1, lo:hi] = np.where(U_tot > 0, I_tot / np.where(U_tot > 0, U_tot, 1), np.nan)
        lo = hi
    return ClassSimilarity(classes, names, vals, key, dict(synapses=synapses, by=by, metric=metric,
                                                           leave_one_out=leave_one_out))


def class_matrix(ps: InputProfiles | ProfileRun, *, synapses: bool = False, by: str = "labels", weighted: bool = False,
                 layers: object = None) -> pd.DataFrame:
    """Class × class Jaccard of the class profiles (all chosen layers pooled), as a labelled DataFrame."""
    profiles = ps.class_profiles(by)
    keys = sorted(profiles)
    names = ps.classes
    lab = [names[k] if names is not None and k < len(names) else str(k) for k in keys]
    if weighted:
        M = np.array([[jaccard(profiles[a], profiles[b], synapses=synapses, weighted=True, layers=layers)
                       for b in keys] for a in keys])
        return pd.DataFrame(M, index=lab, columns=lab)
    sel = _layers(ps, layers, synapses)
    mats = [sp.vstack([(_mats(profiles[k], synapses, False)[n] != 0).astype(np.float64).reshape(1, -1)
                       for k in keys], format="csr") for n in sel]
    B = _used_columns(sp.hstack(mats, format="csr"))  # (K, the neurons or synapses of some class)
    inter = np.asarray((B @ B.T).todense())
    size = np.asarray(B.sum(1)).ravel()
    union = size[:, None] + size[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        M = np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)
    return pd.DataFrame(M, index=lab, columns=lab)
