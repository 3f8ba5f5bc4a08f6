"""Speed and memory of convsvd.signals.profile, measured in the same run.

    .venv/bin/python benchmarks/profile_signals.py [--inputs 512] [--repeat 5] [--ddp-images 24] [--threads N]
                                           [--device cpu|cuda] [--peers .peers-venv] [--memory 1000,10000]
                                           [--skip-ddp] [--big resnet50,vgg16] [--big-inputs 64] [--skip-small]

Model: ``vgg_small()`` (6 conv + 2 linear layers, 32×32×3 inputs, random weights,
seed 0), float32, CPU. Data: synthetic 32×32 images generated batch by batch
from a seed (so the dataset itself takes no memory). ``--threads`` sets torch's
thread count in every process (on a CPU shared with other jobs, 1 thread gives
far steadier numbers: idle OpenMP threads otherwise wait on descheduled ones).
Prints:

1. profiling (batch 64, every conv and linear layer, mean aggregation, dense
   shards written) vs the bare forward pass over the same batches — target ≤ 1.3×;
   the SVD (computed once per model, whatever the data size) is timed apart;
2. inputs per second vs DeepDataProfiler 2.0.1's ``SVDProfiler.create_influential``,
   one image at a time (the peer environment of ``scripts/install-peers.sh``,
   run as a subprocess) — target ≥ 20×; and how far its signals are from ours;
3. peak resident memory profiling 1,000 vs 10,000 inputs, each in a fresh
   process — target: within 10 % of each other; and the store's bytes per
   (input, SVD neuron) — target ≤ 4 plus a small constant per input.

``--big resnet50,vgg16`` adds the full-size models of ``_models.py`` at
224×224 on ``--big-inputs`` random inputs (default 64): profile vs the bare
batched forward pass (target ≤ 1.3×) and bytes per (input, SVD neuron).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _models import resnet50, vgg16, vgg_small  # noqa: E402
from _data import Synthetic  # noqa: E402
from _timing import median_time, sync  # noqa: E402

from convsvd.decompose import decompose  # noqa: E402
from convsvd.signals import profile  # noqa: E402

BATCH = 64


# --------------------------------------------------------------------------- 1. vs the forward pass


def bench_forward(n: int, repeat: int, device: str, batch: int = BATCH) -> tuple[float, float]:
    model = vgg_small().to(device)
    data = Synthetic(n, 32)
    batches = [b for _, b in data.iter_batches(batch)]
    t0 = time.perf_counter()
    svd = decompose(model, mode="full", device=device)
    t_svd = time.perf_counter() - t0

    def forward() -> None:  # the same batches, moved to the device like profile does
        with torch.no_grad():
            for b in batches:
                model(b.inputs.to(device))
        sync(device)

    def run() -> None:
        with tempfile.TemporaryDirectory() as out:
            profile(model, data, batch_size=batch, svd=svd, out=out, progress=False)
        sync(device)

    forward(), run()  # warm-up
    t_fwd, t_prof = [], []
    for _ in range(repeat):  # interleaved, so that load from other processes hits both alike
        t_fwd.append(median_time(forward, 1, device))
        t_prof.append(median_time(run, 1, device))
    f, p = min(t_fwd), min(t_prof)
    print(f"1. {n} inputs, batch {batch}, 8 layers, mean aggregation (SVD of all layers, once per model: {t_svd:.2f} s)")
    print(f"   bare forward {f:7.3f} s | profile {p:7.3f} s | ratio {p / f:5.2f}x  (target ≤ 1.3x; min of {repeat}; "
          f"medians {statistics.median(t_fwd):.3f} / {statistics.median(t_prof):.3f} s)")
    return p, f


# --------------------------------------------------------------------------- 1b. full-size models at 224×224

BIG = {"resnet50": resnet50, "vgg16": vgg16}


def bench_big(name: str, n: int, batch: int, repeat: int, threads: int) -> None:
    """``name`` (random weights) on ``n`` random 3×224×224 inputs: profile vs the bare batched forward pass, and store size."""
    model = BIG[name]()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 224, 224, generator=g)
    labels = torch.arange(n) % 10
    t0 = time.perf_counter()
    svd = decompose(model, mode="full")
    t_svd = time.perf_counter() - t0

    def forward() -> None:
        with torch.no_grad():
            for i in range(0, n, batch):
                model(x[i:i + batch])

    sizes: list[int] = []

    def run() -> None:
        with tempfile.TemporaryDirectory() as out:
            table = profile(model, (x, labels), batch_size=batch, svd=svd, out=out, progress=False)
            sizes.append(sum(f.stat().st_size for f in table.files))
            neurons.append(int(sum(l["neurons"] for l in table.manifest["layers"])))

    neurons: list[int] = []
    t_fwd, t_prof = [], []
    for _ in range(repeat):  # interleaved, so that load from other processes hits both alike
        t_fwd.append(median_time(forward, 1, "cpu"))
        t_prof.append(median_time(run, 1, "cpu"))
    f, p = min(t_fwd), min(t_prof)
    per = sizes[-1] / (n * neurons[-1])
    print(f"1b. {name} at 224x224, {n} random inputs, batch {batch}, {neurons[-1]} SVD neurons in "
          f"{len(svd.layers)} layers (SVD once per model: {t_svd:.1f} s)")
    print(f"   bare forward {f:7.2f} s | profile {p:7.2f} s | ratio {p / f:5.2f}x  (target ≤ 1.3x; min of {repeat})")
    print(f"   store: {sizes[-1] / 2**20:.1f} MiB = {per:.3f} bytes per (input, SVD neuron)  (target ≤ 4 + a small "
          f"constant per input: {(sizes[-1] - 4 * n * neurons[-1]) / n:.0f} bytes per input beyond 4 per neuron)")


# --------------------------------------------------------------------------- 2. vs DeepDataProfiler

DDP_SCRIPT = textwrap.dedent('''
    import json, sys, time
    import torch

    sys.path.insert(0, sys.argv[1])
    from _timing import stub_modules
    stub_modules()  # deep_data_profiler imports torchvision and torch-lucent; SVDProfiler uses neither
    import deep_data_profiler as ddp
    from _models import vgg_small

    n, batch, device, threads = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    if threads:
        torch.set_num_threads(threads)
    model = vgg_small().to(device)
    prof = ddp.SVDProfiler(model, device=torch.device(device))
    model.to(device)  # its constructor moves the model to the CPU, whatever device it is given
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g)[:n].to(device)
    prof.create_influential(x[:1])  # warm-up
    t0 = time.perf_counter()
    for i in range(n):
        prof.create_influential(x[i:i + 1], threshold=0.1)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    exact = ddp.SVDProfiler(vgg_small().double())  # float64, to compare definitions, not rounding
    proj = exact.create_projections(x[:1].double().cpu())
    means = {k: (v.sum(1) / v.shape[1]).tolist() for k, v in proj.items()}
    names = {k: v[0][0] for k, v in exact.svd_dict.items()}
    print(json.dumps(dict(seconds=dt, images=n, means=means, names=names)))
''')


def bench_ddp(python: Path, n_images: int, ours_per_s: float, forward_per_s: float, device: str, threads: int) -> bool:
    """DeepDataProfiler one image at a time, run by ``python`` (an interpreter where it is installed); False if it failed."""
    if not python.exists():
        print(f"2. DeepDataProfiler: skipped ({python} not found; bash scripts/install-peers.sh DIR)")
        return False
    res = subprocess.run([str(python), "-c", DDP_SCRIPT, str(HERE), str(n_images), str(BATCH), device, str(threads)],
                         capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        print(f"2. DeepDataProfiler on {device}: failed "
              f"({res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode})")
        return False
    out = json.loads(res.stdout.strip().splitlines()[-1])
    ddp_per_s = out["images"] / out["seconds"]
    print(f"2. DeepDataProfiler SVDProfiler.create_influential on {device}, one image at a time ({out['images']} images)")
    print(f"   DDP {ddp_per_s:8.2f} inputs/s | convsvd {ours_per_s:8.2f} inputs/s | ratio {ours_per_s / ddp_per_s:6.1f}x  "
          f"(target ≥ 20x)")
    print(f"   (ceiling here: the bare batched forward pass alone runs {forward_per_s:.2f} inputs/s, "
          f"{forward_per_s / ddp_per_s:.1f}x DDP)")
    # same definition: compare the mean signals of the first image (SVD signs are a convention: compare |·|)
    from convsvd.signals import signals

    model = vgg_small().double()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 3, 32, 32, generator=g)[:1].double()
    ours = signals(model, x).values
    worst = 0.0
    for k, means in out["means"].items():
        name = out["names"][k]
        a = ours[name].reshape(-1).abs()
        b = torch.tensor(means).abs()
        worst = max(worst, float((a - b).abs().max() / b.abs().max()))
    print(f"   same signals as DDP (layer output − bias, projected on U, mean over locations; float64): "
          f"max |Δ| / max |signal| = {worst:.1e} over {len(out['means'])} layers")
    return True


# --------------------------------------------------------------------------- 3. memory


def memory_child(n: int) -> None:
    model = vgg_small()  # CPU: peak resident memory is what is compared
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        table = profile(model, Synthetic(n, 32), batch_size=BATCH, out=out, progress=False)
        dt = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in table.files)
        neurons = int(sum(l["neurons"] for l in table.manifest["layers"]))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(n=n, peak_mib=peak_mib, seconds=dt, store_mib=size / 2**20,
                          bytes_per=size / (table.n_inputs * neurons))))


def bench_memory(sizes: list[int], threads: int) -> None:
    results = []
    for n in sizes:
        res = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--threads", str(threads)],
                             capture_output=True, text=True, timeout=3600, env={**os.environ})
        if res.returncode != 0:
            print(f"3. memory for {n} inputs: failed\n{res.stderr[-2000:]}")
            return
        results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print("3. peak resident memory (fresh process each; includes torch itself)")
    for r in results:
        print(f"   {r['n']:6d} inputs: peak {r['peak_mib']:7.1f} MiB | {r['seconds']:6.1f} s | "
              f"store written {r['store_mib']:6.1f} MiB = {r['bytes_per']:.3f} bytes per (input, SVD neuron)")
    if len(results) >= 2:
        a, b = results[0]["peak_mib"], results[-1]["peak_mib"]
        print(f"   ratio {results[-1]['n']} / {results[0]['n']} inputs: {b / a:5.3f}  (target within 10 %: ≤ 1.10)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=512, help="inputs for the speed comparison (default 512)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in every process (default: torch's own)")
    ap.add_argument("--device", default="cpu", help="where convsvd and DeepDataProfiler run (default cpu)")
    ap.add_argument("--ddp-images", type=int, default=24, help="images DeepDataProfiler profiles (default 24)")
    ap.add_argument("--peers", type=Path, default=HERE.parent / ".peers-venv")
    ap.add_argument("--memory", default="1000,10000", help="dataset sizes for the memory comparison ('' to skip)")
    ap.add_argument("--skip-ddp", action="store_true")
    ap.add_argument("--big", default="", help="full-size models at 224x224, e.g. 'resnet50,vgg16' (default: none)")
    ap.add_argument("--big-inputs", type=int, default=64, help="random inputs for --big (default 64)")
    ap.add_argument("--big-batch", type=int, default=32, help="batch size for --big (default 32)")
    ap.add_argument("--skip-small", action="store_true", help="skip vgg_small (section 1 and 2)")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; vgg_small, float32")
    for name in [b for b in args.big.split(",") if b]:
        bench_big(name, args.big_inputs, args.big_batch, max(1, min(args.repeat, 2)), args.threads)
    if not args.skip_small:
        t_prof, t_fwd = bench_forward(args.inputs, args.repeat, args.device)
    if not args.skip_small and not args.skip_ddp:
        bench_ddp(args.peers / "bin" / "python", args.ddp_images, args.inputs / t_prof, args.inputs / t_fwd, args.device, args.threads)
    if args.memory:
        bench_memory([int(s) for s in args.memory.split(",") if s], args.threads)


if __name__ == "__main__":
    main()
