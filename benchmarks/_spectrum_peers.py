"""Peer side of ``benchmarks/spectrum.py``: times one peer tool on one model, prints JSON.

Runs in the peers' own environment (``.peers-venv``: WeightWatcher 0.7.7,
DeepDataProfiler 2.0.1, powerlaw 2.0.0), never in convsvd's:

    .peers-venv/bin/python benchmarks/_spectrum_peers.py --model vgg16 --tool ww --repeat 1

Tools: ``ww`` (WeightWatcher ``analyze()`` with its defaults), ``ww_rand``
(``analyze(randomize=True, mp_fit=True)``), ``ddp`` (DeepDataProfiler
``SpectralAnalysis``: ``spectral_analysis`` + ``fit_power_law`` + ``universal_metric``).
Each is warmed up once on a tiny model, then timed ``--repeat`` times on the model (its
construction not included). The last run's per-layer α are printed too.

DeepDataProfiler imports torchvision and torch-lucent at import time although its
spectral analysis uses neither, and PyPI's torchvision does not run with this torch:
placeholder modules are registered for those names here, and only here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
import types
import warnings
from pathlib import Path

_PLACEHOLDERS = (
    "torchvision", "torchvision.transforms", "torchvision.models", "torchvision.transforms.functional",
    "lucent", "lucent.misc", "lucent.misc.io", "lucent.optvis", "lucent.optvis.render", "lucent.optvis.transform",
)


class _Placeholder(types.ModuleType):
    """A module whose every attribute is a do-nothing function (never called by the spectral code)."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


def _register_placeholders() -> None:
    for name in _PLACEHOLDERS:
        sys.modules.setdefault(name, _Placeholder(name))
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])


def _quiet():  # type: ignore[no-untyped-def]
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _ww(model, randomize: bool) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import weightwatcher as ww

    with _quiet():
        details = ww.WeightWatcher(model=model).analyze(randomize=True, mp_fit=True) if randomize else \
            ww.WeightWatcher(model=model).analyze()
    return {str(row.longname): float(row.alpha) for row in details.itertuples()}


_LAST_EIGENVALUES: dict[str, object] = {}


def _ddp(model) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import deep_data_profiler as ddp
    import torch

    with _quiet():
        analysis = ddp.SpectralAnalysis(model)
        eig = analysis.spectral_analysis()
        alphas = analysis.fit_power_law(eig_dict=eig)
        analysis.universal_metric(alpha_dict=alphas)
    names = [n for n, m in model.named_modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)]
    _LAST_EIGENVALUES.clear()
    _LAST_EIGENVALUES.update({names[i - 1]: values for i, (values, _) in eig.items()})
    return {names[i - 1]: float(a) for i, (a, _) in alphas.items()}


def _powerlaw15_alphas(eigenvalues: dict[str, object]) -> dict[str, float]:
    """α of ``powerlaw`` 1.5 (the unbounded analytic fit, in ``<peers>/pl15``) on DDP's own eigenvalues."""
    import importlib.util

    path = Path(sys.prefix) / "pl15" / "powerlaw.py"
    if not path.exists():
        return {}
    spec = importlib.util.spec_from_file_location("powerlaw15", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    out = {}
    with _quiet():
        for name, values in eigenvalues.items():
            out[name] = float(module.Fit(values, verbose=False).alpha)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tool", choices=["ww", "ww_rand", "ddp"], required=True)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    logging.disable(logging.WARNING)
    _register_placeholders()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from torch import nn

    from _models import MODELS

    run = {"ww": lambda m: _ww(m, False), "ww_rand": lambda m: _ww(m, True), "ddp": _ddp}[args.tool]
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(512, 64), nn.Linear(64, 10)).eval()
    run(tiny)  # warm-up: imports, thread pools, first-call overheads
    model = MODELS[args.model]()
    times, alphas = [], {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        alphas = run(model)
        times.append(time.perf_counter() - t0)
    extra = {"alphas_pl15": _powerlaw15_alphas(_LAST_EIGENVALUES)} if args.tool == "ddp" else {}
    print(json.dumps({"tool": args.tool, "model": args.model, "times": times, "alphas": alphas,
                      "load": os.getloadavg(), **extra}))


if __name__ == "__main__":
    main()
