"""Marchenko–Pastur law and fit, and the ESD helpers (convsvd.spectral.mp / .esd)."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as kl_entropy
from scipy.stats import ks_2samp

from convsvd.errors import InputError
from convsvd.spectral import (
    esd_distance,
    esd_from_singular_values,
    fit_marchenko_pastur,
    log_norm,
    log_spectral_norm,
    matrix_entropy,
    mp_cdf,
    mp_density,
    mp_edges,
    mp_quantile,
    randomize,
    stable_rank,
    tracy_widom_scale,
)


def _esd(W: np.ndarray) -> np.ndarray:
    return np.linalg.svd(W, compute_uv=False) ** 2 / max(W.shape)


# ---------------------------------------------------------------------- the law


@pytest.mark.parametrize("Q", [1.0, 1.5, 4.0, 20.0])
def test_density_cdf_and_quantile_agree(Q: float) -> None:
    sigma2 = 1.7
    lo, hi = mp_edges(sigma2, Q)
    assert (lo, hi) == pytest.approx((sigma2 * (1 - Q**-0.5) ** 2, sigma2 * (1 + Q**-0.5) ** 2))
    assert quad(lambda x: float(mp_density(x, sigma2, Q)), lo, hi, limit=200)[0] == pytest.approx(
        1.0, abs=1e-7
    )
    for x in np.linspace(lo, hi, 9):
        integral = quad(lambda t: float(mp_density(t, sigma2, Q)), lo, x, limit=200)[0]
        assert float(mp_cdf(x, sigma2, Q)) == pytest.approx(integral, abs=1e-7)
    p = np.linspace(0.0, 1.0, 21)
    np.testing.assert_allclose(mp_cdf(mp_quantile(p, sigma2, Q), sigma2, Q), p, atol=1e-12)
    assert mp_density([lo - 1e-3, hi + 1e-3], sigma2, Q).tolist() == [0.0, 0.0]


def test_law_rejects_bad_parameters() -> None:
    for bad in [(1.0, 0.5), (0.0, 2.0), (-1.0, 2.0), (1.0, math.nan)]:
        with pytest.raises(InputError):
            mp_edges(*bad)
    with pytest.raises(InputError):
        tracy_widom_scale(1.0, 2.0, 0)


def test_tracy_widom_scale_is_johnstones_scale_over_N() -> None:
    for N, M in [(1000, 500), (2000, 500), (300, 300)]:
        johnstone = (math.sqrt(N) + math.sqrt(M)) * (1 / math.sqrt(N) + 1 / math.sqrt(M)) ** (1 / 3)
        assert tracy_widom_scale(2.5, N / M, M) == pytest.approx(2.5 * johnstone / N, rel=1e-12)


# ---------------------------------------------------------------------- the fit


@pytest.mark.parametrize("shape", [(1000, 500), (2000, 500)])
@pytest.mark.parametrize("sigma", [0.3, 2.0])
@pytest.mark.slow  # fits of large random matrices
def test_fit_recovers_sigma2_and_Q_of_a_gaussian_matrix(shape: tuple[int, int], sigma: float) -> None:
    W = sigma * np.random.default_rng(shape[0] + int(10 * sigma)).standard_normal(shape)
    Q = shape[0] / shape[1]
    fixed = fit_marchenko_pastur(_esd(W), Q)
    assert fixed.status == "ok" and fixed.num_spikes == 0 and fixed.spikes == ()
    assert fixed.sigma2 == pytest.approx(sigma**2, rel=0.02)
    free = fit_marchenko_pastur(_esd(W), 1.0, fit_Q=True)
    assert free.status == "ok" and free.num_spikes == 0
    assert free.sigma2 == pytest.approx(sigma**2, rel=0.05)
    assert free.Q == pytest.approx(Q, rel=0.05)
    assert (free.lambda_minus, free.lambda_plus) == pytest.approx(mp_edges(free.sigma2, free.Q))


@pytest.mark.slow  # fits of large random matrices
def test_fit_finds_exactly_the_planted_spikes() -> None:
    rng = np.random.default_rng(42)
    N, M = 1000, 500
    W = rng.standard_normal((N, M))
    # Rank-one signals θ·√N·u vᵀ; BBP threshold θ > (M/N)^{1/4} ≈ 0.84.
    for theta in (2.5, 3.5, 5.0):
        u, v = rng.standard_normal(N), rng.standard_normal(M)
        W += theta * math.sqrt(N) * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    evals = _esd(W)
    for fit_Q in (False, True):
        fit = fit_marchenko_pastur(evals, N / M, fit_Q=fit_Q)
        assert fit.status == "ok"
        assert fit.num_spikes == 3
        assert fit.spikes == tuple(np.sort(evals)[::-1][:3])
        assert fit.sigma2 == pytest.approx(1.0, rel=0.02)
        assert fit.threshold < min(fit.spikes)
        assert np.sort(evals)[-4] <= fit.threshold
        assert fit.mp_softrank == pytest.approx(fit.lambda_plus / evals.max())


@pytest.mark.slow  # fits of large random matrices
def test_pure_noise_shows_no_spikes() -> None:
    for seed in range(8):
        W = np.random.default_rng(100 + seed).standard_normal((600, 200))
        assert fit_marchenko_pastur(_esd(W), 3.0).num_spikes == 0


@pytest.mark.slow  # fits of large random matrices
def test_pooled_spectra_use_the_matrix_side_for_the_tw_scale() -> None:
    rng = np.random.default_rng(1)
    pooled = np.concatenate([_esd(rng.standard_normal((256, 64))) for _ in range(9)])
    fit = fit_marchenko_pastur(pooled, 4.0, M=64)
    assert fit.status == "ok" and fit.sigma2 == pytest.approx(1.0, rel=0.02)
    assert fit.threshold == pytest.approx(fit.lambda_plus + 3.0 * tracy_widom_scale(fit.sigma2, 4.0, 64))


@pytest.mark.slow  # fits of large random matrices
def test_fit_statuses_and_option_checks() -> None:
    assert fit_marchenko_pastur([1.0, 2.0], 2.0).status == "too_few"
    assert fit_marchenko_pastur([1.0, math.nan, 2.0, 3.0], 2.0).status == "nonfinite"
    assert fit_marchenko_pastur(np.zeros(10), 2.0).status == "nonpositive"
    nan_fit = fit_marchenko_pastur([1.0, 2.0], 2.0)
    assert math.isnan(nan_fit.sigma2) and nan_fit.num_spikes == 0 and not nan_fit.ok
    for kwargs in ({"Q": 0.5}, {"Q": 2.0, "quantile_range": (0.9, 0.1)}, {"Q": 2.0, "tw_margin": -1.0}):
        with pytest.raises(InputError):
            fit_marchenko_pastur(np.arange(1.0, 20.0), **kwargs)
    frame = fit_marchenko_pastur(_esd(np.random.default_rng(0).standard_normal((200, 100))), 2.0).to_frame()
    assert frame.shape == (1, 9) and frame.loc[0, "status"] == "ok"


# ---------------------------------------------------------------------- ESD helpers


def test_esd_from_singular_values_normalises_by_the_larger_side() -> None:
    W = np.random.default_rng(0).standard_normal((30, 70))
    S = np.linalg.svd(W, compute_uv=False)
    lam = esd_from_singular_values(S, W.shape)
    np.testing.assert_allclose(lam, np.sort(np.linalg.eigvalsh(W @ W.T)) / 70, rtol=1e-10)
    groups = torch.rand(4, 5, dtype=torch.float64)
    pooled = esd_from_singular_values(groups, (5, 9))
    assert isinstance(pooled, torch.Tensor)
    assert pooled.shape == (20,)
    torch.testing.assert_close(pooled, torch.sort((groups**2 / 9).flatten()).values)
    with pytest.raises(InputError):
        esd_from_singular_values(np.ones(6), (5, 9))


def test_scalar_metrics() -> None:
    S = np.array([4.0, 2.0, 1.0, 1.0])
    assert stable_rank(S) == pytest.approx(22 / 16)
    assert log_norm(S) == pytest.approx(math.log10(22))
    assert log_spectral_norm(S, N=8) == pytest.approx(math.log10(16 / 8))
    p = S**2 / 22
    assert matrix_entropy(S) == pytest.approx(-np.sum(p * np.log(p)) / math.log(4))
    assert matrix_entropy(np.ones(7)) == pytest.approx(1.0)
    assert matrix_entropy([3.0, 0.0, 0.0]) == 0.0
    assert matrix_entropy([3.0, 1e-20, 0.0], N=3) == 0.0  # numerical rank 1
    assert math.isnan(matrix_entropy([0.0, 0.0]))
    W = np.random.default_rng(1).standard_normal((40, 25))
    sv = np.linalg.svd(W, compute_uv=False)
    assert stable_rank(sv) == pytest.approx(np.linalg.norm(W) ** 2 / np.linalg.norm(W, 2) ** 2)
    assert log_norm(sv) == pytest.approx(math.log10(np.linalg.norm(W) ** 2))


@pytest.mark.slow  # fits of large random matrices
def test_randomize_keeps_the_entries_and_gives_an_mp_spectrum() -> None:
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(400, 200, generator=gen, dtype=torch.float64)
    for _ in range(5):  # low-rank structure, which shuffling destroys
        u, v = (
            torch.randn(400, 1, generator=gen, dtype=torch.float64),
            torch.randn(1, 200, generator=gen, dtype=torch.float64),
        )
        W += 4.0 * math.sqrt(400) * (u / u.norm()) @ (v / v.norm())
    R = randomize(W, torch.Generator().manual_seed(1))
    assert isinstance(R, torch.Tensor)
    assert R.shape == W.shape and R.dtype == W.dtype
    torch.testing.assert_close(torch.sort(R.flatten()).values, torch.sort(W.flatten()).values)
    torch.testing.assert_close(randomize(W, 3), randomize(W, 3))
    arr = W.numpy()
    shuffled = randomize(arr, np.random.default_rng(2))
    assert isinstance(shuffled, np.ndarray) and np.array_equal(np.sort(shuffled, None), np.sort(arr, None))
    before = fit_marchenko_pastur(_esd(arr), 2.0)
    after = fit_marchenko_pastur(_esd(R.numpy()), 2.0)
    assert before.num_spikes == 5 and after.num_spikes == 0
    with pytest.raises(InputError):
        randomize(W, np.random.default_rng(0))


def test_esd_distance_definitions() -> None:
    rng = np.random.default_rng(3)
    a = _esd(rng.standard_normal((300, 100)))
    b = _esd(rng.standard_t(2.0, (300, 100)))
    assert esd_distance(a, a) == 0.0
    assert esd_distance(a, a, "ks") == 0.0
    js = esd_distance(a, b)
    edges = np.linspace(np.log10(min(a.min(), b.min())), np.log10(max(a.max(), b.max())), 101)
    ha, hb = np.histogram(np.log10(a), edges)[0], np.histogram(np.log10(b), edges)[0]
    assert js == pytest.approx(jensenshannon(ha, hb, base=2))
    assert 0 < js <= 1
    assert esd_distance(a, b, "ks") == pytest.approx(ks_2samp(a, b).statistic)
    # WeightWatcher's rand_distance: JS on the sorted, sum-normalised eigenvalue vectors.
    pa, pb = np.sort(a) / a.sum(), np.sort(b) / b.sum()
    m = (pa + pb) / 2
    ww = math.sqrt((kl_entropy(pa, m) + kl_entropy(pb, m)) / 2)
    assert esd_distance(a, b, "ww") == pytest.approx(ww)
    with pytest.raises(InputError):
        esd_distance(a, b[:-1], "ww")
    with pytest.raises(InputError):
        esd_distance(a, b, cast(Any, "hellinger"))
    assert math.isnan(esd_distance([], a))
