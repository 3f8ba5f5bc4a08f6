"""The spatial size each conv layer sees (convsvd.shapes): traced forward hooks and ONNX shape inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from convsvd.errors import InputError
from convsvd.io import from_module, load
from convsvd.shapes import layer_input_sizes, onnx_input_sizes, trace_input_sizes


def _out(size: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """PyTorch's output size of a conv or pooling layer."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class _Block(nn.Module):
    """A ResNet basic block with a downsampling path (1×1 stride-2 conv on the identity)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        _Block(8, 8, 1), _Block(8, 16, 2), _Block(16, 32, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def _geometry_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),           # 0: sees 37×29
        nn.Conv2d(4, 4, 3, dilation=2),                     # 1: dilation, no padding
        nn.MaxPool2d(2),                                    # pooling
        nn.Conv2d(4, 6, (3, 5), padding=(2, 0)),            # 3: asymmetric kernel and padding
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.Conv2d(6, 6, 1),                                 # 5
    )


def _geometry_expected(h: int, w: int) -> dict[str, tuple[int, int]]:
    out = {"0": (h, w)}
    h, w = _out(h, 3, 2, 1), _out(w, 3, 2, 1)
    out["1"] = (h, w)
    h, w = _out(h, 3, d=2), _out(w, 3, d=2)
    h, w = _out(h, 2, 2), _out(w, 2, 2)
    out["3"] = (h, w)
    h, w = _out(h, 3, p=2), _out(w, 5)
    h, w = _out(h, 3, 2, 1), _out(w, 3, 2, 1)
    out["5"] = (h, w)
    return out


def test_traced_sizes_follow_stride_dilation_pooling_and_padding() -> None:
    net = _geometry_net()
    assert trace_input_sizes(net, (3, 37, 29)) == _geometry_expected(37, 29)
    sizes = layer_input_sizes(from_module(net), (3, 37, 29))
    assert sizes.how == "traced" and sizes.reason == "" and sizes.sizes == _geometry_expected(37, 29)


def test_traced_sizes_of_a_resnet_downsampling_path() -> None:
    sizes = layer_input_sizes(from_module(_resnet()), (3, 64, 64)).sizes
    stem = _out(_out(64, 7, 2, 3), 3, 2, 1)  # conv 7×7/2 then max-pool 3×3/2: 64 → 32 → 16
    assert sizes["0"] == (64, 64)
    assert sizes["4.conv1"] == sizes["4.conv2"] == sizes["4.down.0"] == (stem, stem)
    half = _out(stem, 3, 2, 1)
    assert sizes["5.conv1"] == sizes["5.down.0"] == (stem, stem)  # the block's input, before its stride
    assert sizes["5.conv2"] == (half, half)
    quarter = _out(half, 3, 2, 1)
    assert sizes["6.conv1"] == sizes["6.down.0"] == (half, half) and sizes["6.conv2"] == (quarter, quarter)
    assert "9" not in sizes  # the linear layer has no spatial size


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_no_hook_remains_and_modes_are_restored_after_success_and_failure() -> None:
    net = _resnet().train()
    net[4].eval()  # a mixed state, to be restored exactly
    modes = [m.training for m in net.modules()]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = net.eval()(x).detach().clone()
    for m, flag in zip(net.modules(), modes):
        m.train(flag)
    stats = net[1].running_mean.clone()

    trace_input_sizes(net, (3, 32, 32))
    assert _hooks(net) == 0 and [m.training for m in net.modules()] == modes
    assert torch.equal(net[1].running_mean, stats)  # eval mode during the trace: statistics untouched

    with pytest.raises(InputError, match="input_shape"):
        trace_input_sizes(net, (5, 32, 32))  # wrong channel count: the forward pass fails
    assert _hooks(net) == 0 and [m.training for m in net.modules()] == modes
    torch.testing.assert_close(net.eval()(x), before)


class _Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom")


def test_no_hook_remains_when_the_forward_pass_raises_after_a_hook_ran() -> None:
    net = _Boom()
    with pytest.raises(InputError, match="boom"):
        layer_input_sizes(from_module(net), (1, 8, 8))
    assert _hooks(net) == 0 and net.training


def test_a_module_tree_without_input_shape_and_a_weights_only_file_say_why() -> None:
    net = _geometry_net()
    none = layer_input_sizes(from_module(net))
    assert none.sizes == {} and none.how == "none" and "input shape" in none.reason
    from convsvd.io import from_state_dict

    flat = layer_input_sizes(from_state_dict(net.state_dict()), (3, 37, 29))
    assert flat.sizes == {} and "weights-only" in flat.reason


def _export(model: nn.Module, path: Path, shape: tuple[int, ...], dynamic: bool = False) -> None:
    x = torch.zeros(1, *shape)
    axes = {"x": {0: "batch", 2: "height", 3: "width"}} if dynamic else {"x": {0: "batch"}}
    torch.onnx.export(model.eval(), (x,), str(path), input_names=["x"], output_names=["y"], opset_version=17,
                      dynamic_axes=axes, dynamo=False)


def test_onnx_sizes_equal_the_traced_sizes(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    net = _resnet().eval()
    traced = trace_input_sizes(net, (3, 48, 40))
    path = tmp_path / "resnet.onnx"
    _export(net, path, (3, 48, 40))
    mw = load(path)
    sizes = layer_input_sizes(mw)
    assert sizes.how == "onnx" and sizes.reason == ""
    convs = [s.name for s in mw.layers if s.kind == "conv2d"]
    # the exporter folds each BatchNorm into its conv and names the layers after the nodes: compare in order
    assert len(convs) == 10 and [sizes.sizes[name] for name in convs] == list(traced.values())


def test_onnx_with_symbolic_sizes_needs_the_input_shape(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    import onnx

    net = _geometry_net().eval()
    path = tmp_path / "dyn.onnx"
    _export(net, path, (3, 37, 29), dynamic=True)
    mw = load(path)
    unknown = layer_input_sizes(mw)
    assert unknown.sizes == {} and "symbolic" in unknown.reason
    assert layer_input_sizes(mw, (3, 45, 33)).sizes == _geometry_expected(45, 33)
    sizes, reason = onnx_input_sizes(onnx.load(str(path)), (3, 21, 64))
    assert sizes == _geometry_expected(21, 64) and reason == ""
    with pytest.raises(InputError, match="input_shape"):
        onnx_input_sizes(onnx.load(str(path)), (21, 64))
