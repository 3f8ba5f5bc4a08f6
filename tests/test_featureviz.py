"""Feature visualisation: optimised inputs beat random and typical inputs; seeded, batched == one by one;
the model is left as it was; the ``features`` command writes its figures and fails in one line."""

import numpy as np
import pytest
import torch
from torch import nn

from convsvd import zoo
from convsvd.cli import main
from convsvd.data import load_digits
from convsvd.errors import InputError
from convsvd.features import ImageParam, Transforms, colour_matrix, featureviz, image_seed
from convsvd.features.featureviz import IMAGENET_RGB_EIGENVALUES, IMAGENET_RGB_EIGENVECTORS
from convsvd.signals import signal_maps, signals


@pytest.fixture(scope="module")
def digits_cnn():
    return zoo.load("digits-cnn")


def _signal_of_own_neuron(model, fv):
    """Independent measurement with the signals API: each image's signal on its own neuron."""
    s = signals(model, fv.images, layers=fv.layer).values[fv.layer].reshape(len(fv), -1)
    flat = torch.as_tensor(fv.group * fv.neurons_per_group + fv.neuron)
    return s[torch.arange(len(fv)), flat].double().numpy()


def _png_ok(path, size_inches, dpi):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    w, h = size_inches
    assert abs(img.shape[0] - h * dpi) < 1 and abs(img.shape[1] - w * dpi) < 1
    assert float(img[..., :3].std()) > 0.05  # not blank


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3", "fc1"])
@pytest.mark.slow  # whole optimisations
def test_optimised_input_beats_random_inputs_and_the_median_digit(digits_cnn, layer):
    fv = featureviz(digits_cnn, layer, list(range(8)), steps=64, size=8)
    ours = _signal_of_own_neuron(digits_cnn, fv)
    np.testing.assert_allclose(ours, fv.signal, rtol=1e-5, atol=1e-5)  # the stated final signal is the real one
    gen = torch.Generator().manual_seed(1)
    rnd = signals(digits_cnn, torch.rand(100, 1, 8, 8, generator=gen), layers=layer).values[layer].reshape(100, -1)
    data = load_digits("test")
    ds = signals(digits_cnn, data.images, layers=layer).values[layer].reshape(len(data), -1)
    for row in range(len(fv)):
        n, d = int(fv.neuron[row]), int(fv.direction[row])
        target = d * ours[row]
        assert target > float((d * rnd[:, n]).max()), (layer, n, d)
        assert target > float((d * ds[:, n]).median()), (layer, n, d)


@pytest.mark.slow  # whole optimisations
def test_seeded_runs_are_reproducible_and_seeds_matter(digits_cnn):
    kw = dict(steps=16, size=8, copies=2)
    a = featureviz(digits_cnn, "conv2", [1, 4], **kw)
    b = featureviz(digits_cnn, "conv2", [1, 4], **kw)
    c = featureviz(digits_cnn, "conv2", [1, 4], seed=7, **kw)
    assert torch.equal(a.images, b.images) and np.array_equal(a.trace, b.trace)
    assert not torch.equal(a.images, c.images)
    assert len({image_seed(0, n, d, k) for n in range(4) for d in (1, -1) for k in range(3)}) == 24


@pytest.mark.slow  # many whole optimisations
def test_batched_equals_one_by_one(digits_cnn):
    # float64 so that no kernel choice between batch sizes can matter; every image has its own
    # random stream, and the diversity term only couples the copies of one neuron and direction.
    kw = dict(steps=24, size=8, copies=2, diversity=0.5, dtype="float64")
    for layer in ("conv2", "fc1"):
        together = featureviz(digits_cnn, layer, [0, 3, 5], **kw)
        alone = [featureviz(digits_cnn, layer, [n], **kw) for n in (0, 3, 5)]
        chunked = featureviz(digits_cnn, layer, [0, 3, 5], batch_size=2, **kw)
        one_by_one = torch.cat([f.images for f in alone])
        torch.testing.assert_close(together.images, one_by_one, rtol=0, atol=1e-12)
        torch.testing.assert_close(chunked.images, together.images, rtol=0, atol=1e-12)
        np.testing.assert_allclose(together.signal, np.concatenate([f.signal for f in alone]), rtol=1e-12, atol=1e-12)
        assert together.to_frame().neuron.tolist() == [0, 0, 0, 0, 3, 3, 3, 3, 5, 5, 5, 5]


