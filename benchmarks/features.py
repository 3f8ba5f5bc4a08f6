"""Speed of batched feature visualisation against one neuron at a time, measured in the same run.

    .venv/bin/python benchmarks/features.py [--layer conv2] [--neurons 8] [--steps 256] [--repeat 3]
                                            [--threads 1] [--device cpu] [--vgg]

Prints, for the built-in digits CNN: the time to optimise ``--neurons`` SVD neurons of
``--layer`` (both directions, so 2 images per neuron) in one batched call of
``convsvd.features.featureviz``, the time for the same neurons one call per neuron,
and their ratio (> 1: batched is faster; target ≥ 4). Times are medians over
``--repeat`` runs, after a warm-up. Also checks that both give the same images.

``--vgg`` also times a VGG-16-shaped model (random weights) at 224×224: ``--neurons``
neurons of ``features.10`` (conv3_1), batched, on ``--device`` (meant for a GPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import MODELS  # noqa: E402
from _timing import median_time  # noqa: E402

from convsvd import zoo  # noqa: E402
from convsvd.features import featureviz  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", default="conv2")
    ap.add_argument("--neurons", type=int, default=8)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vgg", action="store_true", help="also time a VGG-16-shaped layer at 224×224")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")

    model = zoo.load("digits-cnn").to(args.device)
    neurons = list(range(args.neurons))
    kw = dict(steps=args.steps, size=8, device=args.device)
    featureviz(model, args.layer, [0], steps=4, size=8, device=args.device)  # warm-up

    def batched():
        return featureviz(model, args.layer, neurons, **kw)

    def one_by_one():
        return [featureviz(model, args.layer, [n], **kw) for n in neurons]

    same = torch.equal(batched().images, torch.cat([f.images for f in one_by_one()]))
    t_batch = median_time(batched, args.repeat)
    t_single = median_time(one_by_one, args.repeat)
    print(f"\n== digits-cnn {args.layer}: {args.neurons} neurons × 2 directions, {args.steps} steps "
          f"(median of {args.repeat})")
    print(f"batched (1 call)       {t_batch:8.3f} s")
    print(f"one neuron at a time   {t_single:8.3f} s")
    print(f"ratio                  {t_single / t_batch:8.1f}×   (same images: {same})")

    if args.vgg:
        vgg = MODELS["vgg16"]().to(args.device)
        layer = "0.10"
        featureviz(vgg, layer, [0], steps=2, size=224, device=args.device)  # warm-up
        t = median_time(lambda: featureviz(vgg, layer, neurons, steps=args.steps, size=224, device=args.device),
                        args.repeat)
        print(f"\n== vgg16-shaped {layer} (conv3_1) at 224×224: {args.neurons} neurons × 2 directions, "
              f"{args.steps} steps, batched: {t:.2f} s ({1e3 * t / args.steps:.1f} ms/step)")


if __name__ == "__main__":
    main()
