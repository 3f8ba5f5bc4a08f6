"""Profile a whole dataset: stream batches, write Parquet shards, resume, split across torchrun ranks.

The dataset is cut into batches of ``batch_size`` and the batches into shards
of ``⌈shard_size / batch_size⌉`` consecutive batches; shard ``s`` is computed by
rank ``s mod world_size`` (``torchrun``), so with one batch per shard rank ``r``
takes batches ``r, r+N, …``. Each rank writes its own shards; a shard on disk
is finished, so an interrupted run started again with the same options computes
only the missing shards, and its table equals an uninterrupted run's. After a
barrier, rank 0 writes the complete manifest. Memory holds one batch: each
batch's rows are written out (as Parquet row groups) before the next is read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from convsvd._meta import run_metadata
from convsvd._progress import progress as _progress
from convsvd._typing import PathLike
from convsvd.data.protocol import DataSource, as_source, check_batch_size
from convsvd.decompose import Decomposition
from convsvd.errors import InputError
from convsvd.signals import store
from convsvd.signals._dist import Dist, setup
from convsvd.signals.hooks import eval_mode, moved_to
from convsvd.signals.influence import check_influence_options, influence
from convsvd.signals.project import AGGREGATIONS, ProjectionPlan, key_of, plan_projection, run_forward
from convsvd.signals.table import SignalTable

__all__ = ["profile"]


def _run_key(plan: ProjectionPlan, options: dict[str, object], dataset: dict[str, object]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([store.FORMAT, plan.model_hash, options, dataset.get("fingerprint")], sort_keys=True).encode())
    return h.hexdigest()[:32]


def _difference(old: dict[str, object], model_hash: str, options: dict[str, object], dataset: dict[str, object]) -> str:
    if old.get("model_hash") != model_hash:
        return "another model (its weights differ)"
    prev: dict = old.get("options", {})  # type: ignore[assignment]

    def rule(o: dict) -> str:
        return f"top_k={o.get('top_k')}" if o.get("top_k") is not None else f"threshold={o.get('threshold')}"

    if rule(prev) != rule(options):
        return f"influence {rule(prev)} (this run: {rule(options)})"
    for k, v in options.items():
        if prev.get(k) != v:  # type: ignore[union-attr]
            return f"{k}={prev.get(k)!r} (this run: {v!r})"
    same_data = old.get("dataset", {}).get("fingerprint") == dataset.get("fingerprint")  # type: ignore[union-attr]
    return "another format version" if same_data else "other data"


class _SiteInfo:
    """Per-site constant columns (group, neuron, σ), built once."""

    def __init__(self, plan: ProjectionPlan) -> None:
        self.plan = plan
        self.cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __call__(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if key not in self.cache:
            p = self.plan.projectors[key]
            self.cache[key] = (np.repeat(np.arange(p.groups), p.rank), np.tile(np.arange(p.rank), p.groups),
                               p.sigma.reshape(-1).detach().cpu().numpy())
        return self.cache[key]


def _manifest(plan: ProjectionPlan, status: str, run_key: str, options: dict[str, object], dataset: dict[str, object],
              shards: dict[int, dict[str, object]], dist: Dist) -> str:
    """Manifest text from the finished shards' own metadata."""
    order: list[str] = []
    counts: dict[str, int] = {}
    inputs = 0
    skipped = [list(s) for s in dataset.get("skipped", [])]  # type: ignore[union-attr]
    for idx in sorted(shards):
        meta = shards[idx]
        inputs += int(meta["inputs"])  # type: ignore[call-overload]
        for site in meta["sites"]:  # type: ignore[union-attr]
            if site not in counts:
                order.append(site)
                counts[site] = 0
        for site, c in meta["influential"].items():  # type: ignore[union-attr]
            counts[site] += int(c)
        skipped += [list(s) for s in meta.get("skipped", [])]  # type: ignore[union-attr]
    layers = []
    for site in order:
        p = plan.projectors[key_of(site)]
        spec_folded = next((s.folded for s in plan.weights.layers if s.name == p.name), None)
        layers.append(dict(layer=site, module=p.name, kind=p.kind, groups=p.groups, neurons_per_group=p.rank, neurons=p.neurons,
                           folded=spec_folded, inputs=inputs,
                           mean_influential=(counts[site] / inputs) if inputs else None))
    never = [dict(layer=k, reason="not called in the forward pass") for k in plan.projectors
             if status == "complete" and inputs and not any(key_of(s) == k for s in order)]
    return run_metadata(
        plan.source, plan.model_hash, options,
        format=store.FORMAT, status=status, run_key=run_key, dataset=dataset, inputs=inputs, layers=layers,
        not_profiled=[dict(layer=n, reason=r) for n, r in plan.not_profiled] + never,
        shards=[dict(file=f"{store.SHARDS}/shard-{i:06d}.parquet", batches=shards[i]["batches"],
                     inputs=shards[i]["inputs"], rank=shards[i].get("rank", 0)) for i in sorted(shards)],
        skipped_inputs=skipped, world_size=dist.world,
        compute_s=round(sum(float(m.get("time_s", 0.0)) for m in shards.values()), 3),  # type: ignore[arg-type]
        pyarrow=__import__("pyarrow").__version__,
    )


