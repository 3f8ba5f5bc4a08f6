"""Separation metrics on sparse incidence matrices, vectorised over inputs.

Every function here works on matrices, never on one input or one hyperedge at a
time, so its cost grows with the number of incidences (non-zeros), not with a
Python loop over inputs:

- a **class membership** matrix ``member`` ``(C, K)``: class ``c``'s hyperedge holds
  SVD neuron ``k`` (:func:`jaccard`, :func:`exclusive_share`, :func:`s_components`);
- a **vertex × hyperedge incidence** ``B`` ``(V, E)`` and a partition of the vertices
  (:func:`modularity`);
- the **signals** ``(N, K)`` with labels and fold numbers (:func:`ncc_predict`).

The values are those of HyperNetX (``tests/test_separation_metrics.py`` compares
them on random hypergraphs to 1e-9):

- :func:`s_components` is the number of ``s``-edge-connected components, singletons
  included (``Hypergraph.s_connected_components(s, edges=True, return_singletons=True)``):
  two hyperedges are ``s``-adjacent when they share at least ``s`` vertices.
- :func:`modularity` is ``hypernetx.algorithms.hypergraph_modularity.modularity``
  (Kamiński, Poulin, Prałat, Szufel, Théberge 2019). With hyperedge weights ``w_e``,
  sizes ``d_e``, ``c_e`` the largest number of vertices of ``e`` in one part, and
  ``vol(P) = Σ_e w_e |e ∩ P| / Σ_e w_e |e|``::

      q = ( Σ_e w_e f(d_e, c_e) [c_e > d_e/2]
            − Σ_e w_e Σ_P Σ_{c > d_e/2} f(d_e, c) · Binom(c; d_e, vol(P)) ) / Σ_e w_e

  with the edge-contribution rule ``f``: ``linear`` ``c/d`` (HyperNetX's default),
  ``majority`` 1, ``strict`` ``[c = d]``. The inner sums over ``c`` have closed forms
  (``linear``: ``p · P(Binom(d−1, p) ≥ ⌊d/2⌋)``; ``majority``: ``P(Binom(d, p) > d/2)``;
  ``strict``: ``p^d``), evaluated once per distinct hyperedge size and part.
  HyperNetX's hypergraphs hold only non-empty hyperedges; empty columns of ``B``
  are dropped the same way. With all weights equal this is HyperNetX's unweighted
  branch (``/|E|``), otherwise its weighted one (``/Σ w``). (HyperNetX 2.4's weighted
  branch accumulates volumes and size counts in integer arrays, so it agrees with this
  formula for integer weights and truncates fractional ones; the formula is kept exact.)
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.stats import binom

from convsvd.errors import InputError

__all__ = ["RULES", "Rule", "class_counts", "components_of_shared", "exclusive_counts", "exclusive_share", "incidence",
           "jaccard", "modularity", "ncc_predict", "s_components"]

Rule = Literal["linear", "majority", "strict"]
RULES: tuple[str, ...] = ("linear", "majority", "strict")


def incidence(mask: np.ndarray | sp.sparray | sp.spmatrix) -> sp.csr_array:
    """A boolean ``(rows, cols)`` mask (dense or sparse) as a CSR int64 0/1 matrix."""
    if not sp.issparse(mask):
        return sp.csr_array(np.asarray(mask) != 0, dtype=np.int64)
    B = sp.csr_array(mask, copy=True)
    B.sum_duplicates()
    B.eliminate_zeros()  # explicit zeros of a sparse weight matrix are not incidences
    return sp.csr_array((np.ones(B.nnz, dtype=np.int64), B.indices, B.indptr), shape=B.shape)


def _onehot(codes: np.ndarray, n: int) -> sp.csr_array:
    """``(len(codes), n)`` CSR indicator of ``codes`` in ``0..n−1``."""
    rows = np.arange(len(codes))
    return sp.csr_array((np.ones(len(codes), dtype=np.int64), (rows, codes)), shape=(len(codes), n))


def class_counts(mask: np.ndarray | sp.sparray | sp.spmatrix, codes: np.ndarray, classes: int) -> np.ndarray:
    """``(C, K)`` int64: for each class, the inputs for which each column is set.

    Parameters
    ----------
    mask : (N, K) bool array or sparse matrix
        Influential SVD neurons of each input.
    codes : (N,) int
        Class index of each input, in ``0..classes−1``.
    classes : int

    Returns
    -------
    numpy.ndarray
        ``onehot(codes)ᵀ @ mask``, computed sparse (cost: the non-zeros of ``mask``).

    >>> class_counts(np.array([[1, 0], [1, 1], [0, 1]], bool), np.array([0, 0, 1]), 2).tolist()
    [[2, 1], [0, 1]]
    """
    B = incidence(mask)
    return np.asarray((_onehot(np.asarray(codes, dtype=np.int64), classes).T @ B).toarray(), dtype=np.int64)


def jaccard(member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jaccard overlap ``|E_a ∩ E_b| / |E_a ∪ E_b|`` of every pair of class hyperedges.

    Parameters
    ----------
    member : (C, K) bool
        Class hyperedges as rows.

    Returns
    -------
    overlap : numpy.ndarray
        ``(C, C)`` float64, NaN on the row and column of an empty hyperedge.
    shared : numpy.ndarray
        ``(C, C)`` int64 shared neurons (the diagonal: the sizes).

    >>> float(jaccard(np.array([[1, 1, 0], [0, 1, 1]], bool))[0][0, 1])
    0.3333333333333333
    """
    M = incidence(member)
    shared = np.asarray((M @ M.T).toarray(), dtype=np.int64)
    sizes = np.diag(shared)
    union = sizes[:, None] + sizes[None, :] - shared
    ok = (sizes[:, None] > 0) & (sizes[None, :] > 0)
    overlap = np.full(shared.shape, np.nan)
    overlap[ok] = shared[ok] / union[ok]
    return overlap, shared


