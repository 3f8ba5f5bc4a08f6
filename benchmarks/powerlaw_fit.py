"""Time convsvd's vectorised power-law fit against ``powerlaw.Fit`` (powerlaw 1.5).

Both fit the same eigenvalues (a Marchenko–Pastur bulk with a power-law tail, like a
trained layer's ESD); the script prints the median time of each over a few runs and
their ratio, and asserts that both give the same α, x_min and D (to 1e-6).

    python benchmarks/powerlaw_fit.py [--repeats 5] [--sizes 500 2000 4096]

``powerlaw`` is needed only here and in the tests, not by convsvd.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from convsvd.spectral import fit_power_law, fit_power_law_batch, mp_quantile


def esd_like(n: int, seed: int) -> np.ndarray:
    """n eigenvalues: an MP bulk (Q = 2) and a 15 % power-law tail (α = 2.5) above it."""
    rng = np.random.default_rng(seed)
    n_tail = int(0.15 * n)
    bulk = mp_quantile(rng.random(n - n_tail), 1.0, 2.0)
    tail = 2.9 * (1.0 - rng.random(n_tail)) ** (-1.0 / 1.5)
    return np.concatenate([bulk, tail])


def reference_fit(evals: np.ndarray) -> Any:
    import powerlaw

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return powerlaw.Fit(evals, verbose=False)


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times: list[float] = []
    result: Any = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 4096])
    args = parser.parse_args()

    import powerlaw

    print(f"powerlaw {powerlaw.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'n':>6} {'convsvd s':>10} {'powerlaw s':>11} {'ratio':>7}   alpha      xmin        D")
    sets = []
    for n in args.sizes:
        evals = esd_like(n, seed=n)
        sets.append(evals)
        fit_power_law(evals)  # warm-up
        ours_t, ours = median_time(partial(fit_power_law, evals), args.repeats)
        ref_t, ref = median_time(partial(reference_fit, evals), args.repeats)
        assert ours.status == "ok"
        assert ours.xmin == ref.xmin, (ours.xmin, ref.xmin)
        assert abs(ours.alpha - ref.alpha) < 1e-6 and abs(ours.D - ref.D) < 1e-6
        assert abs(ours.sigma - ref.sigma) < 1e-6 and ours.n_tail == int(ref.n)
        print(
            f"{n:>6} {ours_t:>10.4f} {ref_t:>11.4f} {ref_t / ours_t:>6.1f}x"
            f"   {ours.alpha:.6f} {ours.xmin:.6f} {ours.D:.6f}"
        )

    batch_t, batch = median_time(partial(fit_power_law_batch, sets), args.repeats)
    assert batch == [fit_power_law(e) for e in sets]
    print(f"batch of all sizes in one call: {batch_t:.4f} s (same fits as one at a time)")


if __name__ == "__main__":
    main()