@pytest.mark.slow  # whole optimisations
def test_both_directions_and_the_result_table(digits_cnn):
    fv = featureviz(digits_cnn, "conv3", [2], steps=32, size=8, copies=2)
    frame = fv.to_frame()
    assert frame.columns.tolist() == ["layer", "group", "neuron", "direction", "copy", "sigma", "signal", "objective",
                                      "steps", "seed", "location"]
    assert frame.direction.tolist() == ["+", "+", "-", "-"] and frame["copy"].tolist() == [0, 1, 0, 1]
    plus, minus = fv.signal[fv.direction > 0], fv.signal[fv.direction < 0]
    assert plus.min() > minus.max()
    assert fv.trace.shape == (32, 4) and fv.index(2, direction=-1, copy=1) == 3
    assert frame.objective.tolist() == pytest.approx((fv.direction * fv.signal).tolist())


def test_model_is_left_unchanged_and_no_hook_remains(digits_cnn):
    model = zoo.load("digits-cnn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    featureviz(model, "conv3", [0], steps=4, size=8, dtype="float64")
    with pytest.raises(InputError, match="fails on inputs of shape 1×12×12"):
        featureviz(model, "fc1", [0], steps=4, size=12, input_size=12)  # fc1 needs 8×8 inputs: the model raises
                                                                          # inside the hooks
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert m.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_size_location_parameterisation_and_colour():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).eval()
    fv = featureviz(net, "3", [0, 1], steps=12, size=20, input_size=8, location="centre")
    assert tuple(fv.images.shape) == (4, 3, 20, 20) and fv.input_size == (8, 8)
    assert 0 <= float(fv.images.min()) and float(fv.images.max()) <= 1
    small = torch.nn.functional.interpolate(fv.images, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    maps = signal_maps(net, small, layers="3")["3"]
    centre = maps[:, 0, :, 3, 3][torch.arange(4), torch.as_tensor(fv.neuron)]  # 6×6 output: centre (3, 3)
    np.testing.assert_allclose(centre.double().numpy(), fv.signal, rtol=1e-5, atol=1e-6)
    px = featureviz(net, "0", [0], steps=8, size=8, image=ImageParam(kind="pixel", decorrelate=False),
                    transforms=None, fold_bn=True, directions="+")
    assert len(px) == 1 and px.trace[-1, 0] > px.trace[0, 0]
    M = colour_matrix()
    E = torch.tensor(IMAGENET_RGB_EIGENVECTORS, dtype=torch.float64)
    lam = torch.tensor(IMAGENET_RGB_EIGENVALUES, dtype=torch.float64)
    # M Mᵀ is the ImageNet RGB covariance up to scale (the published eigenvectors have 4 digits)
    torch.testing.assert_close(M @ M.T, E @ torch.diag(lam) @ E.T / lam.max(), rtol=0, atol=2e-3)


def test_bad_inputs_give_one_line_errors(digits_cnn):
    cases = [
        (dict(layer="conv9"), "layer 'conv9'"),
        (dict(neurons=[0, 9]), r"neurons \[9\]: layer 'conv1' has 9 SVD neurons"),
        (dict(directions="up"), "directions 'up'"),
        (dict(location="corner"), "location 'corner'"),
        (dict(steps=0), "steps 0"),
        (dict(size=(8, 0)), "size"),
    ]
    for kw, pattern in cases:
        args = dict(layer="conv1", neurons=[0], steps=2, size=8) | kw
        with pytest.raises(InputError, match=pattern) as info:
            featureviz(digits_cnn, args.pop("layer"), args.pop("neurons"), **args)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="Transforms"):
        Transforms(jitter=2.0)
    with pytest.raises(InputError, match="first layer '0' is linear"):
        featureviz(nn.Sequential(nn.Linear(4, 3)), "0", [0], steps=2, size=8)