def exclusive_counts(member: np.ndarray) -> np.ndarray:
    """``(C,)`` int64 neurons of each class hyperedge that no other class has (0 with a single class)."""
    member = np.asarray(member, dtype=bool)
    C = member.shape[0]
    if C < 2:
        return np.zeros(C, dtype=np.int64)
    in_others = member.sum(axis=0, keepdims=True) - member.astype(np.int64) > 0
    return (member & ~in_others).sum(axis=1).astype(np.int64)


def exclusive_share(member: np.ndarray) -> np.ndarray:
    """``(C,)`` share of each class's neurons that no other class has: ``|E_c \\ ∪_{b≠c} E_b| / |E_c|``.

    NaN for an empty hyperedge, and for every class when there is a single class.

    >>> exclusive_share(np.array([[1, 1, 0], [0, 1, 1]], bool)).tolist()
    [0.5, 0.5]
    """
    member = np.asarray(member, dtype=bool)
    sizes = member.sum(axis=1)
    out = np.full(member.shape[0], np.nan)
    if member.shape[0] >= 2:
        ok = sizes > 0
        out[ok] = exclusive_counts(member)[ok] / sizes[ok]
    return out


def s_components(member: np.ndarray | sp.sparray | sp.spmatrix, s: int = 1) -> int:
    """Number of ``s``-edge-connected components of a hypergraph given by its hyperedges as rows, singletons included.

    Empty hyperedges are not hyperedges (HyperNetX drops them): they are not counted.

    Parameters
    ----------
    member : (E, V) bool, dense or sparse
        Hyperedge ``e`` holds vertex ``v``.
    s : int
        Two hyperedges are adjacent when they share at least ``s`` vertices (``s ≥ 1``).

    Returns
    -------
    int

    >>> s_components(np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]], bool), s=1)
    1
    >>> s_components(np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]], bool), s=2)
    3
    """
    M = incidence(member)
    return components_of_shared(np.asarray((M @ M.T).toarray()), s)


def components_of_shared(shared: np.ndarray, s: int = 1) -> int:
    """:func:`s_components` from the ``(E, E)`` matrix of shared vertices (``M Mᵀ``; the diagonal: the sizes)."""
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
        raise InputError(f"s: expected an int ≥ 1, got {s!r}")
    edges = np.flatnonzero(np.diag(shared) > 0)
    if edges.size == 0:
        return 0
    A = np.asarray(shared)[np.ix_(edges, edges)] >= s
    np.fill_diagonal(A, False)
    return int(connected_components(sp.csr_array(A), directed=False)[0])


# --------------------------------------------------------------------------- modularity


def _check_rule(rule: str) -> str:
    if rule not in RULES:
        raise InputError(f"rule {rule!r}: expected one of {', '.join(RULES)}")
    return rule


def _contribution(rule: str, d: np.ndarray, c: np.ndarray) -> np.ndarray:
    """HyperNetX's ``wdc(d, c)`` for arrays, 0 unless ``c > d/2``."""
    d = d.astype(np.float64)
    c = c.astype(np.float64)
    major = c > d / 2
    if rule == "linear":
        out = c / np.maximum(d, 1)
    elif rule == "majority":
        out = np.ones_like(d)
    else:
        out = (c == d).astype(np.float64)
    return np.where(major, out, 0.0)


