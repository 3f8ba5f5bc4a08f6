"""The result of a profile run: a lazily opened table of signals on disk.

Opening reads the manifest and checks every shard: its identity (run, index),
its checksums (``verify=True``, the default) and that no input id is in two
shards. A query reads only the column of the site it asks for from each shard
(memory-mapped, checked against its checksum again), as a dense ``inputs × K``
matrix (:meth:`SignalTable.matrix`); the long pandas frames (one row per
input × SVD neuron) are built on demand for the rows asked for. Influential
sets and weights are derived from the stored signals with the run's rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from convsvd._typing import JsonDict, PathLike
from convsvd.errors import InputError, NotComputedError
from convsvd.signals import store
from convsvd.signals.influence import influence
from convsvd.signals.store import COLUMNS, FORMAT, MANIFEST, OLD_FORMATS, ShardError, read_manifest

__all__ = ["LayerMatrix", "SignalTable"]


@dataclass(frozen=True, eq=False)
class LayerMatrix:
    """One site of a run as dense arrays: one row per input, one column per SVD neuron.

    Attributes
    ----------
    layer : str
    ids, labels : numpy.ndarray
        ``(N,)`` int64, in shard order (label −1: unlabelled).
    signal : numpy.ndarray
        ``(N, K)`` aggregated signals, in the stored dtype.
    mask : numpy.ndarray
        ``(N, K)`` bool: in the input's influential set (the run's rule).
    weight : numpy.ndarray
        ``(N, K)`` relative weight in that set (0 outside it), float32 or float64 (the run's dtype).
    groups, neurons : numpy.ndarray
        ``(K,)`` int64 group and index within the group of each column.
    sigma : numpy.ndarray
        ``(K,)`` float64 singular value of each column.
    """

    layer: str
    ids: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    signal: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    weight: np.ndarray = field(repr=False)
    groups: np.ndarray = field(repr=False)
    neurons: np.ndarray = field(repr=False)
    sigma: np.ndarray = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """The long table of these rows: ``id, label, layer, group, neuron, sigma, signal, influential, weight``."""
        return pd.DataFrame(_long(self, np.arange(self.groups.size)))


def _long(m: LayerMatrix, cols: np.ndarray) -> dict[str, np.ndarray | str]:
    """Columns of the long table of ``m`` restricted to neuron columns ``cols`` (input-major)."""
    N, k = m.ids.size, cols.size
    fdt = m.weight.dtype
    return dict(
        id=np.repeat(m.ids, k), label=np.repeat(m.labels, k), layer=np.full(N * k, m.layer, dtype=object),
        group=np.tile(m.groups[cols].astype(np.int32), N), neuron=np.tile(m.neurons[cols].astype(np.int32), N),
        sigma=np.tile(m.sigma[cols].astype(fdt), N), signal=m.signal[:, cols].astype(fdt).reshape(-1),
        influential=m.mask[:, cols].reshape(-1), weight=m.weight[:, cols].reshape(-1),
    )


def _schema(fdt: np.dtype) -> pa.Schema:
    f = pa.from_numpy_dtype(fdt)
    return pa.schema([("id", pa.int64()), ("label", pa.int64()), ("layer", pa.string()), ("group", pa.int32()),
                      ("neuron", pa.int32()), ("sigma", f), ("signal", f), ("influential", pa.bool_()), ("weight", f)])


@dataclass(frozen=True, eq=False)
class SignalTable:
    """Signals of every (input, SVD neuron) of a run, in dense shards under ``path``.

    Attributes
    ----------
    path : Path
        The run folder (``manifest.json``, ``shards/``).
    manifest : dict
        The run's manifest (see :mod:`convsvd.signals.store` for the layout).

    >>> import torch
    >>> from torch import nn
    >>> from convsvd.signals import profile
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    >>> table = profile(net, (torch.randn(6, 1, 8, 8), torch.arange(6) % 3), batch_size=4)
    >>> table.layers, table.n_inputs, len(table.layer("3")), table.matrix("3").signal.shape
    (['0', '3'], 6, 18, (6, 3))
    """

    path: Path
    manifest: JsonDict = field(repr=False)
    _keepalive: object = field(default=None, repr=False)  # a TemporaryDirectory when the run had no out folder

    @classmethod
    def open(cls, path: PathLike, verify: bool = True) -> "SignalTable":
        """Open a finished run folder, checking its shards.

        Parameters
        ----------
        path : path-like
        verify : bool
            Also read every shard against its checksums (one pass over the store); identities
            and id overlaps are always checked, and every read checks its columns again.

        Raises
        ------
        InputError
            No run there, a run in the old layout, or a shard missing, damaged, misplaced
            or overlapping another (one line naming the file).
            :class:`~convsvd.errors.NotComputedError` when the run has not finished.
        """
        p = Path(path)
        manifest = read_manifest(p)
        if manifest is None:
            raise InputError(f"signal table {os.fspath(p)!r}: no {MANIFEST} (expected the --out folder of a profile run)")
        fmt = manifest.get("format")
        if fmt in OLD_FORMATS:
            raise InputError(f"signal table {os.fspath(p)!r}: written in the old layout ({fmt}, one Parquet row per "
                             f"input and neuron), which this version does not read; run profile again with --restart")
        if fmt != FORMAT:
            raise InputError(f"signal table {os.fspath(p)!r}: format {fmt!r} is not {FORMAT!r}")
        if manifest.get("status") != "complete":
            done = len(manifest.get("shards", []))
            raise NotComputedError(f"signal table {os.fspath(p)!r}: the run has not finished ({done} shards known done); "
                                   f"run profile again with the same options to finish it")
        table = cls(p, manifest)
        table._check(verify)
        return table

    # ------------------------------------------------------------------ integrity

    def _refuse(self, e: ShardError) -> InputError:
        return InputError(f"signal table {os.fspath(self.path)!r}: shard {store.SHARDS}/{e.path.name} is {e.reason}; "
                          f"run profile again with the same options to recompute it")

    def _check(self, verify: bool) -> None:
        """Every listed shard is there, is the shard its name says, of this run; no id in two shards."""
        owner: dict[int, str] = {}
        for entry in self.manifest["shards"]:
            path = self.path / entry["file"]
            try:
                header = store.read_header(path)
                store.check_identity(header, str(self.manifest["run_key"]), store.index_of(path) or 0)
                if int(header.footer["inputs"]) != int(entry["inputs"]):
                    raise ShardError(path, f"not the shard the manifest lists ({header.footer['inputs']} inputs, "
                                           f"expected {entry['inputs']})")
                if verify:
                    store.verify(path, header)
                ids = store.read_columns(path, ["id"], header)["id"]
            except ShardError as e:
                raise self._refuse(e) from None
            uniq, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any() or any(int(i) in owner for i in uniq.tolist()):
                first = int(uniq[counts > 1][0]) if (counts > 1).any() else next(int(i) for i in uniq if int(i) in owner)
                where = owner.get(first, entry["file"])
                raise InputError(f"signal table {os.fspath(self.path)!r}: input id {first} is in both {where} and "
                                 f"{entry['file']} (overlapping shards); run profile again with --restart")
            owner.update(dict.fromkeys(uniq.tolist(), entry["file"]))

    # ------------------------------------------------------------------ what is there

    @property
    def layers(self) -> list[str]:
        """Profiled sites, in call order."""
        return [l["layer"] for l in self.manifest["layers"]]

    @property
    def classes(self) -> list[str] | None:
        return self.manifest["dataset"].get("classes")

    @property
    def n_inputs(self) -> int:
        return int(self.manifest["inputs"])

    @property
    def files(self) -> list[Path]:
        return [self.path / s["file"] for s in self.manifest["shards"]]

    def save(self, folder: PathLike) -> list[Path]:
        """A table is its own folder (:attr:`path`, written and resumed by :func:`~convsvd.signals.profile`):
        this writes only ``summary.csv`` (:meth:`summary`) into the existing ``folder``."""
        from convsvd._results import folder as existing, write_frame

        return write_frame(existing(folder), "summary", self.summary(), ("csv",))

    def _repr_html_(self) -> str:
        from convsvd._results import html_table

        return html_table(f"signals of {self.n_inputs} inputs in {self.path}", self.summary())

    def summary(self) -> pd.DataFrame:
        """One row per site, from the manifest (no scan): ``layer, module, kind, groups, neurons, inputs, mean_influential``."""
        cols = ["layer", "module", "kind", "groups", "neurons", "inputs", "mean_influential"]
        return pd.DataFrame([{c: l.get(c) for c in cols} for l in self.manifest["layers"]], columns=cols)

    # ------------------------------------------------------------------ dense access

    @property
    def _dtype(self) -> torch.dtype:
        """Of the run's projection: influence is computed in it."""
        return torch.float64 if self.manifest["options"].get("dtype") == "float64" else torch.float32

    def _info(self, layer: str) -> JsonDict:
        self._check_layer(layer)
        return next(l for l in self.manifest["layers"] if l["layer"] == layer)

    def chunks(self, layer: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, ...] | None]]:
        """One site shard by shard: ``(ids (n,), labels (n,), signal (n, K), σ (K,) or None)`` per shard.

        Each shard's columns are checked against their checksums; memory is one shard's site.
        """
        info = self._info(layer)
        K = int(info["neurons"])
        col = store.column_of(layer)
        for path in self.files:
            try:
                header = store.read_header(path)
                sites = {s.layer: s for s in header.sites}
                names = ["id", "label"] + ([col] if layer in sites else [])
                got = store.read_columns(path, names, header)
            except ShardError as e:
                raise self._refuse(e) from None
            n = got["id"].size
            sig = got[col] if layer in sites else np.full((n, K), np.nan, dtype=np.float32)
            yield got["id"], got["label"], sig, (sites[layer].sigma if layer in sites else None)

    def _influence(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        opts: dict = self.manifest["options"]
        values = torch.from_numpy(signal if signal.flags.writeable else signal.copy()).to(self._dtype)
        if values.shape[0] == 0:
            return np.zeros(signal.shape, dtype=bool), np.zeros(signal.shape, dtype=values.numpy().dtype)
        inf = influence(values, opts.get("threshold"), opts.get("top_k"))
        return inf.mask.numpy(), inf.weight.numpy()

    def matrix(self, layer: str, labels: Sequence[int | str] | None = None) -> LayerMatrix:
        """One site as dense ``(N, K)`` arrays: signal, influential mask and weight.

        Parameters
        ----------
        layer : str
        labels : sequence of int or str, optional
            Keep the inputs of these classes (indices or names) only.

        Returns
        -------
        LayerMatrix

        Memory: the site's ``N × K`` signal, mask and weight (nothing of the other sites).

        >>> import torch
        >>> from torch import nn
        >>> from convsvd.signals import profile
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> m = profile(net, (torch.randn(5, 1, 4), torch.arange(5) % 2), top_k=1).matrix("1", labels=[1])
        >>> m.ids.tolist(), m.signal.shape, m.mask.sum(axis=1).tolist()
        ([1, 3], (2, 3), [1, 1])
        """
        info = self._info(layer)
        g, r = int(info["groups"]), int(info["neurons_per_group"])
        ids, labs, sigs, sigma = [], [], [], None
        want = None if labels is None else np.asarray([self._label(x) for x in labels], dtype=np.int64)
        for i, lab, sig, sg in self.chunks(layer):
            sigma = sigma or sg
            if want is not None:
                keep = np.isin(lab, want)
                i, lab, sig = i[keep], lab[keep], sig[keep]
            ids.append(i)
            labs.append(lab)
            sigs.append(sig)
        signal = np.concatenate(sigs) if sigs else np.zeros((0, g * r), np.float32)
        mask, weight = self._influence(signal)
        return LayerMatrix(layer, np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, np.int64),
                           np.concatenate(labs).astype(np.int64) if labs else np.zeros(0, np.int64), signal, mask,
                           weight, np.repeat(np.arange(g), r), np.tile(np.arange(r), g),
                           np.asarray(sigma if sigma is not None else [np.nan] * (g * r), dtype=np.float64))

    # ------------------------------------------------------------------ long queries

    def _label(self, label: int | str) -> int:
        if isinstance(label, str):
            if not self.classes or label not in self.classes:
                raise InputError(f"class {label!r}: not among the classes of this run ({', '.join(self.classes or []) or 'none'})")
            return self.classes.index(label)
        return int(label)

    def _check_layer(self, layer: str) -> None:
        if layer not in self.layers:
            raise InputError(f"layer {layer!r}: not profiled in this run (layers: {', '.join(self.layers[:8])}"
                             f"{' ...' if len(self.layers) > 8 else ''})")

    def scan(
        self,
        *,
        layer: str | None = None,
        label: int | str | None = None,
        group: int | None = None,
        neuron: int | None = None,
        influential: bool | None = None,
        ids: Sequence[int] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """The matching rows (one per input × SVD neuron) as a ``pyarrow.Table``; only the sites asked for are read."""
        if columns is not None:
            bad = [c for c in columns if c not in COLUMNS]
            if bad:
                raise InputError(f"columns {bad}: expected among {', '.join(COLUMNS)}")
        if layer is not None:
            self._check_layer(layer)
        fdt = np.dtype(np.float64 if self._dtype == torch.float64 else np.float32)
        schema = _schema(fdt)
        parts = []
        for site in ([layer] if layer is not None else self.layers):
            m = self.matrix(site, labels=None if label is None else [label])
            rows = np.ones(m.ids.size, dtype=bool) if ids is None else np.isin(m.ids, np.asarray(list(ids), np.int64))
            cols = np.ones(m.groups.size, dtype=bool)
            if group is not None:
                cols &= m.groups == int(group)
            if neuron is not None:
                cols &= m.neurons == int(neuron)
            if not rows.all():
                m = LayerMatrix(m.layer, m.ids[rows], m.labels[rows], m.signal[rows], m.mask[rows], m.weight[rows],
                                m.groups, m.neurons, m.sigma)
            data = _long(m, np.flatnonzero(cols))
            if influential is not None:
                keep = data["influential"] == bool(influential)
                data = {k: v[keep] for k, v in data.items()}
            parts.append(pa.table(data, schema=schema))
        t = pa.concat_tables(parts) if parts else schema.empty_table()
        return t.select(list(columns)) if columns else t

    def to_frame(self, **query: object) -> pd.DataFrame:
        """The matching rows as a DataFrame (same keywords as :meth:`scan`; no keyword reads everything)."""
        return self.scan(**query).to_pandas()  # type: ignore[arg-type]

    def layer(self, name: str, **query: object) -> pd.DataFrame:
        """Every row of one site."""
        return self.to_frame(layer=name, **query)

    def for_class(self, label: int | str, layer: str | None = None, **query: object) -> pd.DataFrame:
        """Rows of the inputs of one class (index or name), optionally of one site."""
        return self.to_frame(label=label, layer=layer, **query)

    def neuron(self, layer: str, neuron: int, group: int = 0) -> pd.DataFrame:
        """Signal of one SVD neuron on every input: ``id, label, signal, influential, weight``."""
        return self.to_frame(layer=layer, group=group, neuron=neuron,
                             columns=["id", "label", "signal", "influential", "weight"])

    def influential(self, layer: str | None = None, label: int | str | None = None) -> pd.DataFrame:
        """Only the influential rows."""
        return self.to_frame(layer=layer, label=label, influential=True)

    def class_profile(self, layer: str) -> pd.DataFrame:
        """Per class and neuron of one site: how often it is influential, its mean weight and mean signal.

        Streams the site shard by shard (memory: one shard's ``inputs × K`` plus the ``classes × K`` sums).

        Returns
        -------
        pandas.DataFrame
            ``label, class, group, neuron, inputs, influential_count, influential_share, mean_weight, mean_signal``.
        """
        info = self._info(layer)
        g, r = int(info["groups"]), int(info["neurons_per_group"])
        K = g * r
        sums: dict[int, np.ndarray] = {}
        for _, lab, sig, _ in self.chunks(layer):
            if lab.size == 0:
                continue
            mask, weight = self._influence(sig)
            classes, inv = np.unique(lab, return_inverse=True)
            for i, c in enumerate(classes):
                rows = inv == i
                acc = sums.setdefault(int(c), np.zeros((4, K)))
                acc[0] += rows.sum()
                acc[1] += mask[rows].sum(axis=0)
                acc[2] += weight[rows].astype(np.float64).sum(axis=0)
                acc[3] += sig[rows].astype(np.float64).sum(axis=0)
        rows_out = []
        for c in sorted(sums):
            n, cnt, ws, ss = sums[c]
            safe = np.where(n > 0, n, 1)
            rows_out.append(pd.DataFrame(dict(
                label=c, **{"class": (self.classes[c] if self.classes and 0 <= c < len(self.classes) else str(c))},
                group=np.repeat(np.arange(g), r).astype("int32"), neuron=np.tile(np.arange(r), g).astype("int32"),
                inputs=n.astype(np.int64), influential_count=cnt.astype(np.int64), influential_share=cnt / safe,
                mean_weight=ws / safe, mean_signal=ss / safe)))
        cols = ["label", "class", "group", "neuron", "inputs", "influential_count", "influential_share", "mean_weight",
                "mean_signal"]
        return pd.concat(rows_out, ignore_index=True)[cols] if rows_out else pd.DataFrame(columns=cols)
