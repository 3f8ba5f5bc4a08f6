"""Singular filters: exactly the rows of Vh reshaped; the rank-r rebuild keeps exactly the stated energy."""

import numpy as np
import pytest
import torch
from torch import nn

from convsvd import zoo
from convsvd.decompose import decompose
from convsvd.errors import InputError
from convsvd.features import DEFAULT_ENERGY, singular_filters


def _grouped_net():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 12, (3, 2), groups=4), nn.BatchNorm2d(12)).eval()


def _png_ok(path, size_inches, dpi):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    w, h = size_inches
    assert abs(img.shape[0] - h * dpi) < 1 and abs(img.shape[1] - w * dpi) < 1
    assert float(img[..., :3].std()) > 0.05  # not blank


@pytest.mark.parametrize("layer", ["0", "2"])
def test_filters_reshape_back_exactly_to_the_rows_of_vh(layer):
    net = _grouped_net()
    sf = singular_filters(net, layer)
    svd = decompose(net, layers=layer, device="cpu")[layer]
    g, r, n = svd.Vh.shape
    w = getattr(net, layer).weight
    assert sf.filters.shape == (g, r, *w.shape[1:])
    assert torch.equal(sf.filters.reshape(g, r, n), svd.Vh)
    assert torch.equal(sf.sigma, svd.S)
    # and each filter is the unfolded row layout: v_i · patch == the filter applied as a convolution
    x = torch.randn(1, w.shape[1] * sf.groups, 5, 5)
    y = torch.nn.functional.conv2d(x[:, : w.shape[1]], sf.filters[0, :1])
    manual = (x[0, : w.shape[1], : w.shape[2], : w.shape[3]] * sf.filters[0, 0]).sum()
    torch.testing.assert_close(y[0, 0, 0, 0], manual)


@pytest.mark.parametrize("layer, fold", [("conv2", False), ("2", False), ("2", True)])
def test_rank_r_rebuild_keeps_exactly_the_stated_share_of_energy(layer, fold):
    source = zoo.load("digits-cnn") if layer == "conv2" else _grouped_net()
    r_max = singular_filters(source, layer, dtype="float64", fold_bn=fold).sigma.shape[1]
    for r in range(r_max + 1):
        sf = singular_filters(source, layer, rank=r, dtype="float64", fold_bn=fold)
        kept = float(sf.rebuilt.double().pow(2).sum() / sf.weight.double().pow(2).sum())
        assert kept == pytest.approx(sf.energy, rel=1e-12, abs=1e-15)
        # Eckart–Young: what is left is the energy of the dropped triplets
        rest = float((sf.weight.double() - sf.rebuilt.double()).pow(2).sum() / sf.fro2.sum())
        assert rest == pytest.approx(1 - sf.energy, rel=1e-9, abs=1e-12)
        assert sf.to_frame().kept.sum() == r * sf.groups
    torch.testing.assert_close(sf.rebuilt, sf.weight, rtol=0, atol=1e-12)  # full rank: the layer itself
    if layer == "conv2":  # ungrouped: the same number as LayerSVD.energy
        d = decompose(source, layers=layer, dtype="float64", device="cpu")[layer]
        assert singular_filters(source, layer, rank=5, dtype="float64").energy == pytest.approx(d.energy(5), rel=1e-12)


def test_default_rank_is_the_smallest_reaching_the_default_share():
    sf = singular_filters(zoo.load("digits-cnn"), "conv3", dtype="float64")
    frame = sf.to_frame()
    assert sf.energy >= DEFAULT_ENERGY
    assert frame.cumulative.iloc[sf.rank - 2] < DEFAULT_ENERGY <= frame.cumulative.iloc[sf.rank - 1]
    assert frame.columns.tolist() == ["layer", "group", "neuron", "sigma", "share", "cumulative", "kept"]
    np.testing.assert_allclose(frame.share.sum(), 1.0, rtol=1e-12)
    assert sf.reads_input is False and singular_filters(zoo.load("digits-cnn"), "conv1").reads_input is True


def test_bad_inputs_give_one_line_errors():
    net = zoo.load("digits-cnn")
    for kw, pattern in [(dict(layer="fc1"), "need a conv2d layer"), (dict(layer="conv1", rank=10), "rank 10"),
                        (dict(layer="nope"), "layer 'nope'")]:
        with pytest.raises(InputError, match=pattern) as info:
            singular_filters(net, kw.pop("layer"), **kw)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="full decomposition"):
        singular_filters(net, "conv1", svd=decompose(net, mode="topk", k=2, device="cpu"))


@pytest.mark.parametrize("model, layer", [("digits", "conv1"), ("digits", "conv2"), ("rgb", "0"), ("rgb", "2")])
def test_filter_figures_are_drawn(tmp_path, model, layer):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convsvd.viz import plot_filter_rebuild, plot_singular_filters

    net = zoo.load("digits-cnn") if model == "digits" else _grouped_net()
    sf = singular_filters(net, layer, rank=2)
    for k, draw in enumerate((plot_singular_filters, plot_filter_rebuild)):
        ax = draw(sf)
        path = tmp_path / f"{k}.png"
        ax.figure.savefig(path, dpi=40)
        _png_ok(path, ax.figure.get_size_inches(), 40)
        plt.close(ax.figure)
    fig, ax = plt.subplots()
    assert plot_singular_filters(sf, ax=ax, neurons=[1]) is ax  # draws on the Axes it is given
    assert len(ax.get_yticklabels()) == 1
    plt.close(fig)
