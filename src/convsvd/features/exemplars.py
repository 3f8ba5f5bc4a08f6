"""Dataset exemplars: for each SVD neuron, the inputs with the largest and the smallest signal.

From a :class:`~convsvd.signals.SignalTable` (its dense store read shard by
shard, one site's column only: memory is one shard's ``inputs × K`` plus ``2·k``
candidates per neuron; no second pass over the data) or a DataFrame with the
table's columns (``id``, ``label``, ``layer``, ``group``, ``neuron``, ``signal``).
Order: ``top`` by signal descending, ``bottom`` by signal ascending; ties by
``id`` ascending, so the result equals a stable sort of the whole table. NaN
signals are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from convsvd import _validate as check
from convsvd._results import LayerResult
from convsvd.data import as_source
from convsvd.errors import InputError

__all__ = ["Exemplars", "attach_maps", "exemplars", "exemplars_of_layers", "fetch_inputs"]

SIDES: tuple[str, ...] = ("top", "bottom")
_COLUMNS = ("id", "label", "group", "neuron", "signal")


@dataclass(frozen=True, eq=False)
class Exemplars(LayerResult):
    """The ``k`` inputs with the largest (``top``) and smallest (``bottom``) signal per SVD neuron of one layer.

    Rows are ordered by neuron (as requested), then side (``top`` first), then rank.

    Attributes
    ----------
    layer : str
        The site in the signal table.
    k : int
    group, neuron : numpy.ndarray
        ``(n,)`` int: the SVD neuron ``(group j, index i)`` of each row.
    side : numpy.ndarray
        ``(n,)`` str, ``"top"`` or ``"bottom"``.
    rank : numpy.ndarray
        ``(n,)`` int, ``0`` for the most extreme input of its side.
    ids, labels : numpy.ndarray
        ``(n,)`` int64: the input's id in its dataset and its class (−1: unlabelled).
    signal : numpy.ndarray
        ``(n,)`` float64.
    images : torch.Tensor or None
        ``(n, C, H, W)`` inputs of the rows, when a dataset was given.
    classes : list of str or None
        Class names indexed by label.
    maps : numpy.ndarray or None
        ``(n, h, w)`` float64: each row's signal ``u_iᵀ(y_p − b)`` of its neuron at every location ``p``
        of the layer's output (where the neuron fires in the input), when attached by
        :func:`attach_maps` (conv2d layers only).
    """

    layer: str
    k: int
    group: np.ndarray = field(repr=False)
    neuron: np.ndarray = field(repr=False)
    side: np.ndarray = field(repr=False)
    rank: np.ndarray = field(repr=False)
    ids: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    signal: np.ndarray = field(repr=False)
    images: torch.Tensor | None = field(default=None, repr=False)
    classes: list[str] | None = None
    maps: np.ndarray | None = field(default=None, repr=False)

    def class_name(self, row: int) -> str:
        """The class of a row's input (its label when the classes have no names; "" when unlabelled)."""
        label = int(self.labels[row])
        if label < 0:
            return ""
        return self.classes[label] if self.classes and label < len(self.classes) else str(label)

    _stem = "exemplars"

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def _tensors(self) -> dict[str, torch.Tensor | None]:
        return {"images": self.images}

    def neurons(self) -> list[tuple[int, int]]:
        """``(group, neuron)`` pairs in row order, each once."""
        seen: dict[tuple[int, int], None] = {}
        for g, n in zip(self.group.tolist(), self.neuron.tolist()):
            seen.setdefault((g, n), None)
        return list(seen)

    def rows(self, neuron: int, side: str = "top", group: int = 0) -> np.ndarray:
        """Row indices of one neuron and side, by rank."""
        if side not in SIDES:
            raise InputError(f"side {side!r}: expected 'top' or 'bottom'")
        return np.flatnonzero((self.group == group) & (self.neuron == neuron) & (self.side == side))

    def to_frame(self) -> pd.DataFrame:
        """``layer, group, neuron, side, rank, id, label, signal`` (one row per exemplar)."""
        return pd.DataFrame(dict(
            layer=self.layer, group=self.group.astype("int32"), neuron=self.neuron.astype("int32"), side=self.side,
            rank=self.rank.astype("int32"), id=self.ids, label=self.labels, signal=self.signal,
        ), columns=["layer", "group", "neuron", "side", "rank", "id", "label", "signal"])


