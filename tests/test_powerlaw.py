"""The vectorised power-law fit against the ``powerlaw`` package 1.5 and a plain loop.

``powerlaw`` (a test-only dependency) is the reference: α, x_min, D and σ must agree
to 1e-6. ``_loop_reference`` restates its rules as a readable per-candidate loop, so
the rules themselves stay tested where ``powerlaw`` is not installed. The NumPy
backend's bound-and-prune search must give bit for bit the fits of the exhaustive
search (``_exhaustive_fits``), on ties, duplicates, tiny sets and flat optima too.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import FrozenInstanceError, fields
from typing import Any, cast

import numpy as np
import pytest
import torch

from convsvd.errors import InputError
from convsvd.spectral import PowerLawFit, _xmin_search, fit_power_law, fit_power_law_batch, mp_quantile
from convsvd.spectral.powerlaw import _exhaustive_fits, _tpl_moments

TOL = 1e-6


def _powerlaw_fit(x: np.ndarray, **kwargs: Any) -> Any:
    powerlaw = pytest.importorskip("powerlaw")
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return powerlaw.Fit(x, verbose=False, **kwargs)


def _loop_reference(
    x: np.ndarray, xmin_range: tuple[float, float] | None = None, min_tail: int = 2
) -> tuple[float, float, float, int]:
    """powerlaw 1.5's rules, one candidate at a time: (alpha, xmin, D, n_tail)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    x = x[x > 0]
    distinct = np.unique(x)
    if xmin_range is not None:
        distinct = distinct[(distinct >= min(xmin_range)) & (distinct <= max(xmin_range))]
    best: tuple[float, float, float, int] | None = None
    for cut in distinct[:-1]:
        tail = x[x >= cut]
        if tail.size < min_tail:
            continue
        alpha = 1.0 + tail.size / np.sum(np.log(tail / cut))
        values = np.unique(tail)
        empirical = np.searchsorted(tail, values, side="left") / tail.size
        fitted = 1.0 - (values / cut) ** (1.0 - alpha)
        D = float(np.max(np.abs(fitted - empirical)))
        if best is None or D < best[2]:
            best = (float(alpha), float(cut), D, int(tail.size))
    assert best is not None
    return best


def _assert_same(fit: PowerLawFit, ref: Any) -> None:
    assert fit.status == "ok"
    assert fit.xmin == pytest.approx(ref.xmin, rel=1e-12, abs=0)
    assert abs(fit.alpha - ref.alpha) < TOL
    assert abs(fit.D - ref.D) < TOL
    assert abs(fit.sigma - ref.sigma) < TOL
    assert fit.n_tail == int(ref.n)


def _pareto(rng: np.random.Generator, alpha: float, n: int) -> np.ndarray:
    """Continuous power law with density ∝ x^-alpha above a random scale."""
    return rng.uniform(0.1, 10.0) * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


def _spectrum(W: np.ndarray) -> np.ndarray:
    return np.linalg.svd(W, compute_uv=False) ** 2 / max(W.shape)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5, 3.5])
@pytest.mark.parametrize("n", [50, 300, 2000])
@pytest.mark.slow  # the reference package on large inputs
def test_matches_powerlaw_on_pareto_samples(alpha: float, n: int) -> None:
    x = _pareto(np.random.default_rng(int(alpha * 100) + n), alpha, n)
    fit = fit_power_law(x)
    _assert_same(fit, _powerlaw_fit(x))
    assert fit.n == n


@pytest.mark.parametrize("shape", [(400, 100), (1000, 500), (600, 600)])
@pytest.mark.slow  # the reference package on large inputs
def test_matches_powerlaw_on_wishart_eigenvalues(shape: tuple[int, int]) -> None:
    x = _spectrum(np.random.default_rng(sum(shape)).standard_normal(shape))
    _assert_same(fit_power_law(x), _powerlaw_fit(x))


