"""Channel attribution profiles of ``vgg_small``: convsvd vs DeepDataProfiler 2.0.1, agreement and speed, same run.

    .venv/bin/python benchmarks/profiles.py [--inputs 1000] [--ddp-images 50] [--threshold 0.1] [--threads 1]
                                            [--batch-size 64] [--peers .peers-venv] [--skip-ddp]

Model: ``vgg_small()`` (6 conv + 2 linear layers, 32×32×3 inputs, random weights, seed 0), float32, CPU.
Data: synthetic 32×32 images, batch ``b`` of 64 drawn from seed ``b`` (the same inputs on both sides).

1. DeepDataProfiler's definitions in convsvd (``start="layers", rule="ddp"``: each layer's influential
   channels from its activations, their contributing channels in the layer below) on ``--inputs`` inputs,
   batched; and convsvd's own profiles (``start="class"``, share rule) for reference.
2. DeepDataProfiler ``ChannelProfiler.create_profile``, one image at a time, on the first ``--ddp-images``
   inputs (the peer environment of ``shared/peers/install-peers.sh``, run as a subprocess). Its profiler
   fails on this model's last pooling layer (a ``Flatten`` after ``MaxPool2d``: it compares the pooled
   ``(1, C, 4, 4)`` output with the flattened ``(1, C·16)`` one), so it profiles its layers 1–8 (the six
   conv and the first two pooling layers); the failure is printed.
3. Agreement on those inputs and layers: influential channels of layers 1–8, synapses of layers 1–8,
   neuron counts of layers 0–7 (layer 8's counts also hold the contributions to layer 9, which the
   reference does not profile), and the largest weight difference. Every disagreement is listed.
4. Inputs per second of both, and the ratio (target ≥ 10×), beside the ratio of the bare batched
   forward pass (no profiler that runs the model can beat it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _models import vgg_small  # noqa: E402

from convsvd.profiles import Profiler  # noqa: E402

BATCH = 64

DDP_SCRIPT = textwrap.dedent('''
    import importlib.abc, importlib.machinery, json, sys, time, types
    import torch

    class _Any:
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {})
        def __call__(self, *a, **k):
            return None

    class _Placeholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """deep_data_profiler imports torchvision and torch-lucent at import time; ChannelProfiler uses neither."""
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torchvision", "lucent"):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None
        def create_module(self, spec):
            m = types.ModuleType(spec.name)
            m.__path__ = []
            def attr(name):
                if name.startswith("__"):
                    raise AttributeError(name)
                return _Any()
            m.__getattr__ = attr
            return m
        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, _Placeholders())
    sys.path.insert(0, sys.argv[1])
    import deep_data_profiler as ddp
    from _models import vgg_small

    n, threshold, threads, out = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    if threads:
        torch.set_num_threads(threads)
    model = vgg_small()
    prof = ddp.ChannelProfiler(model)
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))[:n]
    failure = ""
    try:
        prof.create_profile(x[:1], threshold=threshold)
    except Exception as e:
        failure = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    span = (1, 9)
    prof.create_profile(x[:1], layers_to_profile=span, threshold=threshold)  # warm-up
    results = []
    t0 = time.perf_counter()
    for i in range(n):
        results.append(prof.create_profile(x[i:i + 1], layers_to_profile=span, threshold=threshold))
    dt = time.perf_counter() - t0
    heads = {k: v[0][0] for k, v in prof.layerdict.items()}
    def coo(m):
        m = m.tocoo()
        return [m.row.tolist(), m.col.tolist(), m.data.tolist()]
    per = [dict(nc={k: coo(v) for k, v in p.neuron_counts.items()},
                nw={k: coo(v) for k, v in p.neuron_weights.items()},
                sw={k: coo(v) for k, v in p.synapse_weights.items()},
                sc={k: coo(v) for k, v in p.synapse_counts.items()}) for p in results]
    json.dump(dict(seconds=dt, images=n, failure=failure, heads=heads, span=list(span), profiles=per), open(out, "w"))
''')


def batches(n: int) -> list[torch.Tensor]:
    out = []
    for b in range(-(-n // BATCH)):
        g = torch.Generator().manual_seed(b)
        x = torch.rand(BATCH, 3, 32, 32, generator=g)
        out.append(x[: min(BATCH, n - b * BATCH)])
    return out


def run_ours(n: int, threshold: float, batch_size: int, **kw: object) -> tuple[float, object]:
    model = vgg_small()
    xs = torch.cat(batches(n))
    prof = Profiler(model, xs[:1], threshold=threshold, **kw)  # type: ignore[arg-type]
    prof.run(xs[:2])  # warm-up
    t0 = time.perf_counter()
    parts = [prof.run(xs[i:i + batch_size]) for i in range(0, n, batch_size)]
    dt = time.perf_counter() - t0
    from convsvd.profiles import InputProfiles

    return dt, InputProfiles.concat(parts)


def compare(ours, ref: dict, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Agreement of sets; returns the lines to print."""
    heads = {int(k): v for k, v in ref["heads"].items()}
    names = [l.name for l in ours.layers]
    name_of = {k: ("x_in" if k == 0 else heads[k]) for k in heads}
    lo, hi = ref["span"]
    stats = dict(influential=[0, 0], synapses=[0, 0], counts=[0, 0])
    max_nw = max_sw = 0.0
    issues: list[str] = []
    for i in range(n):
        p = ref["profiles"][i]
        for k in range(lo, hi):
            name = name_of[k]
            # influential channels and their weights
            r, c, d = p["nw"][str(k)]
            want = dict(zip(c, d))
            row = ours.neuron_weights[name][i].tocoo()
            got = dict(zip(row.col.tolist(), row.data.tolist()))
            same = set(want) == set(got)
            stats["influential"][0] += same
            stats["influential"][1] += 1
            if not same:
                issues.append(f"input {i} layer {k} ({name}) influential: reference only {sorted(set(want) - set(got))}, "
                              f"convsvd only {sorted(set(got) - set(want))}")
            else:
                max_nw = max([max_nw] + [abs(want[j] - got[j]) for j in want])
            # synapses (reference: rows = output channel, columns = input channel)
            r, c, d = p["sw"][str(k)]
            want_s = {(a, b): w for a, b, w in zip(r, c, d)}
            L = ours.layers[names.index(name)]
            width = ours.synapse_counts[name].shape[1] // L.neurons
            srow = ours.synapse_weights[name][i].tocoo()
            got_s = {(col // width, col % width): w for col, w in zip(srow.col.tolist(), srow.data.tolist())}
            same = set(want_s) == set(got_s)
            stats["synapses"][0] += same
            stats["synapses"][1] += 1
            if not same:
                issues.append(f"input {i} layer {k} ({name}) synapses: reference only {sorted(set(want_s) - set(got_s))[:6]}, "
                              f"convsvd only {sorted(set(got_s) - set(want_s))[:6]}")
            else:
                max_sw = max([max_sw] + [abs(want_s[s] - got_s[s]) for s in want_s])
        for k in range(0, hi - 1):
            name = name_of[k]
            r, c, d = p["nc"][str(k)]
            want = dict(zip(c, d))
            row = ours.neuron_counts[name][i].tocoo()
            got = dict(zip(row.col.tolist(), row.data.tolist()))
            same = want == got
            stats["counts"][0] += same
            stats["counts"][1] += 1
            if not same:
                diff = {j: (want.get(j), got.get(j)) for j in set(want) | set(got) if want.get(j) != got.get(j)}
                issues.append(f"input {i} layer {k} ({name}) counts (reference, convsvd): {dict(sorted(diff.items())[:6])}")
    lines = [f"   {what:12s} identical in {a}/{b} (input, layer) pairs" for what, (a, b) in stats.items()]
    lines.append(f"   largest weight difference where the sets agree: influential {max_nw:.2e}, synapses {max_sw:.2e}")
    if issues:
        lines.append(f"   {len(issues)} disagreements:")
        lines += ["     " + s for s in issues[:40]]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--ddp-images", type=int, default=50)
    ap.add_argument("--threshold", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=BATCH)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in both processes (0: torch's default)")
    ap.add_argument("--peers", default=".peers-venv", help="the peer environment (DeepDataProfiler)")
    ap.add_argument("--skip-ddp", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.inputs
    t_ddpdef, ours = run_ours(n, args.threshold, args.batch_size, start="layers", rule="ddp")
    t_own, _ = run_ours(n, args.threshold, args.batch_size)
    model, xs = vgg_small(), torch.cat(batches(n))
    with torch.no_grad():
        model(xs[:2])
        t0 = time.perf_counter()
        for i in range(0, n, args.batch_size):
            model(xs[i:i + args.batch_size])
        t_fwd = time.perf_counter() - t0
    print(f"1. convsvd, vgg_small, {n} inputs, batch {args.batch_size}, threshold {args.threshold}, "
          f"{args.threads or torch.get_num_threads()} thread(s)")
    print(f"   DeepDataProfiler's definitions (start='layers', rule='ddp'): {t_ddpdef:7.2f} s = {n / t_ddpdef:8.1f} inputs/s")
    print(f"   convsvd's profiles (start='class', share rule):              {t_own:7.2f} s = {n / t_own:8.1f} inputs/s")
    print(f"   the bare batched forward pass alone (the floor):             {t_fwd:7.2f} s = {n / t_fwd:8.1f} inputs/s")
    if args.skip_ddp:
        return
    python = Path(args.peers) / "bin" / "python"
    if not python.exists():
        print(f"2. DeepDataProfiler: skipped ({python} not found; bash shared/peers/install-peers.sh DIR)")
        return
    m = min(args.ddp_images, n, BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp.json"
        res = subprocess.run([str(python), "-c", DDP_SCRIPT, str(HERE), str(m), str(args.threshold), str(args.threads),
                              str(out)], capture_output=True, text=True, timeout=3600)
        if res.returncode != 0:
            print(f"2. DeepDataProfiler failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
            return
        ref = json.loads(out.read_text())
    rate = ref["images"] / ref["seconds"]
    print(f"2. DeepDataProfiler 2.0.1 ChannelProfiler.create_profile, one image at a time, {m} images")
    if ref["failure"]:
        print(f"   on the whole model it fails: {ref['failure']}; profiled layers {ref['span'][0]}–{ref['span'][1] - 1}")
    print(f"   {rate:8.2f} inputs/s")
    print(f"3. agreement on the first {m} inputs (DeepDataProfiler's definitions in convsvd vs DeepDataProfiler):")
    for line in compare(ours, ref, m):
        print(line)
    ratio = (n / t_ddpdef) / rate
    print(f"4. speed: convsvd {n / t_ddpdef:.1f} inputs/s (all 11 layers) vs DeepDataProfiler {rate:.2f} inputs/s "
          f"(layers 1–8): {ratio:.1f}x (target ≥ 10x); convsvd's own profiles: {(n / t_own) / rate:.1f}x; "
          f"the bare batched forward pass: {(n / t_fwd) / rate:.1f}x")


if __name__ == "__main__":
    main()
