"""resolve(): one Target from every kind of model source; options checked once; verbs accept it."""

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from convsvd import Target, resolve, zoo
from convsvd.decompose import decompose
from convsvd.errors import InputError
from convsvd.features import featureviz, singular_filters
from convsvd.hypergraph import class_separation, separation
from convsvd.signals import plan_projection
from convsvd.spectral import spectrum


def _mnist_like() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 14 * 14, 10)).eval()


def test_zoo_names_and_checkpoints():
    t = resolve("digits-cnn@5")
    assert isinstance(t, Target) and t.zoo == "digits-cnn" and t.epoch == 5 and t.name == "digits-cnn@5"
    assert t.input_shape == (1, 8, 8) and t.input_shape_source == "zoo"
    ref = zoo.load("digits-cnn", epoch=5)
    torch.testing.assert_close(t.weights["conv1"].weight, ref.conv1.weight, rtol=0, atol=0)
    assert t.module is not None and t.source == "digits-cnn@5"
    with pytest.raises(InputError, match="NAME@EPOCH"):
        resolve("digits-cnn@x")


@pytest.mark.slow  # every verb on a whole model
def test_spectrum_and_every_verb_take_a_built_in_name():
    res = spectrum("digits-cnn")
    assert res.source == "digits-cnn" and len(res) == 5
    assert res.to_frame().alpha.equals(spectrum(zoo.load("digits-cnn")).to_frame().alpha)
    assert list(decompose("digits-cnn@0", mode="values")) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert singular_filters("digits-cnn", "conv1", rank=2).rank == 2
    assert featureviz("digits-cnn", "conv2", [0], steps=2).input_size == (8, 8)  # the zoo's side, not 224


@pytest.mark.slow
def test_every_source_kind(tmp_path):
    model = _mnist_like()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(tmp_path / "m.onnx"), dynamo=False)
    from convsvd.io import from_module

    kinds = {
        "module": resolve(model),
        "weights": resolve(from_module(model)),
        "safetensors": resolve(tmp_path / "m.safetensors"),
        "onnx": resolve(str(tmp_path / "m.onnx")),
    }
    for name, t in kinds.items():
        assert len(t.weights) == 2, name
    assert resolve(kinds["module"]) is kinds["module"]  # a Target resolves to itself
    # the input shape and where it comes from
    assert (kinds["onnx"].input_shape, kinds["onnx"].input_shape_source) == ((1, 28, 28), "onnx")
    assert (kinds["module"].input_shape, kinds["module"].input_shape_source) == ((1, 28, 28), "trace")
    assert (kinds["safetensors"].input_shape, kinds["safetensors"].input_shape_source) == (None, "unknown")
    sized = resolve(tmp_path / "m.safetensors", input_size=28)
    assert (sized.input_shape, sized.input_shape_source) == ((1, 28, 28), "input_size")
    assert resolve(nn.Linear(5, 3)).input_shape == (5,)
    assert kinds["safetensors"].with_input_shape((1, 28, 28)).input_shape_source == "data"
    # a factory model without --input-size is visualised at its own side, not 224
    fv = featureviz(model, "0", [0], steps=2, directions="+")
    assert fv.input_size == (28, 28) and tuple(fv.images.shape[-2:]) == (28, 28)


def test_factory_spec_with_weights(tmp_path):
    model = zoo.load("digits-cnn")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    t = resolve("convsvd.zoo.models:DigitsCNN", weights=tmp_path / "w.safetensors")
    torch.testing.assert_close(t.weights["fc2"].weight, model.fc2.weight, rtol=0, atol=0)
    with pytest.raises(InputError, match="weights"):
        resolve("digits-cnn", weights=tmp_path / "w.safetensors")


def test_options_are_checked_once_and_carried():
    t = resolve("digits-resnet", layers="conv*", fold_bn=True, dtype="float64", device="cpu")
    assert t.layers == ("conv*",) and t.dtype is torch.float64 and t.device == torch.device("cpu") and t.fold_bn
    dec = decompose(t, mode="values")
    assert all(l.S.dtype == torch.float64 for l in dec.values()) and all(n.startswith("conv") for n in dec)
    assert dec.options["fold_bn"] is True and all(s.folded for s in t.selected)
    # a verb's own options replace the target's; False never undoes a target's folding
    assert list(decompose(t, layers="fc*", mode="values")) == ["fc1", "fc2"]
    assert resolve(t, fold_bn=False).fold_bn
    assert plan_projection(t).projectors.keys() == {s.name for s in t.selected}
    for bad, needle in ((dict(dtype=torch.float16), "dtype 'float16'"), (dict(device="gpu"), "device 'gpu'"),
                        (dict(layers=[3]), "layers [3]"), (dict(fold_bn="yes"), "fold_bn 'yes'"),
                        (dict(input_size=0), "input_size 0")):
        with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            resolve("digits-cnn", **bad)
    with pytest.raises(InputError, match="dtype 'float16'"):  # the same error from every verb
        decompose(zoo.load("digits-cnn"), dtype=torch.float16)
    with pytest.raises(InputError, match="dtype 'float16'"):
        spectrum("digits-cnn", dtype="float16")
    with pytest.raises(InputError, match="^model 'int': expected"):
        resolve(3)


def test_decomposition_is_computed_once():
    t = resolve("digits-cnn", layers="conv1,fc2")
    first = t.decomposition()
    assert t.decomposition() is first and list(first) == ["conv1", "fc2"]
    assert t.decomposition(mode="values") is not first


@pytest.mark.slow
def test_separation_and_class_separation_return_the_same_type(tmp_path):
    from convsvd.signals import profile

    table = profile("digits-cnn", "digits:test", layers="fc1,fc2", top_k=3, batch_size=256, out=tmp_path / "run")
    a, b = separation(table), class_separation(table)
    assert type(a) is type(b) and isinstance(a.to_frame(), pd.DataFrame)
    pd.testing.assert_frame_equal(a.to_frame(), b.to_frame())


@pytest.mark.slow
def test_notebook_reprs_hold_the_key_numbers(tmp_path):
    t = resolve("digits-cnn")
    assert "zoo" in t._repr_html_() and "1×8×8" in repr(t)
    dec = decompose(t)
    html = dec._repr_html_()
    assert f"{dec['conv1'].sigma_max:.4g}" in html and "<table>" in html and "digits-cnn" in repr(dec)
    res = spectrum(t)
    hat = res.summary()["alpha_hat"].iloc[0]
    assert f"{hat:.4g}" in res._repr_html_() and f"{res['fc1'].fit.alpha:.4g}" in res._repr_html_()
    assert f"alpha_hat={hat:.4g}" in repr(res)
    sf = singular_filters(t, "conv1")
    assert f"{float(sf.sigma[0, 0]):.4g}" in sf._repr_html_()
    fv = featureviz(t, "conv2", [0], steps=2)
    assert f"{fv.signal[0]:.4g}" in fv._repr_html_()


def test_signal_table_shows_and_saves_its_summary(tmp_path):
    from convsvd.signals import profile

    table = profile("digits-cnn", "digits:test", layers="fc2", top_k=2, batch_size=256, out=tmp_path / "run")
    mean = table.summary()["mean_influential"].iloc[0]
    assert f"{mean:.4g}" in table._repr_html_() and "451 inputs" in table._repr_html_()
    (tmp_path / "s").mkdir()
    assert [p.name for p in table.save(tmp_path / "s")] == ["summary.csv"]
    with pytest.raises(InputError, match="expected an existing folder"):
        table.save(tmp_path / "missing")
