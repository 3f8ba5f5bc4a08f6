"""The SVD figures draw the decomposition's own numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from torch import nn  # noqa: E402

from convsvd.decompose import decompose  # noqa: E402
from convsvd.viz import plot_energy, plot_singular_values, svd_figure  # noqa: E402


@pytest.fixture()
def dec():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(),
                        nn.Linear(8, 4))
    return decompose(net, dtype="float64")


def test_singular_values_are_the_decompositions(dec) -> None:
    ax = plot_singular_values(dec)
    lines = ax.get_lines()
    assert [l.get_label().split(" ")[0] for l in lines] == list(dec)
    for line, layer in zip(lines, dec.layers.values()):
        s = layer.singular_values().numpy()  # groups pooled
        np.testing.assert_allclose(line.get_ydata(), s / s[0], rtol=1e-12)
        np.testing.assert_allclose(line.get_xdata(), (np.arange(s.size) + 0.5) / s.size)
    raw = plot_singular_values(dec, normalise=False).get_lines()[0].get_ydata()
    np.testing.assert_allclose(raw, dec["0"].singular_values().numpy(), rtol=1e-12)
    plt.close("all")


def test_energy_reaches_one_and_is_monotone(dec) -> None:
    ax = plot_energy(dec)
    for line, layer in zip(ax.get_lines(), dec.layers.values()):
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.all(np.diff(y) >= 0)
        assert y[-1] == pytest.approx(1.0, abs=1e-12)  # Σσ² = ‖W̄‖²_F
        assert y[0] == pytest.approx(layer.energy(1), abs=1e-12)
    fig = svd_figure(dec)
    assert len(fig.axes) == 2
    plt.close("all")
