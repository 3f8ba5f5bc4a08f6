"""Speed of convsvd.hypergraph.separation on every layer, against HyperNetX and against profiling, in the same run.

    .venv/bin/python benchmarks/separation.py [--cases digits,digits20k,resnet50] [--inputs 20000]
                                              [--resnet-inputs 64] [--repeat 3] [--threads N] [--skip-reference]

Three profile runs, each timed (``profile``: forward passes, SVD and the Parquet
shards), then the separation metrics of every profiled layer on them:

a. ``digits``: the built-in ``digits-cnn`` on the 1797 scikit-learn digits (5 layers);
b. ``digits20k``: the same model on ``--inputs`` (20,000) inputs synthesised from the
   digits: each image repeated, with Gaussian noise (σ = 0.5 grey levels of 16; seed 0),
   keeping its label;
c. ``resnet50``: ``_models.resnet50()`` (random init, seed 0; 53 conv and linear
   layers) on ``--resnet-inputs`` (64) random 3×224×224 images (seed 0), 8 classes.

For each case it prints the profiling time, the separation time (median of
``--repeat``), the HyperNetX-based computation of the same metrics measured once
in this run (:mod:`convsvd.hypergraph._reference`: s-components on the class
hypergraph, modularity on the dual input hypergraph with
``hypernetx.algorithms.hypergraph_modularity.modularity``, scikit-learn's
``NearestCentroid``), the speed-up over it, the ratio to profiling, and the
largest difference between the two results. Targets: ``digits20k`` separation
≤ 5 s; separation ≤ 0.2 × profiling of the same run.

HyperNetX is imported before any timing (its import alone takes seconds). The
separation time includes reading every layer from the signal table (dense
``inputs × neurons`` arrays), which it shares with the reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _models import resnet50  # noqa: E402

from convsvd import zoo  # noqa: E402
from convsvd.data import ArrayData, load_digits  # noqa: E402
from convsvd.hypergraph import separation  # noqa: E402
from convsvd.hypergraph._hnx import hnx  # noqa: E402
from convsvd.hypergraph._layer import read_layer  # noqa: E402
from convsvd.hypergraph._reference import reference_separation  # noqa: E402
from convsvd.signals import profile  # noqa: E402

CASES = ("digits", "digits20k", "resnet50")
COMPARED = ["jaccard_mean", "exclusive_mean", "components_s1", "components_s2", "components_s3", "modularity",
            "modularity_inputs", "ncc_accuracy"]


def digits_all() -> ArrayData:
    d = load_digits("all")
    return ArrayData(d.images, d.labels, d.ids, d.classes, name="digits")


def digits_jittered(n: int, seed: int = 0) -> ArrayData:
    """``n`` inputs: the 1797 digits repeated in order, each copy with N(0, 0.5²) noise on the 0–16 grey levels."""
    d = load_digits("all")  # images in [0, 1]: 16 grey levels to 1
    idx = torch.arange(n) % d.images.shape[0]
    g = torch.Generator().manual_seed(seed)
    x = d.images[idx] + (0.5 / 16.0) * torch.randn(d.images[idx].shape, generator=g, dtype=d.images.dtype)
    return ArrayData(x, d.labels[idx], torch.arange(n), d.classes, name=f"digits-jitter-{n}")


def random_images(n: int, seed: int = 0, classes: int = 8) -> ArrayData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 224, 224, generator=g)
    return ArrayData(x, torch.arange(n) % classes, torch.arange(n), [str(c) for c in range(classes)],
                     name=f"random-224-{n}")


def build(case: str, args: argparse.Namespace) -> tuple[torch.nn.Module, ArrayData]:
    if case == "digits":
        return zoo.load("digits-cnn"), digits_all()
    if case == "digits20k":
        return zoo.load("digits-cnn"), digits_jittered(args.inputs)
    return resnet50(seed=0), random_images(args.resnet_inputs)


def run_case(case: str, args: argparse.Namespace, root: Path) -> dict[str, object]:
    model, data = build(case, args)
    t0 = time.perf_counter()
    table = profile(model, data, out=root / case, batch_size=args.batch_size, progress=False)
    t_profile = time.perf_counter() - t0
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ours = separation(table, progress=False)
        times.append(time.perf_counter() - t0)
    t_ours = statistics.median(times)
    t0 = time.perf_counter()
    for name in table.layers:  # the part of the separation time spent reading the signal table
        read_layer(table, name)
    t_read = time.perf_counter() - t0
    t_ref, diff = float("nan"), float("nan")
    if not args.skip_reference:
        t0 = time.perf_counter()
        ref = reference_separation(table)
        t_ref = time.perf_counter() - t0
        a = ours[COMPARED].to_numpy(dtype=float)
        b = ref[COMPARED].to_numpy(dtype=float)
        both = ~(np.isnan(a) & np.isnan(b))
        diff = float(np.max(np.abs(np.nan_to_num(a[both] - b[both], nan=np.inf)))) if both.any() else 0.0
    return dict(case=case, inputs=len(data), layers=len(table.layers), profile_s=t_profile, separation_s=t_ours,
                read_s=t_read, reference_s=t_ref, max_diff=diff)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    p.add_argument("--inputs", type=int, default=20000, help="inputs of the digits20k case (default 20000)")
    p.add_argument("--resnet-inputs", type=int, default=64, help="inputs of the resnet50 case (default 64)")
    p.add_argument("--batch-size", type=int, default=64, help="profiling batch size (default 64)")
    p.add_argument("--repeat", type=int, default=3, help="separation timings, median reported (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--skip-reference", action="store_true", help="do not time the HyperNetX computation")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad:
        p.error(f"--cases: unknown {', '.join(bad)} (expected {', '.join(CASES)})")
    hnx()  # imported before any timing
    rows = []
    with tempfile.TemporaryDirectory(prefix="convsvd-separation-bench-") as tmp:
        for case in cases:
            r = run_case(case, args, Path(tmp))
            rows.append(r)
            print(f"{case}: {r['inputs']} inputs × {r['layers']} layers: profile {r['profile_s']:.2f} s, "
                  f"separation {r['separation_s']:.2f} s (reading the table {r['read_s']:.2f} s), "
                  f"HyperNetX-based {r['reference_s']:.2f} s", flush=True)
    print()
    print(f"{'case':<10} {'inputs':>7} {'layers':>6} {'profile s':>10} {'separation s':>13} {'of it read s':>13} "
          f"{'HyperNetX s':>12} {'speed-up':>9} {'sep/profile':>12} {'max |diff|':>11}")
    for r in rows:
        speed = r["reference_s"] / r["separation_s"]  # type: ignore[operator]
        ratio = r["separation_s"] / r["profile_s"]  # type: ignore[operator]
        print(f"{r['case']:<10} {r['inputs']:>7} {r['layers']:>6} {r['profile_s']:>10.2f} {r['separation_s']:>13.3f} "
              f"{r['read_s']:>13.3f} {r['reference_s']:>12.2f} {speed:>8.1f}x {ratio:>12.3f} {r['max_diff']:>11.1e}")
    print()
    for r in rows:
        if r["case"] == "digits20k":
            ok = r["separation_s"] <= 5.0  # type: ignore[operator]
            metrics = r["separation_s"] - r["read_s"]  # type: ignore[operator]
            print(f"target digits20k separation ≤ 5 s: {r['separation_s']:.2f} s — {'met' if ok else 'NOT met'} "
                  f"(metrics without reading the table: {metrics:.2f} s)")
        ratio = r["separation_s"] / r["profile_s"]  # type: ignore[operator]
        verdict = "met" if ratio <= 0.2 else "NOT met"
        print(f"target {r['case']} separation ≤ 0.2 × profiling: {ratio:.3f} — {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