@pytest.mark.slow  # the reference package on large inputs
def test_matches_powerlaw_on_heavy_tailed_matrices() -> None:
    rng = np.random.default_rng(7)
    student = rng.standard_t(2.5, size=(800, 300))
    # Noise plus a spectrum of power-law strengths, like a trained layer's.
    U, _ = np.linalg.qr(rng.standard_normal((512, 256)))
    V, _ = np.linalg.qr(rng.standard_normal((256, 256)))
    trained = 0.5 * rng.standard_normal((512, 256)) + (U * (rng.pareto(1.5, 256) + 1.0)) @ V.T
    for W in (student, trained):
        x = _spectrum(W)
        fit = fit_power_law(x)
        _assert_same(fit, _powerlaw_fit(x))
        alpha, xmin, D, n_tail = _loop_reference(x)
        assert (fit.xmin, fit.n_tail) == (xmin, n_tail)
        assert abs(fit.alpha - alpha) < TOL and abs(fit.D - D) < TOL


def test_duplicates_and_zeros_follow_powerlaw() -> None:
    rng = np.random.default_rng(3)
    rounded = np.round(_pareto(rng, 2.2, 600), 1)  # many ties
    with_zeros = np.concatenate([np.zeros(25), _pareto(rng, 2.5, 400)])
    for x in (rounded, with_zeros):
        _assert_same(fit_power_law(x), _powerlaw_fit(x))
    assert fit_power_law(with_zeros).n == 400


def test_float32_input_is_fitted_in_float64() -> None:
    x64 = _pareto(np.random.default_rng(11), 2.3, 1500)
    x32 = x64.astype(np.float32)
    fit32 = fit_power_law(x32)
    assert fit32 == fit_power_law(x32.astype(np.float64))
    _assert_same(fit32, _powerlaw_fit(x32))
    fit64 = fit_power_law(x64)
    assert fit32.xmin == pytest.approx(fit64.xmin, rel=1e-6)
    assert fit32.alpha == pytest.approx(fit64.alpha, rel=1e-5)
    assert fit32.D == pytest.approx(fit64.D, abs=1e-5)


def test_torch_input_and_order_do_not_matter() -> None:
    x = _pareto(np.random.default_rng(5), 2.0, 700)
    ref = fit_power_law(x)
    assert fit_power_law(torch.from_numpy(x[::-1].copy())) == ref
    assert fit_power_law(torch.from_numpy(x).float()) == fit_power_law(x.astype(np.float32))
    assert fit_power_law(list(x)) == ref


