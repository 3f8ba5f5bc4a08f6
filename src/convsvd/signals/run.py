"""Profile a whole dataset: stream batches, write dense Arrow shards, resume, split across torchrun ranks.

The dataset is cut into batches of ``batch_size`` and the batches into shards
of ``⌈shard_size / batch_size⌉`` consecutive batches; shard ``s`` is computed by
rank ``s mod world_size`` (``torchrun``), so with one batch per shard rank ``r``
takes batches ``r, r+N, …``. Each rank writes its own shards; a shard on disk
is finished, so an interrupted run started again with the same options computes
only the missing shards, and its table equals an uninterrupted run's. After a
barrier, rank 0 writes the complete manifest. Memory holds one batch: each
batch's signals are written out (one Arrow record batch) while the next is computed.

Integrity: the run folder is locked (``.OUT.lock`` beside it, held by rank 0)
so a second run into it fails at once naming the holder; on resume every shard
on disk is verified (identity, checksums) and a damaged or misplaced one is
recomputed and listed in the manifest (``repaired_shards``); a full disk or a
read-only folder is one line, with the finished shards left intact. Inputs with
NaN or infinite values are left out and listed (``nonfinite="skip"``), or refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pyarrow as pa
import torch

from convsvd import _validate as check
from convsvd._atomic import FolderLock, acquire_lock, environment_error, release_lock
from convsvd._meta import run_metadata
from convsvd._progress import progress as _progress
from convsvd._typing import JsonDict, PathLike
from convsvd.data.protocol import DataSource, check_batch_size
from convsvd.data.sources import as_source
from convsvd.decompose import Decomposition
from convsvd.errors import InputError
from convsvd.signals import store
from convsvd.signals._dist import Dist, setup
from convsvd.signals.hooks import eval_mode, moved_to
from convsvd.signals.influence import check_influence_options, influence
from convsvd.signals.project import AGGREGATIONS, ProjectionPlan, Projector, key_of, plan_projection, run_forward
from convsvd.signals.table import SignalTable
from convsvd.target import TargetOptions, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["profile"]

NONFINITE = ("skip", "error")
NONFINITE_REASON = "non-finite values (NaN or inf) in the input"
_ENVIRONMENT = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _run_key(plan: ProjectionPlan, options: JsonDict, dataset: JsonDict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([store.FORMAT, plan.model_hash, options, dataset.get("fingerprint")], sort_keys=True).encode())
    return h.hexdigest()[:32]


def _rule(options: JsonDict) -> str:
    top_k = options.get("top_k")
    return f"top_k={top_k}" if top_k is not None else f"threshold={options.get('threshold')}"


def _difference(old: JsonDict, model_hash: str, options: JsonDict, dataset: JsonDict) -> str:
    """What differs between a run on disk and this one, in a few words."""
    if old.get("model_hash") != model_hash:
        return "another model (its weights differ)"
    prev: JsonDict = old.get("options", {})
    if _rule(prev) != _rule(options):
        return f"influence {_rule(prev)} (this run: {_rule(options)})"
    for k, v in options.items():
        if prev.get(k) != v:
            return f"{k}={prev.get(k)!r} (this run: {v!r})"
    same_data = old.get("dataset", {}).get("fingerprint") == dataset.get("fingerprint")
    return "another format version" if same_data else "other data"


def _site_info(site: str, p: Projector) -> store.SiteInfo:
    """The constant description of a site: groups, neurons per group, σ of each of its ``g·r`` neurons."""
    return store.SiteInfo(site, p.groups, p.rank, tuple(p.sigma.reshape(-1).detach().cpu().double().tolist()))


@dataclass(eq=False)
class _Run:
    """One process's part of a run: where it writes, what it computes, what it has finished."""

    dist: Dist
    plan: ProjectionPlan
    source: DataSource
    out: Path
    keepalive: tempfile.TemporaryDirectory | None
    options: JsonDict
    described: JsonDict
    run_key: str
    batch_size: int
    per_shard: int
    n_batches: int | None
    nonfinite: str = "skip"
    known: dict[int, JsonDict] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, dist: Dist, plan: ProjectionPlan, source: DataSource, out: PathLike | None, *, aggregate: str,
               threshold: float | None, top_k: int | None, batch_size: int, shard_size: int, fold_bn: bool,
               store_dtype: str | None, nonfinite: str) -> "_Run":
        keepalive = None
        if out is None:
            if dist.world > 1:
                raise InputError("out: a run under torchrun needs an output folder shared by all ranks")
            keepalive = tempfile.TemporaryDirectory(prefix="convsvd-profile-")
            out = keepalive.name
        try:
            (Path(out) / store.SHARDS).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"out {os.fspath(out)!r}: cannot create the folder ({e.strerror})") from None
        bsz = getattr(source, "fixed_batch_size", None) or batch_size  # a DataLoader keeps its own
        per_shard = max(1, math.ceil(shard_size / bsz))
        float64 = next(iter(plan.projectors.values())).Ut.dtype == torch.float64
        dtype = "float64" if float64 else "float32"
        options: JsonDict = dict(
            layers=list(plan.projectors), aggregate=aggregate, threshold=threshold, top_k=top_k, batch_size=bsz,
            shard_batches=per_shard, fold_bn=fold_bn, dtype=dtype, store_dtype=store_dtype or dtype,
            basis=plan.basis)
        described = source.describe()
        return cls(dist, plan, source, Path(out), keepalive, options, described, _run_key(plan, options, described),
                   bsz, per_shard, source.num_batches(bsz), nonfinite)

    @property
    def store_dtype(self) -> str:
        return str(self.options["store_dtype"])

    def manifest(self, status: str, shards: dict[int, JsonDict]) -> str:
        """Manifest text, built from the finished shards' own metadata."""
        order: list[str] = []
        counts: dict[str, int] = {}
        inputs = 0
        skipped = [list(s) for s in self.described.get("skipped", [])]
        for idx in sorted(shards):
            meta: dict = shards[idx]
            inputs += int(meta["inputs"])
            for site in meta["sites"]:
                if site not in counts:
                    order.append(site)
                    counts[site] = 0
            for site, c in meta["influential"].items():
                counts[site] += int(c)
            skipped += [list(x) for x in meta.get("skipped", [])]
        folded = {spec.name: spec.folded for spec in self.plan.weights.layers}
        layers = []
        for site in order:
            p = self.plan.projectors[key_of(site)]
            layers.append(dict(layer=site, module=p.name, kind=p.kind, groups=p.groups, neurons_per_group=p.rank,
                               neurons=p.neurons, folded=folded.get(p.name), inputs=inputs,
                               mean_influential=(counts[site] / inputs) if inputs else None))
        called = {key_of(site) for site in order}
        never = [dict(layer=k, reason="not called in the forward pass") for k in self.plan.projectors
                 if status == "complete" and inputs and k not in called]
        files = [dict(file=store.shard_name(i), batches=shards[i]["batches"], inputs=shards[i]["inputs"],
                      rank=shards[i].get("rank", 0), id_range=shards[i].get("id_range")) for i in sorted(shards)]
        compute = sum(float(m.get("time_s", 0.0)) for m in shards.values())
        return run_metadata(
            self.plan.source, self.plan.model_hash, self.options,
            format=store.FORMAT, status=status, run_key=self.run_key, dataset=self.described, inputs=inputs,
            layers=layers, not_profiled=[dict(layer=n, reason=r) for n, r in self.plan.not_profiled] + never,
            shards=files, skipped_inputs=skipped, world_size=self.dist.world, compute_s=round(compute, 3),
            pyarrow=pa.__version__, nonfinite=self.nonfinite, repaired_shards=list(self.repaired),
        )

    def start(self, restart: bool) -> dict[int, JsonDict]:
        """Check a run already in the folder, write the starting manifest (rank 0); the shards already finished."""
        old = store.read_manifest(self.out)
        if old is not None and old.get("run_key") != self.run_key and not restart:
            what = _difference(old, self.plan.model_hash, self.options, self.described)
            raise InputError(f"out {os.fspath(self.out)!r}: holds a run with {what}; "
                             f"use another folder, or restart to discard it")
        self.dist.barrier()
        if self.dist.rank == 0:
            if restart:
                store.clear(self.out)
            store.remove_temporaries(self.out)
            # damaged, misplaced or foreign shards are removed here (and recomputed), once, by rank 0
            finished, self.repaired = store.finished_shards(self.out, self.run_key, remove=True)
            if old is not None and not restart:
                self.repaired = list(dict.fromkeys(list(old.get("repaired_shards", [])) + self.repaired))
            store.write_manifest(self.out, self.manifest("running", finished))
        self.dist.barrier()
        if self.dist.rank != 0:
            finished, _ = store.finished_shards(self.out, self.run_key, remove=False, data=False)
        self.known = dict(finished)
        return finished

    def _commit(self, shard: store.ShardWriter, started: float, skipped: list[tuple[str, str]]) -> None:
        meta = dict(run_key=self.run_key, rank=self.dist.rank,
                    sites=[s.layer for s in shard.sites or []], skipped=[list(x) for x in skipped],
                    time_s=round(time.perf_counter() - started, 4))
        meta = shard.commit(meta)
        if self.dist.rank == 0:  # keep the manifest's list of finished shards current
            self.known[shard.index] = meta
            store.write_manifest(self.out, self.manifest("running", self.known))

    def stream(self, finished: dict[int, JsonDict], progress: bool | None | Callable[[int, int, str], None],
               ) -> None:
        """Compute and write this rank's unfinished shards, batch by batch."""
        plan, dist, per_shard = self.plan, self.dist, self.per_shard

        def mine(shard: int) -> bool:
            return shard % dist.world == dist.rank and shard not in finished

        which = None if self.n_batches is None else [b for b in range(self.n_batches) if mine(b // per_shard)]
        aggregate, threshold, top_k = self.options["aggregate"], self.options["threshold"], self.options["top_k"]
        results: dict[str, tuple[str, torch.Tensor]] = {}
        infos: dict[str, store.SiteInfo] = {}
        identity = dict(run_key=self.run_key, model_hash=plan.model_hash, layers=self.options["layers"])

        def on_output(site: str, key: str, y: torch.Tensor) -> None:
            results[site] = (key, plan.projectors[key].aggregate(y, aggregate))

        seen_skipped = len(self.source.skipped)
        bad: list[tuple[str, str]] = []  # inputs left out of the current shard for non-finite values
        writer: store.ShardWriter | None = None
        try:
            with eval_mode(plan.model), moved_to(plan.model, plan.device), \
                    _progress(len(which) if which is not None else 0, "profile", progress) as bar:
                started = time.perf_counter()
                for b, (ids, inputs, labels) in self.source.iter_batches(self.batch_size, which):
                    shard = b // per_shard
                    if not mine(shard):
                        continue
                    if writer is None or writer.index != shard:
                        if writer is not None:
                            self._commit(writer, started, self.source.skipped[seen_skipped:] + bad)
                            seen_skipped, bad = len(self.source.skipped), []
                        writer = store.ShardWriter(store.shard_path(self.out, shard), shard, self.store_dtype, identity)
                        started = time.perf_counter()
                    writer.batches.append(b)
                    ids, inputs, labels = self._finite(ids, inputs, labels, bad)
                    if ids.numel():
                        results.clear()
                        run_forward(plan, inputs, on_output)
                        sites = list(results.items())
                        counts = [influence(v, threshold, top_k).count.sum() for _, (_, v) in sites]
                        host = _to_host([v for _, (_, v) in sites] + [torch.stack(counts)] if sites else [])
                        for site, (key, _) in sites:
                            if site not in infos:
                                infos[site] = _site_info(site, plan.projectors[key])
                        n_inf = host[-1].tolist() if sites else []
                        writer.add(ids.cpu().numpy(), labels.cpu().numpy(),
                                   {site: host[i] for i, (site, _) in enumerate(sites)},
                                   [infos[site] for site, _ in sites],
                                   {site: int(c) for (site, _), c in zip(sites, n_inf)})
                    bar.advance(1, f"batch {b}")
                if writer is not None:
                    self._commit(writer, started, self.source.skipped[seen_skipped:] + bad)
                    writer = None
        except OSError as e:
            if e.errno in _ENVIRONMENT:
                raise environment_error(e, "signal shards", self.out) from None
            raise
        finally:
            if writer is not None:  # interrupted or failed inside a shard: no half shard is left
                writer.abort()

    def _finite(self, ids: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor,
                bad: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch without its inputs holding NaN or inf (listed in ``bad``), or an InputError (``nonfinite="error"``)."""
        if not inputs.is_floating_point() or not ids.numel():
            return ids, inputs, labels
        ok = torch.isfinite(inputs.reshape(inputs.shape[0], -1)).all(dim=1)
        if bool(ok.all()):
            return ids, inputs, labels
        which = ids[~ok.to(ids.device)].tolist()
        if self.nonfinite == "error":
            raise InputError(f"data {self.source.name!r}: input {which[0]} has non-finite values (NaN or inf)"
                             f"{f' (and {len(which) - 1} more in its batch)' if len(which) > 1 else ''}; "
                             f"use nonfinite='skip' (--nonfinite skip) to leave such inputs out")
        bad += [(str(i), NONFINITE_REASON) for i in which]
        keep = ok.to(ids.device)
        return ids[keep], inputs[ok], labels[keep.to(labels.device)]

    def finish(self) -> SignalTable:
        """After every rank is done: rank 0 checks the shards and writes the complete manifest."""
        self.dist.barrier()
        if self.dist.rank == 0:
            done, problems = store.finished_shards(self.out, self.run_key, remove=False, data=False)
            if problems:
                raise InputError(f"out {os.fspath(self.out)!r}: {problems[0]} after the run; run profile again "
                                 f"to recompute it")
            expected = (math.ceil(self.n_batches / self.per_shard) if self.n_batches is not None
                        else (max(done) + 1 if done else 0))
            missing = sorted(set(range(expected)) - set(done))
            if missing:
                raise InputError(f"out {os.fspath(self.out)!r}: shards {missing[:5]} are missing after the run "
                                 f"(was the folder shared by every rank?)")
            if not any(int(m["inputs"]) for m in done.values()):
                why = "; ".join(f"{a}: {r}" for a, r in self.source.skipped[:3]) or "none"
                raise InputError(f"data {self.source.name!r}: no input could be read (skipped: {why})")
            store.write_manifest(self.out, self.manifest("complete", done))
        self.dist.barrier()
        table = SignalTable.open(self.out, verify=False)  # every shard was verified at the start or just written
        return SignalTable(table.path, table.manifest, self.keepalive) if self.keepalive is not None else table


def _to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """The tensors as numpy arrays; from CUDA with asynchronous copies and one wait, not one wait each."""
    if any(t.device.type == "cuda" for t in tensors):
        copies = [t.to("cpu", non_blocking=True) for t in tensors]
        for device in {t.device for t in tensors if t.device.type == "cuda"}:
            torch.cuda.synchronize(device)  # the copies are complete only after this
        return [c.numpy() for c in copies]
    return [t.cpu().numpy() for t in tensors]


def profile(
    model: object,
    data: object,
    *,
    aggregate: str = "mean",
    threshold: float | str | None = None,
    top_k: int | None = None,
    batch_size: int = 64,
    input_shape: Sequence[int] | None = None,
    out: PathLike | None = None,
    shard_size: int = 1024,
    restart: bool = False,
    svd: Decomposition | None = None,
    progress: bool | None | Callable[[int, int, str], None] = None,
    store_dtype: str | None = None,
    nonfinite: str = "skip",
    basis: str = "svd",
    **options: Unpack[TargetOptions],
) -> SignalTable:
    """Signals of every input of a dataset on every SVD neuron of the chosen layers.

    Parameters
    ----------
    model : Target, nn.Module, or anything :func:`convsvd.target.resolve` accepts that holds a module
        Run in eval mode (each module's mode is restored afterwards); outputs unchanged.
    data : dataset
        Anything :func:`convsvd.data.as_source` accepts: ``"digits"``, an image
        folder, a ``.npz``/``.pt`` file, tensors/arrays ``(inputs, labels)``,
        a ``DataLoader``, a :class:`~convsvd.data.DataSource`.
    aggregate : {"mean", "max", "abs", "l2"}
        Over the locations of a conv's output (see :mod:`convsvd.signals.project`).
    threshold : float or "reference", optional
        Influential set: smallest set reaching this share of ``Σ|signal|`` (default 0.3;
        ``"reference"``: DeepDataProfiler's 0.1; see :mod:`convsvd.signals.influence`).
    top_k : int, optional
        Influential set: the ``k`` largest ``|signal|`` instead.
    batch_size : int
        Inputs per forward pass (a ``DataLoader`` keeps its own).
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
    store_dtype : {"float32", "float16", "float64"}, optional
        Precision of the stored signals (default: the projection's). ``float16`` halves
        the store; its signals are within a relative ``2⁻¹¹`` of the float32 ones and the
        influential sets are those of the rounded signals.
    nonfinite : {"skip", "error"}
        Inputs with NaN or inf values: left out and listed in the manifest's
        ``skipped_inputs`` (default), or refused with an InputError.
    basis : {"svd", "channel", "random"}, default "svd"
        Project on the SVD neurons, the raw output channels (σ = NaN) or a seeded random
        orthonormal basis (:data:`~convsvd.signals.project.BASES`); recorded in the manifest.
    **options
        Checked by :func:`convsvd.target.resolve` (or carried by a Target): ``layers`` (glob patterns
        of layer names, comma-separated in a string; default all conv and linear layers; transposed
        convs are listed as not profiled); ``device`` (where the model runs and the projection is
        computed; default the model's device; the model is moved there for the run and back
        afterwards); ``dtype`` (precision of the SVD and projection, default the model's; stored
        floats follow it); ``fold_bn`` (profile each ``conv → BatchNorm`` pair as one map: the
        BatchNorm's output, folded weights and bias); ``input_size`` (the input's side, when the
        model does not state it).

    Returns
    -------
    SignalTable
        Opened lazily on ``out``; the same on every rank.

    Raises
    ------
    InputError
        One line naming the input: data of the wrong shape (saying what the model
        expects), an empty or malformed image folder, a layer pattern that matches
        nothing, a model that fails on the data, an ``out`` folder holding another run or
        locked by another run (naming its pid), a full disk or read-only ``out`` (finished
        shards are kept).

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    >>> table = profile(net, (torch.randn(10, 1, 8, 8), torch.arange(10) % 3), batch_size=4, top_k=2)
    >>> table.summary()[["layer", "neurons", "mean_influential"]].values.tolist()
    [['0', 4, 2.0], ['3', 3, 2.0]]
    """
    check.choice(aggregate, "aggregate", AGGREGATIONS)
    threshold, top_k = check_influence_options(threshold, top_k)
    check_batch_size(batch_size)
    check.integer(shard_size, "shard_size", minimum=1)
    check.choice(store_dtype, "store_dtype", (None, *store.STORE_DTYPES))
    check.choice(nonfinite, "nonfinite", NONFINITE)
    target = resolve(model, **options)
    if input_shape is None:
        input_shape = target.stated_input_shape()  # the user's input_size, the zoo's or the ONNX graph's
    dist = setup()
    lock: FolderLock | None = None
    try:
        refused: InputError | None = None
        if dist.rank == 0 and out is not None:  # before anything is written into the folder
            try:
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                lock = acquire_lock(Path(out))
            except InputError as e:
                refused = e
            except OSError as e:
                refused = environment_error(e, "the run's lock file", out)
        if not dist.all_ok(refused is None):
            raise refused or InputError(f"out {os.fspath(out)!r}: rank 0 could not lock the folder")  # type: ignore[arg-type]
        plan = plan_projection(target, svd=svd, basis=basis)
        source = as_source(data).conform(plan.expected_input(input_shape))
        run = _Run.create(dist, plan, source, out, aggregate=aggregate, threshold=threshold, top_k=top_k,
                          batch_size=batch_size, shard_size=shard_size, fold_bn=target.fold_bn,
                          store_dtype=store_dtype, nonfinite=nonfinite)
        try:
            finished = run.start(restart)
            run.stream(finished, progress if dist.rank == 0 else False)
            return run.finish()
        except OSError as e:
            if e.errno in _ENVIRONMENT:
                raise environment_error(e, "signal shards", run.out) from None
            raise
    finally:
        if lock is not None:
            release_lock(lock)
        dist.close()


