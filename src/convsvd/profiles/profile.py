"""Profiles: sparse neuron and synapse counts and weights per layer, their algebra and their files.

A :class:`Profile` sums the profiles of one or more inputs. Per layer ``L`` it
holds ``neuron_counts[L]`` and ``neuron_weights[L]`` (``(1, n_L)``) and, for every
layer with inputs, ``synapse_counts[L]`` and ``synapse_weights[L]`` (``(n_L,
I_L)``, rows the layer's neurons, columns the neurons of its input layers
concatenated in argument order). :class:`InputProfiles` keeps every input's
profile as one sparse row per input, so that class profiles, similarities and
the profile of any subset are sparse matrix products.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from convsvd._typing import PathLike
from convsvd.errors import InputError

__all__ = ["LayerInfo", "Profile", "InputProfiles"]

FORMAT = "convsvd-profile/1"
GROUPINGS = ("labels", "targets", "predictions")  # what class profiles can be formed by


def check_by(by: str) -> str:
    """``by`` if it names a grouping of inputs into classes; else the one-line error."""
    if by not in GROUPINGS:
        raise InputError(f"by: expected 'labels', 'targets' or 'predictions', got {by!r}")
    return by


@dataclass(frozen=True)
class LayerInfo:
    """What a profile needs to know of a layer: name, kind, neuron count, input layers (by name)."""

    name: str
    kind: str
    neurons: int
    inputs: tuple[str, ...]
    shape: tuple[int, int, int]

    def to_json(self) -> dict[str, object]:
        return dict(name=self.name, kind=self.kind, neurons=self.neurons, inputs=list(self.inputs),
                    shape=list(self.shape))

    @classmethod
    def from_json(cls, d: dict) -> "LayerInfo":
        return cls(str(d["name"]), str(d["kind"]), int(d["neurons"]), tuple(d["inputs"]), tuple(d["shape"]))


def _width(layers: dict[str, LayerInfo], l: LayerInfo) -> int:
    return sum(layers[i].neurons for i in l.inputs)


def _csr(m: sp.spmatrix | np.ndarray, dtype: type) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=dtype)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _sum_rows(m: sp.csr_matrix, rows: np.ndarray, shape: tuple[int, int], dtype: type) -> sp.csr_matrix:
    """The sum of some rows of ``m``, its columns read as the entries of a ``shape`` matrix (row-major),
    in time and memory of their entries: a product with a row of ones would allocate per column, and
    the synapses of element neurons have billions of columns."""
    sub = m[rows]
    if shape[0] == 1 and shape[1] <= 4 * sub.nnz + (1 << 20):  # a row of few columns: count per column
        per_col = np.bincount(sub.indices, weights=sub.data, minlength=shape[1]).astype(np.float64)
        cols = np.flatnonzero(per_col)
        out = sp.csr_matrix((per_col[cols], cols, np.array([0, len(cols)])), shape=shape)
    else:  # by row, then duplicates summed within each row
        r, c = np.divmod(sub.indices.astype(np.int64), shape[1])
        out = sp.coo_matrix((sub.data.astype(np.float64), (r, c)), shape=shape).tocsr()
    if np.issubdtype(dtype, np.integer):
        out.data = np.rint(out.data)
    return _csr(out, dtype)


def _same(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return a.shape == b.shape and (a != b).nnz == 0


@dataclass(frozen=True, eq=False)
class Profile:
    """Neuron and synapse counts and weights of one input or a sum of inputs.

    Attributes
    ----------
    layers : tuple of LayerInfo
        In topological order (the first is the input).
    neuron_counts, neuron_weights : dict of str to scipy.sparse.csr_matrix
        ``(1, n_L)`` per layer.
    synapse_counts, synapse_weights : dict of str to scipy.sparse.csr_matrix
        ``(n_L, I_L)`` per layer with inputs.
    num_inputs : int
    neuron_type : str
    model_hash : str
    options : dict
        How it was made (rule, threshold, start, ...).

    >>> p = Profile.empty((LayerInfo("x_in", "input", 2, (), (2, 1, 1)),), "channel")
    >>> (p + p).num_inputs
    0
    """

    layers: tuple[LayerInfo, ...]
    neuron_counts: dict[str, sp.csr_matrix] = field(repr=False)
    neuron_weights: dict[str, sp.csr_matrix] = field(repr=False)
    synapse_counts: dict[str, sp.csr_matrix] = field(repr=False)
    synapse_weights: dict[str, sp.csr_matrix] = field(repr=False)
    num_inputs: int = 0
    neuron_type: str = "channel"
    model_hash: str = ""
    options: dict = field(default_factory=dict, repr=False)

    @classmethod
    def empty(cls, layers: Sequence[LayerInfo], neuron_type: str, model_hash: str = "",
              options: dict | None = None) -> "Profile":
        """A profile of no input."""
        by = {l.name: l for l in layers}
        nc = {l.name: sp.csr_matrix((1, l.neurons), dtype=np.int64) for l in layers}
        nw = {l.name: sp.csr_matrix((1, l.neurons), dtype=np.float64) for l in layers}
        sc = {l.name: sp.csr_matrix((l.neurons, _width(by, l)), dtype=np.int64) for l in layers if l.inputs}
        sw = {l.name: sp.csr_matrix((l.neurons, _width(by, l)), dtype=np.float64) for l in layers if l.inputs}
        return cls(tuple(layers), nc, nw, sc, sw, 0, neuron_type, model_hash, dict(options or {}))

    # ------------------------------------------------------------------ algebra

    def _check(self, other: "Profile") -> None:
        if not isinstance(other, Profile):
            raise InputError(f"cannot add a Profile and a {type(other).__name__}")
        if self.neuron_type != other.neuron_type or self.layers != other.layers or \
                (self.model_hash and other.model_hash and self.model_hash != other.model_hash):
            raise InputError("profiles of different models, layers or neuron types cannot be added "
                             f"({self.neuron_type} vs {other.neuron_type})")

    def __add__(self, other: "Profile") -> "Profile":
        return _total([self, other])

    def __radd__(self, other: object) -> "Profile":
        if other == 0:  # so that the builtin sum() works
            return self
        if not isinstance(other, Profile):
            raise InputError(f"cannot add a {type(other).__name__} and a Profile")
        return self.__add__(other)

    @staticmethod
    def sum(profiles: Iterable["Profile"]) -> "Profile":
        """Sum of profiles (at least one)."""
        ps = list(profiles)
        if not ps:
            raise InputError("Profile.sum: expected at least one profile")
        return ps[0] if len(ps) == 1 else _total(ps)

    def __eq__(self, other: object) -> bool:
        """Same layers, inputs, neuron type, sets and counts; weights equal up to the rounding of their sums
        (``rtol=1e-12``: adding profiles in another order rounds differently)."""
        if not isinstance(other, Profile):
            return NotImplemented
        if (self.layers, self.num_inputs, self.neuron_type) != (other.layers, other.num_inputs, other.neuron_type):
            return False
        return all(_same(a[k], b[k]) for a, b in [(self.neuron_counts, other.neuron_counts),
                                                   (self.synapse_counts, other.synapse_counts)] for k in a) \
            and self.allclose(other, rtol=1e-12, atol=1e-14)

    __hash__ = None  # type: ignore[assignment]

    def allclose(self, other: "Profile", rtol: float = 1e-9, atol: float = 1e-12) -> bool:
        """Same sets and counts, weights equal within a tolerance."""
        for a, b in [(self.neuron_counts, other.neuron_counts), (self.synapse_counts, other.synapse_counts)]:
            if a.keys() != b.keys() or not all(_same(a[k], b[k]) for k in a):
                return False
        for a, b in [(self.neuron_weights, other.neuron_weights), (self.synapse_weights, other.synapse_weights)]:
            for k in a:
                if not np.allclose(a[k].toarray(), b[k].toarray(), rtol=rtol, atol=atol):
                    return False
        return True

    # ------------------------------------------------------------------ views

    @property
    def size(self) -> int:
        """Number of (layer, neuron) pairs in the profile."""
        return int(sum(m.nnz for m in self.neuron_counts.values()))

    @property
    def num_synapses(self) -> int:
        return int(sum(m.nnz for m in self.synapse_counts.values()))

    def strongest_path(self) -> list[tuple[str, int]]:
        """From the output layer's heaviest neuron back to the input, following each neuron's heaviest synapse.

        Returns ``[(layer, neuron), ...]`` from the output backwards (ties: the lower index).
        """
        by = {l.name: l for l in self.layers}
        last = self.layers[-1]
        w = self.neuron_weights[last.name].toarray().ravel()
        c = self.neuron_counts[last.name].toarray().ravel()
        key = w if w.any() else c.astype(float)
        if not key.any():
            return []
        path = [(last.name, int(np.argmax(key)))]
        seen = set()
        while True:
            name, n = path[-1]
            l = by[name]
            if not l.inputs or (name, n) in seen:
                return path
            seen.add((name, n))
            row = self.synapse_weights[name].getrow(n).toarray().ravel()
            if not row.any():
                return path
            j = int(np.argmax(row))
            offs = np.cumsum([0] + [by[i].neurons for i in l.inputs])
            a = int(np.searchsorted(offs, j, side="right") - 1)
            path.append((l.inputs[a], j - int(offs[a])))

    def to_frame(self) -> pd.DataFrame:
        """One row per neuron in the profile: ``layer, kind, neuron, count, weight``."""
        rows = []
        for l in self.layers:
            c = self.neuron_counts[l.name].tocoo()
            w = self.neuron_weights[l.name].toarray().ravel()
            rows.append(pd.DataFrame(dict(layer=l.name, kind=l.kind, neuron=c.col.astype(np.int64),
                                          count=c.data.astype(np.int64), weight=w[c.col])))
        return pd.concat(rows, ignore_index=True)

    def synapse_frame(self) -> pd.DataFrame:
        """One row per synapse: ``layer, neuron, source_layer, source_neuron, count, weight``."""
        by = {l.name: l for l in self.layers}
        frames = []
        for l in self.layers:
            if not l.inputs:
                continue
            c = self.synapse_counts[l.name].tocoo()
            w = self.synapse_weights[l.name].tocsr()
            offs = np.cumsum([0] + [by[i].neurons for i in l.inputs])
            part = np.searchsorted(offs, c.col, side="right") - 1
            frames.append(pd.DataFrame(dict(
                layer=l.name, neuron=c.row.astype(np.int64), source_layer=np.array(l.inputs, dtype=object)[part],
                source_neuron=(c.col - offs[part]).astype(np.int64), count=c.data.astype(np.int64),
                # (scipy gives a sparse matrix, not an array, for an empty index)
                weight=np.asarray(w[c.row, c.col]).ravel() if c.nnz else np.empty(0))))
        cols = ["layer", "neuron", "source_layer", "source_neuron", "count", "weight"]
        return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)

    def summary(self) -> pd.DataFrame:
        """Per layer: kind, neurons, neurons in the profile, synapses."""
        return pd.DataFrame([dict(layer=l.name, kind=l.kind, neurons=l.neurons,
                                  in_profile=int(self.neuron_counts[l.name].nnz),
                                  synapses=int(self.synapse_counts[l.name].nnz) if l.inputs else 0)
                             for l in self.layers])

    def _repr_html_(self) -> str:
        head = (f"<p><b>Profile</b> of {self.num_inputs} input{'s' if self.num_inputs != 1 else ''}, "
                f"{html.escape(self.neuron_type)} neurons, {self.size} neurons, {self.num_synapses} synapses</p>")
        return head + self.summary().to_html(index=False)

    # ------------------------------------------------------------------ files

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for kind, d in [("nc", self.neuron_counts), ("nw", self.neuron_weights), ("sc", self.synapse_counts),
                        ("sw", self.synapse_weights)]:
            for i, l in enumerate(self.layers):
                if l.name in d:
                    m = d[l.name]
                    out[f"{kind}/{i}/data"], out[f"{kind}/{i}/indices"], out[f"{kind}/{i}/indptr"] = \
                        m.data, m.indices.astype(np.int64), m.indptr.astype(np.int64)
        return out

    def meta(self) -> dict[str, object]:
        return dict(format=FORMAT, neuron_type=self.neuron_type, num_inputs=self.num_inputs,
                    model_hash=self.model_hash, options=self.options, layers=[l.to_json() for l in self.layers])

    def save(self, path: PathLike) -> Path:
        """Write ``profile.npz`` (the sparse parts) and ``profile.json`` (metadata, SHA-256 of the npz) in a folder.

        The folder is published atomically: written beside, then swapped in.
        """
        path = Path(path)
        _publish(path, lambda d: _write_profile(self, d))
        return path

    @classmethod
    def open(cls, path: PathLike) -> "Profile":
        """Read a folder written by :meth:`save` (checksum verified; nothing is unpickled)."""
        path = Path(path)
        meta = _read_meta(path / "profile.json", "profile")
        arrays = _read_npz(path / "profile.npz", str(meta.get("sha256", "")))
        return _profile_from(meta, arrays)


def _write_profile(p: Profile, d: Path) -> None:
    np.savez(d / "profile.npz", **p._arrays())  # type: ignore[arg-type]  # numpy's stub gives **kwds the type of allow_pickle
    meta = p.meta()
    meta["sha256"] = _sha256(d / "profile.npz")
    (d / "profile.json").write_text(json.dumps(meta, indent=2, default=str))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_meta(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"{path.parent}: not a saved {what} (no {path.name})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: expected format {FORMAT!r}, got {meta.get('format')!r}")
    return meta


def _read_npz(path: Path, sha: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: missing")
    if sha and _sha256(path) != sha:
        raise InputError(f"{path}: checksum does not match its metadata (file changed or truncated)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _profile_from(meta: dict, a: dict[str, np.ndarray]) -> Profile:
    layers = tuple(LayerInfo.from_json(d) for d in meta["layers"])
    by = {l.name: l for l in layers}

    def mat(kind: str, i: int, shape: tuple[int, int], dtype: type) -> sp.csr_matrix:
        return sp.csr_matrix((a[f"{kind}/{i}/data"].astype(dtype), a[f"{kind}/{i}/indices"],
                              a[f"{kind}/{i}/indptr"]), shape=shape)

    nc, nw, sc, sw = {}, {}, {}, {}
    for i, l in enumerate(layers):
        nc[l.name] = mat("nc", i, (1, l.neurons), np.int64)
        nw[l.name] = mat("nw", i, (1, l.neurons), np.float64)
        if l.inputs:
            shape = (l.neurons, _width(by, l))
            sc[l.name], sw[l.name] = mat("sc", i, shape, np.int64), mat("sw", i, shape, np.float64)
    return Profile(layers, nc, nw, sc, sw, int(meta["num_inputs"]), str(meta["neuron_type"]),
                   str(meta.get("model_hash", "")), dict(meta.get("options", {})))


def _publish(path: Path, write) -> None:
    """Write a folder's content in a staging folder beside it, then swap it in."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{path}: cannot create the folder ({e.strerror})") from None
    stage = parent / f".{path.name}.staging-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        write(stage)
        if path.exists():
            old = parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(stage, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _total(profiles: Sequence[Profile]) -> Profile:
    """The sum of two or more profiles of one model, layers and neuron type: every sparse part added
    (in order), then made canonical once."""
    first = profiles[0]
    for p in profiles[1:]:
        first._check(p)

    def add(name: str) -> dict[str, sp.csr_matrix]:
        out = {}
        for k, m in getattr(first, name).items():
            acc = m
            for p in profiles[1:]:
                acc = acc + getattr(p, name)[k]
            out[k] = _csr(acc, m.dtype.type)
        return out

    return Profile(first.layers, add("neuron_counts"), add("neuron_weights"), add("synapse_counts"),
                   add("synapse_weights"), sum(p.num_inputs for p in profiles), first.neuron_type,
                   next((p.model_hash for p in profiles if p.model_hash), ""), first.options)


@dataclass(frozen=True, eq=False)
class InputProfiles:
    """The profile of every input of a dataset, one sparse row per input.

    Attributes
    ----------
    layers : tuple of LayerInfo
    ids, labels, targets, predictions : numpy.ndarray
        ``(N,)`` int64: input ids, labels (-1 unknown), the class each profile starts from
        (``start="class"``), and the model's prediction.
    neuron_counts, neuron_weights : dict of str to scipy.sparse.csr_matrix
        ``(N, n_L)``.
    synapse_counts, synapse_weights : dict of str to scipy.sparse.csr_matrix
        ``(N, n_L · I_L)``; synapse ``(i, j)`` is column ``i · I_L + j``.
    neuron_type, model_hash : str
    classes : list of str or None
    options : dict
    """

    layers: tuple[LayerInfo, ...]
    ids: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    predictions: np.ndarray
    neuron_counts: dict[str, sp.csr_matrix] = field(repr=False)
    neuron_weights: dict[str, sp.csr_matrix] = field(repr=False)
    synapse_counts: dict[str, sp.csr_matrix] = field(repr=False)
    synapse_weights: dict[str, sp.csr_matrix] = field(repr=False)
    neuron_type: str = "channel"
    model_hash: str = ""
    classes: list[str] | None = None
    options: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Bytes of the sparse matrices (data, indices, row pointers)."""
        return sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
                   for d in (self.neuron_counts, self.neuron_weights, self.synapse_counts, self.synapse_weights)
                   for m in d.values())

    @property
    def layer_names(self) -> list[str]:
        return [l.name for l in self.layers]

    def _rows(self, rows: object) -> np.ndarray:
        n = len(self)
        if rows is None:
            return np.arange(n)
        r = np.asarray(rows)
        if r.dtype == bool:
            if r.shape != (n,):
                raise InputError(f"rows: expected a mask of {n} inputs, got shape {r.shape}")
            return np.flatnonzero(r)
        r = r.astype(np.int64).reshape(-1)
        if r.size and (r.min() < -n or r.max() >= n):
            raise InputError(f"rows: expected indices in [0, {n}), got {int(r.min())}..{int(r.max())}")
        return r % n if r.size else r

    def profile(self, rows: object = None) -> Profile:
        """The summed :class:`Profile` of some inputs (indices or a mask; all by default)."""
        r = self._rows(rows)
        by = {l.name: l for l in self.layers}

        def tot(m: sp.csr_matrix, dtype: type, shape: tuple[int, int] | None = None) -> sp.csr_matrix:
            return _sum_rows(m, r, shape or (1, m.shape[1]), dtype)

        nc = {k: tot(m, np.int64) for k, m in self.neuron_counts.items()}
        nw = {k: tot(m, np.float64) for k, m in self.neuron_weights.items()}
        sc, sw = {}, {}
        for l in self.layers:
            if l.inputs:
                shape = (l.neurons, _width(by, l))
                sc[l.name] = tot(self.synapse_counts[l.name], np.int64, shape)
                sw[l.name] = tot(self.synapse_weights[l.name], np.float64, shape)
        return Profile(self.layers, nc, nw, sc, sw, len(r), self.neuron_type, self.model_hash, self.options)

    def __getitem__(self, i: int) -> Profile:
        return self.profile([i])

    def class_profiles(self, by: str = "labels") -> dict[int, Profile]:
        """``{class: Profile}`` summed over the inputs of each class (``by``: labels, targets or predictions)."""
        key = self._key(by)
        return {int(c): self.profile(key == c) for c in np.unique(key) if c >= 0}

    def _key(self, by: str) -> np.ndarray:
        return getattr(self, check_by(by))

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``id, label, target, prediction`` and its neuron count per layer."""
        d = dict(id=self.ids, label=self.labels, target=self.targets, prediction=self.predictions)
        for l in self.layers:
            d[f"n_{l.name}"] = np.diff(self.neuron_counts[l.name].indptr)
        return pd.DataFrame(d)

    @staticmethod
    def concat(parts: Sequence["InputProfiles"], consume: bool = False) -> "InputProfiles":
        """Stack the inputs of several runs of the same model and options.

        ``consume=True`` empties the parts' matrices as they are stacked (the parts are unusable
        afterwards): the memory of the parts and of the result is then not held at once.
        """
        if not parts:
            raise InputError("InputProfiles.concat: expected at least one part")
        p0 = parts[0]
        for p in parts[1:]:
            if p.layers != p0.layers or p.neuron_type != p0.neuron_type:
                raise InputError("InputProfiles.concat: parts of different layers or neuron types")

        def cat(name: str) -> dict[str, sp.csr_matrix]:
            out = {}
            for k in list(getattr(p0, name)):
                mats = [getattr(p, name).pop(k) if consume else getattr(p, name)[k] for p in parts]
                out[k] = sp.vstack(mats, format="csr")
                del mats
            return out

        arr = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        return InputProfiles(p0.layers, arr("ids"), arr("labels"), arr("targets"), arr("predictions"),
                             cat("neuron_counts"), cat("neuron_weights"), cat("synapse_counts"),
                             cat("synapse_weights"), p0.neuron_type, p0.model_hash, p0.classes, p0.options)

    # ------------------------------------------------------------------ files

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = dict(ids=self.ids, labels=self.labels, targets=self.targets,
                                          predictions=self.predictions)
        for kind, d in [("nc", self.neuron_counts), ("nw", self.neuron_weights), ("sc", self.synapse_counts),
                        ("sw", self.synapse_weights)]:
            for i, l in enumerate(self.layers):
                if l.name in d:
                    m = d[l.name]
                    out[f"{kind}/{i}/data"], out[f"{kind}/{i}/indices"], out[f"{kind}/{i}/indptr"] = \
                        m.data, m.indices.astype(np.int64), m.indptr.astype(np.int64)
        return out

    def meta(self) -> dict[str, object]:
        return dict(format=FORMAT, neuron_type=self.neuron_type, inputs=len(self), model_hash=self.model_hash,
                    classes=self.classes, options=self.options, layers=[l.to_json() for l in self.layers])

    def write_chunk(self, path: Path) -> str:
        """Write this part as one ``.npz`` (atomically); return its SHA-256."""
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **self._arrays())  # type: ignore[arg-type]  # numpy's stub gives **kwds the type of allow_pickle
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return _sha256(path)

    @classmethod
    def read_chunk(cls, path: Path, meta: dict, sha: str) -> "InputProfiles":
        a = _read_npz(path, sha)
        layers = tuple(LayerInfo.from_json(d) for d in meta["layers"])
        by = {l.name: l for l in layers}
        n = len(a["ids"])

        def mat(kind: str, i: int, width: int, dtype: type) -> sp.csr_matrix:
            return sp.csr_matrix((a[f"{kind}/{i}/data"].astype(dtype), a[f"{kind}/{i}/indices"],
                                  a[f"{kind}/{i}/indptr"]), shape=(n, width))

        nc, nw, sc, sw = {}, {}, {}, {}
        for i, l in enumerate(layers):
            nc[l.name], nw[l.name] = mat("nc", i, l.neurons, np.int64), mat("nw", i, l.neurons, np.float64)
            if l.inputs:
                w = l.neurons * _width(by, l)
                sc[l.name], sw[l.name] = mat("sc", i, w, np.int64), mat("sw", i, w, np.float64)
        return cls(layers, a["ids"], a["labels"], a["targets"], a["predictions"], nc, nw, sc, sw,
                   str(meta["neuron_type"]), str(meta.get("model_hash", "")), meta.get("classes"),
                   dict(meta.get("options", {})))

    @classmethod
    def open(cls, path: PathLike) -> "InputProfiles":
        """Read a run folder written by :func:`convsvd.profiles.profile_graph` (every chunk's checksum verified)."""
        path = Path(path)
        meta = _read_meta(path / "manifest.json", "profile run")
        chunks = meta.get("chunks", {})
        if not meta.get("complete"):
            raise InputError(f"{path}: the run is not finished ({len(chunks)} chunks done); run it again to resume")
        parts = [cls.read_chunk(path / "chunks" / name, meta, sha) for name, sha in sorted(chunks.items())]
        return cls.concat(parts, consume=True)
