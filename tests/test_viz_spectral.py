"""Figures of the spectral analysis: real pixels, and the curves where the fits say they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from convsvd import zoo  # noqa: E402
from convsvd.errors import InputError  # noqa: E402
from convsvd.spectral import VIEWS, spectrum  # noqa: E402
from convsvd.viz import esd_figure, plot_alpha_depth, plot_esd, plot_trained_vs_random, plot_views  # noqa: E402


@pytest.fixture(scope="module")
def trained():  # type: ignore[no-untyped-def]
    return spectrum(zoo.load("digits-cnn"), mp=True, random_baseline=True)


def _png(fig, path) -> np.ndarray:  # type: ignore[no-untyped-def]
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.std() > 10  # not blank
    return img


def _gid(ax, gid: str):  # type: ignore[no-untyped-def]
    lines = [line for line in ax.get_lines() if line.get_gid() == gid]
    assert len(lines) == 1, gid
    return lines[0]


@pytest.mark.slow  # spectra with MP fits of a whole model
def test_esd_figure_draws_mp_on_its_support_and_the_power_law_from_xmin(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    layer = trained["conv3"]
    fig = esd_figure(layer)
    linear, loglog = fig.axes[:2]
    for ax in (linear, loglog):
        x, y = (np.asarray(v, dtype=float) for v in _gid(ax, "mp-density").get_data())
        assert x.min() == pytest.approx(layer.mp.lambda_minus, rel=1e-12)
        assert x.max() == pytest.approx(layer.mp.lambda_plus, rel=1e-12)
        assert (y[1:-1] > 0).all()
        px, py = (np.asarray(v, dtype=float) for v in _gid(ax, "power-law").get_data())
        assert px.min() == pytest.approx(layer.fit.xmin) and px.max() == pytest.approx(layer.lambda_max)
        slope = np.diff(np.log(py)) / np.diff(np.log(px))
        np.testing.assert_allclose(slope, -layer.alpha, rtol=1e-9)
    assert loglog.get_xscale() == "log" and linear.get_xscale() == "linear"
    assert any(p.get_gid() == "random-esd" for p in loglog.patches)  # the shuffled layer's ESD
    img = _png(fig, tmp_path / "esd.png")
    assert img.shape[:2] == (272, 760)  # 9.5 × 3.4 inches at 80 dpi


@pytest.mark.slow  # spectra of every view and figures
def test_alpha_depth_trained_vs_random_and_views(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    initial = spectrum(zoo.load("digits-cnn", epoch=0), mp=True)
    ax = plot_alpha_depth([initial, trained], labels=["init", "trained"])
    curves = [l for l in ax.get_lines() if l.get_label().startswith(("init", "trained"))]
    np.testing.assert_allclose(curves[1].get_ydata(), trained.to_frame().alpha.to_numpy(float))
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("trained: α̂ = ") for t in texts) and any("not in α̂" in t for t in texts)
    weighted = plot_alpha_depth([trained], quantity="alpha_weighted")
    np.testing.assert_allclose(weighted.get_lines()[0].get_ydata(), trained.to_frame().alpha_weighted.to_numpy(float))
    assert weighted.get_ylabel() == "α·log10 λ_max" and ax.get_ylabel() == "α"  # one quantity per axes
    _png(ax.figure, tmp_path / "alpha.png")

    ax = plot_trained_vs_random(trained["fc1"], initial["fc1"])
    assert len(ax.get_lines()) == 2  # one MP fit each
    _png(ax.figure, tmp_path / "tvr.png")

    layers = [spectrum(zoo.load("digits-cnn"), view=v, layers="conv2", n=8, mp=True).layers[0] for v in VIEWS]
    axes = plot_views(layers)
    assert [a.get_title().split(",")[1].strip().split()[0] for a in axes] == list(VIEWS)
    img = _png(axes[0].figure, tmp_path / "views.png")
    assert img.shape[1] > 2.5 * img.shape[0]


def test_figures_handle_layers_without_fits_and_bad_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = spectrum(nn.Sequential(nn.Linear(3, 5), nn.Linear(64, 40)))
    assert res.layers[0].status == "too_few"
    ax = plot_esd(res.layers[0], log=True)
    assert not any(line.get_gid() in ("mp-density", "power-law") for line in ax.get_lines())
    _png(ax.figure, tmp_path / "few.png")
    fig, axes = plt.subplots(1, 2)
    assert plot_esd(res.layers[1], ax=axes[1]) is axes[1]  # draws where asked
    plt.close(fig)
    with pytest.raises(InputError, match="LayerSpectrum"):
        plot_esd(torch.ones(3))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="SpectrumResult"):
        plot_alpha_depth([res.layers[0]])  # type: ignore[list-item]
