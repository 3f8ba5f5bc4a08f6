"""Speed of convsvd's spectral analysis against WeightWatcher and DeepDataProfiler, in the same run.

    .venv/bin/python benchmarks/spectrum.py [--models vgg16,resnet50] [--repeat 3] [--peer-repeat 1]
                                            [--skip-peers] [--peers .peers-venv]

Per model (``benchmarks/_models.py``: VGG-16 and ResNet-50 shapes, seeded random
weights), medians over the repeats of:

* convsvd ``spectrum(model)`` — eigenvalues of every layer + power-law fits + metrics
  (float32 Gram, float64 eigenvalues: the default for float32 weights), and the same
  with ``dtype="float64"``;
* convsvd ``spectrum(model, mp=True, random_baseline=True)``;
* WeightWatcher 0.7.7 ``analyze()`` with its defaults, and
  ``analyze(randomize=True, mp_fit=True)``;
* DeepDataProfiler 2.0.1 ``SpectralAnalysis``: ``spectral_analysis`` +
  ``fit_power_law`` + ``universal_metric``.

The peers run in their own environment (``--peers``, made by
``scripts/install-peers.sh``), one subprocess per tool and model, warmed up on
a tiny model first; convsvd runs here, warmed up the same way. Runs are interleaved
(convsvd, then each peer, repeat after repeat) so a busy machine slows all alike; the
load average is printed, since the CPU may be shared. Ratios > 1 mean convsvd is
faster; targets (issue 3): full analysis ≥ 5× the faster peer, MP + randomised
baseline ≥ 20× WeightWatcher's.

It also reports where the α of convsvd and DeepDataProfiler differ on the same layer
(both use the unfolded conv matrix; DeepDataProfiler fits with ``powerlaw`` 2.0's
defaults, which cap α at 3), and sets convsvd's ``slices`` view beside WeightWatcher's
α (same matrices; WeightWatcher fits with its own rules).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _models import MODELS  # noqa: E402

import convsvd  # noqa: E402
from convsvd.spectral import spectrum  # noqa: E402

PEERS = {
    "ww": "WeightWatcher analyze()",
    "ww_rand": "WeightWatcher analyze(randomize=True, mp_fit=True)",
    "ddp": "DeepDataProfiler spectral_analysis + fit_power_law + universal_metric",
}


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _peer(python: str, model: str, tool: str, repeat: int, timeout: float) -> dict:  # type: ignore[type-arg]
    cmd = [python, str(HERE / "_spectrum_peers.py"), "--model", model, "--tool", tool, "--repeat", str(repeat)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} on {model} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(times: list[float]) -> str:
    return f"{statistics.median(times):8.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})"


def _alpha_rows(ours: dict[str, float], theirs: dict[str, float], cap: float | None) -> list[str]:
    rows = []
    for name, a in ours.items():
        b = theirs.get(name)
        if b is None:
            continue
        d = a - b
        flag = ""
        if abs(d) > 1e-3:
            flag = "  <- differs" + (" (peer at powerlaw 2.0's cap α = 3)" if cap and b >= cap - 1e-6 else "")
        rows.append(f"      {name:28s} convsvd {a:9.4f}   peer {b:9.4f}   Δ {d:+.2e}{flag}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vgg16,resnet50")
    ap.add_argument("--repeat", type=int, default=3, help="runs of convsvd per model (median)")
    ap.add_argument("--peer-repeat", type=int, default=1, help="runs of each peer per model (median; they are slow)")
    ap.add_argument("--skip-peers", action="store_true", help="time convsvd only")
    ap.add_argument("--peers", default=str(HERE.parent / ".peers-venv"), help="the peers' virtual environment")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed to one peer subprocess")
    ap.add_argument("--show-alphas", action="store_true", help="print every layer's α comparison, not only differences")
    args = ap.parse_args()
    python = str(Path(args.peers) / "bin" / "python")
    if not args.skip_peers and not Path(python).exists():
        ap.error(f"--peers {args.peers}: no python there; install the peers or pass --skip-peers")

    print(f"convsvd {convsvd.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} (a load above 0 means a shared CPU)")
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(512, 64), nn.Linear(64, 10)).eval()
    spectrum(tiny, mp=True, random_baseline=True)  # warm-up, as the peers get one

    for name in args.models.split(","):
        model = MODELS[name]()
        n_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
        n_weights = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"\n== {name}: {n_layers} conv/linear layers, {n_weights:.1f} M parameters", flush=True)
        ours: dict[str, list[float]] = {"full": [], "full64": [], "rand": []}
        peers: dict[str, list[float]] = {k: [] for k in PEERS}
        peer_alphas: dict[str, dict[str, float]] = {}
        loads = []
        rounds = max(args.repeat, 0 if args.skip_peers else args.peer_repeat)
        result = None
        for r in range(rounds):
            if r < args.repeat:
                ours["full"].append(_timed(lambda: spectrum(model)))
                ours["full64"].append(_timed(lambda: spectrum(model, dtype="float64")))
                t0 = time.perf_counter()
                result = spectrum(model, mp=True, random_baseline=True)
                ours["rand"].append(time.perf_counter() - t0)
            if not args.skip_peers and r < args.peer_repeat:
                for tool in PEERS:
                    out = _peer(python, name, tool, 1, args.timeout)
                    peers[tool] += out["times"]
                    peer_alphas[tool] = out["alphas"]
                    if "alphas_pl15" in out:
                        peer_alphas["ddp_pl15"] = out["alphas_pl15"]
            loads.append(os.getloadavg()[0])
            print(f"   round {r + 1}/{rounds} done, load average {loads[-1]:.2f}", flush=True)

        med = {k: statistics.median(v) for k, v in ours.items()}
        print(f"  convsvd spectrum(model)                       {_median(ours['full'])}")
        print(f"  convsvd spectrum(model, dtype='float64')      {_median(ours['full64'])}")
        print(f"  convsvd spectrum(model, mp, random_baseline)  {_median(ours['rand'])}")
        if args.skip_peers:
            continue
        pmed = {k: statistics.median(v) for k, v in peers.items()}
        for tool, label in PEERS.items():
            print(f"  {label:45s} {_median(peers[tool])}")
        fastest = min(pmed["ww"], pmed["ddp"])
        print(f"  RATIO full analysis:   WW/convsvd {pmed['ww'] / med['full']:6.1f}x   DDP/convsvd "
              f"{pmed['ddp'] / med['full']:6.1f}x   faster peer/convsvd {fastest / med['full']:6.1f}x   (target ≥ 5)")
        print(f"  RATIO float64 route:   faster peer/convsvd(dtype=float64) {fastest / med['full64']:6.1f}x")
        print(f"  RATIO MP + randomised: WW(randomize, mp_fit)/convsvd {pmed['ww_rand'] / med['rand']:6.1f}x   "
              f"(target ≥ 20)")

        assert result is not None
        ours_alpha = {l.name: l.alpha for l in result.layers if l.ok}
        rows = _alpha_rows(ours_alpha, peer_alphas["ddp"], cap=3.0)
        diff = [r for r in rows if "differs" in r]
        print(f"  α vs DeepDataProfiler (unfold view, same matrices): {len(rows)} layers compared, "
              f"{len(diff)} differ by > 1e-3")
        for row in rows if args.show_alphas else diff:
            print(row)
        if peer_alphas.get("ddp_pl15"):
            rows = _alpha_rows(ours_alpha, peer_alphas["ddp_pl15"], cap=None)
            worst = max(abs(ours_alpha[r] - peer_alphas["ddp_pl15"][r]) for r in ours_alpha if r in peer_alphas["ddp_pl15"])
            diff = [r for r in rows if "differs" in r]
            print(f"  α vs powerlaw 1.5 on DeepDataProfiler's own eigenvalues (float32 SVD; same definition, unbounded "
                  f"fit): {len(rows)} layers, max |Δα| {worst:.1e}, {len(diff)} differ by > 1e-3")
            for row in rows if args.show_alphas else diff:
                print(row)
        slices = {l.name: l.alpha for l in spectrum(model, view="slices").layers if l.ok}
        rows = _alpha_rows(slices, peer_alphas["ww"], cap=None)
        diff = [r for r in rows if "differs" in r]
        print(f"  α vs WeightWatcher (convsvd slices view vs WW's pooled slices; WW fits with its own rules): "
              f"{len(rows)} layers, {len(diff)} differ by > 1e-3")
        for row in rows if args.show_alphas else diff:
            print(row)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
