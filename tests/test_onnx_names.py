"""ONNX layer names users recognise: from weight tensors or torch scopes, with the node name as an alias."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from convsvd.cli import main
from convsvd.errors import InputError
from convsvd.io import from_onnx, load
from convsvd.io.onnx_io import layer_name
from convsvd.layers import describe


@pytest.mark.parametrize("tensors, node, expected", [
    (["conv1.weight"], "/conv1/Conv", "conv1"),                        # PyTorch parameter
    (["conv2d_28.w_0", "conv2d_28.b_0"], "p2o.Conv.28", "conv2d_28"),  # Paddle
    (["conv1_weights"], "Conv@17", "conv1"),                           # Paddle, older
    (["block1/conv/kernel:0"], "StatefulPartitionedCall/conv", "block1/conv"),  # TensorFlow
    (["onnx::Conv_22"], "/layer4/layer4.0/conv1/Conv", "layer4.0.conv1"),  # folded export: the scope path
    (["onnx::Conv_22", "onnx::Conv_23"], "/features/features.0/Conv", "features.0"),
    (["val_13"], "node_conv2d_1", "node_conv2d_1"),                    # nothing better than the node name
    (["123"], "", "Conv_5"),
])
def test_layer_name(tensors: list[str], node: str, expected: str) -> None:
    assert layer_name(tensors, node, "Conv_5") == expected


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn1(self.conv1(x)))


class ResNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.layer4 = nn.Sequential(Block(), Block())
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer4(self.conv1(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported in eval mode with constant folding: BatchNorm is fused, the weights get generated names."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("names") / "resnet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ResNetLike().eval(), (torch.randn(1, 3, 8, 8),), str(path), opset_version=17, dynamo=False)
    return path


def test_exported_resnet_layers_are_named_like_its_modules(resnet_onnx: Path) -> None:
    mw = load(resnet_onnx)
    assert mw.names == ["conv1", "layer4.0.conv1", "layer4.1.conv1", "fc"]
    assert mw["layer4.0.conv1"].alias == "/layer4/layer4.0/conv1/Conv"
    assert mw["conv1"].alias == "/conv1/Conv"


def test_layer_patterns_match_the_name_or_the_node_alias(resnet_onnx: Path) -> None:
    mw = load(resnet_onnx)
    assert mw.select("layer4.*").names == ["layer4.0.conv1", "layer4.1.conv1"]
    assert mw.select("/layer4/layer4.1/*").names == ["layer4.1.conv1"]
    assert mw.select(["/conv1/Conv", "fc"]).names == ["conv1", "fc"]
    with pytest.raises(InputError, match="matches no layer"):
        mw.select("layer5.*")


def test_describe_shows_both_names(resnet_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = describe(load(resnet_onnx))
    analysed = frame[frame.status == "analysed"]
    assert analysed[["name", "alias"]].values.tolist()[:2] == [["conv1", "/conv1/Conv"],
                                                                ["layer4.0.conv1", "/layer4/layer4.0/conv1/Conv"]]
    assert main(["describe", str(resnet_onnx)]) == 0
    out = capsys.readouterr().out
    assert "layer4.0.conv1" in out and "/layer4/layer4.0/conv1/Conv" in out


def test_cli_layers_option_takes_either_name(resnet_onnx: Path, tmp_path: Path) -> None:
    import pandas as pd

    for pattern in ("layer4.*", "/layer4/*"):
        out = tmp_path / pattern.strip("/*.").replace("/", "_")
        assert main(["svd", str(resnet_onnx), "--layers", pattern, "--out", str(out)]) == 0
        assert sorted(pd.read_parquet(out / "svd.parquet")["name"].unique()) == ["layer4.0.conv1", "layer4.1.conv1"]


def test_node_name_is_no_alias_when_it_is_the_name() -> None:
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    spec = from_onnx(helper.make_model(g))["proj"]
    assert spec.alias is None