def test_torch_backend_equals_numpy_backend() -> None:
    rng = np.random.default_rng(10)
    sets = [_pareto(rng, 2.5, 800), np.round(_pareto(rng, 2.0, 300), 1), np.array([1.0, 1.0])]
    for kwargs in ({}, {"xmin_range": (1.0, 3.0)}, {"xmin": 2.0}, {"chunk_size": 100}):
        numpy_fits = fit_power_law_batch(sets, backend="numpy", **kwargs)
        torch_fits = fit_power_law_batch(sets, backend="torch", **kwargs)
        for a, b in zip(numpy_fits, torch_fits):
            assert (a.status, a.xmin, a.n_tail) == (b.status, b.xmin, b.n_tail)
            if a.ok:
                assert abs(a.alpha - b.alpha) < 1e-12 and abs(a.D - b.D) < 1e-12
    with pytest.raises(InputError):
        fit_power_law(sets[0], backend=cast(Any, "jax"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_fitted_on_the_gpu() -> None:
    x = _pareto(np.random.default_rng(14), 2.2, 3000)
    on_gpu = fit_power_law(torch.from_numpy(x).cuda())
    on_cpu = fit_power_law(x)
    assert on_gpu.xmin == on_cpu.xmin and abs(on_gpu.alpha - on_cpu.alpha) < 1e-12


@pytest.mark.slow  # many fits, one at a time
def test_batch_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(9)
    sets = [
        _pareto(rng, 2.0, 60),
        _spectrum(rng.standard_normal((300, 120))),
        np.array([1.0, 1.0, 1.0]),
        _pareto(rng, 3.0, 1200),
        np.array([np.nan, 1.0, 2.0]),
        np.round(_pareto(rng, 1.8, 400), 2),
    ]
    one = [fit_power_law(x) for x in sets]
    assert fit_power_law_batch(sets) == one
    # Tiny chunks cross layer boundaries: still the same fits.
    assert fit_power_law_batch(sets, chunk_size=97) == one
    for kwargs in ({"xmin_range": (1.0, 5.0)}, {"min_tail": 10}):
        assert fit_power_law_batch(sets, **kwargs) == [fit_power_law(x, **kwargs) for x in sets]


@pytest.mark.parametrize("chunk_size", [1, 1000, 2**16, 2**24])
def test_chunk_size_does_not_change_the_fit(chunk_size: int) -> None:
    x = _pareto(np.random.default_rng(2), 2.5, 500)
    assert fit_power_law(x, chunk_size=chunk_size) == fit_power_law(x)


def test_fixed_xmin_matches_powerlaw() -> None:
    x = _pareto(np.random.default_rng(4), 2.5, 800)
    inside = float(np.sort(x)[400])
    outside = float((np.sort(x)[200] + np.sort(x)[201]) / 2)
    for cut in (inside, outside):
        fit = fit_power_law(x, xmin=cut)
        assert fit.xmin == cut
        _assert_same(fit, _powerlaw_fit(x, xmin=cut))


def test_xmin_range_is_respected_and_matches_powerlaw() -> None:
    x = _pareto(np.random.default_rng(6), 2.0, 900)
    lo, hi = np.quantile(x, [0.3, 0.6])
    fit = fit_power_law(x, xmin_range=(lo, hi))
    assert lo <= fit.xmin <= hi
    _assert_same(fit, _powerlaw_fit(x, xmin=(lo, hi)))
    alpha, xmin, _, _ = _loop_reference(x, xmin_range=(lo, hi))
    assert fit.xmin == xmin and abs(fit.alpha - alpha) < TOL
    assert fit_power_law(x, xmin_range=(hi, lo)) == fit  # order of the bounds is free


def test_min_tail_filters_candidates() -> None:
    x = _pareto(np.random.default_rng(8), 3.0, 400)
    for min_tail in (2, 50, 350):
        fit = fit_power_law(x, min_tail=min_tail)
        alpha, xmin, D, n_tail = _loop_reference(x, min_tail=min_tail)
        assert fit.n_tail >= min_tail
        assert (fit.xmin, fit.n_tail) == (xmin, n_tail)
        assert abs(fit.alpha - alpha) < TOL and abs(fit.D - D) < TOL


@pytest.mark.parametrize(
    ("values", "status", "n"),
    [
        ([], "too_few", 0),
        ([3.0], "too_few", 1),
        ([2.0, 2.0, 2.0], "constant", 3),
        ([0.0, -1.0, 0.0], "nonpositive", 0),
        ([1.0, np.nan, 3.0], "nonfinite", 3),
        ([1.0, np.inf, 3.0], "nonfinite", 3),
        ([0.0, 5.0, -2.0, 5.0], "constant", 2),
    ],
)
def test_degenerate_inputs_give_nan_and_status(values: list[float], status: str, n: int) -> None:
    for distribution in ("power_law", "truncated_power_law"):
        fit = fit_power_law(values, distribution=distribution)
        assert fit.status == status and not fit.ok
        assert fit.n == n and fit.n_tail == 0
        assert all(math.isnan(v) for v in (fit.alpha, fit.xmin, fit.D, fit.sigma))


def test_unfittable_options_give_status() -> None:
    x = np.arange(1.0, 11.0)
    assert fit_power_law(x, xmin_range=(100.0, 200.0)).status == "too_few"
    assert fit_power_law(x, xmin=10.0).status == "too_few"  # one value in the tail
    assert fit_power_law(x, xmin=50.0).status == "too_few"
    assert fit_power_law([1.0, 4.0, 4.0], xmin=4.0).status == "constant"
    assert fit_power_law(x, min_tail=11).status == "too_few"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"xmin": 1.0, "xmin_range": (1.0, 2.0)},
        {"xmin": 0.0},
        {"xmin": -1.0},
        {"xmin": math.inf},
        {"xmin_range": (1.0,)},
        {"min_tail": 1},
        {"min_tail": 2.5},
        {"distribution": "lognormal"},
        {"chunk_size": 0},
    ],
)
def test_invalid_options_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        fit_power_law([1.0, 2.0, 3.0], **kwargs)


