"""Persistent homology of a profile's attribution graph (ripser), and distances between diagrams (persim).

The graph (DeepDataProfiler's ``algorithms/homology.py``): vertices are the
``(layer, neuron)`` pairs that hold a synapse; each synapse is an undirected edge
whose weight is its mean weight (synapse weight / number of inputs), mapped to a
length — ``"weight"`` uses the weight itself (DeepDataProfiler's default
``weight_func``), ``"inverse"`` uses ``1 / weight`` (strong synapses are short).
The distance between two vertices is the shortest-path length; vertices in
different components are infinitely far apart. Persistent homology of the
Vietoris–Rips filtration of that metric is computed by ripser in dimensions 0
and 1 (``H0``: components merging; ``H1``: loops closing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

from convsvd.errors import InputError
from convsvd.profiles.profile import Profile

__all__ = ["Homology", "homology", "attribution_graph", "diagram_distances", "layer_synapses", "LENGTHS"]

LENGTHS = ("weight", "inverse")


def _ripser():
    try:
        from ripser import ripser
    except ImportError:
        raise InputError("persistent homology needs ripser: pip install 'convsvd[topology]' (or ripser)") from None
    return ripser


@dataclass(frozen=True)
class Homology:
    """Persistence diagrams of an attribution graph.

    Attributes
    ----------
    diagrams : list of numpy.ndarray
        ``diagrams[d]`` ``(n_d, 2)`` birth and death of each class in dimension ``d`` (death ``inf``: never dies).
    vertices : list of tuple of (str, int)
        ``(layer, neuron)`` of each vertex.
    length : str
    """

    diagrams: list[np.ndarray] = field(repr=False)
    vertices: list[tuple[str, int]] = field(repr=False)
    length: str = "weight"

    def betti(self, r: float) -> list[int]:
        """Betti numbers at filtration value ``r``: classes born at or before ``r`` and dying after it."""
        return [int(((d[:, 0] <= r) & (d[:, 1] > r)).sum()) for d in self.diagrams]

    def to_frame(self) -> pd.DataFrame:
        """One row per class: ``dim, birth, death, persistence``."""
        rows = [pd.DataFrame(dict(dim=d, birth=D[:, 0], death=D[:, 1], persistence=D[:, 1] - D[:, 0]))
                for d, D in enumerate(self.diagrams)]
        return pd.concat(rows, ignore_index=True)


def layer_synapses(profile: Profile, name: str) -> list[tuple[tuple[str, int], tuple[str, int], float]]:
    """The synapses of layer ``name``: ``((name, neuron), (input layer, its neuron), weight)`` each.

    >>> from convsvd.profiles.profile import LayerInfo
    >>> p = Profile.empty((LayerInfo("x_in", "input", 2, (), (2, 1, 1)),), "channel")
    >>> layer_synapses(p, "x_in")
    []
    """
    by = {l.name: l for l in profile.layers}
    l = by[name]
    if not l.inputs:
        return []
    m = profile.synapse_weights[name].tocoo()
    offs = np.cumsum([0] + [by[i].neurons for i in l.inputs])
    part = np.searchsorted(offs, m.col, side="right") - 1
    return [((name, o), (l.inputs[p_], c - int(offs[p_])), w)
            for o, c, p_, w in zip(m.row.tolist(), m.col.tolist(), part.tolist(), m.data.tolist())]


def attribution_graph(profile: Profile, length: str = "weight", layers: str | Iterable[str] | None = None) -> tuple[sp.csr_matrix, list[tuple[str, int]]]:
    """The undirected edge-length matrix ``(V, V)`` of a profile's synapses and its vertices.

    >>> from convsvd.profiles.profile import LayerInfo
    >>> p = Profile.empty((LayerInfo("x_in", "input", 2, (), (2, 1, 1)),), "channel")
    >>> attribution_graph(p)[0].shape
    (0, 0)
    """
    if length not in LENGTHS:
        raise InputError(f"length: expected one of {', '.join(LENGTHS)}, got {length!r}")
    want = None if layers is None else ({layers} if isinstance(layers, str) else set(layers))
    index: dict[tuple[str, int], int] = {}
    src, dst, wts = [], [], []
    n = max(profile.num_inputs, 1)
    for l in profile.layers:
        if want is not None and l.name not in want:
            continue
        for out, into, s in layer_synapses(profile, l.name):
            src.append(index.setdefault(out, len(index)))
            dst.append(index.setdefault(into, len(index)))
            wts.append(s / n)
    V = len(index)
    w = np.asarray(wts, dtype=np.float64)
    lens = np.maximum(w, 0) if length == "weight" else np.where(w > 0, 1.0 / np.where(w > 0, w, 1), np.inf)
    keep = np.isfinite(lens)
    G = sp.coo_matrix((lens[keep], (np.asarray(src)[keep], np.asarray(dst)[keep])), shape=(V, V)).tocsr()
    G = G.maximum(G.T)  # undirected: the longer of two parallel edges never matters for shortest paths
    verts = [None] * V
    for k, i in index.items():
        verts[i] = k  # type: ignore[call-overload]
    return G, verts  # type: ignore[return-value]


def homology_of_graph(G: sp.spmatrix, maxdim: int = 1) -> list[np.ndarray]:
    """Persistence diagrams ``[H0, …, H_maxdim]`` of the shortest-path metric of a weighted undirected graph."""
    V = G.shape[0]
    if V == 0:
        return [np.zeros((0, 2)) for _ in range(maxdim + 1)]
    D = shortest_path(sp.csr_matrix(G), method="D", directed=False)
    i, j = np.nonzero(np.isfinite(D) & ~np.eye(V, dtype=bool))
    dm = sp.coo_matrix((D[i, j], (i, j)), shape=(V, V))
    # ripser reads a sparse distance matrix's diagonal as vertex birth times: all 0 here
    res = _ripser()(dm, distance_matrix=True, maxdim=maxdim)
    return [np.asarray(d, dtype=np.float64).reshape(-1, 2) for d in res["dgms"]]


def homology(profile: Profile, *, length: str = "weight", maxdim: int = 1, layers: str | Iterable[str] | None = None,
             max_vertices: int = 5000) -> Homology:
    """Persistent homology (dimensions 0..``maxdim``) of a profile's attribution graph.

    Parameters
    ----------
    profile : Profile
    length : {"weight", "inverse"}
    maxdim : int
    layers : str or list of str, optional
        Synapses of these layers only.
    max_vertices : int
        Refuse larger graphs (the distance matrix is dense: ``V²`` entries).

    Returns
    -------
    Homology
    """
    if isinstance(maxdim, bool) or not isinstance(maxdim, int) or maxdim < 0:
        raise InputError(f"maxdim: expected a non-negative int, got {maxdim!r}")
    G, verts = attribution_graph(profile, length, layers)
    if len(verts) > max_vertices:
        raise InputError(f"attribution graph of {len(verts)} vertices: above max_vertices={max_vertices} "
                         "(choose layers or raise the bound)")
    return Homology(homology_of_graph(G, maxdim), verts, length)


def diagram_distances(homs: Mapping[Any, Homology], dim: int = 1, metric: str = "bottleneck") -> pd.DataFrame:
    """Pairwise distances between the dimension-``dim`` diagrams of several profiles (persim), labelled.

    Infinite deaths are left out (they carry no distance information across diagrams).
    """
    try:
        import persim
    except ImportError:
        raise InputError("diagram distances need persim: pip install 'convsvd[topology]' (or persim)") from None
    if metric not in ("bottleneck", "wasserstein"):
        raise InputError(f"metric: expected 'bottleneck' or 'wasserstein', got {metric!r}")
    fn = persim.bottleneck if metric == "bottleneck" else persim.wasserstein
    keys = list(homs)
    dg = []
    for k in keys:
        d = homs[k].diagrams[dim] if dim < len(homs[k].diagrams) else np.zeros((0, 2))
        dg.append(d[np.isfinite(d[:, 1])])
    M = np.zeros((len(keys), len(keys)))
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            if len(dg[a]) == 0 and len(dg[b]) == 0:
                v = 0.0
            else:
                v = float(fn(dg[a] if len(dg[a]) else np.zeros((0, 2)), dg[b] if len(dg[b]) else np.zeros((0, 2))))
            M[a, b] = M[b, a] = v
    lab = [str(k) for k in keys]
    return pd.DataFrame(M, index=lab, columns=lab)
