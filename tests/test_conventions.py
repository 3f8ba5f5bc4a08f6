"""Eigenvalue conventions: ``convsvd`` (σ²/N, log10), ``ddp`` (σ²/rows, ln), ``ww`` (σ², log10; σ²/2 for conv slices).

The references are the peers' formulas written out here (DeepDataProfiler 2.0.1's
``SpectralAnalysis.spectral_analysis``/``universal_metric``, WeightWatcher 0.7.7's
``combined_eigenvalues``/``apply_normalize_Wmats``/``apply_norm_metrics`` and its
``WWFit.fit_power_law_standard``), never the package's own code.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from convsvd.cli import main
from convsvd.errors import InputError
from convsvd.spectral import CONVENTIONS, compare, convention_scale, spectrum


def _mlp() -> nn.Module:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(120, 90), nn.ReLU(), nn.Linear(90, 60)).double()
    with torch.no_grad():  # a heavy-ish tail, so the fits are not all at the bulk
        net[0].weight[:5] *= 6.0
    return net


def _cnn() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Conv2d(12, 24, 3), nn.ReLU(), nn.Conv2d(24, 40, 3)).double()


def ww_fit(evals: np.ndarray) -> float:
    """WeightWatcher 0.7.7 ``WWFit.fit_power_law_standard`` (N ≥ 20) on ``λ > 1e-5``: its α."""
    data = np.sort(evals[evals > 1e-5])
    N = data.size
    logd = np.log(data)
    alphas, Ds = np.zeros(N - 1), np.ones(N - 1)
    for i, xmin in enumerate(data[:-1]):
        n = float(N - i)
        a = 1 + n / (np.sum(logd[i:]) - n * logd[i])
        alphas[i] = a
        if a > 1:
            Ds[i] = np.max(np.abs(1 - (data[i:] / xmin) ** (-a + 1) - np.arange(n) / n))
    return float(alphas[np.argmin(Ds)])


def test_ddp_eigenvalues_and_alpha_hat_are_deepdataprofilers() -> None:
    for net in (_mlp(), _cnn()):
        ours = spectrum(net, convention="ddp")
        base = spectrum(net)
        terms = []
        for layer, b in zip(ours.layers, base.layers):
            mod = dict(net.named_modules())[layer.name]
            X = mod.weight.detach().flatten(1)  # DDP: torch.flatten(W, 1); eigenvalues σ² / len(X)
            ref = np.sort(torch.linalg.svdvals(X).numpy() ** 2 / len(X))
            np.testing.assert_allclose(layer.evals, ref, rtol=1e-12, atol=0)
            assert layer.lambda_max == pytest.approx(ref.max(), rel=1e-12)
            assert layer.alpha == pytest.approx(b.alpha, rel=1e-9)  # α does not depend on the scale
            assert layer.fit.xmin == pytest.approx(b.fit.xmin * max(X.shape) / X.shape[0], rel=1e-9)
            assert layer.alpha_weighted == pytest.approx(layer.alpha * math.log(ref.max()), rel=1e-12)
            assert layer.log_norm == pytest.approx(b.log_norm, rel=1e-12)  # log10 Σσ² in every convention
            assert layer.stable_rank == pytest.approx(b.stable_rank, rel=1e-12)
            assert layer.entropy == pytest.approx(b.entropy, rel=1e-12)
            assert layer.row()["convention"] == "ddp"
            terms.append(layer.alpha * math.log(ref.max()))
        summary = ours.summary().iloc[0]
        assert summary["alpha_hat_all"] == pytest.approx(float(np.mean(terms)), rel=1e-12)
        head = [t for t, layer in zip(terms, ours.layers) if layer.headline]
        assert summary["alpha_hat"] == pytest.approx(float(np.mean(head)) if head else math.nan, rel=1e-12,
                                                     nan_ok=True)


def test_ww_linear_lambda_max_and_alpha_weighted_are_weightwatchers() -> None:
    net = _mlp()
    ours = spectrum(net, convention="ww")
    for layer in ours.layers:
        W = dict(net.named_modules())[layer.name].weight.detach()
        ref = np.sort(torch.linalg.svdvals(W).numpy() ** 2)  # combined_eigenvalues: sv * sv, no 1/N
        np.testing.assert_allclose(layer.evals, ref, rtol=1e-12)
        assert layer.lambda_max == pytest.approx(ref.max(), rel=1e-12)  # "lambda_max" = np.max(evals)
        alpha = ww_fit(ref)
        assert layer.alpha == pytest.approx(alpha, rel=1e-10)
        # apply_norm_metrics: alpha_weighted = alpha * log10(spectral_norm), spectral_norm = max(evals)
        assert layer.alpha_weighted == pytest.approx(alpha * math.log10(ref.max()), rel=1e-10)
        assert layer.log_spectral_norm == pytest.approx(math.log10(ref.max()), rel=1e-12)


def test_ww_conv_slices_carry_weightwatchers_conv2d_norm() -> None:
    net = _cnn()
    ours = spectrum(net, view="slices", convention="ww")
    for layer in ours.layers:
        W = dict(net.named_modules())[layer.name].weight.detach()
        # conv2D_Wmats: W[:, :, i, j] per tap; apply_normalize_Wmats: W * sqrt(conv2d_count / 2), count = 1
        sv = [torch.linalg.svdvals(W[:, :, i, j] * math.sqrt(0.5)) for i in range(3) for j in range(3)]
        ref = np.sort(torch.cat(sv).numpy() ** 2)
        np.testing.assert_allclose(layer.evals, ref, rtol=1e-12)
        alpha = ww_fit(ref)
        assert layer.alpha == pytest.approx(alpha, rel=1e-10)
        assert layer.alpha_weighted == pytest.approx(alpha * math.log10(ref.max()), rel=1e-10)
    unfold = spectrum(net, convention="ww")  # outside the slices view: plain σ², no conv2d_norm
    W = net[2].weight.detach().flatten(1)
    assert unfold["2"].lambda_max == pytest.approx(float(torch.linalg.svdvals(W)[0] ** 2), rel=1e-12)


def test_conventions_rescale_the_random_baseline_and_keep_alpha() -> None:
    net = _mlp()
    res = {c: spectrum(net, convention=c, random_baseline=True, mp=True) for c in CONVENTIONS}
    for name in res["convsvd"].names:
        a, d, w = (res[c][name] for c in CONVENTIONS)
        m, n = a.shape
        assert d.random.lambda_max == pytest.approx(a.random.lambda_max * max(m, n) / m, rel=1e-12)
        assert w.random.lambda_max == pytest.approx(a.random.lambda_max * max(m, n), rel=1e-12)
        assert d.random.distance == pytest.approx(a.random.distance, abs=1e-12)  # KS: scale-free
        assert d.alpha == pytest.approx(a.alpha, rel=1e-9) and w.alpha == pytest.approx(a.alpha, rel=1e-9)
        assert d.mp.num_spikes == a.mp.num_spikes


def test_convention_recorded_and_checked() -> None:
    frame = compare([_mlp(), _cnn()], labels=["mlp", "cnn"], convention="ww")
    assert frame.convention.tolist() == ["ww", "ww"]
    assert list(frame.columns[:4]) == ["label", "source", "view", "convention"]
    assert spectrum(_mlp(), convention="ddp").options["convention"] == "ddp"
    with pytest.raises(InputError, match="convention 'weightwatcher'"):
        spectrum(_mlp(), convention="weightwatcher")
    with pytest.raises(InputError, match="convention"):
        convention_scale("x", (2, 3))


@pytest.mark.slow  # whole commands
def test_cli_convention(tmp_path, capsys) -> None:
    assert main(["spectrum", "digits-cnn", "--convention", "ddp", "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "spectrum.json").read_text())
    assert meta["options"]["convention"] == "ddp"
    import pandas as pd

    frame = pd.read_csv(tmp_path / "spectrum.csv")
    assert set(frame.convention) == {"ddp"}
    assert "ln λmax" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["spectrum", "digits-cnn", "--convention", "bogus"])
    assert exc.value.code == 2
