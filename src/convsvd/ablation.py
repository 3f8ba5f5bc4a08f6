"""Directional ablation: remove k directions from a layer's output and measure what the network loses.

The paper calls the singular directions with the largest singular values "those
features most important to the network". This module measures it: for one layer,
with ``z = y − b`` its output minus bias (per group ``j``, the ``d/g`` channels of
that group at every location), each *variant* replaces the output by

    ``y' = b + P z``

and the rest of the network runs on ``y'``. The projections ``P`` (per group,
``m × m`` with ``m = d/g``) of the bases (:data:`BASES`) are:

=================  ==========================================================================
``svd-top``        ``P = I − U_k U_kᵀ``: the k leading left singular vectors removed
``svd-bottom``     ``P = I − U_k' U_k'ᵀ``: the k trailing ones (of the ``r = min(m, n)``)
``channel-norm``   ``P = I − Σ_{c∈C} e_c e_cᵀ``: the k channels with the largest row norm of W̄
``channel-act``    the same for the k channels with the largest mean ``|y − b|`` on the data
``random``         ``P = I − Q_k Q_kᵀ``, ``Q`` a seeded random orthonormal basis (QR of a
                   Gaussian matrix; the first k columns, so the subspaces are nested in k)
``svd-keep``       ``P = U_k U_kᵀ``: only the top k kept — the output of the rank-k truncation
                   of W̄ (the compression view)
=================  ==========================================================================

Since ``y − b = W̄ patch(x)``, removing ``U_k`` gives exactly the output of the
rank-reduced weight ``W̄ − U_k U_kᵀ W̄``; zeroing a channel of ``y − b`` leaves its
bias. Grouped convolutions use k directions *per group* (each group's own ``U``,
channels ranked within each group). k = 0 is the unmodified model: its rows come
from the model's own forward pass, so they equal the model's outputs bitwise.

**Measures** per variant, over the data: ``accuracy``, the mean cross-entropy
``loss``, and ``logit_change``, the mean over inputs of ``‖logits' − logits‖₂``.

**Batching.** One forward pass evaluates many variants: the input batch is
replicated once per variant and a forward hook (from
:func:`convsvd.signals.hooks.capture`'s machinery, removed in ``finally``)
replaces the layer's output of replica ``v`` by ``b + P_v z``. Replicating the
input (rather than re-running only the part of the network after the layer)
keeps any model working — functional ``forward``, residual connections, modules
called twice (every call of the layer is ablated) — at the price of recomputing
the layers before it; ``max_batch`` bounds the inputs of one forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from convsvd._progress import progress as _progress
from convsvd._registry import ABLATION_BASES
from convsvd._typing import PathLike
from convsvd.data.protocol import DataSource
from convsvd.decompose import LayerSVD
from convsvd.errors import ConvSVDError, InputError
from convsvd.io import LayerSpec, ModelWeights
from convsvd.layers import unfolded
from convsvd.signals.hooks import capture, eval_mode, moved_to

__all__ = ["BASES", "DEFAULT_BASES", "FRAME_COLUMNS", "AblationResult", "LayerAblation", "ablate",
           "ablation_projections", "default_ks", "random_orthonormal"]

BASES: tuple[str, ...] = ABLATION_BASES
"""Every ablation basis (module docstring)."""

DEFAULT_BASES: tuple[str, ...] = BASES

FRAME_COLUMNS: tuple[str, ...] = ("layer", "basis", "k", "seed", "accuracy", "loss", "logit_change",
                                  "accuracy_drop", "loss_increase")
"""Columns of :meth:`AblationResult.to_frame` (``seed`` is −1 for the deterministic bases)."""


def default_ks(limit: int) -> list[int]:
    """``0, 1, 2, 4, 8, …`` below ``limit``, then ``limit`` itself.

    >>> default_ks(9)
    [0, 1, 2, 4, 8, 9]
    """
    ks, k = [0], 1
    while k < limit:
        ks.append(k)
        k *= 2
    if limit > 0:
        ks.append(int(limit))
    return ks


def random_orthonormal(m: int, groups: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Seeded random orthonormal bases, one per group: ``(groups, m, m)``.

    QR of a standard Gaussian matrix drawn in float64 on the CPU (so the same seed gives
    the same basis on any device), with the signs of ``R``'s diagonal moved into ``Q``
    (Haar-distributed).

    >>> Q = random_orthonormal(4, 1, seed=0)
    >>> bool(torch.allclose(Q[0].T @ Q[0], torch.eye(4, dtype=torch.float64)))
    True
    """
    gen = torch.Generator().manual_seed(int(seed))
    G = torch.randn(groups, m, m, generator=gen, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
    return Q.to(dtype)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AblationPoint:
    """One variant's measures."""

    basis: str
    k: int
    seed: int
    accuracy: float
    loss: float
    logit_change: float


@dataclass(frozen=True, eq=False)
class LayerAblation:
    """The ablation curves of one layer.

    Attributes
    ----------
    layer, kind : str
    groups : int
    channels : int
        ``m = d/g`` output channels per group.
    rank : int
        ``r = min(m, n)`` singular directions per group.
    accuracy, loss : float
        Of the unmodified model on the data.
    points : tuple of AblationPoint
        One per basis × k (× seed for ``random``); k = 0 included per basis.
    """

    layer: str
    kind: str
    groups: int
    channels: int
    rank: int
    accuracy: float
    loss: float
    points: tuple[AblationPoint, ...] = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per basis × k (× seed), columns :data:`FRAME_COLUMNS`."""
        rows = [dict(layer=self.layer, basis=p.basis, k=p.k, seed=p.seed, accuracy=p.accuracy, loss=p.loss,
                     logit_change=p.logit_change, accuracy_drop=self.accuracy - p.accuracy,
                     loss_increase=p.loss - self.loss) for p in self.points]
        return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))

    def summary(self) -> pd.DataFrame:
        """Per basis and k: mean and standard deviation over the seeds (0 for deterministic bases).

        Columns ``layer, basis, k, n_seeds``, then ``<measure>`` and ``<measure>_std`` for
        accuracy, loss, logit_change and accuracy_drop.
        """
        frame = self.to_frame()
        measures = ["accuracy", "loss", "logit_change", "accuracy_drop"]
        g = frame.groupby(["layer", "basis", "k"], sort=False)
        out = g[measures].mean()
        std = g[measures].std(ddof=0).add_suffix("_std")
        n = g.size().rename("n_seeds")
        return pd.concat([n, out, std], axis=1).reset_index()


@dataclass(frozen=True, eq=False)
class AblationResult:
    """Directional ablation of one or more layers.

    Attributes
    ----------
    layers : tuple of LayerAblation
    source, model_hash : str
    options : dict
        The run's options (bases, ks, seeds, data, …) for the run metadata.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    >>> x, y = torch.randn(20, 4, dtype=torch.float64), torch.arange(20) % 3
    >>> res = ablate(net, (x, y), layers="0", bases=["svd-top"], ks=[0, 1])
    >>> res.to_frame()[["basis", "k"]].values.tolist()
    [['svd-top', 0], ['svd-top', 1]]
    """

    layers: tuple[LayerAblation, ...]
    source: str = ""
    model_hash: str = ""
    options: dict[str, object] = field(default_factory=dict)

    def __getitem__(self, name: str) -> LayerAblation:
        for layer in self.layers:
            if layer.layer == name:
                return layer
        raise InputError(f"layer {name!r}: not in this ablation (layers: {', '.join(l.layer for l in self.layers)})")

    @property
    def names(self) -> list[str]:
        return [layer.layer for layer in self.layers]

    def to_frame(self) -> pd.DataFrame:
        """Every layer's rows (:meth:`LayerAblation.to_frame`), stacked."""
        frames = [layer.to_frame() for layer in self.layers]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FRAME_COLUMNS))

    def summary(self) -> pd.DataFrame:
        """Every layer's :meth:`LayerAblation.summary`, stacked."""
        return pd.concat([layer.summary() for layer in self.layers], ignore_index=True)

    def save(self, out: PathLike) -> list[Path]:
        """Write ``ablation.parquet``, ``ablation.csv``, ``ablation-summary.csv`` and ``ablation.json``.

        Each file is written atomically (temporary file, then rename). Returns the paths.
        """
        from convsvd._meta import run_metadata, write_atomic

        folder = Path(out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"out {out!s}: cannot create the folder ({e.strerror})") from None
        frame, summary = self.to_frame(), self.summary()
        base = {layer.layer: dict(accuracy=layer.accuracy, loss=layer.loss, groups=layer.groups,
                                  channels=layer.channels, rank=layer.rank) for layer in self.layers}
        meta = run_metadata(self.source, self.model_hash, self.options, unmodified=base)
        paths = [folder / n for n in ("ablation.parquet", "ablation.csv", "ablation-summary.csv", "ablation.json")]
        write_atomic(paths[0], lambda p: frame.to_parquet(p, index=False))
        write_atomic(paths[1], lambda p: frame.to_csv(p, index=False))
        write_atomic(paths[2], lambda p: summary.to_csv(p, index=False))
        write_atomic(paths[3], lambda p: Path(p).write_text(meta))
        return paths


