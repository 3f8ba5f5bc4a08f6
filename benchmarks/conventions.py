"""Check ``spectrum(convention=...)`` against WeightWatcher 0.7.7 and DeepDataProfiler 2.0.1 themselves.

    .venv/bin/python benchmarks/conventions.py --peers .peers-venv [--epochs 0,10,20]

For the shipped ``digits-cnn`` checkpoints and a seeded 3-layer MLP, this process computes
``spectrum(..., convention="ww")`` (slices view, WeightWatcher's view of a conv) and
``spectrum(..., convention="ddp")`` (unfold view, DeepDataProfiler's), then runs the peers
in their own environment (this file with ``--peer-side``, under the peers' Python) on the
same weights and prints, per layer, the relative differences of ``λ_max``, α and
``alpha_weighted``, and of the model's α̂. It is a check, not a timing: every line says
``same`` (relative difference ≤ 1e-6) or ``DIFF`` with the reason when one is known.

Known differences (see the README section "Testing the paper's claims"):

* WeightWatcher fits layers with fewer than 20 eigenvalues (after dropping λ ≤ 1e-5) with
  its bias-corrected "small-N" fit (``1 + (n−1)/Σ ln(λ/x_min)``, tails of ≥ 8 values);
  convsvd fits them like every other layer (and needs ≥ 10 eigenvalues).
* DeepDataProfiler fits α with ``powerlaw`` 2.0, whose fit bounds α (``α ≤ 3`` in its
  parameter range) while convsvd reproduces the unbounded analytic fit of ``powerlaw`` 1.5;
  its α̂ averages every layer, convsvd's the layers it could fit (≥ 10 eigenvalues).

The peer side never imports convsvd; the main side never imports a peer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

_PLACEHOLDERS = (
    "torchvision", "torchvision.transforms", "torchvision.models", "torchvision.transforms.functional",
    "lucent", "lucent.misc", "lucent.misc.io", "lucent.optvis", "lucent.optvis.render", "lucent.optvis.transform",
)


class _Placeholder(types.ModuleType):
    """A module whose every attribute is a do-nothing function (DeepDataProfiler's unused imports)."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def _model_from_file(path: str):  # type: ignore[no-untyped-def]
    """An ``nn.Sequential`` of Conv2d/Linear modules holding the file's weights, in file order."""
    import torch
    from safetensors.torch import load_file
    from torch import nn

    state = load_file(path)
    layers = []
    for key in [k for k in state if k.endswith(".weight")]:
        w, b = state[key].double(), state.get(key[: -len("weight")] + "bias")
        if w.ndim == 4:
            mod = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), bias=b is not None)
        else:
            mod = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        mod = mod.double()
        with torch.no_grad():
            mod.weight.copy_(w)
            if b is not None:
                mod.bias.copy_(b.double())
        layers.append((key[: -len(".weight")].replace(".", "_"), mod))
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(layers)), [name for name, _ in layers]


def peer_side(files: list[str]) -> None:
    """Run WeightWatcher and DeepDataProfiler on each file; print one JSON object."""
    for name in _PLACEHOLDERS:
        sys.modules.setdefault(name, _Placeholder(name))
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])
    import weightwatcher as ww
    from deep_data_profiler.algorithms import SpectralAnalysis

    out = {}
    for path in files:
        model, names = _model_from_file(path)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            details = ww.WeightWatcher(model=model).analyze()
            sa = SpectralAnalysis(model)
            eig = sa.spectral_analysis()
            alphas = sa.fit_power_law(eig_dict=eig)
            universal = float(sa.universal_metric(alpha_dict=alphas))
        w = {}
        for row in details.itertuples():
            w[str(row.longname)] = dict(lambda_max=float(row.lambda_max), alpha=float(row.alpha),
                                        alpha_weighted=float(row.alpha_weighted))
        d = {names[i - 1]: dict(lambda_max=float(alphas[i][1]), alpha=float(alphas[i][0]),
                                evals_sum=float(sum(eig[i][0]))) for i in alphas}
        out[path] = dict(ww=w, ddp=d, ddp_alpha_hat=universal)
    print(json.dumps(out))


