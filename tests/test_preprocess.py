"""Input preprocessing: presets, resize and centre crop (torchvision's convention), the model's own, the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convsvd.cli import main
from convsvd.data import ArrayData, ImageFolder, as_source
from convsvd.data.preprocess import (
    PRESETS,
    Preprocess,
    PreprocessedData,
    apply,
    from_hf_config,
    from_metadata,
    from_model,
    parse_normalize,
    resolve,
)
from convsvd.errors import InputError
from convsvd.signals import profile
from convsvd.signals.accuracy import accuracy

# --------------------------------------------------------------------------- the transform itself


def test_presets_reproduce_the_reference_normalisation() -> None:
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ref = torch.stack([(x[:, c] - mean[c]) / std[c] for c in range(3)], dim=1)
    torch.testing.assert_close(PRESETS["imagenet"].normalize(x), ref, rtol=0, atol=1e-15)
    g = x[:, :1]
    torch.testing.assert_close(PRESETS["mnist"].normalize(g), (g - 0.1307) / 0.3081, rtol=0, atol=1e-15)
    assert PRESETS["none"].is_identity and torch.equal(PRESETS["none"].normalize(x), x)
    assert (PRESETS["imagenet"].resize, PRESETS["imagenet"].crop) == (256, (224, 224))


@pytest.mark.parametrize("h, w, side, expected", [(10, 20, 5, (5, 10)), (30, 20, 8, (12, 8)), (7, 9, 4, (4, 5)),
                                                   (9, 7, 4, (5, 4)), (6, 6, 3, (3, 3))])
def test_resize_short_side_like_torchvision(h: int, w: int, side: int, expected: tuple[int, int]) -> None:
    """torchvision ``Resize(side)``: the short side becomes ``side``, the long one ``int(side · long / short)``."""
    assert Preprocess(resize=side).resized_size(h, w) == expected


def test_centre_crop_of_a_hand_made_image() -> None:
    """torchvision ``CenterCrop``: top-left at ``int(round((h − H) / 2)), int(round((w − W) / 2))``."""
    arr = np.arange(7 * 9, dtype=np.uint8).reshape(7, 9) * 3
    out = Preprocess(crop=(4, 4)).resize_crop_image(Image.fromarray(arr))
    np.testing.assert_array_equal(np.asarray(out), arr[2:6, 2:6])  # round(1.5) = 2, round(2.5) = 2
    out = Preprocess(crop=(3, 5)).resize_crop_image(Image.fromarray(arr))
    np.testing.assert_array_equal(np.asarray(out), arr[2:5, 2:7])
    t = torch.from_numpy(arr.astype(np.float32))[None, None]
    torch.testing.assert_close(Preprocess(crop=(4, 4)).resize_crop(t)[0, 0], t[0, 0, 2:6, 2:6])
    with pytest.raises(InputError, match="crop 8×8: larger than the 7×9 image"):
        Preprocess(crop=(8, 8)).resize_crop_image(Image.fromarray(arr))


def test_image_folder_applies_resize_crop_scale_normalise_in_that_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    arr = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a" / "0.png")
    t = Preprocess((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), resize=9, crop=(8, 8))
    src = apply(str(tmp_path), t)
    x = next(src.iter_batches(1))[1].inputs[0]
    im = Image.fromarray(arr).resize((12, 9), Image.BILINEAR)  # short side 12 → 9, long 16 → int(9·16/12) = 12
    ref = np.asarray(im.crop((2, 0, 10, 8)), dtype=np.float32) / 255.0  # top round(0.5) = 0, left round(2) = 2
    ref = (ref - np.array([0.5, 0.4, 0.3], np.float32)) / np.array([0.2, 0.25, 0.3], np.float32)
    np.testing.assert_allclose(x.numpy(), ref.transpose(2, 0, 1), rtol=1e-6, atol=1e-6)
    d = src.describe()
    assert d["input_shape"] == [3, 8, 8] and d["preprocess"]["crop"] == [8, 8] or d["preprocess"]["crop"] == (8, 8)
    assert "resize short side to 9" in d["transform"] and "centre-crop 8×8" in d["transform"]
    assert d["fingerprint"] != as_source(str(tmp_path)).describe()["fingerprint"]


def test_tensor_sources_are_normalised_and_cropped() -> None:
    x = torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    src = apply((x, torch.arange(6) % 2), Preprocess((0.2,), (0.5,), crop=(8, 8)))
    assert isinstance(src, PreprocessedData)
    got = torch.cat([b.inputs for _, b in src.iter_batches(4)])
    torch.testing.assert_close(got, (x[:, :, 1:9, 1:9] - 0.2) / 0.5)
    assert src.describe()["input_shape"] == [1, 8, 8]
    assert "then centre-crop 8×8" in src.describe()["transform"]


@pytest.mark.parametrize("text, message", [
    ("0.1,0.2/0.3", "need the same number of values"),
    ("0.1/0", "must be positive"),
    ("imagenette", "expected imagenet, mnist, none or MEAN/STD"),
    ("a/b", "expected comma-separated numbers"),
])
def test_bad_normalize_is_one_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        parse_normalize(text)
    assert "\n" not in str(err.value)


def test_options_override_the_models_own() -> None:
    meta = {"image_mean": "[0.5, 0.5, 0.5]", "image_std": "0.25,0.25,0.25", "resize": "32", "crop_size": "28"}
    own = from_metadata(meta)
    assert own is not None and (own.mean, own.resize, own.crop) == ((0.5,) * 3, 32, (28, 28))

    class Holder:  # what from_model reads: a ModelWeights-like object holding an OnnxModule-like model
        format = "onnx"
        source = "m.onnx"
        model = type("M", (), {"metadata": meta})()

    assert resolve(model=Holder()).describe() == own.describe()
    assert resolve("none", model=Holder()).mean is None and resolve("none", model=Holder()).crop == (28, 28)
    assert resolve("mnist", crop="24", model=Holder()).describe() == \
        "resize short side to 32 (bilinear) · centre-crop 24×24 · (x − [0.1307]) / [0.3081] per channel"
    assert resolve(resize="20x24").resize == (20, 24)


def test_hf_preprocessor_config_beside_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from convsvd.io import load

    folder = tmp_path / "hf"
    folder.mkdir()
    save_file({"conv.weight": torch.randn(4, 3, 3, 3)}, str(folder / "model.safetensors"))
    (folder / "preprocessor_config.json").write_text(json.dumps(dict(
        do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_resize=True,
        size={"shortest_edge": 256}, do_center_crop=True, crop_size={"height": 224, "width": 224})))
    t = from_model(load(folder / "model.safetensors"))
    assert t is not None and (t.mean, t.resize, t.crop) == ((0.5,) * 3, 256, (224, 224))
    assert from_model(load(folder)) == t
    (folder / "preprocessor_config.json").write_text(json.dumps(dict(do_normalize=False, do_resize=False)))
    assert from_hf_config(folder / "preprocessor_config.json") is None


def test_onnx_metadata_is_the_default_transform(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from convsvd.io import load

    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "c.weight")
    g = helper.make_graph([helper.make_node("Conv", ["x", "c.weight"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 3, 3])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"mean": "0.1307", "std": "0.3081"})
    onnx.save(model, str(tmp_path / "m.onnx"))
    t = from_model(load(tmp_path / "m.onnx"))
    assert t is not None and t.describe() == PRESETS["mnist"].describe() and t.origin == "ONNX metadata"


# --------------------------------------------------------------------------- accuracy and the manifest


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, Preprocess]:
    """A small MLP trained on the digits under a normalisation (mean 0.5, std 0.05)."""
    from convsvd.data.digits import load_digits

    t = Preprocess((0.5,), (0.05,))
    d = load_digits("train")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    x = t.normalize(d.images)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), d.labels).backward()
        opt.step()
    return net.eval(), t


@pytest.mark.slow  # training
def test_a_wrong_transform_changes_the_accuracy(trained: tuple[nn.Module, Preprocess]) -> None:
    net, right = trained
    good = accuracy(net, apply("digits:test", right))
    raw = accuracy(net, apply("digits:test", PRESETS["none"]))
    wrong = accuracy(net, apply("digits:test", PRESETS["mnist"]))
    assert good.labelled == raw.labelled == wrong.labelled == 451
    assert good.value is not None and good.value > 0.9
    assert raw.value is not None and wrong.value is not None
    assert raw.value < good.value - 0.2 and wrong.value < good.value - 0.05  # measured: 0.75 and 0.91 vs 0.98
    assert "(x − [0.5]) / [0.05]" in good.transform


def test_accuracy_without_labels_says_why() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    assert accuracy(net, torch.zeros(3, 1, 2, 2)).reason == "the data have no class labels"
    net = nn.Sequential(nn.Conv2d(1, 3, 1))
    r = accuracy(net, (torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long)))
    assert r.value is None and "not one score per class" in r.describe()


@pytest.mark.slow  # training (the module fixture)
def test_the_manifest_records_the_transform(trained: tuple[nn.Module, Preprocess], tmp_path: Path) -> None:
    net, right = trained
    table = profile(net, apply("digits:test", right), out=tmp_path / "p", progress=False)
    ds = table.manifest["dataset"]
    assert ds["preprocess"]["mean"] == [0.5] and ds["preprocess"]["std"] == [0.05]
    assert ds["transform"].endswith("(x − [0.5]) / [0.05] per channel")
    other = profile(net, "digits:test", out=tmp_path / "q", progress=False).manifest["dataset"]
    assert other["fingerprint"] != ds["fingerprint"]  # a resumed run with another transform is another run


# --------------------------------------------------------------------------- command line


def _factory(tmp_path: Path, side: int) -> str:
    """A 'package.module:factory' whose linear head fixes the input size to side × side."""
    (tmp_path / f"pp_factory_{side}.py").write_text(
        "from torch import nn\n"
        f"def make():\n    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), "
        f"nn.Linear(4 * {side} * {side}, 10))\n")
    return f"pp_factory_{side}:make"


def test_cli_profile_normalize_dtype_and_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = _factory(tmp_path, 8)
    out = tmp_path / "p"
    assert main(["profile", spec, "digits:test", "--normalize", "mnist", "--dtype", "float64", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "preprocess: (x − [0.1307]) / [0.3081] per channel" in captured.err
    m = json.loads((out / "manifest.json").read_text())
    assert m["options"]["dtype"] == "float64" and m["dataset"]["preprocess"]["name"] == "mnist"
    assert main(["profile", spec, "digits:test", "--normalize", "0.1/0", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "must be positive" in err
    assert not (tmp_path / "bad" / "manifest.json").exists()


@pytest.mark.slow  # a whole command
def test_cli_features_takes_the_input_size_from_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = _factory(tmp_path, 12)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d12.npz", inputs=rng.random((10, 1, 12, 12)).astype(np.float32), labels=np.arange(10))
    out = tmp_path / "f"
    assert main(["features", spec, "--layer", "0", "--neurons", "0", "--steps", "2", "--k", "2",
                 "--data", str(tmp_path / "d12.npz"), "--normalize", "0.5/0.2", "--out", str(out)]) == 0
    meta = json.loads((out / "features.json").read_text())
    assert meta["options"]["input_size"] == [12, 12]
    assert meta["options"]["preprocess"]["mean"] == [0.5]
    assert (out / "exemplars.csv").is_file()


@pytest.mark.parametrize("figures, pngs", [("none", set()), ("summary", {"alpha-depth.png"}), ("all", None)])
@pytest.mark.slow  # whole commands
def test_cli_spectrum_figures(tmp_path: Path, figures: str, pngs: set[str] | None) -> None:
    out = tmp_path / figures
    assert main(["spectrum", "digits-cnn", "--out", str(out), "--figures", figures]) == 0
    written = {p.name for p in out.glob("*.png")}
    if pngs is None:
        assert "alpha-depth.png" in written and any(n.startswith("esd-") for n in written)
    else:
        assert written == pngs
    assert (out / "spectrum.parquet").is_file()


@pytest.mark.slow  # a whole command
def test_cli_svd_figures(tmp_path: Path) -> None:
    assert main(["svd", "digits-cnn", "--out", str(tmp_path / "a")]) == 0
    assert not list((tmp_path / "a").glob("*.png"))
    assert main(["svd", "digits-cnn", "--out", str(tmp_path / "b"), "--figures", "summary"]) == 0
    assert (tmp_path / "b" / "svd.png").stat().st_size > 0


def test_image_folder_transform_is_kept_through_conform(tmp_path: Path) -> None:
    from convsvd.data import ExpectedInput

    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a" / "0.png")
    src = apply(str(tmp_path), Preprocess(resize=10, crop=(8, 8)))
    assert isinstance(src, ImageFolder)
    ok = src.conform(ExpectedInput("c", "conv2d", 1, (8, 8)))
    assert next(ok.iter_batches(1))[1].inputs.shape == (1, 1, 8, 8)
    with pytest.raises(InputError, match="gives 8×8 images, model expects 1×9×9"):
        src.conform(ExpectedInput("c", "conv2d", 1, (9, 9)))
    warnings.simplefilter("ignore")
    assert isinstance(apply(ArrayData(torch.zeros(2, 1, 4, 4)), None), ArrayData)