# --------------------------------------------------------------------------- projections


@dataclass(frozen=True)
class _Variant:
    basis: str
    k: int
    seed: int


def _arrange(y: torch.Tensor, kind: str, groups: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``y`` → ``(N, g, m, L)`` and the function mapping that layout back to ``y``'s shape."""
    N = y.shape[0]
    if kind == "linear":
        lead = y.shape[1:-1]
        z = y.reshape(N, -1, y.shape[-1]).transpose(1, 2)  # (N, out, L)

        def back(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(N, -1, t.shape[-1]).transpose(1, 2).reshape(N, *lead, -1)
    else:
        spatial = y.shape[2:]
        z = y.reshape(N, y.shape[1], -1)

        def back(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(N, -1, *spatial)
    return z.reshape(N, groups, -1, z.shape[-1]), lambda t: back(t.reshape(N, -1, t.shape[-1]))


def ablation_projections(
    U: torch.Tensor,
    weight_rows: torch.Tensor,
    activity: torch.Tensor | None,
    variants: Sequence[tuple[str, int, int]],
    layer_seed: int = 0,
) -> torch.Tensor:
    """The projections ``P`` of the variants, ``(V, g, m, m)`` (module docstring).

    Parameters
    ----------
    U : torch.Tensor, shape (g, m, r)
        Left singular vectors of each group, descending σ.
    weight_rows : torch.Tensor, shape (g, m, n)
        Each group's unfolded matrix W̄_j (for the channel norms).
    activity : torch.Tensor, shape (g, m), optional
        Mean ``|y − b|`` per channel (needed by ``channel-act``).
    variants : sequence of (basis, k, seed)
    layer_seed : int
        Added to each random variant's seed (so layers get different random bases).

    Returns
    -------
    torch.Tensor, shape (V, g, m, m)
        In ``U``'s dtype and device.

    >>> U = torch.linalg.qr(torch.randn(1, 3, 3, dtype=torch.float64))[0]
    >>> P = ablation_projections(U, torch.eye(3, dtype=torch.float64)[None], None, [("svd-keep", 3, -1)])
    >>> bool(torch.allclose(P[0, 0], torch.eye(3, dtype=torch.float64)))
    True
    """
    g, m, r = U.shape
    eye = torch.eye(m, dtype=U.dtype, device=U.device).expand(g, m, m)
    norm_order = torch.argsort(torch.linalg.vector_norm(weight_rows.to(U.dtype), dim=-1), dim=-1, descending=True,
                               stable=True)
    act_order = (torch.argsort(activity.to(U.dtype), dim=-1, descending=True, stable=True)
                 if activity is not None else None)
    randoms: dict[int, torch.Tensor] = {}
    out = []
    for basis, k, seed in variants:
        if basis in ("svd-top", "svd-bottom", "svd-keep", "random"):
            if basis == "random":
                if seed not in randoms:
                    randoms[seed] = random_orthonormal(m, g, seed + layer_seed).to(U.dtype).to(U.device)
                Q = randoms[seed][..., :k]
            else:
                Q = U[..., r - k:] if basis == "svd-bottom" else U[..., :k]
            QQ = Q @ Q.transpose(-1, -2)
            out.append(QQ if basis == "svd-keep" else eye - QQ)
        else:
            order = norm_order if basis == "channel-norm" else act_order
            if order is None:
                raise InputError("basis 'channel-act': needs the mean activity of each channel")
            keep = torch.ones(g, m, dtype=U.dtype, device=U.device)
            keep.scatter_(1, order[:, :k], 0.0)
            out.append(torch.diag_embed(keep))
    return torch.stack(out) if out else torch.empty(0, g, m, m, dtype=U.dtype, device=U.device)


# --------------------------------------------------------------------------- run


def _check(bases: Sequence[str], ks: Sequence[int] | None, seeds: int, max_batch: int, batch_size: int) -> None:
    unknown = [b for b in bases if b not in BASES]
    if unknown or not bases:
        raise InputError(f"bases {list(bases)!r}: expected one or more of {', '.join(BASES)}")
    if ks is not None:
        bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0]
        if bad or not len(ks):
            raise InputError(f"ks {list(ks)!r}: expected whole numbers ≥ 0")
    for name, v in (("seeds", seeds), ("max_batch", max_batch), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name}: expected a positive integer, got {v!r}")


def _layer_specs(mw: ModelWeights, layers: str | Sequence[str] | None) -> list[LayerSpec]:
    if layers is None:
        raise InputError("layers: name the layer(s) to ablate, e.g. 'conv3'")
    chosen = mw.select(layers).layers
    for spec in chosen:
        if spec.transposed:
            raise InputError(f"layer {spec.name!r}: a transposed convolution's left singular vectors live in its "
                             f"input space, so its output cannot be ablated along them")
        if spec.module is None:
            raise InputError(f"layer {spec.name!r}: its module is not part of the model")
    return list(chosen)


def _measures(logits: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """Sums over the batch: correct predictions, cross-entropy, ‖Δlogits‖₂."""
    correct = float((logits.argmax(dim=-1) == labels).sum())
    loss = float(F.cross_entropy(logits.double(), labels, reduction="sum"))
    change = float(torch.linalg.vector_norm((logits - ref).double(), dim=-1).sum())
    return correct, loss, change


def ablate(
    model: object,
    data: object,
    *,
    layers: str | Sequence[str] | None = None,
    ks: Sequence[int] | None = None,
    bases: Sequence[str] = DEFAULT_BASES,
    seeds: int = 3,
    batch_size: int = 256,
    max_batch: int = 8192,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    progress: bool | None | Callable[[int, int, str], None] = None,
) -> AblationResult:
    """Remove k directions of each basis from a layer's output; accuracy, loss and logit change vs k.

    Parameters
    ----------
    model : nn.Module (or anything :func:`convsvd.io.load` reads that holds a module)
        Run in eval mode (each module's flag restored); never modified.
    data : dataset
        Anything :func:`convsvd.data.as_source` accepts (``"digits:test"``, tensors
        ``(inputs, labels)``, …); every input needs a label.
    layers : str or list of str
        Layer names or glob patterns (comma-separated in a string); each is ablated alone.
    ks : sequence of int, optional
        Numbers of directions (per group). Default :func:`default_ks` of the number of
        output channels per group, plus the rank; a basis skips the ``k`` larger than its dimension
        (``r`` for the SVD bases, ``m`` for channels and random).
    bases : sequence of str
        Among :data:`BASES`.
    seeds : int, default 3
        Random bases ``0 … seeds−1`` (each layer's seed is offset by its position).
    batch_size : int
        Inputs read per step.
    max_batch : int
        Most inputs in one forward pass (replicas of a batch over the variants).
    dtype : {"float32", "float64"} or torch.dtype, optional
        Precision of the SVD and the projections (default the model's); the output is cast
        back to the layer's dtype.
    device : str or torch.device, optional
        Where the model runs (default where it is); moved back afterwards.
    progress : bool, None or callable

    Returns
    -------
    AblationResult

    Raises
    ------
    InputError
        Unknown basis, negative k, a layer that does not exist or is transposed, data
        without labels or of the wrong shape, a model that fails on the data.
    """
    from convsvd.data import as_source
    from convsvd.decompose import decompose
    from convsvd.layers import as_weights
    from convsvd.signals.project import _model_dtype_device, plan_projection

    bases = [bases] if isinstance(bases, str) else list(bases)
    _check(bases, ks, seeds, max_batch, batch_size)
    mw = as_weights(model)
    if mw.model is None:
        raise InputError(f"model {mw.source!r}: ablation runs the model, so it needs an nn.Module, "
                         f"not a weights-only {mw.format} file")
    net: nn.Module = mw.model
    specs = _layer_specs(mw, layers)
    mdtype, mdevice = _model_dtype_device(net)
    if isinstance(dtype, str) and dtype not in ("float32", "float64"):
        raise InputError(f"dtype {dtype!r}: expected float32 or float64")
    chosen: torch.dtype | None = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    pdtype: torch.dtype = chosen or (mdtype if mdtype in (torch.float32, torch.float64) else torch.float32)
    try:
        dev = torch.device(device) if device is not None else mdevice
    except RuntimeError as e:
        raise InputError(f"device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine")

    expected = plan_projection(net, layers=[specs[0].name], dtype=pdtype, device=dev).expected_input()
    source = as_source(data).conform(expected)
    svd = decompose(mw.select([s.name for s in specs]), mode="full", dtype=pdtype, device=dev, progress=False)

    out_layers = []
    with eval_mode(net), moved_to(net, dev):
        for index, spec in enumerate(specs):
            out_layers.append(_ablate_layer(net, spec, svd[spec.name], source, ks, bases, seeds, batch_size,
                                            max_batch, pdtype, dev, index, progress))
    options: dict[str, object] = dict(layers=[s.name for s in specs], ks=list(ks) if ks is not None else None, bases=bases,
                   seeds=seeds, batch_size=batch_size, max_batch=max_batch,
                   dtype=str(pdtype).replace("torch.", ""), data=source.describe(),
                   measures="accuracy, mean cross-entropy, mean ‖Δlogits‖₂",
                   batching="input replicated per variant; forward hook replaces the layer output by b + P(y − b)")
    return AblationResult(tuple(out_layers), mw.source, mw.select([s.name for s in specs]).content_hash(), options)


def _forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = net(x)
    except ConvSVDError:
        raise
    except Exception as e:  # noqa: BLE001 - the model's own failure, as one line
        raise InputError(f"model: failed on inputs of shape {tuple(x.shape)} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise InputError(f"model: expected (N, classes) logits, got {type(out).__name__} "
                         f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}")
    return out


def _ablate_layer(net: nn.Module, spec: LayerSpec, lsvd: LayerSVD, source: DataSource, ks: Sequence[int] | None,
                  bases: Sequence[str], seeds: int, batch_size: int, max_batch: int, pdtype: torch.dtype,
                  dev: torch.device, index: int,
                  progress: bool | None | Callable[[int, int, str], None]) -> LayerAblation:
    """Both passes over the data for one layer: the unmodified model, then every variant."""
    g = spec.groups
    assert lsvd.U is not None and spec.module is not None  # mode="full"; checked by _layer_specs
    U = lsvd.U.to(device=dev, dtype=pdtype)  # (g, m, r)
    _, m, r = U.shape
    Wbar = unfolded(spec).to(device=dev, dtype=pdtype).reshape(g, m, -1)
    bias = None if spec.bias is None else spec.bias.detach().to(device=dev, dtype=pdtype).reshape(g, m, 1)
    grid = sorted(set(int(k) for k in ks)) if ks is not None else sorted(set(default_ks(m)) | {r})

    # pass 1: the unmodified model (reference logits, k = 0) and each channel's mean |y − b|
    refs: list[torch.Tensor] = []
    base = np.zeros(3)
    act_sum = torch.zeros(g, m, dtype=torch.float64, device=dev)
    act_n = 0
    n_inputs = 0

    def on_output(_site: str, _key: str, y: torch.Tensor) -> None:
        nonlocal act_n
        z, _ = _arrange(y.detach().to(pdtype), spec.kind, g)
        if bias is not None:
            z = z - bias
        act_sum.add_(z.abs().sum(dim=(0, 3)).double())
        act_n += z.shape[0] * z.shape[3]

    batches = list(source.iter_batches(batch_size))
    for _, (_ids, x, labels) in batches:
        if (labels < 0).any():
            raise InputError(f"data {source.name!r}: ablation needs a label for every input")
        x = x.to(device=dev, dtype=_param_dtype(net))
        with capture({spec.name: spec.module}, on_output) as cap:
            cap.reset()
            logits = _forward(net, x)
        refs.append(logits)
        base += _measures(logits, logits, labels.to(dev))
        n_inputs += x.shape[0]
    if n_inputs == 0:
        raise InputError(f"data {source.name!r}: no input could be read")
    activity = (act_sum / max(act_n, 1)).to(pdtype)

    variants: list[_Variant] = []
    for basis in bases:
        limit = r if basis.startswith("svd") else m
        for k in grid:
            if k == 0 or k > limit:
                continue
            for seed in (range(seeds) if basis == "random" else (-1,)):
                variants.append(_Variant(basis, k, seed))
    P = ablation_projections(U, Wbar, activity, [(v.basis, v.k, v.seed) for v in variants], layer_seed=1000 * index)
    sums = np.zeros((len(variants), 3))
    chunk = max(1, max_batch // max(batch_size, 1))
    state: dict[str, torch.Tensor] = {}

    def replace_output(_module: nn.Module, _inputs: object, y: torch.Tensor) -> torch.Tensor:
        Pc = state["P"]
        V = Pc.shape[0]
        z, back = _arrange(y.to(pdtype), spec.kind, g)
        z = z.reshape(V, -1, *z.shape[1:])  # (V, B, g, m, L)
        if bias is not None:
            z = z - bias
        z = torch.einsum("vgij,vbgjl->vbgil", Pc, z)
        if bias is not None:
            z = z + bias
        return back(z.reshape(-1, *z.shape[2:])).to(y.dtype)

    steps = len(batches) * math.ceil(len(variants) / chunk) if variants else 0
    with _progress(steps, f"ablate {spec.name}", progress) as bar:
        for (_, (_ids, x, labels)), ref in zip(batches, refs):
            x = x.to(device=dev, dtype=_param_dtype(net))
            labels = labels.to(dev)
            for start in range(0, len(variants), chunk):
                Pc = P[start:start + chunk]
                V = Pc.shape[0]
                state["P"] = Pc
                handle = spec.module.register_forward_hook(replace_output)
                try:
                    logits = _forward(net, x.repeat(V, *([1] * (x.ndim - 1))))
                finally:
                    handle.remove()
                logits = logits.reshape(V, x.shape[0], -1)
                for j in range(V):
                    sums[start + j] += _measures(logits[j], ref, labels)
                bar.advance(1, f"{start + V}/{len(variants)} variants")

    acc0, loss0 = base[0] / n_inputs, base[1] / n_inputs
    points = []
    for basis in bases:
        points.append(AblationPoint(basis, 0, -1 if basis != "random" else 0, acc0, loss0, 0.0))
        for i, v in enumerate(variants):
            if v.basis == basis:
                s = sums[i] / n_inputs
                points.append(AblationPoint(v.basis, v.k, v.seed, float(s[0]), float(s[1]), float(s[2])))
    return LayerAblation(spec.name, spec.kind, g, m, r, float(acc0), float(loss0), tuple(points))


def _param_dtype(net: nn.Module) -> torch.dtype:
    for p in list(net.parameters()) + list(net.buffers()):
        if p.is_floating_point():
            return p.dtype
    return torch.float32
