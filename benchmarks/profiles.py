"""Channel attribution profiles of ``vgg_small``: convsvd vs DeepDataProfiler 2.0.1, agreement and speed, same run.

    .venv/bin/python benchmarks/profiles.py [--inputs 1000] [--ddp-images 64] [--threshold 0.1] [--threads 0]
                                            [--batch-size 64] [--peers .peers-venv] [--skip-ddp] [--device cuda]

Model: ``vgg_small()`` (6 conv + 2 linear layers, 32×32×3 inputs, random weights, seed 0), float32, on
``--device`` (default cpu; with ``cuda`` every contender, DeepDataProfiler included, runs on the GPU, and
every timer waits for the GPU to finish first).
Data: synthetic 32×32 images, batch ``b`` of 64 drawn from seed ``b`` (the same inputs on both sides).
Both processes run with ``--threads`` torch threads (default 0: torch's default, every core, as both
tools run out of the box; ``--threads 1`` gives the steadiest numbers on a CPU shared with other jobs).

The contenders are timed in rounds, back to back, so that load from other processes falls on all of
them alike: each round takes one batch of ``--batch-size`` inputs and times

- convsvd with DeepDataProfiler's definitions (``start="layers", rule="ddp"``: each layer's influential
  channels from its activations, their contributing channels in the layer below), batched, on the layers
  the reference profiles (``layers=``: graph layers 1–8, as its ``layers_to_profile=(1, 9)``) and on all
  11 layers;
- convsvd's own profiles (``start="class"``, share rule), batched;
- the bare batched forward pass of the model as it is (contiguous inputs), and with channels-last
  inputs (how convsvd's profiler runs a float32 CNN on the CPU); and the forward pass at batch 1 on
  DeepDataProfiler's images of the round (it runs it twice per image);
- DeepDataProfiler's ``ChannelProfiler.create_profile``, one image at a time, on its share of the first
  ``--ddp-images`` inputs (the peer environment of ``scripts/install-peers.sh``, a worker process
  that profiles the images it is asked for). Its profiler fails on this model's last pooling layer (a
  ``Flatten`` after ``MaxPool2d``: it compares the pooled ``(1, C, 4, 4)`` output with the flattened
  ``(1, C·16)`` one), so it profiles its layers 1–8 (the six conv and the first two pooling layers);
  the failure is printed.

Then: agreement on those inputs and layers (convsvd on layers 1–8: influential channels and synapses of
layers 1–8, neuron counts of layers 0–8, and the largest weight difference; every disagreement is
listed), and inputs per second of every contender with its ratio to DeepDataProfiler (target ≥ 10×, for
the like-for-like contender: the same definitions on the same layers).
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
    import json, sys, time
    import torch

    sys.path.insert(0, sys.argv[1])
    from _timing import stub_modules
    stub_modules()  # deep_data_profiler imports torchvision and torch-lucent; ChannelProfiler uses neither
    import deep_data_profiler as ddp
    from _models import vgg_small

    n, threshold, threads, out, device = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
    if threads:
        torch.set_num_threads(threads)
    model = vgg_small().to(device)
    prof = ddp.ChannelProfiler(model, device=device)
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))[:n].to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    failure = ""
    try:
        prof.create_profile(x[:1], threshold=threshold)
    except Exception as e:
        failure = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    span = (1, 9)
    prof.create_profile(x[:1], layers_to_profile=span, threshold=threshold)  # warm-up
    print(json.dumps(dict(threads=torch.get_num_threads())), flush=True)
    results = []
    for line in sys.stdin:  # "i j": profile images i..j-1 and answer the seconds it took (interleaved with the parent)
        if line.strip() == "end":
            break
        i, j = map(int, line.split())
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for k in range(i, j):
            results.append(prof.create_profile(x[k:k + 1], layers_to_profile=span, threshold=threshold))
        sync()
        print(json.dumps(dict(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0)), flush=True)
    heads = {k: v[0][0] for k, v in prof.layerdict.items()}
    def coo(m):
        m = m.tocoo()
        return [m.row.tolist(), m.col.tolist(), m.data.tolist()]
    per = [dict(nc={k: coo(v) for k, v in p.neuron_counts.items()},
                nw={k: coo(v) for k, v in p.neuron_weights.items()},
                sw={k: coo(v) for k, v in p.synapse_weights.items()},
                sc={k: coo(v) for k, v in p.synapse_counts.items()}) for p in results]
    json.dump(dict(failure=failure, heads=heads, span=list(span), profiles=per), open(out, "w"))
''')


class DDPWorker:
    """DeepDataProfiler in the peers' interpreter, profiling the images it is asked for, when it is asked."""

    def __init__(self, python: Path, m: int, threshold: float, threads: int, out: Path, device: str = "cpu") -> None:
        self.out, self.err = out, out.with_suffix(".err")
        self.proc = subprocess.Popen([str(python), "-c", DDP_SCRIPT, str(HERE), str(m), str(threshold), str(threads),
                                      str(out), device], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err.open("w"), text=True)
        self.threads = int(self._answer()["threads"])

    def _answer(self) -> dict:  # type: ignore[type-arg]
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            err = self.err.read_text().strip()
            raise RuntimeError(err.splitlines()[-1] if err else f"exit {self.proc.wait()}")
        return json.loads(line)

    def profile(self, i: int, j: int) -> tuple[float, float]:
        """Seconds DeepDataProfiler took for images ``i..j-1``, one at a time: wall time, CPU time."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{i} {j}\n")
        self.proc.stdin.flush()
        a = self._answer()
        return float(a["seconds"]), float(a["cpu"])

    def finish(self) -> dict:  # type: ignore[type-arg]
        assert self.proc.stdin is not None
        self.proc.stdin.write("end\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=600)
        return json.loads(self.out.read_text())


def batches(n: int) -> list[torch.Tensor]:
    out = []
    for b in range(-(-n // BATCH)):
        g = torch.Generator().manual_seed(b)
        x = torch.rand(BATCH, 3, 32, 32, generator=g)
        out.append(x[: min(BATCH, n - b * BATCH)])
    return out


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
        for k in range(0, hi):
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--ddp-images", type=int, default=64)
    ap.add_argument("--threshold", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=BATCH)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in both processes (default 0: torch's default)")
    ap.add_argument("--peers", default=".peers-venv",
                    help="the peer environment (DeepDataProfiler); 'self': this interpreter has it")
    ap.add_argument("--skip-ddp", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, bs, t = args.inputs, args.batch_size, args.threshold
    dev = torch.device(args.device)
    model = vgg_small().to(dev)
    xs = torch.cat(batches(n)).to(dev)
    cuda = dev.type == "cuda"

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    span = [l.name for l in Profiler(model, xs[:1]).graph.layers[1:9]]  # the reference's layers_to_profile=(1, 9)
    ddp_def = Profiler(model, xs[:1], threshold=t, start="layers", rule="ddp", layers=span)
    ddp_all = Profiler(model, xs[:1], threshold=t, start="layers", rule="ddp")
    own = Profiler(model, xs[:1], threshold=t)
    for p in (ddp_def, ddp_all, own):
        p.run(xs[:2])  # warm-up
    with torch.no_grad():
        model(xs[:2])
    starts = list(range(0, n, bs))
    m = 0 if args.skip_ddp else min(args.ddp_images, n, BATCH)
    python = Path(sys.executable) if args.peers == "self" else Path(args.peers) / "bin" / "python"
    if m and not python.exists():
        print(f"DeepDataProfiler: skipped ({python} not found; bash scripts/install-peers.sh DIR)")
        m = 0
    # DDP's images spread over the rounds; each round times every contender on its share, back to back,
    # so that load from other processes falls on all of them alike
    cuts = [round(m * r / len(starts)) for r in range(len(starts) + 1)]
    secs = dict(ddp_def=0.0, ddp_all=0.0, own=0.0, fwd=0.0, fwd_cl=0.0, fwd1=0.0, ddp=0.0)
    cpu = dict(ddp_def=0.0, ddp=0.0)  # CPU time (the process's, all threads): time other jobs take is left out
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        worker = None
        if m:
            try:
                worker = DDPWorker(python, m, t, args.threads, Path(tmp) / "ddp.json", args.device)
            except RuntimeError as e:
                print(f"DeepDataProfiler failed: {e}")
                m = 0
        for r, i in enumerate(starts):
            x = xs[i:i + bs]
            t0, c0 = now(), time.process_time()
            parts.append(ddp_def.run(x))
            ta, ca = now(), time.process_time()
            cpu["ddp_def"] += ca - c0
            ddp_all.run(x)
            t1 = now()
            secs["ddp_all"] += t1 - ta
            own.run(x)
            t2 = now()
            with torch.no_grad():
                model(x)
                t3 = now()
                model(x.contiguous(memory_format=torch.channels_last))
                t4 = now()
                for k in range(cuts[r], cuts[r + 1]):  # batch 1, as DeepDataProfiler runs it (twice per image)
                    model(xs[k:k + 1])
                t5 = now()
            for key, dt in zip(("ddp_def", "own", "fwd", "fwd_cl", "fwd1"), (ta - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                secs[key] += dt
            if worker is not None and cuts[r + 1] > cuts[r]:
                wall, used = worker.profile(cuts[r], cuts[r + 1])
                secs["ddp"] += wall
                cpu["ddp"] += used
        ref = worker.finish() if worker is not None else None
    from convsvd.profiles import InputProfiles

    ours = InputProfiles.concat(parts)
    rate = {k: n / v for k, v in secs.items() if k not in ("ddp", "fwd1")}
    threads = args.threads or torch.get_num_threads()
    from convsvd.profiles import _kernels

    how = "compiled kernel (numba)" if _kernels.available(xs[:1]) else "depthwise convolutions (torch)"
    print(f"1. vgg_small on {dev}, {n} inputs, batch {bs}, threshold {t}, {threads} thread(s) in each process, "
          f"{len(starts)} rounds (every contender timed on its share of each round, back to back); "
          f"DDP's conv rule by {how}")
    print(f"   convsvd, DeepDataProfiler's definitions (start='layers', rule='ddp'), its layers 1–8: "
          f"{rate['ddp_def']:8.1f} inputs/s")
    print(f"   convsvd, DeepDataProfiler's definitions, all 11 layers:                  {rate['ddp_all']:8.1f} inputs/s")
    print(f"   convsvd's own profiles (start='class', share rule):                   {rate['own']:8.1f} inputs/s")
    print(f"   the bare batched forward pass, as the model is (contiguous):         {rate['fwd']:8.1f} inputs/s")
    print(f"   the bare batched forward pass, channels-last inputs:                  {rate['fwd_cl']:8.1f} inputs/s"
          f"   (convsvd's profiler runs the model so: channels_last={ddp_def.channels_last})")
    print(f"   profile time / forward time (contiguous, channels-last): DDP's definitions "
          f"{secs['ddp_def'] / secs['fwd']:.2f}, {secs['ddp_def'] / secs['fwd_cl']:.2f}; "
          f"own {secs['own'] / secs['fwd']:.2f}, {secs['own'] / secs['fwd_cl']:.2f}")
    if not m or ref is None:
        return
    ddp_rate = m / secs["ddp"]
    fwd1 = m / secs["fwd1"]
    print(f"2. DeepDataProfiler 2.0.1 ChannelProfiler.create_profile, one image at a time, {m} images, "
          f"{worker.threads} thread(s)")  # type: ignore[union-attr]
    if ref["failure"]:
        print(f"   on the whole model it fails: {ref['failure']}; profiled layers {ref['span'][0]}–{ref['span'][1] - 1}")
    print(f"   {ddp_rate:8.2f} inputs/s   (the model's forward pass at batch 1 alone: {fwd1:.1f} inputs/s; "
          f"DDP runs it twice per image)")
    print(f"3. agreement on the first {m} inputs (DeepDataProfiler's definitions in convsvd vs DeepDataProfiler):")
    for line in compare(ours, ref, m):
        print(line)
    cpu_ratio = (cpu["ddp"] / m) / (cpu["ddp_def"] / n)
    print(f"4. speed vs DeepDataProfiler (target ≥ {50 if cuda else 10}x): convsvd with its definitions on its layers 1–8 "
          f"{rate['ddp_def'] / ddp_rate:.1f}x (from CPU time {cpu_ratio:.1f}x; on all 11 layers "
          f"{rate['ddp_all'] / ddp_rate:.1f}x); "
          f"convsvd's own profiles {rate['own'] / ddp_rate:.1f}x; "
          f"the bare batched forward pass {rate['fwd'] / ddp_rate:.1f}x (channels-last {rate['fwd_cl'] / ddp_rate:.1f}x, "
          f"batch 1 {fwd1 / ddp_rate:.1f}x)")


if __name__ == "__main__":
    main()