@pytest.mark.slow  # a numerical likelihood search
def test_truncated_power_law_is_the_mle_at_the_power_law_xmin() -> None:
    rng = np.random.default_rng(12)
    x = _pareto(rng, 2.5, 1200)
    x = x[x < np.quantile(x, 0.97)]  # an exponential-looking cut-off
    pl = fit_power_law(x)
    tpl = fit_power_law(x, distribution="truncated_power_law")
    assert tpl.status == "ok" and tpl.distribution == "truncated_power_law"
    assert tpl.xmin == pl.xmin and tpl.n_tail == pl.n_tail
    assert tpl.lam > 0 and tpl.alpha > 1 and math.isnan(tpl.sigma)
    assert 0 < tpl.D < 1

    tail = x[x >= tpl.xmin] / tpl.xmin

    def loglik(alpha: float, lam: float) -> float:
        mu = lam * tpl.xmin
        log_j, _, _ = _tpl_moments(alpha, mu)
        return -tail.size * (alpha * np.mean(np.log(tail)) + mu * np.mean(tail) + log_j + math.log(tpl.xmin))

    best = loglik(tpl.alpha, tpl.lam)
    for da, dl in [(1e-3, 0), (-1e-3, 0), (0, 1e-3 * tpl.lam), (0, -1e-3 * tpl.lam)]:
        assert best >= loglik(tpl.alpha + da, tpl.lam + dl)
    ref = _powerlaw_fit(x).truncated_power_law
    assert best >= ref.loglikelihood - 1e-9 * tail.size  # same likelihood, our optimum no worse
    assert tpl.alpha == pytest.approx(ref.alpha, rel=1e-3)
    assert tpl.lam == pytest.approx(ref.Lambda, rel=1e-2)
    assert tpl.D == pytest.approx(ref.D, abs=1e-3)


def test_truncated_power_law_recovers_its_parameters() -> None:
    rng = np.random.default_rng(13)
    alpha, lam, n = 2.5, 0.05, 20000
    proposal = (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))  # x ≥ 1
    x = proposal[rng.random(n) < np.exp(-lam * (proposal - 1.0))]
    fit = fit_power_law(x, xmin=1.0, distribution="truncated_power_law")
    # Sampling spread over seeds: sd(α) ≈ 0.025, sd(λ) ≈ 0.006; allow four of them.
    assert fit.alpha == pytest.approx(alpha, abs=0.1)
    assert fit.lam == pytest.approx(lam, abs=0.025)


def test_result_tables() -> None:
    fit = fit_power_law(_pareto(np.random.default_rng(1), 2.0, 100))
    row = fit.to_dict()
    assert list(row) == ["alpha", "xmin", "D", "sigma", "n_tail", "n", "status", "distribution", "lam"]
    frame = fit.to_frame()
    assert frame.shape == (1, 9) and frame.loc[0, "alpha"] == fit.alpha
    for field in fields(fit):
        with pytest.raises(FrozenInstanceError):
            setattr(fit, field.name, 3.0)


# ----------------------------------------------------------------- bound and prune
# The NumPy backend finds x_min by bounding D from below on a few points of each tail
# and computing it in full only where the bound cannot rule a candidate out. It must
# give the very fits, bit for bit, of the exhaustive O(N²) search.


def _exhaustive_numpy(sets: list[Any], **kwargs: Any) -> list[PowerLawFit]:
    return _exhaustive_fits(sets, backend="numpy", **kwargs)


def _assert_identical(fits: list[PowerLawFit], reference: list[PowerLawFit]) -> None:
    """Every field equal, bit for bit (NaN where the reference has NaN)."""
    assert len(fits) == len(reference)
    for fit, ref in zip(fits, reference):
        for a, b in zip(fit.to_dict().values(), ref.to_dict().values()):
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (fit, ref)


def _quantiles(alpha: float, n: int) -> np.ndarray:
    """An ideal power-law sample: many candidates fit it almost equally well."""
    return (1.0 - (np.arange(n) + 0.5) / n) ** (-1.0 / (alpha - 1.0))


