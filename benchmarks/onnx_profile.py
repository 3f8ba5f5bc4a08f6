"""Profiling an ONNX model through ONNX Runtime, measured against the bare graph and the torch model in the same run.

    .venv/bin/python benchmarks/onnx_profile.py [--inputs 512] [--repeat 3] [--threads N] [--width 64]

Model: ``vgg_small()`` (6 conv + 2 linear layers, 32×32×3 inputs, random weights,
seed 0), exported with ``torch.onnx.export`` (opset 17, dynamic batch). Data:
``--inputs`` random images in memory, batch 64. Prints:

1. ``profile("vgg.onnx", …)`` (every layer's output read as an extra graph output,
   projected, Parquet shards written) vs the bare ONNX Runtime forward pass over the
   same batches — target ≤ 1.5×;
2. for comparison, the torch model's profile (hooks) vs its bare forward pass;
3. the torch profile vs the ONNX profile: the ratio says which runtime is faster
   here (no target: the two must agree, and do, see ``tests/test_onnx_runner.py``);
   and the largest difference of their signals.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _models import vgg_small  # noqa: E402
from _timing import median_time  # noqa: E402

from convsvd.io import load  # noqa: E402
from convsvd.signals import profile  # noqa: E402

BATCH = 64


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (ONNX Runtime keeps its default)")
    ap.add_argument("--width", type=int, default=64, help="channels of vgg_small's first block")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    net = vgg_small(width=args.width)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.inputs, 3, 32, 32, generator=g)
    labels = torch.arange(args.inputs) % 10
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vgg.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x[:2],), str(path), opset_version=17, dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "n"}})
        mw = load(path)
        module = mw.model
        batches = [x[i:i + BATCH] for i in range(0, args.inputs, BATCH)]

        def bare() -> None:
            for b in batches:
                module.run(b)

        runs = iter(range(10**6))

        def run(model: object) -> object:
            return profile(model, (x, labels), batch_size=BATCH, out=Path(tmp) / f"p{next(runs)}", progress=False)

        def bare_torch() -> None:
            with torch.no_grad():
                for b in batches:
                    net(b)

        bare()  # sessions built before timing
        run(mw)
        t_bare = median_time(bare, args.repeat, "cpu")
        t_onnx = median_time(lambda: run(mw), args.repeat, "cpu")
        t_torch = median_time(lambda: run(net), args.repeat, "cpu")
        t_torch_bare = median_time(bare_torch, args.repeat, "cpu")
        a, b = run(net), run(mw)
        diff = 0.0
        for layer in a.layers:
            sa = a.layer(layer).sort_values(["id", "group", "neuron"])["signal"].to_numpy()
            sb = b.layer(layer).sort_values(["id", "group", "neuron"])["signal"].to_numpy()
            diff = max(diff, float(np.abs(sa - sb).max() / max(1e-12, np.abs(sa).max())))
    print(f"vgg_small (width {args.width}), {args.inputs} inputs, batch {BATCH}, {len(mw.layers)} layers")
    print(f"1. ONNX profile {t_onnx:.3f} s vs bare ONNX Runtime forward {t_bare:.3f} s: {t_onnx / t_bare:.2f}x "
          f"(target <= 1.5x)")
    print(f"2. torch profile {t_torch:.3f} s vs bare torch forward {t_torch_bare:.3f} s: {t_torch / t_torch_bare:.2f}x")
    print(f"3. torch profile {t_torch:.3f} s vs ONNX profile {t_onnx:.3f} s: ONNX {t_torch / t_onnx:.2f}x the "
          f"speed of torch; largest signal difference {diff:.2e} of the layer's largest |signal|")


if __name__ == "__main__":
    main()
