"""The checks that need a GPU, in one run: the CUDA path against the CPU, then timings on CUDA.

On a machine with a GPU (its image has torch, numpy, pandas, pyarrow, scipy, safetensors,
onnx, rich, matplotlib, scikit-learn and xxhash; convsvd itself runs from ``src``)::

    PYTHONPATH=src PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py 2>&1 | tee $OUT/gpu-check.log

To compare with DeepDataProfiler and WeightWatcher there too, make their wheels here first
(``bash scripts/gpu-peer-wheels.sh``, about 1.3 MB in ``.whl``), carry ``.whl``, and start
the command with ``python3 -m pip install -q --no-index --no-deps --target /tmp/site
.whl/*.whl && export PYTHONPATH=src:/tmp/site &&``.

It takes about 4 minutes on an H100 (the CPU references included); ``--steps`` runs some
of the steps only. ``--device cpu --quick`` runs every step on the CPU against itself, to
check the script here.

1. **CUDA = CPU** (each line ends in PASS or FAIL): ``decompose`` full / values (Gram
   and float32-Gram routes) of the digits CNNs and of a grouped / depthwise /
   transposed conv model; ``spectrum`` in the three views and with the MP fit and the
   randomised baseline; ``profile`` signals of the digits test split.
2. **Timings on CUDA** (median of ``--repeat``, after a warm-up) for the VGG-16- and
   ResNet-50-shaped models of ``benchmarks/_models.py``: the full spectral analysis
   (targets on an H100, issue 3: VGG-16 ≤ 0.5 s, ResNet-50 ≤ 0.3 s), with float64,
   with MP fits + randomised baseline; values-only and full ``decompose``; and the
   floor the targets were set from, every layer's Gram matrix + float64 ``eigvalsh``
   in a plain loop.
3. **Profiling on CUDA**: ``benchmarks/profile_signals.py``'s forward-vs-profile
   comparison (``--profile-inputs``, batch 64 and 512), and DeepDataProfiler one image
   at a time when ``deep_data_profiler`` imports in this interpreter (carry its wheels;
   issue 4's target is ≥ 20×). Its ``SVDProfiler`` fails on CUDA, so its CPU path on
   the machine's cores is timed then, and said so.
4. **WeightWatcher on the same machine**, when ``weightwatcher`` imports here (its wheels
   come with the ones above): ``analyze()`` and ``analyze(randomize=True, mp_fit=True)``
   on each model, once, in a subprocess (``benchmarks/_spectrum_peers.py``; WeightWatcher
   moves its matrices to CUDA by itself), with the ratios to convsvd's CUDA timings of
   step 2. ``--peer-budget`` seconds bound this step: a run that would start after it is
   skipped and said so.
5. **At scale** (``benchmarks/scale.py``'s steps on this device): the VGG-16-shaped model
   (``--scale-models``) on ``--n`` synthetic 224×224 images (default 50,000, streamed batch
   by batch, batch ``--scale-batch``): bare forward pass, ``profile`` (signal store bytes
   per input and SVD neuron), ``separation``, ``featureviz``, the operator view of every
   conv layer at its own size, with peak memory and the ratios against the targets.
   ``--device cpu --n 16 --steps 5`` checks it here.
6. **Attribution profiles** (issue 18): the device's profiles equal the CPU's (float64 digits
   ResNet, every neuron type, convsvd's and DeepDataProfiler's definitions), then
   ``benchmarks/profiles.py`` on the device (``--profiles-inputs``) at batch 64 and 512, against
   DeepDataProfiler one image at a time on the device when it imports here (target ≥ 50× on a
   GPU). Start it with ``NVIDIA_TF32_OVERRIDE=0`` for identical sets: by default both tools'
   float32 convolutions run in TF32 on the GPU (cuDNN's choice, which depends on the batch),
   and a near-tie may then fall the other way.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _models import MODELS  # noqa: E402
from _timing import median_time  # noqa: E402

from convsvd import zoo  # noqa: E402
from convsvd.data import load_digits  # noqa: E402
from convsvd.decompose import decompose  # noqa: E402
from convsvd.io import from_module  # noqa: E402
from convsvd.layers import unfolded  # noqa: E402
from convsvd.signals import profile  # noqa: E402
from convsvd.spectral import spectrum  # noqa: E402

FAILED: list[str] = []


def check(what: str, worst: float, tol: float) -> None:
    ok = bool(worst <= tol)
    if not ok:
        FAILED.append(what)
    print(f"   {what:62s} worst {worst:9.2e}  (≤ {tol:.0e})  {'PASS' if ok else 'FAIL'}", flush=True)


def _conv_zoo() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1), nn.Conv2d(12, 24, 3, groups=3), nn.Conv2d(24, 24, 3, groups=24),
        nn.ConvTranspose2d(24, 8, 4, stride=2), nn.Conv1d(8, 16, 5), nn.Conv3d(2, 6, 3), nn.Linear(40, 7),
    )


# --------------------------------------------------------------------------- 1. CUDA = CPU


def _rel_sv(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def check_decompose(device: str, models: dict[str, nn.Module]) -> None:
    print("1a. decompose on the device vs on the CPU")
    for name, model in models.items():
        cpu = decompose(model, mode="full", dtype="float64", device="cpu")
        dev = decompose(model, mode="full", dtype="float64", device=device)
        check(f"{name}: full float64, singular values", max(_rel_sv(dev[n].S, cpu[n].S) for n in cpu), 1e-10)
        worst_u = 0.0
        for n in cpu:  # same sign convention; compare vectors of well-separated values only
            S = cpu[n].S.double()
            gap = torch.ones_like(S, dtype=torch.bool)
            gap[..., 1:] &= (S[..., :-1] - S[..., 1:]) > 1e-6 * S[..., :1]
            gap[..., :-1] &= (S[..., :-1] - S[..., 1:]) > 1e-6 * S[..., :1]
            du = (dev[n].U.double().cpu() - cpu[n].U.double()).abs().amax(dim=-2)
            worst_u = max(worst_u, float(du[gap].max()) if gap.any() else 0.0)
        check(f"{name}: full float64, left vectors (separated values)", worst_u, 1e-6)
        for method, tol in (("gram", 1e-5), ("gram32", 1e-4)):
            cpu_v = decompose(model, mode="values", method=method, device="cpu")
            dev_v = decompose(model, mode="values", method=method, device=device)
            check(f"{name}: values, method {method}", max(_rel_sv(dev_v[n].S, cpu_v[n].S) for n in cpu_v), tol)


def check_spectrum(device: str) -> None:
    print("1b. spectrum on the device vs on the CPU (float64)")
    model = zoo.load("digits-cnn")
    for view in ("unfold", "slices", "operator"):
        cpu = spectrum(model, view=view, dtype="float64", device="cpu", mp=True, progress=False)
        dev = spectrum(model, view=view, dtype="float64", device=device, mp=True, progress=False)
        worst = 0.0
        for a, b in zip(dev.layers, cpu.layers):
            assert a.name == b.name and a.status == b.status, (a.name, a.status, b.status)
            worst = max(worst, float(np.max(np.abs(a.evals - b.evals))) / max(float(b.evals.max()), 1e-300))
            if b.ok:
                worst = max(worst, abs(a.alpha - b.alpha), abs(a.fit.D - b.fit.D))
        check(f"digits-cnn, view {view}: eigenvalues, α and D", worst, 1e-6)
    cpu = spectrum(model, random_baseline=True, device="cpu", progress=False)
    dev = spectrum(model, random_baseline=True, device=device, progress=False)
    worst = max(abs(a.random.lambda_max - b.random.lambda_max) / b.random.lambda_max
                for a, b in zip(dev.layers, cpu.layers) if b.ok)
    check("digits-cnn, randomised baseline (float32): shuffled λmax", worst, 1e-4)


def check_profile(device: str, quick: bool) -> None:
    print("1c. profile signals on the device vs on the CPU")
    model = zoo.load("digits-cnn")
    d = load_digits("test")
    n = 128 if quick else len(d)
    data = (d.images[:n], d.labels[:n], d.ids[:n])
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        cpu = profile(model, data, out=a, device="cpu", progress=False).to_frame()
        dev = profile(model, data, out=b, device=device, progress=False).to_frame()
    key = ["id", "layer", "group", "neuron"]
    cpu, dev = cpu.sort_values(key).reset_index(drop=True), dev.sort_values(key).reset_index(drop=True)
    scale = cpu.groupby("layer")["signal"].transform(lambda s: s.abs().max())
    check("digits-cnn on the digits test split: signals / per-layer max", float(((dev.signal - cpu.signal).abs() / scale).max()), 1e-4)
    agree = float((dev.influential == cpu.influential).mean())
    check("influential flags: share that differs", 1 - agree, 1e-3)


# --------------------------------------------------------------------------- 2. timings


def eig_floor(model: nn.Module, device: str) -> None:
    mats = [A.to(device) for spec in from_module(model).layers for A in unfolded(spec, torch.float64)]
    for A in mats:
        G = A @ A.mT if A.shape[-2] <= A.shape[-1] else A.mT @ A
        torch.linalg.eigvalsh(G)


def timings(device: str, repeat: int, models: list[str]) -> dict[tuple[str, str], float]:
    print(f"2. timings on {device} (median of {repeat} after a warm-up)")
    out: dict[tuple[str, str], float] = {}
    targets = {"vgg16": 0.5, "resnet50": 0.3}
    for name in models:
        model = MODELS[name]()
        mw = from_module(model, source=name)
        rows = [
            ("spectrum, full analysis", lambda: spectrum(mw, device=device, progress=False)),
            ("spectrum, dtype float64", lambda: spectrum(mw, dtype="float64", device=device, progress=False)),
            ("spectrum, MP + randomised baseline",
             lambda: spectrum(mw, mp=True, random_baseline=True, device=device, progress=False)),
            ("decompose, values only", lambda: decompose(mw, mode="values", device=device, progress=False)),
            ("decompose, full SVD", lambda: decompose(mw, mode="full", device=device, progress=False)),
            ("floor: Gram + float64 eigvalsh, plain loop", lambda: eig_floor(model, device)),
        ]
        print(f"   == {name}")
        for what, fn in rows:
            fn()  # warm-up
            t = out[name, what] = median_time(fn, repeat, device)
            note = f"  (target on an H100 ≤ {targets[name]} s)" if what == "spectrum, full analysis" else ""
            print(f"      {what:44s} {t:8.3f} s{note}", flush=True)
    return out


def profiling(device: str, repeat: int, n: int) -> None:
    import profile_signals

    print(f"3. profiling on {device}")
    t_prof, t_fwd = profile_signals.bench_forward(n, repeat, device)
    if device != "cpu":  # the per-batch work on the host weighs less with larger batches
        profile_signals.bench_forward(n, repeat, device, batch=512)
    if importlib.util.find_spec("deep_data_profiler") is None:
        print("   DeepDataProfiler: not importable here (carry its wheels to compare; issue 4)")
        return
    if not profile_signals.bench_ddp(Path(sys.executable), 64, n / t_prof, n / t_fwd, device, 0) and device != "cpu":
        print("   DeepDataProfiler's SVDProfiler fails on CUDA (it turns CUDA tensors into numpy arrays); "
              "its CPU path on this machine's cores instead:")
        profile_signals.bench_ddp(Path(sys.executable), 64, n / t_prof, n / t_fwd, "cpu", 0)


def weightwatcher(ours: dict[tuple[str, str], float], models: list[str], budget: float) -> None:
    from spectrum import _peer

    print("4. WeightWatcher 0.7.7 on this machine (it uses CUDA by itself), one run each after a warm-up")
    if importlib.util.find_spec("weightwatcher") is None:
        print("   not importable here (carry its wheels: bash scripts/gpu-peer-wheels.sh)")
        return
    start = time.perf_counter()
    for tool, what, label in (("ww", "spectrum, full analysis", "analyze()"),
                              ("ww_rand", "spectrum, MP + randomised baseline", "analyze(randomize=True, mp_fit=True)")):
        for name in models:
            left = budget - (time.perf_counter() - start)
            if left < 10:
                print(f"   {name}: WeightWatcher {label} skipped (--peer-budget {budget:.0f} s spent)")
                continue
            try:
                t = _peer(sys.executable, name, tool, 1, left)["times"][0]
            except Exception as err:  # a timeout or a failure of the peer is reported, not fatal
                print(f"   {name}: WeightWatcher {label} did not finish: {str(err).splitlines()[0]}")
                continue
            mine = ours.get((name, what))
            ratio = f"ratio {t / mine:7.1f}x  (convsvd {what}: {mine:.3f} s)" if mine else ""
            print(f"   {name}: WeightWatcher {label:38s} {t:8.2f} s   {ratio}", flush=True)


def attribution_profiles(device: str, quick: bool, n: int) -> None:
    import profiles as bench  # benchmarks/profiles.py, beside this file

    from convsvd.profiles import Profiler

    print(f"6. attribution profiles on {device}")
    model = zoo.load("digits-resnet").double().eval()
    d = load_digits("test")
    x = torch.as_tensor(d.images[:32 if quick else 128]).double()
    x = x.reshape(len(x), 1, 8, 8) if x.dim() == 3 else x
    on_dev = zoo.load("digits-resnet").double().eval().to(device)
    for ntype, start, rule in [("channel", "class", "share"), ("element", "class", "share"),
                               ("spatial", "class", "share"), ("svd", "class", "share"),
                               ("channel", "class", "ddp"), ("channel", "layers", "ddp")]:
        cpu = Profiler(model, x[:1], neuron_type=ntype, start=start, rule=rule).run(x).profile()
        dev = Profiler(on_dev, x[:1].to(device), neuron_type=ntype, start=start, rule=rule).run(x.to(device)).profile()
        check(f"digits-resnet float64, {ntype} neurons, start={start}, rule={rule}: profiles differ",
              0.0 if dev.allclose(cpu, rtol=1e-9, atol=1e-12) else 1.0, 0.0)
    here = importlib.util.find_spec("deep_data_profiler") is not None
    # batch 64 as on the CPU, then 512: a GPU is used as it is meant to be (larger batches), still a
    # small share of its memory; DDP's images are the same in both runs
    for bs in ([64] if quick or device == "cpu" else [64, 512]):
        argv = ["--device", device, "--inputs", str(256 if quick else max(n, 8 * bs)), "--threads", "0",
                "--batch-size", str(bs)]
        bench.main(argv + (["--peers", "self", "--ddp-images", "16" if quick else "64"] if here else ["--skip-ddp"]))
    if not here:
        print("   DeepDataProfiler: not importable here (carry its wheels to compare)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", default="vgg16,resnet50")
    ap.add_argument("--steps", default="1,2,3,4,5,6", help="which of the steps 1–6 to run")
    ap.add_argument("--profiles-inputs", type=int, default=1000, help="inputs of step 6's benchmark")
    ap.add_argument("--profile-inputs", type=int, default=4096, help="inputs profiled in step 3")
    ap.add_argument("--peer-models", help="models of step 4 (default: --models)")
    ap.add_argument("--peer-budget", type=float, default=180.0, help="seconds for step 4 (WeightWatcher)")
    ap.add_argument("--quick", action="store_true", help="small checks only and no VGG-16 (a dry run of the script)")
    ap.add_argument("--n", type=int, default=50000, help="synthetic 224×224 images of step 5 (default 50000)")
    ap.add_argument("--scale-models", default="vgg16", help="models of step 5 (default vgg16)")
    ap.add_argument("--scale-batch", type=int, default=256, help="batch size of step 5 (default 256)")
    ap.add_argument("--scale-steps", default="forward,profile,separation,featureviz,operator",
                    help="benchmarks/scale.py steps of step 5")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here (use --device cpu --quick for a dry run)")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"torch {torch.__version__}, device {args.device} ({name}), {torch.get_num_threads()} CPU threads")
    steps = {int(s) for s in args.steps.split(",")}
    repeat = 1 if args.quick else args.repeat
    if 1 in steps:
        small = {"digits-cnn": zoo.load("digits-cnn"), "digits-resnet": zoo.load("digits-resnet"), "conv grid": _conv_zoo()}
        check_decompose(args.device, small)
        check_spectrum(args.device)
        check_profile(args.device, args.quick)
    models = ["resnet50"] if args.quick else args.models.split(",")
    ours = timings(args.device, repeat, models) if 2 in steps else {}
    if 3 in steps:
        profiling(args.device, repeat, 512 if args.quick else args.profile_inputs)
    if 4 in steps:
        weightwatcher(ours, args.peer_models.split(",") if args.peer_models else models, args.peer_budget)
    if 5 in steps:
        import scale  # benchmarks/scale.py, beside this file

        print(f"\n5. at scale: benchmarks/scale.py on {args.device}, {args.n} images", flush=True)
        scale.main(["--device", args.device, "--n", str(args.n), "--models", args.scale_models,
                    "--batch-size", str(min(args.scale_batch, args.n)), "--steps", args.scale_steps])
    if 6 in steps:
        attribution_profiles(args.device, args.quick, args.profiles_inputs)
    print(f"\n{len(FAILED)} check(s) failed" + (": " + "; ".join(FAILED) if FAILED else ""))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