# --------------------------------------------------------------------------- main side


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _mlp_file(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    state = {}
    for i, (n_in, n_out) in enumerate([(120, 200), (200, 80), (80, 40)]):
        state[f"fc{i}.weight"] = torch.randn(n_out, n_in, generator=gen) / n_in**0.5
        state[f"fc{i}.bias"] = torch.zeros(n_out)
    path = folder / "mlp.safetensors"
    save_file(state, str(path))
    return path


def main_side(peers: Path, epochs: list[int]) -> int:
    from convsvd import zoo
    from convsvd.spectral import spectrum

    files = [Path(zoo.checkpoints("digits-cnn")[e]) for e in epochs]
    with tempfile.TemporaryDirectory() as tmp:
        files.append(_mlp_file(Path(tmp)))
        run = subprocess.run([str(peers / "bin" / "python"), __file__, "--peer-side", *map(str, files)],
                             capture_output=True, text=True, check=False)
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
            return 1
        peer = json.loads(run.stdout.strip().splitlines()[-1])
        worst = {"ww": 0.0, "ddp": 0.0}
        for path in files:
            res = peer[str(path)]
            ours_ww = spectrum(str(path), view="slices", convention="ww", dtype="float64")
            ours_ddp = spectrum(str(path), view="unfold", convention="ddp", dtype="float64")
            print(f"\n== {path.name}")
            print(f"{'layer':8} {'tool':4} {'λmax ours':>12} {'λmax peer':>12} {'rel':>8}  {'α ours':>8} "
                  f"{'α peer':>8}  {'αw ours':>9} {'αw peer':>9}  verdict")
            for layer in ours_ww.layers:
                key = layer.name.replace(".", "_")
                for tool, ours, theirs in (("ww", layer, res["ww"].get(key)),
                                           ("ddp", ours_ddp[layer.name], res["ddp"].get(key))):
                    if theirs is None:
                        continue
                    r_lam = _rel(ours.lambda_max, theirs["lambda_max"])
                    aw_peer = theirs.get("alpha_weighted", theirs["alpha"] * math.log(theirs["lambda_max"]))
                    r_aw = _rel(ours.alpha_weighted, aw_peer) if math.isfinite(ours.alpha_weighted) else math.nan
                    why = ""
                    n = int(ours.evals.size)
                    if tool == "ww" and n < 20:
                        why = " (WeightWatcher's small-N fit, < 20 eigenvalues)"
                    if tool == "ddp":
                        why = " (DeepDataProfiler's powerlaw 2.0 fit)"
                    if not ours.ok:
                        why = f" (convsvd status {ours.status})"
                    same_lam = r_lam <= 1e-6
                    same_aw = math.isfinite(r_aw) and r_aw <= 1e-6
                    verdict = "same" if same_lam and same_aw else \
                        ("λmax same, α " + ("DIFF" + why if not same_aw else "same")) if same_lam else "DIFF λmax"
                    if same_lam:
                        worst[tool] = max(worst[tool], r_lam)
                    print(f"{layer.name:8} {tool:4} {ours.lambda_max:12.6g} {theirs['lambda_max']:12.6g} "
                          f"{r_lam:8.1e}  {ours.alpha:8.4f} {theirs['alpha']:8.4f}  {ours.alpha_weighted:9.4f} "
                          f"{aw_peer:9.4f}  {verdict}")
            formula = sum(d["alpha"] * math.log(ours_ddp[name.replace("_", ".") if name.replace("_", ".")
                                                          in ours_ddp.names else name].lambda_max)
                          for name, d in res["ddp"].items()) / len(res["ddp"])
            print(f"α̂ formula (DeepDataProfiler's α, our ddp λmax, ln, every layer): {formula:.12f} vs "
                  f"universal_metric {res['ddp_alpha_hat']:.12f}, rel {_rel(formula, res['ddp_alpha_hat']):.1e}")
            print(f"α̂ ddp convention: convsvd {ours_ddp.summary()['alpha_hat'].iloc[0]:.6f} over "
                  f"{ours_ddp.summary()['n_analysed'].iloc[0]} layers; DeepDataProfiler universal_metric "
                  f"{res['ddp_alpha_hat']:.6f} over {len(res['ddp'])} layers")
        print(f"\nlargest relative λmax difference where equal: ww {worst['ww']:.1e}, ddp {worst['ddp']:.1e}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=Path, default=Path(".peers-venv"), help="the peers' virtual environment")
    parser.add_argument("--epochs", default="0,10,20", help="digits-cnn checkpoints to compare (default 0,10,20)")
    parser.add_argument("--peer-side", nargs="+", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_side:
        peer_side(args.peer_side)
        return 0
    return main_side(args.peers, [int(e) for e in args.epochs.split(",")])


if __name__ == "__main__":
    sys.exit(main())
