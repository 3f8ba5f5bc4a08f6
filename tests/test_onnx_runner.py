"""ONNX models run in ONNX Runtime give the same signals as the torch model they were exported from."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn

from convsvd.errors import InputError
from convsvd.io import load
from convsvd.io.onnx_io import OnnxModule
from convsvd.signals import plan_projection, profile, signal_maps, signals

pytest.importorskip("onnxruntime")

#: ORT and torch run the same float32 convolutions with different kernels: outputs agree to float32 rounding.
RTOL, ATOL = 1e-4, 1e-5


class ConvNet(nn.Module):
    """Conv → BatchNorm → ReLU, a depthwise conv, a ConvTranspose, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, padding=1)  # 12 singular values: enough for the report's spectra
        self.bn1 = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.up = nn.ConvTranspose2d(12, 4, 2, stride=2)
        self.conv2 = nn.Conv2d(4, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.dw(x))
        x = torch.relu(self.up(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def _net(seed: int = 0) -> ConvNet:
    torch.manual_seed(seed)
    net = ConvNet().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn1.weight.uniform_(0.5, 1.5)
        net.bn1.bias.uniform_(-0.3, 0.3)
    return net


def export(net: nn.Module, path: Path, shape: tuple[int, ...] = (2, 3, 8, 8), dynamic: bool = True) -> Path:
    """Opset 17, BatchNorm kept as a node (no constant folding), a dynamic batch dimension."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(*shape),), str(path), opset_version=17, dynamo=False, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "n"}} if dynamic else None,
                          do_constant_folding=False)
    return path


def constants_as_nodes(path: Path, out: Path) -> Path:
    """The same graph with every initializer moved into a Constant node."""
    model = onnx.load(str(path))
    nodes = [helper.make_node("Constant", [], [init.name], value=init) for init in model.graph.initializer]
    del model.graph.initializer[:]
    old = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + old)
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[ConvNet, Path]:
    net = _net()
    return net, export(net, tmp_path_factory.mktemp("onnx") / "convnet.onnx")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        scale = float(a[k].abs().max())
        torch.testing.assert_close(b[k], a[k], rtol=RTOL, atol=ATOL * max(scale, 1.0), msg=k)


def test_layer_names_of_the_export_are_the_module_names(onnx_file: tuple[ConvNet, Path]) -> None:
    net, path = onnx_file
    mw = load(path)
    assert mw.names == ["conv1", "dw", "up", "conv2", "fc"]
    assert isinstance(mw.model, OnnxModule) and mw.model.input_name == "x"
    assert mw["conv1"].alias == "/conv1/Conv"


@pytest.mark.parametrize("fold_bn", [False, True])
@pytest.mark.parametrize("aggregate", ["mean", "max", "l2"])
def test_onnx_runtime_signals_equal_torch_signals(onnx_file: tuple[ConvNet, Path], fold_bn: bool,
                                                  aggregate: str) -> None:
    net, path = onnx_file
    x = torch.randn(7, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ref = signals(net, x, fold_bn=fold_bn, aggregate=aggregate, dtype="float64")
    got = signals(str(path), x, fold_bn=fold_bn, aggregate=aggregate, dtype="float64")
    assert list(got.values) == ["conv1", "dw", "conv2", "fc"]  # the ConvTranspose is not profiled, in either
    _same(ref.values, got.values)
    for k in ref.sigma:
        torch.testing.assert_close(got.sigma[k], ref.sigma[k], rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # ONNX and torch runs of a whole model, compared
def test_signal_maps_and_folded_site_are_the_batchnorm_output(onnx_file: tuple[ConvNet, Path]) -> None:
    net, path = onnx_file
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    _same(signal_maps(net, x, fold_bn=True, dtype="float64"), signal_maps(str(path), x, fold_bn=True, dtype="float64"))
    plan = plan_projection(str(path), fold_bn=True)
    assert plan.runner is not None and plan.hooked == {}
    assert plan.runner.values["conv1"] == plan.model.node_outputs["/bn1/BatchNormalization"]
    assert plan.runner.values["dw"] == plan.model.layer_outputs["dw"]  # no BatchNorm after it: its own output


def test_weights_in_constant_nodes_run_the_same(onnx_file: tuple[ConvNet, Path], tmp_path: Path) -> None:
    net, path = onnx_file
    const = constants_as_nodes(path, tmp_path / "const.onnx")
    assert not onnx.load(str(const)).graph.initializer
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    for fold in (False, True):
        _same(signals(net, x, fold_bn=fold, dtype="float64").values,
              signals(str(const), x, fold_bn=fold, dtype="float64").values)


def test_fixed_batch_dimension_runs_in_chunks(tmp_path: Path) -> None:
    net = _net(1)
    path = export(net, tmp_path / "fixed.onnx", shape=(4, 3, 8, 8), dynamic=False)
    mw = load(path)
    assert mw.model.input_shape == (4, 3, 8, 8) and mw.model.sample_shape == (3, 8, 8)
    x = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(4))  # 4 + 4 + 2 (padded)
    _same(signals(net, x, dtype="float64").values, signals(mw, x, dtype="float64").values)
    torch.testing.assert_close(mw.model(x), net(x).detach(), rtol=RTOL, atol=ATOL)


@pytest.mark.slow  # ONNX and torch profiles of a whole model, compared
def test_profile_of_an_onnx_file_equals_the_torch_profile(onnx_file: tuple[ConvNet, Path], tmp_path: Path) -> None:
    net, path = onnx_file
    g = torch.Generator().manual_seed(5)
    data = (torch.randn(20, 3, 8, 8, generator=g), torch.arange(20) % 3)
    ref = profile(net, data, batch_size=8, out=tmp_path / "torch", dtype="float64", fold_bn=True, progress=False)
    got = profile(str(path), data, batch_size=8, out=tmp_path / "onnx", dtype="float64", fold_bn=True, progress=False)
    assert got.layers == ref.layers == ["conv1", "dw", "conv2", "fc"]
    assert [d["reason"][:22] for d in got.manifest["not_profiled"]] == ["transposed convolution"]
    for layer in ref.layers:
        a = ref.layer(layer).sort_values(["id", "group", "neuron"])["signal"].to_numpy()
        b = got.layer(layer).sort_values(["id", "group", "neuron"])["signal"].to_numpy()
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL * max(1.0, float(np.abs(a).max())))


def test_the_graph_input_shape_checks_the_data(onnx_file: tuple[ConvNet, Path]) -> None:
    _, path = onnx_file
    with pytest.raises(InputError, match=r"images are 9×9, model expects 3×8×8"):
        profile(str(path), (torch.randn(2, 3, 9, 9), torch.zeros(2, dtype=torch.long)), progress=False)


def test_feature_visualisation_of_an_onnx_model_says_why_not(onnx_file: tuple[ConvNet, Path]) -> None:
    from convsvd.features import featureviz

    _, path = onnx_file
    with pytest.raises(InputError, match=r"needs gradients .* ONNX Runtime .* torch model"):
        featureviz(str(path), "conv1", [0], steps=2, size=8)


def test_model_failure_is_one_line(tmp_path: Path) -> None:
    """A graph that ONNX Runtime rejects on the data: one line naming the input shape."""
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "fc.weight")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 3])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "mm.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError) as err:
        signals(str(path), torch.randn(2, 5))
    assert "\n" not in str(err.value) and "inputs of shape 5" in str(err.value)


@pytest.mark.slow  # a whole report
def test_report_of_an_onnx_file_with_an_image_folder_has_every_data_section(onnx_file: tuple[ConvNet, Path],
                                                                            tmp_path: Path) -> None:
    from PIL import Image

    from convsvd.report import report

    _, path = onnx_file
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"c{c}" / f"{i}.png")
    r = report(str(path), str(tmp_path / "imgs"), out=tmp_path / "r.html", quick=True, progress=False)
    status = dict(zip(r.to_frame()["id"], r.to_frame()["status"]))
    assert status["separation"] == "done"
    html = (tmp_path / "r.html").read_text()
    assert "Dataset exemplars" in html or "exemplars" in html.lower()
    assert "model accuracy" in html and "labelled inputs" in html
    assert (tmp_path / "r-data" / "signals" / "manifest.json").is_file()
    assert "Feature visualisation needs gradients" in html


@pytest.mark.slow  # a whole command
def test_cli_features_of_an_onnx_file_gives_exemplars(onnx_file: tuple[ConvNet, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from convsvd.cli import main

    _, path = onnx_file
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", inputs=rng.random((12, 3, 8, 8)).astype(np.float32), labels=np.arange(12) % 3)
    out = tmp_path / "f"
    assert main(["features", str(path), "--layer", "conv2", "--neurons", "0-2", "--k", "2",
                 "--data", str(tmp_path / "d.npz"), "--out", str(out)]) == 0
    assert "feature visualisation skipped" in capsys.readouterr().err
    import pandas as pd

    ex = pd.read_csv(out / "exemplars.csv")
    assert set(ex["neuron"]) == {0, 1, 2} and (out / "features-conv2.png").is_file()
    assert not (out / "features.csv").exists()
    assert main(["features", str(path), "--layer", "conv2", "--out", str(out)]) == 2  # no data: nothing to show
    assert "needs gradients" in capsys.readouterr().err
