"""Speed of convsvd.decompose against plain loops of torch.linalg, measured in the same run.

    .venv/bin/python benchmarks/decompose.py [--models vgg16,resnet50] [--repeat 3] [--no-full]

Prints, per model: singular values of all layers (convsvd, Gram route) vs a loop of
``torch.linalg.svdvals`` over the unfolded weights; full SVD vs a loop of
``torch.linalg.svd``; a second call served from the disk cache vs the first.
Ratios > 1 mean convsvd is faster. Times are medians over --repeat runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import MODELS  # noqa: E402
from _timing import median_time  # noqa: E402

from convsvd.decompose import decompose  # noqa: E402
from convsvd.io import from_module  # noqa: E402
from convsvd.layers import unfolded  # noqa: E402


def plain_loop(mw, full: bool):
    out = []
    for spec in mw.layers:
        for W in unfolded(spec):
            out.append(torch.linalg.svd(W, full_matrices=False) if full else torch.linalg.svdvals(W))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vgg16,resnet50")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-full", action="store_true", help="skip the full-SVD comparison (slow on VGG-16)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu")
    for name in args.models.split(","):
        model = MODELS[name]()
        mw = from_module(model, source=name)
        print(f"\n== {name}: {len(mw)} layers, {sum(s.weight.numel() for s in mw.layers) / 1e6:.1f} M weights")
        decompose(mw, layers=mw.names[0], mode="values", device="cpu")  # warm-up
        t_loop = median_time(lambda: plain_loop(mw, full=False), args.repeat)
        t_ours = median_time(lambda: decompose(mw, mode="values", device="cpu"), args.repeat)
        print(f"values only : convsvd {t_ours:8.3f} s | loop of svdvals {t_loop:8.3f} s | ratio {t_loop / t_ours:6.2f}x")
        if not args.no_full:
            rep = max(1, args.repeat // 3)
            t_loop_f = median_time(lambda: plain_loop(mw, full=True), rep)
            t_ours_f = median_time(lambda: decompose(mw, mode="full", device="cpu"), rep)
            print(f"full SVD    : convsvd {t_ours_f:8.3f} s | loop of svd     {t_loop_f:8.3f} s | ratio {t_loop_f / t_ours_f:6.2f}x")
        for mode in ("values",) + (() if args.no_full else ("full",)):
            with tempfile.TemporaryDirectory() as cache:
                t0 = time.perf_counter()
                decompose(mw, mode=mode, device="cpu", cache_dir=cache)
                t_first = time.perf_counter() - t0
                t_hit = median_time(lambda: decompose(mw, mode=mode, device="cpu", cache_dir=cache), args.repeat)
            print(f"cache {mode:6s}: first {t_first:8.3f} s | second {t_hit:8.3f} s | ratio {t_first / t_hit:6.2f}x")


if __name__ == "__main__":
    main()
