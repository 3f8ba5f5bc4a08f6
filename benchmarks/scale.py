"""convsvd at ImageNet scale: every step on VGG-16- and ResNet-50-shaped models at 224×224, in one run.

    .venv/bin/python benchmarks/scale.py [--n 256] [--models vgg16,resnet50] [--steps all]
                                         [--batch-size 32] [--device cpu|cuda] [--threads N]
                                         [--fv-steps 16] [--fv-size 96] [--report-n 200] [--graph-n 16]

Models: ``benchmarks/_models.py``'s VGG-16 and ResNet-50 (random weights, seed 0) and,
for the report, its ResNet-18; float32. Data: ``--n`` synthetic 3×224×224
images in 10 classes, each batch drawn from its own seed (the dataset takes no memory).
Steps (``--steps``, comma-separated, default all):

* ``forward``: the bare batched forward pass over the ``n`` images (no gradients);
* ``profile``: :func:`convsvd.signals.profile` of every conv and linear layer (the SVD
  of the model computed once beforehand and timed apart), Parquet shards on disk;
  bytes on disk per (input, SVD neuron) of the signal store;
* ``separation``: :func:`convsvd.hypergraph.separation` on every layer of that table;
* ``featureviz``: :func:`convsvd.features.featureviz` of 8 SVD neurons of 3 layers
  (first, middle and last conv), ``--fv-steps`` steps on ``--fv-size`` images;
* ``operator``: the operator view (:func:`convsvd.spectral.operator_singular_values`)
  of every conv layer at the size it sees (traced by :mod:`convsvd.shapes`), each
  layer timed, beside what the model's input side would have cost (estimated);
* ``profile-graph``: attribution profiles (:func:`convsvd.profiles.profile_graph`) of the first
  ``--graph-n`` images for channel, spatial and element neurons: seconds and MiB (in memory) per
  image beside the forward pass's seconds per image (no target: no peer profiles these models);
* ``report-quick`` / ``report``: :func:`convsvd.report.report` of the ResNet-18 on
  ``--report-n`` of the images (``quick=True`` / the full report).

Each step also gives the peak resident memory of the process while it ran (sampled
every 20 ms). At the end the ratios are printed against the targets: profiling ≤ 1.3×
the forward pass; separation ≤ 0.2× profiling; the operator view of any ResNet-50 layer
≤ 10 s at its own size; the quick report of a ResNet-18 on 200 images ≤ 5 min, the full
one ≤ 15 min; the signal store ≤ 4 bytes per (input, SVD neuron). ``benchmarks/gpu_check.py``
runs the same steps on CUDA (its step 5).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _models import resnet18, resnet50, vgg16  # noqa: E402
from _data import Synthetic  # noqa: E402
from _timing import sync  # noqa: E402


SIDE = 224
STEPS = ("forward", "profile", "separation", "featureviz", "operator", "profile-graph", "report-quick", "report")
TARGETS = dict(profile=1.3, separation=0.2, operator=10.0, report_quick=300.0, report=900.0, store=4.0)


# --------------------------------------------------------------------------- models and data


MODELS: dict[str, Callable[[], nn.Module]] = {"vgg16": vgg16, "resnet50": resnet50, "resnet18": resnet18}


# --------------------------------------------------------------------------- measuring


def _rss() -> int:
    """Resident memory of this process in bytes (Linux /proc; the peak so far elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Peak:
    """Peak resident memory while the block runs (a thread samples it every ``every`` seconds)."""

    def __init__(self, every: float = 0.02) -> None:
        self.every, self.peak = every, 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            self._stop.wait(self.every)

    def __enter__(self) -> "Peak":
        self.peak = _rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _store_parts(out: Path) -> tuple[int, int, int, int]:
    """A signal store's bytes: (signal columns, id and label columns, everything else, number of shards).

    "Everything else" is a constant per shard (the Arrow schema with every layer's metadata, written twice
    in the file format, the record-batch headers and the checksums), whatever the number of inputs in it.
    """
    import pyarrow as pa

    from convsvd.signals.store import shard_files

    signal = ids = shards = 0
    for path in shard_files(out):
        shards += 1
        with pa.memory_map(str(path)) as f:
            reader = pa.ipc.open_file(f)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                for field, column in zip(batch.schema, batch.columns):
                    if field.name in ("id", "label"):
                        ids += column.nbytes
                    else:
                        signal += column.nbytes
    return signal, ids, _du(out) - signal - ids, max(shards, 1)


class Run:
    """Times and peak memory of every step, printed as they come."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds: dict[tuple[str, str], float] = {}
        self.cpu: dict[tuple[str, str], float] = {}
        self.extra: dict[tuple[str, str], float] = {}

    def time(self, model: str, step: str, fn: Callable[[], object]) -> object:
        sync(self.device)
        with Peak() as peak:
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            sync(self.device)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.seconds[(model, step)], self.cpu[(model, step)] = dt, cpu
        print(f"  {model:9s} {step:13s} {dt:9.2f} s  (CPU {cpu:8.2f} s)   peak RSS {peak.peak / 2**30:6.2f} GiB",
              flush=True)
        return out


# --------------------------------------------------------------------------- steps


def _convs(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def run_model(name: str, run: Run, steps: Sequence[str], n: int, batch: int, fv_steps: int, fv_size: int,
              work: Path, graph_n: int = 16) -> None:
    from convsvd.decompose import decompose

    device = run.device
    model = MODELS[name]().to(device)
    data = Synthetic(n, SIDE)
    table = None
    if "forward" in steps:
        def forward() -> None:
            with torch.no_grad():
                for _, b in data.iter_batches(batch):
                    model(b.inputs.to(device))

        run.time(name, "forward", forward)
    if {"profile", "separation"} & set(steps):
        from convsvd.signals import profile

        svd = run.time(name, "svd (once)", lambda: decompose(model, mode="full", device=device, progress=False))
        out = work / f"{name}-signals"
        table = run.time(name, "profile", lambda: profile(model, data, batch_size=batch, svd=svd, out=out,
                                                            device=device, progress=False))
        neurons = int(table.summary()["neurons"].fillna(0).sum())  # type: ignore[union-attr]
        size = _du(out)
        signal, per_input, per_shard, shards = _store_parts(out)
        run.extra[(name, "store")] = signal / (n * neurons)
        run.extra[(name, "store-per-input")] = per_input / n
        print(f"  {name:9s} signal store  {size / 2**20:9.1f} MiB for {n} inputs × {neurons} SVD neurons = "
              f"{size / (n * neurons):.2f} bytes each in all: {signal / (n * neurons):.2f} B of signal per "
              f"(input, neuron), {per_input / n:.0f} B of id and label per input, and {per_shard / shards / 1024:.0f} "
              f"KiB per shard ({shards} shard{'s' if shards != 1 else ''}: schema, layer metadata, checksums)",
              flush=True)
    if "separation" in steps and table is not None:
        from convsvd.hypergraph import separation

        run.time(name, "separation", lambda: separation(table))
    if "featureviz" in steps:
        from convsvd.features import featureviz

        convs = _convs(model)
        layers = [convs[0], convs[len(convs) // 2], convs[-1]]

        def viz() -> None:
            for layer in layers:
                featureviz(model, layer, range(8), steps=fv_steps, size=fv_size, input_size=fv_size, device=device,
                           progress=False)

        run.time(name, "featureviz", viz)
        print(f"  {'':9s} (8 neurons × ±u of {', '.join(layers)}; {fv_steps} steps on {fv_size}×{fv_size})")
    if "operator" in steps:
        operator(name, model, run)
    if "profile-graph" in steps:
        graphs(name, model, data, batch, graph_n, run)


def graphs(name: str, model: nn.Module, data: object, batch: int, n: int, run: Run) -> None:
    """Attribution profiles of the first ``n`` images, per neuron type: time and memory per image."""
    from convsvd.profiles import profile_graph

    fwd = run.seconds.get((name, "forward"))
    for ntype in ("channel", "spatial", "element"):
        ps = run.time(name, f"graph-{ntype}", lambda: profile_graph(model, data, neuron_type=ntype, limit=n,
                                                                     batch_size=batch, device=run.device,
                                                                     progress=False))
        dt = run.seconds[(name, f"graph-{ntype}")]
        per_fwd = f", {dt / n / (fwd / len(data)):.0f}× the forward pass per image" if fwd else ""  # type: ignore[arg-type]
        print(f"  {'':9s} {ntype} profiles of {n} images: {dt / n:.2f} s and "
              f"{ps.nbytes / n / 2**20:.1f} MiB per image{per_fwd}", flush=True)  # type: ignore[union-attr]


def operator(name: str, model: nn.Module, run: Run) -> None:
    """Every conv layer's operator view at its own size, each timed; the model's input side estimated beside it."""
    from convsvd.io import from_module
    from convsvd.shapes import layer_input_sizes
    from convsvd.spectral import operator_singular_values, plan_operator

    mw = from_module(model)
    sizes = layer_input_sizes(mw, (3, SIDE, SIDE))
    worst, total, own_ops, side_ops = ("", 0.0), 0.0, 0.0, 0.0
    worst_cpu, total_cpu = 0.0, 0.0
    with Peak() as peak:
        for spec in mw.layers:
            if spec.kind != "conv2d":
                continue
            W = spec.weight.detach().to(run.device)
            size = sizes.get(spec.name)
            sync(run.device)
            t0, c0 = time.perf_counter(), time.process_time()
            operator_singular_values(W, size, groups=spec.groups, dilation=spec.dilation)
            sync(run.device)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            total, total_cpu, worst_cpu = total + dt, total_cpu + cpu, max(worst_cpu, cpu)
            worst = max(worst, (spec.name, dt), key=lambda p: p[1])
            own = plan_operator(tuple(W.shape), groups=spec.groups, dilation=spec.dilation, size=size)
            if dt >= 1.0:
                print(f"    {spec.name}: {'×'.join(map(str, own.n))}, {own.blocks} blocks of "
                      f"{W.shape[0] // spec.groups}×{W.shape[1]}: {dt:.2f} s (CPU {cpu:.2f} s)", flush=True)
            side = plan_operator(tuple(W.shape), groups=spec.groups, dilation=spec.dilation, size=(SIDE, SIDE))
            own_ops += own.operations
            side_ops += side.operations
    run.seconds[(name, "operator")], run.cpu[(name, "operator")] = total, total_cpu
    run.seconds[(name, "operator-max")], run.cpu[(name, "operator-max")] = worst[1], worst_cpu
    print(f"  {name:9s} {'operator':13s} {total:9.2f} s  (CPU {total_cpu:8.2f} s)   peak RSS {peak.peak / 2**30:6.2f} GiB   slowest layer "
          f"{worst[0]} {worst[1]:.2f} s; at {SIDE}×{SIDE} for every layer (the old rule): "
          f"{side_ops / own_ops:.0f}× the operations, ~{total * side_ops / own_ops / 3600:.1f} h estimated", flush=True)


def report_steps(run: Run, steps: Sequence[str], n: int, batch: int, work: Path) -> None:
    from convsvd.report import report

    data = Synthetic(n, SIDE)
    for step, quick in (("report-quick", True), ("report", False)):
        if step in steps:
            out = work / f"{step}.html"
            result = run.time("resnet18", step, lambda: report(resnet18(), data, out=out, quick=quick,
                                                               input_shape=(3, SIDE, SIDE), batch_size=batch,
                                                               device=run.device, progress=False))
            steps_s = ", ".join(f"{k} {v:.1f}" for k, v in getattr(result, "timings", {}).items())
            print(f"  {'':9s} {'':13s} where the time went (s): {steps_s}", flush=True)


# --------------------------------------------------------------------------- ratios


def ratios(run: Run, report_n: int, cpu: bool = False) -> list[str]:
    """The ratios against the targets, from wall times (``cpu``: from this process's CPU times)."""
    s, lines = (run.cpu if cpu else run.seconds), []

    def line(what: str, value: float, target: float, unit: str = "x") -> None:
        ok = "ok" if value <= target else "MISSED"
        lines.append(f"{what:58s} {value:9.3g}{unit:2s} target ≤ {target:g}{unit}  {ok}")

    for m in sorted({m for m, _ in s}):
        if (m, "profile") in s and (m, "forward") in s:
            line(f"{m}: profile / forward", s[(m, "profile")] / s[(m, "forward")], TARGETS["profile"])
        if (m, "separation") in s and (m, "profile") in s:
            line(f"{m}: separation / profile", s[(m, "separation")] / s[(m, "profile")], TARGETS["separation"])
        if (m, "featureviz") in s and (m, "forward") in s:
            lines.append(f"{m + ': featureviz / forward':58s} {s[(m, 'featureviz')] / s[(m, 'forward')]:9.3g}x")
        if (m, "operator-max") in s:
            target = TARGETS["operator"] if m == "resnet50" else float("inf")
            if m == "resnet50":
                line(f"{m}: slowest layer's operator view at its own size", s[(m, "operator-max")], target, " s")
            else:
                lines.append(f"{m + ': slowest layer operator view at its own size':58s} {s[(m, 'operator-max')]:9.3g} s")
        if (m, "store") in run.extra:
            line(f"{m}: store bytes per (input, SVD neuron) (+{run.extra[(m, 'store-per-input')]:.0f} B per input)",
                 run.extra[(m, "store")], TARGETS["store"], " B")
    note = "" if report_n == 200 else f" (on {report_n} images; the target is for 200)"
    if ("resnet18", "report-quick") in s:
        line(f"resnet18: report --quick{note}", s[("resnet18", "report-quick")], TARGETS["report_quick"], " s")
    if ("resnet18", "report") in s:
        line(f"resnet18: full report{note}", s[("resnet18", "report")], TARGETS["report"], " s")
    return lines


def main(argv: Sequence[str] | None = None) -> dict[tuple[str, str], float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="synthetic images (default 256)")
    ap.add_argument("--models", default="vgg16,resnet50", help="vgg16, resnet50 and/or resnet18")
    ap.add_argument("--steps", default="all", help=f"comma-separated among {', '.join(STEPS)} (default all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--fv-steps", type=int, default=16, help="feature-visualisation steps (default 16)")
    ap.add_argument("--fv-size", type=int, default=96, help="side of the optimised images (default 96)")
    ap.add_argument("--report-n", type=int, help="images of the report steps (default: min(n, 200))")
    ap.add_argument("--graph-n", type=int, default=16, help="images of the profile-graph step (default 16)")
    args = ap.parse_args(argv)
    steps = list(STEPS) if args.steps == "all" else [s for s in args.steps.split(",") if s]
    bad = [s for s in steps if s not in STEPS]
    models = [m for m in args.models.split(",") if m]
    if bad or any(m not in MODELS for m in models) or args.n < 1:
        ap.error(f"--steps: expected among {', '.join(STEPS)}; --models among {', '.join(MODELS)}; --n ≥ 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    report_n = args.report_n or min(args.n, 200)
    print(f"scale benchmark: {args.n} synthetic 3×{SIDE}×{SIDE} images, batch {args.batch_size}, device {args.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    run = Run(args.device)
    with tempfile.TemporaryDirectory(prefix="convsvd-scale-") as tmp:
        for name in models:
            run_model(name, run, steps, args.n, args.batch_size, args.fv_steps, args.fv_size, Path(tmp),
                      min(args.graph_n, args.n))
        if {"report-quick", "report"} & set(steps):
            report_steps(run, steps, report_n, args.batch_size, Path(tmp))
    print("\nratios against the targets (wall time):")
    for text in ratios(run, report_n):
        print("  " + text)
    if args.device == "cpu":  # on a shared machine the CPU time of this process is the steadier measure
        print(f"the same from this process's CPU time (all its threads; {torch.get_num_threads()} threads):")
        for text in ratios(run, report_n, cpu=True):
            print("  " + text)
    return run.seconds


if __name__ == "__main__":
    main()
