"""The result of a profile run: a lazily opened table of signals on disk.

Nothing is read when a :class:`SignalTable` opens but the manifest; each query
scans the Parquet shards with a filter (per layer, class, neuron, influence),
so only the matching row groups and columns are read, and aggregations
(:meth:`SignalTable.class_profile`) stream batch by batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from convsvd._typing import PathLike
from convsvd.errors import InputError, NotComputedError
from convsvd.signals.store import COLUMNS, MANIFEST, read_manifest

__all__ = ["SignalTable"]


@dataclass(frozen=True, eq=False)
class SignalTable:
    """Signals of every (input, SVD neuron) of a run, in Parquet shards under ``path``.

    Attributes
    ----------
    path : Path
        The run folder (``manifest.json``, ``shards/``).
    manifest : dict
        The run's manifest (see :mod:`convsvd.signals.store` for the columns).

    >>> import torch
    >>> from torch import nn
    >>> from convsvd.signals import profile
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    >>> table = profile(net, (torch.randn(6, 1, 8, 8), torch.arange(6) % 3), batch_size=4)
    >>> table.layers, table.n_inputs, len(table.layer("3"))
    (['0', '3'], 6, 18)
    """

    path: Path
    manifest: dict[str, object] = field(repr=False)
    _keepalive: object = field(default=None, repr=False)  # a TemporaryDirectory when the run had no out folder

    @classmethod
    def open(cls, path: PathLike) -> "SignalTable":
        """Open a finished run folder.

        Raises
        ------
        InputError
            No run there. :class:`~convsvd.errors.NotComputedError` when the run has not finished.
        """
        p = Path(path)
        manifest = read_manifest(p)
        if manifest is None:
            raise InputError(f"signal table {os.fspath(p)!r}: no {MANIFEST} (expected the --out folder of a profile run)")
        if manifest.get("status") != "complete":
            done = len(manifest.get("shards", []))  # type: ignore[arg-type]
            raise NotComputedError(f"signal table {os.fspath(p)!r}: the run has not finished ({done} shards known done); "
                                   f"run profile again with the same options to finish it")
        return cls(p, manifest)

    # ------------------------------------------------------------------ what is there

    @property
    def layers(self) -> list[str]:
        """Profiled sites, in call order."""
        return [l["layer"] for l in self.manifest["layers"]]  # type: ignore[index, union-attr]

    @property
    def classes(self) -> list[str] | None:
        return self.manifest["dataset"].get("classes")  # type: ignore[union-attr]

    @property
    def n_inputs(self) -> int:
        return int(self.manifest["inputs"])  # type: ignore[arg-type]

    @property
    def files(self) -> list[Path]:
        return [self.path / s["file"] for s in self.manifest["shards"]]  # type: ignore[index, union-attr]

    def dataset(self) -> pads.Dataset:
        """The shards as one ``pyarrow.dataset.Dataset`` (lazy)."""
        return pads.dataset([os.fspath(f) for f in self.files], format="parquet")

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
        return pd.DataFrame([{c: l.get(c) for c in cols} for l in self.manifest["layers"]], columns=cols)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ queries

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

    def _filter(self, layer: str | None, label: int | str | None, group: int | None, neuron: int | None,
                influential: bool | None, ids: Sequence[int] | None) -> pc.Expression | None:
        conds = []
        if layer is not None:
            self._check_layer(layer)
            conds.append(pc.field("layer") == layer)
        if label is not None:
            conds.append(pc.field("label") == self._label(label))
        if group is not None:
            conds.append(pc.field("group") == int(group))
        if neuron is not None:
            conds.append(pc.field("neuron") == int(neuron))
        if influential is not None:
            conds.append(pc.field("influential") == bool(influential))
        if ids is not None:
            conds.append(pc.field("id").isin(pa.array(list(ids), pa.int64())))
        expr = None
        for c in conds:
            expr = c if expr is None else expr & c
        return expr

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
        """The matching rows as a ``pyarrow.Table`` (only the matching row groups and ``columns`` are read)."""
        if columns is not None:
            bad = [c for c in columns if c not in COLUMNS]
            if bad:
                raise InputError(f"columns {bad}: expected among {', '.join(COLUMNS)}")
        return self.dataset().to_table(columns=list(columns) if columns else None,
                                       filter=self._filter(layer, label, group, neuron, influential, ids))

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

        Streams the site's rows batch by batch (memory: one batch plus the ``classes × neurons`` sums).

        Returns
        -------
        pandas.DataFrame
            ``label, class, group, neuron, inputs, influential_count, influential_share, mean_weight, mean_signal``.
        """
        self._check_layer(layer)
        info = next(l for l in self.manifest["layers"] if l["layer"] == layer)  # type: ignore[union-attr, index]
        g, r = int(info["groups"]), int(info["neurons_per_group"])  # type: ignore[call-overload]
        K = g * r
        sums: dict[int, np.ndarray] = {}
        scanner = self.dataset().scanner(columns=["label", "group", "neuron", "signal", "influential", "weight"],
                                         filter=pc.field("layer") == layer)
        for batch in scanner.to_batches():
            if batch.num_rows == 0:
                continue
            lab = batch.column("label").to_numpy()
            k = batch.column("group").to_numpy().astype(np.int64) * r + batch.column("neuron").to_numpy()
            sig = batch.column("signal").to_numpy().astype(np.float64)
            inf = batch.column("influential").to_numpy(zero_copy_only=False).astype(np.float64)
            w = batch.column("weight").to_numpy().astype(np.float64)
            classes, inv = np.unique(lab, return_inverse=True)
            cell = inv * K + k
            n = len(classes) * K
            part = np.stack([np.bincount(cell, minlength=n), np.bincount(cell, inf, minlength=n),
                             np.bincount(cell, w, minlength=n), np.bincount(cell, sig, minlength=n)])
            for i, c in enumerate(classes):
                acc = sums.setdefault(int(c), np.zeros((4, K)))
                acc += part[:, i * K:(i + 1) * K]
        rows = []
        for c in sorted(sums):
            n, cnt, ws, ss = sums[c]
            safe = np.where(n > 0, n, 1)
            rows.append(pd.DataFrame(dict(
                label=c, **{"class": (self.classes[c] if self.classes and 0 <= c < len(self.classes) else str(c))},
                group=np.repeat(np.arange(g), r).astype("int32"), neuron=np.tile(np.arange(r), g).astype("int32"),
                inputs=n.astype(np.int64), influential_count=cnt.astype(np.int64), influential_share=cnt / safe,
                mean_weight=ws / safe, mean_signal=ss / safe)))
        cols = ["label", "class", "group", "neuron", "inputs", "influential_count", "influential_share", "mean_weight",
                "mean_signal"]
        return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)

