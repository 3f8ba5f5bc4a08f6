"""Time convsvd's power-law fit against ``powerlaw.Fit`` (powerlaw 1.5) on the same eigenvalues.

Two workloads:

* one ESD per size N (a Marchenko–Pastur bulk with a power-law tail, like a trained
  layer's ESD): ``fit_power_law`` against ``powerlaw.Fit``;
* a batch of layers of mixed sizes, eigenvalues of seeded random matrices (Wishart,
  heavy-tailed Student-t entries, and noise plus power-law spikes, like trained
  layers): one ``fit_power_law_batch`` call against ``powerlaw.Fit`` on each layer.

For each it prints the median time of each side over a few runs and their ratio, and
asserts that the fits are identical: the same x_min and n_tail, α, D and σ equal to
``powerlaw``'s to 1e-12 (they agree to rounding), and bit for bit the fits of
convsvd's exhaustive O(N²) search. Both fits run on one core (element-wise NumPy, no
BLAS, no thread pool); BLAS, used only to make the matrices, is held to one thread
(unless ``OPENBLAS_NUM_THREADS`` etc. say otherwise) so that its spinning threads
cannot slow a busy machine further. Other load still adds noise, hence the medians.

    python benchmarks/powerlaw_fit.py [--repeats 15] [--sizes 500 2000 4096 16384]
                                      [--layers 50]

``powerlaw`` is needed only here and in the tests, not by convsvd.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy starts its BLAS

import numpy as np
import torch

from convsvd.spectral import PowerLawFit, fit_power_law, fit_power_law_batch, mp_quantile
from convsvd.spectral.powerlaw import _exhaustive_fits

TOL = 1e-12


def esd_like(n: int, seed: int) -> np.ndarray:
    """n eigenvalues: an MP bulk (Q = 2) and a 15 % power-law tail (α = 2.5) above it."""
    rng = np.random.default_rng(seed)
    n_tail = int(0.15 * n)
    bulk = mp_quantile(rng.random(n - n_tail), 1.0, 2.0)
    tail = 2.9 * (1.0 - rng.random(n_tail)) ** (-1.0 / 1.5)
    return np.concatenate([bulk, tail])


def layer_spectra(n_layers: int, seed: int = 0) -> list[np.ndarray]:
    """Eigenvalues σ²/N of seeded N × M matrices, M from 64 to 2048, of three kinds."""
    rng = np.random.default_rng(seed)
    sizes = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
    spectra = []
    for i in range(n_layers):
        m = int(sizes[i % len(sizes)])
        n = int(min(4608, m * rng.choice((1.0, 1.5, 2.25, 4.5))))
        kind = i % 3
        if kind == 0:  # Wishart: i.i.d. Gaussian entries
            W = rng.standard_normal((n, m))
        elif kind == 1:  # heavy-tailed entries
            W = rng.standard_t(float(rng.choice((1.5, 2.0, 2.5, 3.0, 4.0))), size=(n, m))
        else:  # noise plus spikes of power-law strengths, like a trained layer
            U, _ = np.linalg.qr(rng.standard_normal((n, m)))
            V, _ = np.linalg.qr(rng.standard_normal((m, m)))
            W = 0.5 * rng.standard_normal((n, m)) + (U * (rng.pareto(1.5, m) + 1.0)) @ V.T
        spectra.append(np.linalg.svd(W, compute_uv=False) ** 2 / n)
    return spectra


def reference_fit(evals: np.ndarray) -> Any:
    import powerlaw

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return powerlaw.Fit(evals, verbose=False)


def median_time(fn: Callable[[], Any], repeats: int, budget_s: float = np.inf) -> tuple[float, Any]:
    """Median time of ``fn`` over ``repeats`` runs (fewer once ``budget_s`` is spent)."""
    times: list[float] = []
    result: Any = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        if sum(times) > budget_s:
            break
    return statistics.median(times), result


def assert_same(ours: PowerLawFit, ref: Any, exhaustive: PowerLawFit) -> None:
    assert ours == exhaustive, (ours, exhaustive)
    assert ours.status == "ok"
    assert ours.xmin == ref.xmin and ours.n_tail == int(ref.n), (ours, ref.xmin, ref.n)
    assert abs(ours.alpha - ref.alpha) <= TOL and abs(ours.D - ref.D) <= TOL, (ours, ref.alpha, ref.D)
    assert abs(ours.sigma - ref.sigma) <= TOL, (ours, ref.sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="runs of convsvd per timing")
    parser.add_argument("--ref-repeats", type=int, default=5, help="runs of powerlaw (at most 20 s each)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 4096, 16384])
    parser.add_argument("--layers", type=int, default=50)
    args = parser.parse_args()

    import powerlaw

    torch.set_num_threads(1)
    print(f"powerlaw {powerlaw.__version__}, numpy {np.__version__}, torch {torch.__version__}")
    print(f"{'n':>6} {'convsvd s':>10} {'powerlaw s':>11} {'ratio':>7}   alpha      xmin        D")
    for n in args.sizes:
        evals = esd_like(n, seed=n)
        fit_power_law(evals)  # warm-up
        ours_t, ours = median_time(partial(fit_power_law, evals), args.repeats)
        ref_t, ref = median_time(partial(reference_fit, evals), args.ref_repeats, budget_s=20.0)
        assert_same(ours, ref, _exhaustive_fits([evals], backend="numpy")[0])
        print(
            f"{n:>6} {ours_t:>10.5f} {ref_t:>11.4f} {ref_t / ours_t:>6.0f}x"
            f"   {ours.alpha:.6f} {ours.xmin:.6f} {ours.D:.6f}"
        )

    layers = layer_spectra(args.layers)
    sizes = [len(e) for e in layers]
    fit_power_law_batch(layers)  # warm-up
    batch_t, batch = median_time(partial(fit_power_law_batch, layers), args.repeats)
    ref_t, refs = median_time(lambda: [reference_fit(e) for e in layers], args.ref_repeats, budget_s=20.0)
    exhaustive = _exhaustive_fits(layers, backend="numpy")
    for ours, ref, exact in zip(batch, refs, exhaustive):
        assert_same(ours, ref, exact)
    assert batch == [fit_power_law(e) for e in layers]
    print(
        f"batch of {len(layers)} layers ({min(sizes)}–{max(sizes)} eigenvalues, {sum(sizes)} in all): "
        f"convsvd {batch_t:.4f} s in one call, powerlaw {ref_t:.3f} s, ratio {ref_t / batch_t:.0f}x"
    )


if __name__ == "__main__":
    main()
