"""Honest spectral summaries: headline layers, tail evidence against the powerlaw package, correlation traps."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from convsvd import zoo
from convsvd.spectral import spectrum
from convsvd.spectral.metrics import HEADLINE_MIN_EVALS, HEADLINE_MIN_TAIL, TOO_FEW_TAIL, classify, pl_vs_exponential


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vuong_ratio_equals_powerlaw_package(seed: int) -> None:
    powerlaw = pytest.importorskip("powerlaw")
    rng = np.random.default_rng(seed)
    data = np.concatenate([(1 - rng.random(300)) ** (-1 / (1.2 + seed * 0.5)), rng.exponential(0.5, 200) + 0.2])
    xmin = float(np.quantile(data, 0.4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = powerlaw.Fit(data, xmin=xmin, verbose=False)
        R_ref, p_ref = fit.distribution_compare("power_law", "exponential", normalized_ratio=True)
    alpha = fit.power_law.alpha
    R, p = pl_vs_exponential(data, alpha, xmin)
    # The package fits the exponential numerically: equal to its optimiser's tolerance.
    assert R == pytest.approx(R_ref, rel=1e-3)
    assert p == pytest.approx(p_ref, rel=2e-2, abs=1e-12)
    # With the same parameters (the exponential's closed-form MLE), the package's own formulas agree exactly.
    tail = data[data >= xmin]
    mu = 1.0 / np.mean(tail - xmin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        l_pl = powerlaw.Power_Law(xmin=xmin, parameters=[alpha], discrete=False).loglikelihoods(tail)
        l_ex = powerlaw.Exponential(xmin=xmin, parameters=[mu], discrete=False).loglikelihoods(tail)
        R_same, p_same = powerlaw.loglikelihood_ratio(l_pl, l_ex, normalized_ratio=True)
    assert R == pytest.approx(R_same, rel=1e-9) and p == pytest.approx(p_same, rel=1e-9, abs=1e-300)


def test_vuong_prefers_the_true_family() -> None:
    rng = np.random.default_rng(0)
    heavy = (1 - rng.random(2000)) ** (-1 / 1.5)
    R, p = pl_vs_exponential(heavy, 2.5, 1.0)
    assert R > 2 and p < 1e-3
    light = 1.0 + rng.exponential(1.0, 2000)
    alpha = 1 + light.size / np.log(light).sum()
    R, p = pl_vs_exponential(light, alpha, 1.0)
    assert R < -2 and p < 1e-3
    assert all(math.isnan(v) for v in pl_vs_exponential(np.ones(1), 2.0, 1.0))


def test_short_tails_get_no_phase() -> None:
    lam = np.linspace(1.0, 2.0, 50)
    assert classify(lam, 3.1, n_tail=HEADLINE_MIN_TAIL - 1) == TOO_FEW_TAIL
    assert classify(lam, 3.1, n_tail=HEADLINE_MIN_TAIL) == "heavy-tailed"


def test_headline_excludes_small_layers_and_ranks_the_trained_model_first() -> None:
    results = {e: spectrum(zoo.load("digits-cnn", epoch=e)) for e in (0, 5, 20)}
    frame = results[20].to_frame()
    small = frame[frame.n_evals < HEADLINE_MIN_EVALS]
    assert not small.headline.astype(bool).any() and (small.headline_reason != "").all()
    head = frame[frame.headline.astype(bool)]
    assert (head.num_pl_spikes >= HEADLINE_MIN_TAIL).all() and (head.headline_reason == "").all()
    ahat = {e: r.summary()["alpha_hat"].iloc[0] for e, r in results.items()}
    assert ahat[20] > ahat[5] > ahat[0]
    mean_alpha = {e: r.summary()["alpha"].iloc[0] for e, r in results.items()}
    assert mean_alpha[20] < mean_alpha[5] < mean_alpha[0]


def test_correlation_trap_flags_a_few_huge_weights() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(200, 100, bias=False))
    trapped = nn.Sequential(nn.Linear(200, 100, bias=False))
    with torch.no_grad():
        trapped[0].weight[torch.arange(5), torch.arange(5) * 7] = 2.0
    assert spectrum(plain, random_baseline=True)["0"].correlation_trap is False
    assert spectrum(trapped, random_baseline=True)["0"].correlation_trap is True
    assert spectrum(plain)["0"].correlation_trap is None
