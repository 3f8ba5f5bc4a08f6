"""Memory and time of values-only SVD of one big Linear layer, against eigvalsh of its Gram matrix.

    .venv/bin/python benchmarks/big_layer.py [--size 16384] [--repeat 1]

Each route runs in its own child process (so each peak RSS is its own), in this one run:

- ``convsvd``: ``decompose(layer, mode="values")`` — the streamed Gram route (float64
  ``dsyrk`` over column blocks, ``dsyevd`` in place);
- ``baseline``: ``torch.linalg.eigvalsh(A @ Aᵀ)`` with ``A`` the float64 copy of the
  weight (what the values route did before it was streamed).

Prints per route the wall time, the peak RSS, the peak RSS above the process with the
weight already loaded, both as multiples of the weight's bytes, the ratios
(baseline / convsvd, > 1: convsvd is better) and the largest relative difference
of the singular values between the two routes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(route: str, size: int, out: Path) -> None:
    torch.manual_seed(0)
    weight = torch.randn(size, size, dtype=torch.float32) / size**0.5
    before = _rss_mib()
    t0 = time.perf_counter()
    if route == "convsvd":
        from convsvd.decompose import decompose
        from convsvd.io import LayerSpec, ModelWeights

        mw = ModelWeights((LayerSpec("fc", "linear", weight),), source="benchmark", format="module")
        S = decompose(mw, mode="values", device="cpu")["fc"].S[0].double()
    else:
        A = weight.to(torch.float64)
        S = torch.linalg.eigvalsh(A @ A.mT).flip(-1).clamp_min(0).sqrt()
    seconds = time.perf_counter() - t0
    torch.save(S, out.with_suffix(".pt"))
    out.write_text(json.dumps(dict(seconds=seconds, peak_mib=_rss_mib(), before_mib=before,
                                   weight_mib=weight.numel() * 4 / 2**20)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=16384, help="side of the square Linear weight (default 16384)")
    ap.add_argument("--child", choices=["convsvd", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.size, args.result)
        return
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="convsvd-big-layer-"))
    res = {}
    for route in ("convsvd", "baseline"):
        path = tmp / f"{route}.json"
        subprocess.run([sys.executable, __file__, "--child", route, "--size", str(args.size), "--result", str(path)],
                       check=True)
        res[route] = json.loads(path.read_text())
        r = res[route]
        print(f"{route:9s} {args.size}×{args.size}: {r['seconds']:8.1f} s, peak RSS {r['peak_mib']:8.0f} MiB "
              f"({r['peak_mib'] / r['weight_mib']:.2f}× the weight's {r['weight_mib']:.0f} MiB), "
              f"above the loaded weight {r['peak_mib'] - r['before_mib']:8.0f} MiB "
              f"({(r['peak_mib'] - r['before_mib']) / r['weight_mib']:.2f}×)", flush=True)
    a, b = torch.load(tmp / "convsvd.pt"), torch.load(tmp / "baseline.pt")
    c, base = res["convsvd"], res["baseline"]
    print(f"ratios baseline/convsvd: time {base['seconds'] / c['seconds']:.2f}×, peak RSS "
          f"{base['peak_mib'] / c['peak_mib']:.2f}×, RSS above the weight "
          f"{(base['peak_mib'] - base['before_mib']) / (c['peak_mib'] - c['before_mib']):.2f}×")
    print(f"max |σ_convsvd − σ_baseline| / σ_max = {float((a - b).abs().max() / b.max()):.2e}")


if __name__ == "__main__":
    main()