# --------------------------------------------------------------------------- streaming top-k


class _Candidates:
    """The best ``k`` rows per (neuron, side) seen so far, merged batch by batch."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.parts: dict[str, dict[str, np.ndarray]] = {}

    def add(self, cols: dict[str, np.ndarray]) -> None:
        keep = ~np.isnan(cols["signal"])
        cols = {c: v[keep] for c, v in cols.items()}
        for side in SIDES:
            old = self.parts.get(side)
            merged = cols if old is None else {c: np.concatenate([old[c], cols[c]]) for c in cols}
            self.parts[side] = _best(merged, self.k, largest=side == "top")

    def result(self, side: str) -> dict[str, np.ndarray]:
        return self.parts.get(side) or {c: np.empty(0, np.float64 if c == "signal" else np.int64) for c in _COLUMNS}


def _best(cols: dict[str, np.ndarray], k: int, largest: bool) -> dict[str, np.ndarray]:
    """Rows sorted by (group, neuron, signal desc|asc, id), the first ``k`` of each neuron."""
    sig = cols["signal"].astype(np.float64)
    order = np.lexsort((cols["id"], -sig if largest else sig, cols["neuron"], cols["group"]))
    g, n = cols["group"][order], cols["neuron"][order]
    start = np.ones(order.size, dtype=bool)
    start[1:] = (g[1:] != g[:-1]) | (n[1:] != n[:-1])
    first = np.maximum.accumulate(np.where(start, np.arange(order.size), 0))
    pick = order[(np.arange(order.size) - first) < k]
    return {c: v[pick] for c, v in cols.items()}


def _frame_batches(frame: pd.DataFrame, layer: str, wanted: set[tuple[int, int]] | None):  # type: ignore[no-untyped-def]
    if "id" not in frame.columns and "input" in frame.columns:  # Signals.to_frame() names it "input"
        frame = frame.rename(columns={"input": "id"})
    missing = [c for c in ("id", "layer", "neuron", "signal") if c not in frame.columns]
    if missing:
        raise InputError(f"table: a DataFrame of signals needs the columns id, layer, neuron, signal (missing {', '.join(missing)})")
    rows = frame[frame["layer"] == layer]
    if rows.empty:
        raise InputError(f"layer {layer!r}: no rows in the table (layers: {', '.join(map(str, frame['layer'].unique()[:8]))})")
    cols = {
        "id": rows["id"].to_numpy(np.int64),
        "label": rows["label"].to_numpy(np.int64) if "label" in rows else np.full(len(rows), -1, np.int64),
        "group": rows["group"].to_numpy(np.int64) if "group" in rows else np.zeros(len(rows), np.int64),
        "neuron": rows["neuron"].to_numpy(np.int64),
        "signal": rows["signal"].to_numpy(np.float64),
    }
    yield _only(cols, wanted)


def _table_batches(table: object, layer: str, wanted: set[tuple[int, int]] | None):  # type: ignore[no-untyped-def]
    table._check_layer(layer)  # type: ignore[attr-defined]
    g, r = _layer_shape(table, layer) or (1, 0)
    cols = np.arange(g * r) if wanted is None else np.asarray(sorted(a * r + b for a, b in wanted), dtype=np.int64)
    for ids, labels, signal, _ in table.chunks(layer):  # type: ignore[attr-defined]
        n, k = ids.size, cols.size
        if n == 0 or k == 0:
            continue
        yield {"id": np.repeat(ids.astype(np.int64), k), "label": np.repeat(labels.astype(np.int64), k),
               "group": np.tile(cols // r, n), "neuron": np.tile(cols % r, n),
               "signal": signal[:, cols].astype(np.float64).reshape(-1)}


def _only(cols: dict[str, np.ndarray], wanted: set[tuple[int, int]] | None) -> dict[str, np.ndarray]:
    if wanted is None:
        return cols
    key = cols["group"] * (1 << 32) + cols["neuron"]
    keep = np.isin(key, [g * (1 << 32) + n for g, n in wanted])
    return {c: v[keep] for c, v in cols.items()}


def _layer_shape(table: object, layer: str) -> tuple[int, int] | None:
    """``(groups, rank)`` of a site of a SignalTable, from its manifest."""
    for info in getattr(table, "manifest", {}).get("layers", []):
        if info.get("layer") == layer:
            groups = int(info.get("groups") or 1)
            return groups, int(info["neurons"]) // groups
    return None


def exemplars(
    table: object,
    layer: str,
    *,
    k: int = 8,
    neurons: int | Sequence[int] | None = None,
    data: object | None = None,
) -> Exemplars:
    """The ``k`` inputs with the largest and the smallest signal for SVD neurons of one layer.

    Parameters
    ----------
    table : SignalTable or pandas.DataFrame
        Signals of a dataset (:func:`convsvd.signals.profile`), or a frame with
        columns ``id`` (or ``input``), ``layer``, ``neuron``, ``signal`` and
        optionally ``group``, ``label``.
    layer : str
        Site in the table (``name``, or ``name#k`` for a later call).
    k : int
        Exemplars per side.
    neurons : int or sequence of int, optional
        Flat SVD neuron indices ``j·r + i`` (just ``i`` for an ungrouped layer);
        default: every neuron in the table.
    data : dataset, optional
        The profiled dataset (anything :func:`convsvd.data.as_source` takes); its
        inputs of the chosen ids are attached as ``images``.

    Returns
    -------
    Exemplars

    >>> import pandas as pd
    >>> frame = pd.DataFrame(dict(id=[0, 1, 2], layer="c", neuron=0, signal=[0.5, -1.0, 2.0]))
    >>> ex = exemplars(frame, "c", k=1)
    >>> ex.to_frame()[["side", "id", "signal"]].values.tolist()
    [['top', 2, 2.0], ['bottom', 1, -1.0]]
    """
    k = check.integer(k, "k", minimum=1)  # exemplars per side
    is_frame = isinstance(table, pd.DataFrame)
    if not is_frame and not (hasattr(table, "chunks") and hasattr(table, "manifest")):
        raise InputError(f"table: expected a SignalTable or a pandas DataFrame of signals, got {type(table).__name__}")
    if is_frame:
        frame = table
        shape = None
        if "layer" in frame.columns and "neuron" in frame.columns:
            rows = frame[frame["layer"] == layer]
            if not rows.empty:
                g = int(rows["group"].max()) + 1 if "group" in rows else 1
                shape = (g, int(rows["neuron"].max()) + 1)
    else:
        table._check_layer(layer)  # type: ignore[attr-defined]
        shape = _layer_shape(table, layer)

    order: list[tuple[int, int]] | None = None
    if neurons is not None:
        seq = [neurons] if isinstance(neurons, (int, np.integer)) else list(neurons)
        if shape is None:
            raise InputError(f"layer {layer!r}: no rows in the table")
        total = shape[0] * shape[1]
        bad = [n for n in seq if not check.is_int(n) or not 0 <= n < total]
        if bad or not seq:
            raise InputError(f"neurons {bad[:5] or seq}: layer {layer!r} has {total} SVD neurons (0–{total - 1})")
        order = [(int(n) // shape[1], int(n) % shape[1]) for n in seq]
    wanted = set(order) if order is not None else None

    cand = _Candidates(int(k))
    batches = _frame_batches(table, layer, wanted) if is_frame else _table_batches(table, layer, wanted)
    for cols in batches:
        cand.add(cols)

    top, bottom = cand.result("top"), cand.result("bottom")
    if order is None:
        order = sorted(set(zip(top["group"].tolist(), top["neuron"].tolist())))
    parts: list[dict[str, np.ndarray]] = []
    for g, n in order:
        for side, res in (("top", top), ("bottom", bottom)):
            sel = np.flatnonzero((res["group"] == g) & (res["neuron"] == n))  # already in rank order
            parts.append(dict(group=np.full(sel.size, g), neuron=np.full(sel.size, n), side=np.full(sel.size, side),
                              rank=np.arange(sel.size), ids=res["id"][sel], labels=res["label"][sel],
                              signal=res["signal"][sel]))
    cat = {c: (np.concatenate([p[c] for p in parts]) if parts else np.empty(0)) for c in
           ("group", "neuron", "side", "rank", "ids", "labels", "signal")}
    classes = None if is_frame else getattr(table, "classes", None)
    images = None
    if data is not None:
        source = as_source(data)
        images = fetch_inputs(source, cat["ids"].astype(np.int64))
        classes = classes or source.classes
    return Exemplars(
        layer=layer, k=int(k), group=cat["group"].astype(np.int64), neuron=cat["neuron"].astype(np.int64),
        side=cat["side"].astype(str), rank=cat["rank"].astype(np.int64), ids=cat["ids"].astype(np.int64),
        labels=cat["labels"].astype(np.int64), signal=cat["signal"].astype(np.float64), images=images,
        classes=list(classes) if classes is not None else None,
    )


def attach_maps(ex: Exemplars, model: object, *, svd: object | None = None, fold_bn: bool = False,
                batch_size: int = 32) -> Exemplars:
    """``ex`` with :attr:`Exemplars.maps`: where each exemplar's neuron fires, location by location.

    Runs the model on the exemplars' images once, ``batch_size`` at a time
    (:func:`convsvd.signals.signal_maps`). Only layers with a 2-D output map
    (conv2d) get maps; for others ``ex`` is returned unchanged.

    Raises
    ------
    InputError
        ``ex`` has no images (call :func:`exemplars` with ``data=``).
    """
    if ex.images is None:
        raise InputError("exemplars: no images attached (call exemplars(..., data=DATASET))")
    if len(ex) == 0:
        return ex
    maps = _maps({ex.layer: ex}, {ex.layer: np.arange(len(ex))}, ex.images, model, svd=svd, fold_bn=fold_bn,
                 batch_size=batch_size)
    return replace(ex, maps=maps[ex.layer]) if ex.layer in maps else ex


def exemplars_of_layers(
    table: object,
    neurons: Mapping[str, int | Sequence[int] | None],
    *,
    k: int = 8,
    data: object | None = None,
    model: object | None = None,
    svd: object | None = None,
    fold_bn: bool = False,
    batch_size: int = 32,
) -> dict[str, Exemplars]:
    """:func:`exemplars` of several layers at once, with their images and maps for one read of the data.

    The same as ``exemplars(table, layer, k=k, neurons=n, data=data)`` for each
    ``layer, n`` of ``neurons`` (then :func:`attach_maps` with ``model``), but the
    dataset is read once for the exemplars of every layer, and the model runs
    once over the distinct exemplar images (``batch_size`` at a time, every
    layer's maps from the same pass). Memory: the distinct images, one batch of
    maps, and each layer's picked maps.

    Parameters
    ----------
    table : SignalTable or pandas.DataFrame
    neurons : mapping of str to int, sequence of int or None
        Layer → its SVD neurons (None: every neuron of the layer).
    k : int
        Exemplars per side.
    data : dataset, optional
        The profiled dataset; without it no images (and no maps) are attached.
    model : optional
        The model the table was profiled from; with ``data``, conv2d layers get maps.
    svd, fold_bn
        As for :func:`convsvd.signals.signal_maps`.
    batch_size : int
        Images per forward pass of the maps.

    Returns
    -------
    dict of str to Exemplars
        In the order of ``neurons``.

    >>> import pandas as pd
    >>> frame = pd.DataFrame(dict(id=[0, 1, 0, 1], layer=["a", "a", "b", "b"], neuron=0, signal=[1.0, 2.0, 3.0, -1.0]))
    >>> out = exemplars_of_layers(frame, {"a": None, "b": [0]}, k=1)
    >>> [(name, ex.ids.tolist()) for name, ex in out.items()]
    [('a', [1, 0]), ('b', [0, 1])]
    """
    batch_size = check.integer(batch_size, "batch_size", minimum=1)
    out = {layer: exemplars(table, layer, k=k, neurons=chosen) for layer, chosen in neurons.items()}
    if data is None or not out:
        return out
    source = as_source(data)
    ids = np.unique(np.concatenate([ex.ids for ex in out.values()]))
    images = fetch_inputs(source, ids)
    classes = getattr(table, "classes", None) if not isinstance(table, pd.DataFrame) else None
    classes = list(classes or source.classes or []) or None
    rows = {layer: np.searchsorted(ids, ex.ids) for layer, ex in out.items()}
    out = {layer: replace(ex, images=images[torch.as_tensor(rows[layer], dtype=torch.long)], classes=classes)
           for layer, ex in out.items()}
    if model is None:
        return out
    maps = _maps({layer: ex for layer, ex in out.items() if len(ex)}, rows, images, model, svd=svd, fold_bn=fold_bn,
                 batch_size=batch_size)
    return {layer: replace(ex, maps=maps[layer]) if layer in maps else ex for layer, ex in out.items()}


def _maps(exs: Mapping[str, Exemplars], rows: Mapping[str, np.ndarray], images: torch.Tensor, model: object, *,
          svd: object | None, fold_bn: bool, batch_size: int) -> dict[str, np.ndarray]:
    """Each exemplar's per-location signal of its neuron, for every conv2d layer of ``exs``.

    ``rows[layer][i]`` is the position in ``images`` of the image of ``exs[layer]``'s row ``i``.
    The model runs over ``images`` once, ``batch_size`` at a time, with every layer hooked.
    """
    from convsvd.signals.project import plan_projection, signal_maps

    if not exs:
        return {}
    names = list(dict.fromkeys(layer.split("#")[0] for layer in exs))
    plan = plan_projection(model, layers=names, fold_bn=fold_bn, svd=svd)  # type: ignore[arg-type]
    maps: dict[str, np.ndarray] = {}
    for lo in range(0, int(images.shape[0]), batch_size):
        hi = min(lo + batch_size, int(images.shape[0]))
        got = signal_maps(model, images[lo:hi], plan=plan)
        for layer, ex in exs.items():
            m = got.get(layer)
            if m is None or m.dim() != 5:  # (N, g, r, h, w) for conv2d only
                continue
            sel = np.flatnonzero((rows[layer] >= lo) & (rows[layer] < hi))
            if layer not in maps:
                maps[layer] = np.zeros((len(ex), *m.shape[3:]), dtype=np.float64)
            if sel.size:
                picked = m[torch.as_tensor(rows[layer][sel] - lo), torch.as_tensor(ex.group[sel]),
                           torch.as_tensor(ex.neuron[sel])]
                maps[layer][sel] = picked.detach().double().cpu().numpy()
    return maps


def fetch_inputs(data: object, ids: Sequence[int] | np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """The inputs of a dataset with the given ids, in the order given.

    Reads first the batches where the ids would sit if ids were positions (the
    common case), then, for any id still missing, the rest of the dataset.

    Parameters
    ----------
    data : dataset
        Anything :func:`convsvd.data.as_source` takes.
    ids : sequence of int
        Repeats allowed.

    Returns
    -------
    torch.Tensor
        ``(len(ids), C, *spatial)``.

    Raises
    ------
    InputError
        An id that is not in the dataset.

    >>> x = fetch_inputs("digits", [3, 0])
    >>> tuple(x.shape)
    (2, 1, 8, 8)
    """
    source = as_source(data)
    want = np.asarray(ids, dtype=np.int64).reshape(-1)
    found: dict[int, torch.Tensor] = {}
    todo = set(want.tolist())
    n_batches = source.num_batches(batch_size)

    def read(which: Sequence[int] | None) -> None:
        for _, batch in source.iter_batches(batch_size, which):
            bids = batch.ids.tolist()
            for pos, i in enumerate(bids):
                if i in todo and i not in found:
                    found[i] = batch.inputs[pos]
            if todo.issubset(found):
                return

    if want.size:
        guess = sorted({int(i) // batch_size for i in todo if i >= 0})
        if n_batches is not None:
            guess = [b for b in guess if b < n_batches]
        read(guess)
        if not todo.issubset(found):
            read(None)
    missing = sorted(todo - set(found))
    if missing:
        raise InputError(f"ids {missing[:5]}: not in dataset {source.name!r}")
    if not want.size:
        return torch.empty(0)
    return torch.stack([found[int(i)] for i in want])