def _tax(rule: str, d: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``Σ_{c=⌊d/2⌋+1}^{d} f(d, c) · Binom(c; d, p)`` for every ``d`` (rows) and ``p`` (columns), closed form."""
    d = d.astype(np.int64)[:, None]
    p = np.asarray(p, dtype=np.float64)[None, :]
    half = d // 2
    with np.errstate(all="ignore"):
        if rule == "linear":
            # (c/d)·C(d,c) p^c q^(d−c) = p·C(d−1,c−1) p^(c−1) q^(d−c): Binom(d−1, p)'s tail from ⌊d/2⌋
            out = p * binom.sf(half - 1, d - 1, p)
        elif rule == "majority":
            out = binom.sf(half, d, p)
        else:
            out = binom.pmf(d, d, p)
    return np.asarray(out, dtype=np.float64)


def modularity(B: np.ndarray | sp.sparray | sp.spmatrix, parts: np.ndarray, *, weights: np.ndarray | None = None,
               rule: Rule = "linear") -> float:
    """Hypergraph modularity of a partition of the vertices (HyperNetX's definition, see the module docstring).

    Parameters
    ----------
    B : (V, E) bool, dense or sparse
        Vertex ``v`` is in hyperedge ``e``. Empty columns are not hyperedges; vertices in no
        hyperedge do not count.
    parts : (V,) int
        Part of each vertex (any integers).
    weights : (E,) float, optional
        Hyperedge weights (default 1).
    rule : {"linear", "majority", "strict"}
        The edge-contribution function ``f(d, c)``.

    Returns
    -------
    float
        NaN when there is no hyperedge.

    >>> B = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1]], bool)    # edges {0, 1}, {1, 2, 3}, {3}
    >>> round(modularity(B, np.array([0, 0, 1, 1])), 6)
    0.138889
    """
    how = _check_rule(rule)
    M = incidence(B)
    V, E = M.shape
    parts = np.asarray(parts).reshape(-1)
    if parts.shape[0] != V:
        raise InputError(f"parts: expected one part per vertex ({V}), got {parts.shape[0]}")
    w = np.ones(E) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != E:
        raise InputError(f"weights: expected one weight per hyperedge ({E}), got {w.shape[0]}")
    _, codes = np.unique(parts, return_inverse=True)
    P = int(codes.max()) + 1 if V else 0
    count = (_onehot(codes.reshape(-1), P).T @ M).toarray() if V else np.zeros((0, E), np.int64)  # (P, E)
    d = count.sum(axis=0)
    edge = d > 0
    if not edge.any():
        return math.nan
    count, d, w = count[:, edge], d[edge], w[edge]
    if np.all(w == w[0]):
        w = np.ones_like(w)  # HyperNetX's unweighted branch: the common weight cancels
    c = count.max(axis=0)
    ec = float(np.sum(w * _contribution(how, d, c)))
    vol = count @ w                                    # (P,) Σ_e w_e |e ∩ P|
    vol = vol / vol.sum()
    sizes, inv = np.unique(d, return_inverse=True)
    cnt = np.bincount(inv.reshape(-1), weights=w, minlength=len(sizes))  # Σ w over hyperedges of each size
    dt = float(np.sum(cnt * _tax(how, sizes, vol).sum(axis=1)))
    return (ec - dt) / float(w.sum())


# --------------------------------------------------------------------------- nearest centroid

_SMALL_GEMM = 2e8  # multiply-adds below which one BLAS thread beats several (thread start-up and waits dominate)


_CONTROLLER: list[Any] = []  # threadpoolctl (untyped)'s controller, found once (finding the libraries takes ~20 ms)


def _blas_threads(flops: float) -> AbstractContextManager[object]:
    """One BLAS thread for a small product (on a busy CPU several threads are up to 10× slower there)."""
    if flops >= _SMALL_GEMM:
        return nullcontext()
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController  # installed with scikit-learn
        except ImportError:  # pragma: no cover - scikit-learn always brings it
            return nullcontext()
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")



def ncc_predict(signal: np.ndarray, codes: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Held-out nearest-class-centroid predictions (Euclidean) for every fold at once.

    The centroid of class ``c`` for fold ``f`` is the mean of the class's inputs outside
    ``f``; each input is predicted by its own fold's centroids. Per-fold class sums come
    from one sparse product, the training centroids by subtraction from the totals.

    Parameters
    ----------
    signal : (N, K) float
    codes : (N,) int
        Class index of each input, ``0..C−1``.
    fold : (N,) int
        Fold of each input, ``0..F−1``.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` predicted class index (``argmin_c ‖x − μ_c‖``, first class on a tie; a class
        with no training input in a fold is never predicted there).

    >>> x = np.array([[0.0], [0.2], [5.0], [5.2]])
    >>> ncc_predict(x, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])).tolist()
    [0, 0, 1, 1]
    """
    X = np.asarray(signal, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    fold = np.asarray(fold, dtype=np.int64)
    N, K = X.shape
    C, F = int(codes.max()) + 1, int(fold.max()) + 1
    cell = fold * C + codes
    sums = np.asarray(_onehot(cell, F * C).T @ X).reshape(F, C, K)
    cnt = np.bincount(cell, minlength=F * C).reshape(F, C)
    total, ntot = sums.sum(axis=0), cnt.sum(axis=0)
    pred = np.empty(N, dtype=np.int64)
    order = np.argsort(fold, kind="stable")
    bounds = np.searchsorted(fold[order], np.arange(F + 1))
    with _blas_threads(float(N) * K * C):
        for f in range(F):  # a handful of folds; each step is one matrix product over the fold's inputs
            rows = order[bounds[f]:bounds[f + 1]]
            if rows.size == 0:
                continue
            n = ntot - cnt[f]
            with np.errstate(invalid="ignore", divide="ignore"):
                mu = (total - sums[f]) / n[:, None]
            score = (mu * mu).sum(axis=1)[None, :] - 2.0 * (X[rows] @ mu.T)
            score[:, n == 0] = np.inf
            pred[rows] = np.argmin(score, axis=1)
    return pred