def profile(
    model: object,
    data: object,
    *,
    layers: str | Sequence[str] | None = None,
    aggregate: str = "mean",
    threshold: float | None = None,
    top_k: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    fold_bn: bool = False,
    input_shape: Sequence[int] | None = None,
    out: PathLike | None = None,
    shard_size: int = 1024,
    restart: bool = False,
    svd: Decomposition | None = None,
    progress: bool | None | Callable[[int, int, str], None] = None,
) -> SignalTable:
    """Signals of every input of a dataset on every SVD neuron of the chosen layers.

    Parameters
    ----------
    model : nn.Module (or ModelWeights holding one)
        Run in eval mode (each module's mode is restored afterwards); outputs unchanged.
    data : dataset
        Anything :func:`convsvd.data.as_source` accepts: ``"digits"``, an image
        folder, a ``.npz``/``.pt`` file, tensors/arrays ``(inputs, labels)``,
        a ``DataLoader``, a :class:`~convsvd.data.DataSource`.
    layers : str or list of str, optional
        Glob patterns of layer names (comma-separated in a string); default all
        conv and linear layers. Transposed convs are listed as not profiled.
    aggregate : {"mean", "max", "abs", "l2"}
        Over the locations of a conv's output (see :mod:`convsvd.signals.project`).
    threshold : float, optional
        Influential set: smallest set reaching this share of ``Σ|signal|`` (default 0.1).
    top_k : int, optional
        Influential set: the ``k`` largest ``|signal|`` instead.
    batch_size : int
        Inputs per forward pass (a ``DataLoader`` keeps its own).
    device : str or torch.device, optional
        Where the model runs and the projection is computed (default: the model's device).
        The model is moved there for the run and back afterwards.
    dtype : torch.dtype or {"float32", "float64"}, optional
        Precision of the SVD and projection (default the model's); stored floats follow it.
    fold_bn : bool
        Profile each ``conv → BatchNorm`` pair as one map: the BatchNorm's output, folded weights and bias.
    input_shape : sequence of int, optional
        ``(C, *spatial)`` the model takes: image folders are resized to it and tensors checked against it.
    out : path, optional
        Run folder (``manifest.json``, ``shards/``). Default: a temporary folder
        removed when the returned table is garbage collected. Required under torchrun.
    shard_size : int
        Inputs per shard (rounded up to whole batches): the unit written, resumed and split across ranks.
    restart : bool
        Discard a run already in ``out`` (else it is resumed; a run with other options is an error).
    svd : Decomposition, optional
        Reuse a decomposition (``mode="full"``/``"topk"``, ``fold_bn`` as here).
    progress : bool, None or callable
        Progress bar on rank 0 (None: automatic) or ``fn(done, total, what)`` per batch.

    Returns
    -------
    SignalTable
        Opened lazily on ``out``; the same on every rank.

    Raises
    ------
    InputError
        One line naming the input: data of the wrong shape (saying what the model
        expects), an empty or malformed image folder, a layer pattern that matches
        nothing, a model that fails on the data, an ``out`` folder holding another run.

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    >>> table = profile(net, (torch.randn(10, 1, 8, 8), torch.arange(10) % 3), batch_size=4, top_k=2)
    >>> table.summary()[["layer", "neurons", "mean_influential"]].values.tolist()
    [['0', 4, 2.0], ['3', 3, 2.0]]
    """
    if aggregate not in AGGREGATIONS:
        raise InputError(f"aggregate {aggregate!r}: expected one of {', '.join(AGGREGATIONS)}")
    threshold, top_k = check_influence_options(threshold, top_k)
    check_batch_size(batch_size)
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InputError(f"shard_size: expected a positive int (inputs per shard), got {shard_size!r}")
    dist = setup()
    try:
        return _profile(dist, model, data, layers, aggregate, threshold, top_k, batch_size, device, dtype, fold_bn,
                        input_shape, out, shard_size, restart, svd, progress)
    finally:
        dist.close()