def _seeded_sets(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 1500))
    return [
        _pareto(rng, float(rng.uniform(1.3, 4.0)), n),
        np.round(_pareto(rng, 2.0, n), int(rng.integers(0, 3))),  # ties
        _spectrum(rng.standard_normal((n + int(rng.integers(0, n)), max(2, n // 2)))),
        _spectrum(rng.standard_t(float(rng.uniform(1.5, 4.0)), size=(n, max(2, n // 3)))),
        rng.integers(1, int(rng.integers(2, 40)), size=n).astype(np.float64),  # few values
        np.concatenate([_pareto(rng, 2.5, n), np.full(int(rng.integers(1, 50)), 1e3)]),  # top ties
    ]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.slow  # an exhaustive reference search
def test_pruned_search_equals_exhaustive_search(seed: int) -> None:
    sets = _seeded_sets(seed)
    reference = _exhaustive_numpy(sets)
    _assert_identical(fit_power_law_batch(sets), reference)
    _assert_identical([fit_power_law(x) for x in sets], reference)
    assert all(f.ok for f in reference)


def test_pruned_search_on_nearly_equal_distances() -> None:
    sets = [_quantiles(alpha, n) for alpha, n in [(2.0, 3000), (3.0, 2000), (1.5, 1000)]]
    rng = np.random.default_rng(21)
    sets.append(_quantiles(2.5, 2500) * (1.0 + 1e-9 * rng.standard_normal(2500)))
    sets.append(np.geomspace(1.0, 1e3, 2000))  # every tail the same shape
    _assert_identical(fit_power_law_batch(sets), _exhaustive_numpy(sets))


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 2.0],
        [2.0, 1.0, 2.0],
        [1.0, 1.0, 2.0],
        [1.0, 2.0, 3.0],
        [5.0, 5.0, 5.0, 7.0, 7.0],
        [1.0, 1.0 + 2**-52, 1.0 + 2**-51],  # adjacent doubles
        [1e-300, 1e-150, 1.0, 1e150, 1e300],  # ratios overflow: NaN D in both
        [0.0, 3.0, 4.0, -1.0, 4.0],
    ],
)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_pruned_search_on_tiny_sets(values: list[float]) -> None:
    x = np.asarray(values)
    for kwargs in ({}, {"min_tail": 3}, {"xmin_range": (1.0, 4.0)}):
        _assert_identical([fit_power_law(x, **kwargs)], _exhaustive_numpy([x], **kwargs))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.slow  # an exhaustive reference search
def test_pruned_search_with_options_equals_exhaustive(seed: int) -> None:
    sets = _seeded_sets(100 + seed) + [np.array([1.0, 1.0]), np.array([np.nan, 2.0]), np.array([3.0])]
    rng = np.random.default_rng(seed)
    lo, hi = sorted(rng.uniform(0.0, 20.0, 2))
    cut = float(np.median(sets[0]))
    for kwargs in (
        {"xmin_range": (lo, hi)},
        {"xmin_range": (hi, lo)},
        {"xmin_range": (0.0, float(np.quantile(sets[0], 0.1)))},
        {"xmin_range": (float(np.max(sets[0])), math.inf)},  # only the top: no candidate
        {"min_tail": int(rng.integers(3, 200))},
        {"min_tail": 10, "xmin_range": (lo, hi)},
        {"xmin": cut},  # no search: α and D at a fixed cut, the NumPy kernel against the padded one
        {"xmin": float(sets[2][3])},
    ):
        _assert_identical(fit_power_law_batch(sets, **kwargs), _exhaustive_numpy(sets, **kwargs))


def test_pruned_search_computes_few_distances_in_full() -> None:
    rng = np.random.default_rng(22)
    n = 3000  # a Marchenko–Pastur bulk and a power-law tail above it
    bulk, tail = mp_quantile(rng.random(n - 450), 1.0, 2.0), 2.9 * (1.0 - rng.random(450)) ** -0.6
    x = np.sort(np.concatenate([bulk, tail]))
    rows = _xmin_search._Rows([x])
    k, _ = _xmin_search._candidates(rows, None, 2)
    counted = {"terms": 0}
    terms = _xmin_search._Rows.terms

    def counting(self: Any, j: np.ndarray, kk: np.ndarray) -> np.ndarray:
        counted["terms"] += j.size
        return terms(self, j, kk)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_xmin_search._Rows, "terms", counting)
        fit = fit_power_law(x)
    _assert_identical([fit], _exhaustive_numpy([x]))
    exhaustive_terms = int((n - k).sum())
    assert counted["terms"] < exhaustive_terms / 20, (counted["terms"], exhaustive_terms)


def _first_argmin_of_full_maxima(rows: list[np.ndarray], xmin_range: Any, min_tail: int) -> np.ndarray:
    """The search's rule without pruning: each row's first candidate of smallest D."""
    R = _xmin_search._Rows(rows)
    k, row = _xmin_search._candidates(R, xmin_range, min_tail)
    D = R.full_max(k) if k.size else np.zeros(0)
    best = np.zeros(len(rows), dtype=np.int64)
    for b in range(len(rows)):
        Db, kb = D[row == b], k[row == b]
        if Db.size and np.isfinite(Db.min()):
            best[b] = kb[np.argmin(Db)] - R.starts[b]
    return best


@pytest.mark.parametrize("grid", [0.25, 0.05, 1e-3])
def test_pruning_keeps_the_first_minimum_under_exact_ties(grid: float) -> None:
    # Terms rounded to a coarse grid make many candidates tie exactly, with bounds equal
    # to the best D: the pruned search must still return each row's first minimum.
    terms = _xmin_search._Rows.terms

    def rounded(self: Any, j: np.ndarray, k: np.ndarray) -> np.ndarray:
        return np.round(terms(self, j, k) / grid) * grid

    rng = np.random.default_rng(23)
    rows = [np.sort(_pareto(rng, 2.0, n)) for n in (2, 3, 40, 300, 1200)] + [np.sort(_quantiles(2.0, 800))]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_xmin_search._Rows, "terms", rounded)
        for xmin_range, min_tail in ((None, 2), ((1.0, 3.0), 2), (None, 30)):
            best, found = _xmin_search.search_xmin(rows, xmin_range, min_tail)
            assert best.tolist() == _first_argmin_of_full_maxima(rows, xmin_range, min_tail).tolist()


def test_undefined_distances_rank_last() -> None:
    # A NaN term makes D undefined (+inf, as in the exhaustive search); a row whose
    # every D is undefined gets position 0, as the exhaustive search returns.
    terms = _xmin_search._Rows.terms

    def poisoned(self: Any, j: np.ndarray, k: np.ndarray) -> np.ndarray:
        out = terms(self, j, k)
        return np.where((k % 3 == 0) & (j == k + 1), np.nan, out)

    rng = np.random.default_rng(24)
    rows = [np.sort(_pareto(rng, 2.0, n)) for n in (50, 400)] + [np.array([1.0, 2.0, 3.0])]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_xmin_search._Rows, "terms", poisoned)
        best, found = _xmin_search.search_xmin(rows, None, 2)
        assert best.tolist() == _first_argmin_of_full_maxima(rows, None, 2).tolist()
        assert found.all()


_SAMPLE_SIZES = sorted({_xmin_search._FIRST, *(m for r in _xmin_search._ROUNDS for m in r if m)})


@pytest.mark.parametrize("m", _SAMPLE_SIZES)
def test_spread_positions_cover_short_windows(m: int) -> None:
    # A window of at most m positions is sampled whole: its maximum is D itself.
    span = np.arange(m)
    lo = np.arange(m) * 7 + 3
    out = np.empty((m, m), dtype=np.int64)
    _xmin_search._spread(lo, lo + span, m, out)
    for s in range(m):
        assert set(out[s].tolist()) == set(range(lo[s], lo[s] + s + 1))
    # Longer windows: positions inside [lo, hi], both ends included.
    span = np.random.default_rng(m).integers(m, 10**7, 500)
    lo = np.random.default_rng(m + 1).integers(0, 10**6, 500)
    out = np.empty((500, m), dtype=np.int64)
    _xmin_search._spread(lo, lo + span, m, out)
    assert (out >= lo[:, None]).all() and (out <= (lo + span)[:, None]).all()
    assert (out[:, 0] == lo).all() and (out[:, -1] == lo + span).all()