@pytest.mark.slow  # whole optimisations and a figure
def test_featureviz_figure_is_drawn(digits_cnn, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convsvd.viz import plot_featureviz

    fv = featureviz(digits_cnn, "conv2", [0, 1, 2], steps=16, size=8)
    ax = plot_featureviz(fv)
    fig = ax.figure
    fig.savefig(tmp_path / "fv.png", dpi=50)
    _png_ok(tmp_path / "fv.png", fig.get_size_inches(), 50)
    assert [t.get_text() for t in ax.get_yticklabels()][0].startswith("n0")
    plt.close(fig)


@pytest.mark.slow
def test_features_command_writes_one_png_per_layer(tmp_path, capsys):
    import matplotlib.image as mpimg

    out = tmp_path / "out"
    code = main(["features", "digits-cnn", "--layer", "conv1,fc1", "--neurons", "0-2", "--steps", "8",
                 "--data", "digits:test", "--k", "3", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for name in ("conv1", "fc1"):
        img = mpimg.imread(out / f"features-{name}.png")
        assert img.shape[0] > 100 and img.shape[1] > 300 and float(img[..., :3].std()) > 0.05
    import pandas as pd

    ex = pd.read_csv(out / "exemplars.csv")
    assert len(ex) == 2 * 3 * 2 * 3  # layers × neurons × sides × k
    assert sorted(pd.read_csv(out / "features.csv").layer.unique()) == ["conv1", "fc1"]
    assert (out / "features.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--layer", "conv9"], "layer 'conv9'"),
    (["--layer", "conv1", "--neurons", "0-20"], "layer 'conv1' has 9 SVD neurons"),
    (["--layer", "conv1", "--neurons", "x"], "--neurons 'x'"),
])
def test_features_command_fails_in_one_line(tmp_path, capsys, argv, message):
    code = main(["features", "digits-cnn", "--steps", "2", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_features_command_refuses_an_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["features", "digits-cnn", "--layer", "conv1", "--steps", "2", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 2 and "--out" in err and err.count("\n") == 1


@pytest.mark.slow  # whole optimisations
def test_total_variation_penalty_smooths_the_images_and_zero_changes_nothing() -> None:
    from convsvd.features import ImageParam
    from convsvd.features.featureviz import _total_variation

    model = zoo.load("digits-cnn")
    plain = featureviz(model, "conv3", [0, 1], steps=48, progress=False)
    same = featureviz(model, "conv3", [0, 1], steps=48, image=ImageParam(tv=0.0), progress=False)
    torch.testing.assert_close(plain.images, same.images, rtol=0, atol=0)
    smooth = featureviz(model, "conv3", [0, 1], steps=48, image=ImageParam(tv=2.0), progress=False)
    assert _total_variation(smooth.images).mean() < _total_variation(plain.images).mean()
    img = torch.zeros(1, 1, 3, 3)
    img[..., 1, 1] = 1.0  # one bright pixel: 2 of the 6 horizontal and 2 of the 6 vertical steps are 1
    assert float(_total_variation(img)[0]) == pytest.approx(2 / 6 + 2 / 6)
    with pytest.raises(InputError, match="tv"):
        ImageParam(tv=-1.0)


# --------------------------------------------------------------------------- regularisation (issue: images worth looking at)


@pytest.mark.parametrize("channels, size", [(1, (8, 8)), (1, (7, 10)), (3, (9, 6))])
def test_fourier_parameterisation_round_trips(channels, size) -> None:
    """Any image is reached by exactly one set of Fourier parameters: rfft2 / the 1/f scale, with colours
    un-mixed by the inverse of the decorrelation matrix, renders back to sigmoid(image)."""
    from convsvd.features.featureviz import _FOURIER_GAIN, _frequency_scale, _Renderer

    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, channels, *size, generator=gen, dtype=torch.float64)
    render = _Renderer(ImageParam(decay=1.0), channels, size, torch.float64, torch.device("cpu"))
    flat = z if render.mix is None else torch.einsum("ij,bjhw->bihw", torch.linalg.inv(render.mix), z)
    scale = _frequency_scale(*size, 1.0) * _FOURIER_GAIN
    p = torch.view_as_real(torch.fft.rfft2(flat, norm="ortho") / scale)
    torch.testing.assert_close(render(p), torch.sigmoid(z), rtol=0, atol=1e-12)
    assert (render.mix is not None) == (channels == 3)
    # 1/f: the scale falls with the radial frequency (the lowest frequencies move fastest); the mean (f = 0)
    # gets the lowest frequency's scale, not an infinite one
    s = _frequency_scale(16, 16, 1.0)
    assert float(s[0, 0]) == float(s[0, 1]) > float(s[0, 4]) > float(s[8, 8])
    assert float(s[0, 4]) == pytest.approx(16 / 4) and float(s[8, 8]) == pytest.approx(1 / (0.5 * 2 ** 0.5))


def test_clipping_to_the_data_range(digits_cnn) -> None:
    """value_range: the model sees lo + (hi − lo)·image, never a pixel outside the data's range."""
    lo, hi = -0.4, 2.5
    fv = featureviz(digits_cnn, "conv2", [0, 1], steps=24, size=8, value_range=(lo, hi), progress=False)
    seen = fv.model_inputs()
    assert float(seen.min()) >= lo and float(seen.max()) <= hi
    assert float(seen.max()) > 1.0 or float(seen.min()) < 0.0  # the wider range is used, not just [0, 1]
    assert 0 <= float(fv.images.min()) and float(fv.images.max()) <= 1
    np.testing.assert_allclose(_signal_of_own_neuron(digits_cnn, type(fv)(**{**fv.__dict__, "images": seen})),
                               fv.signal, rtol=1e-4, atol=1e-5)  # the signals are those of the scaled inputs
    plain = featureviz(digits_cnn, "conv2", [0, 1], steps=24, size=8, progress=False)
    assert plain.value_range is None and fv.value_range == ((lo,), (hi,))
    torch.testing.assert_close(plain.model_inputs(), plain.images)
    for bad in [(1.0, 0.0), (0.0,), ([0.0, 0.0], [1.0, 1.0]), ("a", 1)]:
        with pytest.raises(InputError, match="value_range") as e:
            featureviz(digits_cnn, "conv2", [0], steps=2, size=8, value_range=bad, progress=False)
        assert "\n" not in str(e.value)


def _gram_similarity(model, layer, images, copies):
    """Mean cosine similarity of the layer's output Gram matrices between the copies of one neuron and direction
    (measured with a hook of its own, independent of the implementation's diversity term)."""
    out = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: out.setdefault("y", o))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    y = out["y"].double()
    f = y.reshape(y.shape[0], y.shape[1], -1)
    G = torch.nn.functional.normalize((f @ f.transpose(1, 2)).flatten(1), dim=1).reshape(-1, copies, f.shape[1] ** 2)
    sim = G @ G.transpose(1, 2)
    off = ~torch.eye(copies, dtype=torch.bool)
    return float(sim[:, off].mean())


def test_diversity_pushes_the_copies_apart(digits_cnn) -> None:
    kw = dict(steps=64, size=8, copies=3, directions="+", progress=False)
    same = featureviz(digits_cnn, "conv2", [0, 1], diversity=0.0, **kw)
    apart = featureviz(digits_cnn, "conv2", [0, 1], diversity=4.0, **kw)
    before = _gram_similarity(digits_cnn, "conv2", same.images, 3)
    after = _gram_similarity(digits_cnn, "conv2", apart.images, 3)
    assert after < before - 0.01, (before, after)
    assert (apart.objective > 0).all()  # still images of their neuron