def _profile(dist: Dist, model: object, data: object, layers: str | Sequence[str] | None, aggregate: str,
             threshold: float | None, top_k: int | None, batch_size: int, device: str | torch.device | None,
             dtype: torch.dtype | str | None, fold_bn: bool, input_shape: Sequence[int] | None, out: PathLike | None,
             shard_size: int, restart: bool, svd: Decomposition | None,
             progress: bool | None | Callable[[int, int, str], None]) -> SignalTable:
    plan = plan_projection(model, layers=layers, fold_bn=fold_bn, svd=svd, dtype=dtype, device=device)
    source: DataSource = as_source(data).conform(plan.expected_input(input_shape))
    keepalive = None
    if out is None:
        if dist.world > 1:
            raise InputError("out: a run under torchrun needs an output folder shared by all ranks")
        keepalive = tempfile.TemporaryDirectory(prefix="convsvd-profile-")
        out = keepalive.name
    out_dir = Path(out)
    try:
        (out_dir / store.SHARDS).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"out {os.fspath(out)!r}: cannot create the folder ({e.strerror})") from None

    bsz = getattr(source, "fixed_batch_size", None) or batch_size
    per_shard = max(1, math.ceil(shard_size / bsz))
    n_batches = source.num_batches(bsz)
    float64 = next(iter(plan.projectors.values())).Ut.dtype == torch.float64
    options: dict[str, object] = dict(
        layers=list(plan.projectors), aggregate=aggregate, threshold=threshold, top_k=top_k, batch_size=bsz,
        shard_batches=per_shard, fold_bn=fold_bn, dtype="float64" if float64 else "float32")
    described = source.describe()
    run_key = _run_key(plan, options, described)

    old = store.read_manifest(out_dir)
    if old is not None and old.get("run_key") != run_key and not restart:
        raise InputError(f"out {os.fspath(out_dir)!r}: holds a run with {_difference(old, plan.model_hash, options, described)}; "
                         f"use another folder, or restart to discard it")
    dist.barrier()
    if dist.rank == 0:
        if restart:
            store.clear(out_dir)
        store.remove_temporaries(out_dir)
        store.write_manifest(out_dir, _manifest(plan, "running", run_key, options, described, {}, dist))
    dist.barrier()
    finished = store.finished_shards(out_dir, run_key)
    known = dict(finished)  # what rank 0 lists as finished while running

    def mine(shard: int) -> bool:
        return shard % dist.world == dist.rank and shard not in finished

    if n_batches is not None:
        which: list[int] | None = [b for b in range(n_batches) if mine(b // per_shard)]
        total = len(which)
    else:
        which, total = None, 0
    site_info = _SiteInfo(plan)
    seen_skipped = len(source.skipped)
    results: dict[str, tuple[str, torch.Tensor]] = {}

    def on_output(site: str, key: str, y: torch.Tensor) -> None:
        results[site] = (key, plan.projectors[key].aggregate(y, aggregate))

    def commit(shard: store.ShardWriter, started: float) -> None:
        nonlocal seen_skipped
        now_skipped = source.skipped
        meta = dict(run_key=run_key, shard=shard.index, rank=dist.rank, batches=shard.batches, inputs=shard.inputs,
                    sites=list(shard.influential), influential=shard.influential,
                    skipped=[list(s) for s in now_skipped[seen_skipped:]], time_s=round(time.perf_counter() - started, 4))
        seen_skipped = len(now_skipped)
        shard.commit(meta)
        if dist.rank == 0:
            known[shard.index] = meta
            store.write_manifest(out_dir, _manifest(plan, "running", run_key, options, described, known, dist))

    enabled = progress if dist.rank == 0 else False
    writer: store.ShardWriter | None = None
    try:
        with eval_mode(plan.model), moved_to(plan.model, plan.device), _progress(total, "profile", enabled) as bar:
            started = time.perf_counter()
            for b, batch in source.iter_batches(bsz, which):
                shard = b // per_shard
                if not mine(shard):
                    continue
                if writer is None or writer.index != shard:
                    if writer is not None:
                        commit(writer, started)
                    writer, started = store.ShardWriter(store.shard_path(out_dir, shard), shard, float64), time.perf_counter()
                writer.batches.append(b)
                ids, inputs, labels = batch
                if ids.numel():
                    results.clear()
                    run_forward(plan, inputs, on_output)
                    ids_np, labels_np = ids.cpu().numpy(), labels.cpu().numpy()
                    for site, (key, values) in results.items():
                        inf = influence(values, threshold, top_k)
                        writer.add(site, ids_np, labels_np, values.cpu().numpy(), inf.mask.cpu().numpy(),
                                   inf.weight.cpu().numpy(), *site_info(key))
                    writer.inputs += int(ids.numel())
                bar.advance(1, f"batch {b}")
            if writer is not None:
                commit(writer, started)
                writer = None
    finally:
        if writer is not None:  # interrupted or failed inside a shard: no half shard is left
            writer.abort()
    dist.barrier()
    if dist.rank == 0:
        done = store.finished_shards(out_dir, run_key)
        expected = math.ceil(n_batches / per_shard) if n_batches is not None else (max(done) + 1 if done else 0)
        missing = sorted(set(range(expected)) - set(done))
        if missing:
            raise InputError(f"out {os.fspath(out_dir)!r}: shards {missing[:5]} are missing after the run "
                             f"(was the folder shared by every rank?)")
        if not any(int(m["inputs"]) for m in done.values()):  # type: ignore[call-overload]
            raise InputError(f"data {source.name!r}: no input could be read (skipped: "
                             f"{'; '.join(f'{a}: {r}' for a, r in source.skipped[:3]) or 'none'})")
        store.write_manifest(out_dir, _manifest(plan, "complete", run_key, options, described, done, dist))
    dist.barrier()
    table = SignalTable.open(out_dir)
    if keepalive is not None:
        table = SignalTable(table.path, table.manifest, keepalive)
    return table
